"""Group-level homogenization: one pattern table per group, each released under the round's
policy, and the group metrics avg, unif and worst.

Definitions: `shared/notes/protocol-research.md` section 1, which follows Bommasani et al.,
NeurIPS 2022, and their code (github.com/rishibommasani/HomogenizationNeurIPS2022,
src/homogenization.py: compute_average_case_homogenization, compute_uniform_case_homogenization,
compute_worst_case_homogenization)::

    avg   = sum_g prod_i [freq_i(g) * fail_g(h^i)] / ( prod_i fail_i * sum_g prod_i freq_i(g) )
    unif  = mean_g prod_i fail_g(h^i) / prod_i fail_i
    worst = max_g  prod_i fail_g(h^i) / prod_i fail_i

fail_i is company i's failure rate over the N shared individuals, fail_g(h^i) its failure rate
inside group g, freq_i(g) the share of company i's individuals in g. Every company's individuals
here are the same N shared individuals (the population measured is the intersection), so
freq_i(g) = N_g / N for every i, and avg = sum_g N_g^k P_g / (prod_i fail_i * sum_g N_g^k) with
P_g = prod_i fail_g(h^i): a ratio of averages (the group products weighted by N_g^k), not an
average of per-group H. None of the three is the per-group H_g = S_g / prod_i fail_g(h^i) (that
is each group's `homogenization`): they ask whether failures concentrate in the same *groups*.
With one individual per group, avg = unif = H.

Undefined cases, each with a note: prod_i fail_i = 0 makes all three undefined (the authors'
code asserts); a group with no shared individuals has no failure rates and is left out (the
authors' code counts an empty group's failure rate as 1, which would make it the worst group);
so is a group the release policy withholds. A group in which some company never fails enters
with P_g = 0 (its own H_g is undefined).

Release (docs/THREAT_MODEL.md, "Release policy"): every group table goes through `release`
with the round's policy. Without noise, tables can be subtracted from one another: the overall
table less the published groups is the withheld groups' sum, and an overall cell less the other
groups' cells gives a group's withheld cell back. So, as soon as any group withholds anything:
groups withheld as a whole are at least two and could be released together as one group
(further groups are withheld, smallest first, until they are); every overall cell but the
all-fail one is withheld (the published group cells are the finer release); S and a company's
overall failure count are withheld where a published group withholds its own, or where the
withheld groups together hold 1 to `min_cell_count` - 1 (failed, or not failed). What is left
of the overall result (N, the failure counts, S) is then the sum of what the groups publish and
of the withheld groups' own margins, which they could publish as one group. A group whose
failure counts are withheld is left out of avg / unif / worst (they would give them back).
Under differential privacy every group table gets the round's noise and nothing is linked
(noisy figures subtracted stay noisy): the groups are disjoint, so together they cost epsilon
(parallel composition), and with the overall table a round with groups spends 2 epsilon
(sequential composition).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from monoculture.analysis.budget import RoundCost
from monoculture.analysis.disclosure import withhold
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable, count_patterns, pattern_string

# What each published group shows, from its own `release` result.
GROUP_KEYS = (
    "shared_individuals", "failures", "failure_rates", "systemic_failures", "systemic_failure_rate",
    "homogenization", "homogenization_note", "pattern_counts", "suppressed_cells", "suppressed_failures",
)  # fmt: skip


def group_round_cost(cost: RoundCost, grouped: bool) -> RoundCost:
    """What a round spends: `cost` (one release of the overall table) and, with groups, as much
    again for the group tables (disjoint, so one epsilon for all of them; sequential composition
    with the overall table: (2 epsilon, 2 delta))."""
    return RoundCost(2 * cost.epsilon, 2 * cost.delta) if grouped else cost


def plaintext_group_tables(
    companies: Sequence[str],
    outcomes: Sequence[Mapping[str, int]],
    groups_from: str,
    group_of: Mapping[str, str],
    labels: Sequence[str],
) -> dict[str, PatternTable]:
    """Reference computation in the clear: one table per label over the shared individuals,
    each individual in the group `groups_from` gives it (`group_of`: id -> label)."""
    if groups_from not in companies:
        raise ValueError(f"{groups_from!r} is not one of the companies")
    shared = set(outcomes[0])
    for outcome in outcomes[1:]:
        shared &= outcome.keys()
    by_label: dict[str, list[str]] = {label: [] for label in labels}
    for record_id in sorted(shared):
        label = group_of[record_id]
        if label not in by_label:
            raise ValueError(f"group label {label!r} is not declared")
        by_label[label].append(record_id)
    tables = {}
    for label, ids in by_label.items():
        vectors = [np.fromiter((o[i] for i in ids), dtype=np.int64, count=len(ids)) for o in outcomes]
        counts = count_patterns(vectors) if ids else np.zeros(2 ** len(companies), dtype=np.int64)
        tables[label] = PatternTable(tuple(companies), tuple(int(c) for c in counts))
    return tables


def with_groups(
    result: Mapping[str, Any],
    table: PatternTable,
    group_tables: Mapping[str, PatternTable],
    policy: ReleasePolicy | None = None,
) -> dict[str, Any]:
    """`result` (the released overall result of `table`) with `groups` and `group_homogenization`
    added; overall cells are withheld further where a group's withheld figures could otherwise
    be recomputed (module docstring). `group_tables`: one per declared label, in order; they add
    up to `table`. `policy` None: publish everything exactly (the plaintext reference)."""
    policy = policy or ReleasePolicy()
    out = dict(result)
    released = {label: release(group_table, policy) for label, group_table in group_tables.items()}
    withheld = {
        label: str(group["suppression_reason"]) for label, group in released.items() if group["suppressed"]
    }
    if policy.mechanism == "none" and not out.get("suppressed"):
        _link_groups(policy, group_tables, released, withheld)
        _link_overall(out, table, policy, group_tables, released, withheld)
    groups: dict[str, dict[str, Any]] = {}
    for label, group in released.items():
        if label in withheld:
            groups[label] = {"suppressed": True, "suppression_reason": withheld[label]}
        else:
            groups[label] = {"suppressed": False, **{k: group[k] for k in GROUP_KEYS if k in group}}
    out["groups"] = groups
    out["group_homogenization"] = group_homogenization(out, groups, policy)
    return out


def _sum_of(tables: Iterable[PatternTable]) -> PatternTable:
    tables = list(tables)
    counts = np.sum([np.asarray(t.counts, dtype=np.int64) for t in tables], axis=0)
    return PatternTable(tables[0].companies, tuple(int(c) for c in counts))


def _link_groups(
    policy: ReleasePolicy,
    group_tables: Mapping[str, PatternTable],
    released: Mapping[str, Mapping[str, Any]],
    withheld: dict[str, str],
) -> None:
    """The overall figures less the published groups' are the withheld groups' together: withhold
    further groups, smallest first, until the withheld ones are at least two and could be
    released as one group (or every group is withheld)."""
    if not withheld:
        return
    first = ", ".join(withheld)
    while True:
        published = [label for label in released if label not in withheld]
        together = _sum_of(group_tables[label] for label in withheld)
        if not published or (len(withheld) >= 2 and not release(together, policy)["suppressed"]):
            return
        smallest = min(published, key=lambda label: group_tables[label].shared_individuals)
        withheld[smallest] = (
            f"withheld with {first}: the overall result less the published groups would show the "
            "withheld groups' figures"
        )


def _link_overall(
    out: dict[str, Any],
    table: PatternTable,
    policy: ReleasePolicy,
    group_tables: Mapping[str, PatternTable],
    released: Mapping[str, Mapping[str, Any]],
    withheld: Mapping[str, str],
) -> None:
    """Withhold what of the overall table, less the published groups, would give back a figure a
    group withholds (module docstring): every cell but the all-fail one as soon as any group
    withholds anything; the all-fail cell (S) and a company's failure count where a published
    group withholds it, or where the withheld groups together hold 1 to `min_cell_count` - 1."""
    parties, companies = table.parties, list(table.companies)
    index_of = {pattern_string(i, parties): i for i in range(2**parties)}
    all_fail = 2**parties - 1
    group_cells: set[int] = set()
    group_failures: set[int] = set()
    for label, group in released.items():
        if label not in withheld:
            group_cells |= {index_of[name] for name in group.get("suppressed_cells", ())}
            group_failures |= {companies.index(name) for name in group.get("suppressed_failures", ())}
    if not (group_cells or group_failures or withheld):
        return  # every group is published whole: the overall figures are their sums
    if len(withheld) == len(released):
        return  # no group is published: nothing to subtract the overall figures from
    cells = set(range(all_fail)) | (group_cells & {all_fail})
    failures = set(group_failures)
    if withheld:
        rest = _sum_of(group_tables[label] for label in withheld)
        if _small(rest.systemic_failures, policy.min_cell_count):
            cells.add(all_fail)
        for company in range(parties):
            failed = rest.failures(company)
            if _small(failed, policy.min_cell_count) or _small(
                rest.shared_individuals - failed, policy.min_cell_count
            ):
                failures.add(company)
    cells |= {index_of[name] for name in out.get("suppressed_cells", ())}
    failures |= {companies.index(name) for name in out.get("suppressed_failures", ())}
    out["pattern_counts"] = dict(out["pattern_counts"])
    withhold(out, sorted(cells), parties, policy.min_cell_count, failure_counts=sorted(failures))
    note = (
        "the overall cells are withheld (and S or failure counts where needed) so that no group's "
        "withheld figures can be recomputed from the overall result less the published groups"
    )
    out["group_suppression_note"] = note
    if policy.min_cell_count < 2:  # withhold() speaks of small cells; here there are none
        out["suppression_note"] = note


def _small(count: int, min_cell_count: int) -> bool:
    return 0 < count < min_cell_count


def _rate_product(failures: Sequence[int], n: int) -> Fraction:
    return math.prod((Fraction(f, n) for f in failures), start=Fraction(1))


def group_homogenization(
    overall: Mapping[str, Any], groups: Mapping[str, Mapping[str, Any]], policy: ReleasePolicy | None = None
) -> dict[str, Any]:
    """avg, unif, worst and worst_group (module docstring) from the published figures: the
    overall N and failure counts, and each published group's N_g and failure counts."""
    notes: list[str] = []
    undefined = {"avg": None, "unif": None, "worst": None, "worst_group": None}
    if policy is not None and policy.mechanism != "none":
        notes.append(
            "every group's table carries the round's noise; the groups are disjoint, so together they "
            "cost epsilon (parallel composition), and a round with groups spends 2 epsilon with the "
            "overall table"
        )
    if overall.get("suppressed") or "failures" not in overall:
        return {**undefined, "groups_used": [], "notes": [*notes, "the overall result is withheld"]}
    companies = list(overall["companies"])
    n = int(overall["shared_individuals"])
    used = {}
    for label, group in groups.items():
        if group.get("suppressed"):
            notes.append(f"group {label!r} is withheld by the release policy and left out")
        elif not group["shared_individuals"]:
            notes.append(f"group {label!r} has no shared individuals (no failure rates) and is left out")
        elif any(group["failures"][name] is None for name in companies):
            notes.append(f"group {label!r} has failure counts withheld by the release policy and is left out")
        else:
            used[label] = group
            zero = [name for name in companies if not group["failures"][name]]
            if zero:
                notes.append(
                    f"in group {label!r} the failure rate is 0 for {', '.join(zero)}: its H is undefined "
                    "and its product of failure rates is 0"
                )
    if any(overall["failures"][name] is None for name in companies):
        notes.append("undefined: a company's overall failure count is withheld by the release policy")
        return {**undefined, "groups_used": list(used), "notes": notes}
    failures = [int(overall["failures"][name]) for name in companies]
    zero_overall = [name for name, count in zip(companies, failures, strict=True) if not count]
    if not n or zero_overall:
        why = "no shared individuals" if not n else f"failure rate is 0 for {', '.join(zero_overall)}"
        notes.append(f"undefined: {why} (the metrics divide by the product of failure rates)")
        return {**undefined, "groups_used": list(used), "notes": notes}
    if not used:
        notes.append("undefined: no group has published shared individuals")
        return {**undefined, "groups_used": [], "notes": notes}
    expected = _rate_product(failures, n)
    products = {
        label: _rate_product(
            [int(group["failures"][name]) for name in companies], int(group["shared_individuals"])
        )
        for label, group in used.items()
    }
    weights = {
        label: Fraction(int(group["shared_individuals"])) ** len(companies) for label, group in used.items()
    }
    avg: Fraction | None = None
    if sum(weights.values()):
        avg = sum((weights[g] * products[g] for g in used), Fraction(0)) / (expected * sum(weights.values()))
    else:  # noisy group sizes can be negative: at odd k their weights N_g^k can cancel out
        notes.append("avg undefined: the groups' weights N_g^k add up to 0 (noisy group sizes)")
    unif = sum(products.values(), Fraction(0)) / len(products) / expected
    worst_group = max(used, key=lambda label: products[label])  # the first of equals, in declared order
    return {
        "avg": None if avg is None else float(avg),
        "unif": float(unif),
        "worst": float(products[worst_group] / expected),
        "worst_group": worst_group,
        "groups_used": list(used),
        "notes": notes,
    }
