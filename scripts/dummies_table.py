"""The DP dummies each company adds, for docs/USAGE.md (monoculture.core.dummies).

At epsilon = 1, delta = 1e-6 for the Venn counts (eps_c = 1/2, delta_c = 5e-7 per cell,
mu = 27): for k companies, the regions padded when every one is, the expected dummies per
company ((2^(k-1) - 1) mu, at most twice that) and the extra EC multiplications per company
(k times the dummies: every company blinds every list). Then, for rounds whose minimum list
size is 10^4, 10^5 and 10^6, the level the 10% rule gives them (`round_padding_level`: every
region padded, or only singletons and pairs, k mu per company) and the expected dummies per
company that results.

    .venv/bin/python scripts/dummies_table.py
"""

from __future__ import annotations

from monoculture.core.dummies import DummyPlan, Padding, round_padding_level

KS = (3, 5, 8, 16)
SIZES = (10**4, 10**5, 10**6)
EPSILON, DELTA = 1, "1e-6"


def _level(plan: DummyPlan, size: int) -> str:
    padding = round_padding_level(plan, size)
    name = "all" if padding is Padding.ALL else "singletons+pairs"
    return f"{name}: {plan.expected_dummies_per_company(padding):,}"


def main() -> None:
    plan = DummyPlan.for_round(EPSILON, DELTA, KS[0])
    print(
        f"epsilon = {EPSILON}, delta = {DELTA}: eps_c = {plan.eps_c}, delta_c = {float(plan.delta_c):g}, "
        f"mu = {plan.mu} (dummies per region: mu + Z in [0, {2 * plan.mu}], mean {plan.mu})"
    )
    print()
    header = ["k", "regions", "dummies/company", "extra multiplications/company"]
    header += [f"minimum {size:,}" for size in SIZES]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for k in KS:
        plan = DummyPlan.for_round(EPSILON, DELTA, k)
        row = [
            str(k),
            f"{plan.regions:,}",
            f"{plan.expected_dummies_per_company():,} (max {plan.max_dummies_per_company():,})",
            f"{plan.extra_multiplications_per_company():,}",
        ]
        row += [_level(plan, size) for size in SIZES]
        print("| " + " | ".join(row) + " |")
    print()
    for size in SIZES:
        largest = max(
            k
            for k in range(2, 17)
            if round_padding_level(DummyPlan.for_round(EPSILON, DELTA, k), size) is Padding.ALL
        )
        print(f"every region padded within 10% of a minimum list size of {size:,} up to k = {largest}")
    print(
        "singletons+pairs: every region of 3 to k - 1 companies is exact to the coordinator; "
        "the full intersection (the output) is exact at every k."
    )


if __name__ == "__main__":
    main()
