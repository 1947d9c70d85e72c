"""DP dummies (monoculture.core.dummies): the offset mu, the exact sampler, and the 10% rule.

Every privacy figure here is computed exactly from the pmf (60 decimal digits), never by
sampling; sampling only ties the sampler to that pmf (chi-square) and checks its mean.
Seeds are fixed, so every statistical test is deterministic (it cannot flake); its
threshold is still one that a wrong sampler fails.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from scipy import stats

from monoculture.core.dummies import (
    DummyPlan,
    Padding,
    RandomBits,
    company_regions,
    exact_regions,
    new_seed,
    noise_info,
    noise_key,
    noise_pmf,
    offset,
    padded_regions,
    region_noise,
    singleton_noise,
    truncation_delta,
)

EPS_C = Fraction(1, 2)  # eps = 1 over two cells
DELTA_C = Fraction(1, 2_000_000)  # delta = 1e-6 over two cells
MU = 27
SEED = bytes(range(32))
PAIR = ("alpha", "beta")


def _draws(n: int, *, seed: bytes = SEED, region: tuple[str, ...] = PAIR, suffix: str = "") -> list[int]:
    return [region_noise(seed, f"round-{i}{suffix}", region, EPS_C, MU) for i in range(n)]


# ----------------------------------------------------------------- the offset


def test_offsets_match_the_note() -> None:
    assert offset(EPS_C, DELTA_C) == 27
    assert offset(1, Fraction(1, 10**6)) == 14  # a change that touches one cell
    plan = DummyPlan.for_round(1.0, 1e-6, 3)
    assert (plan.eps_c, plan.mu) == (Fraction(1, 2), 27)
    assert DummyPlan.for_round(1.0, 1e-6, 3, cells_per_change=1).mu == 14


def test_offset_is_the_smallest_meeting_the_condition() -> None:
    """mu meets t^mu (1 - t) / (1 + t - 2 t^(mu+1)) <= delta_c and mu - 1 does not;
    checked with floats, independently of the module's decimals."""
    for eps_c, delta_c in [
        (EPS_C, DELTA_C),
        (Fraction(1), Fraction(1, 10**6)),
        (Fraction(1, 20), Fraction(1, 10**9)),
    ]:
        mu = offset(eps_c, delta_c)
        t = math.exp(-float(eps_c))

        def delta(m: int, t: float = t) -> float:
            return t**m * (1 - t) / (1 + t - 2 * t ** (m + 1))

        assert delta(mu) <= float(delta_c) < delta(mu - 1)
        assert float(truncation_delta(eps_c, mu)) == pytest.approx(delta(mu), rel=1e-9)


def test_plan_counts_match_the_note_table() -> None:
    expected = {3: (6, 81, 243), 5: (30, 405, 2025), 8: (254, 3429, 27432), 16: (65534, 884709, 14155344)}
    for k, (regions, dummies, multiplications) in expected.items():
        plan = DummyPlan.for_round(1, Fraction(1, 10**6), k)
        assert plan.regions == regions == len(padded_regions([f"c{i}" for i in range(k)], Padding.ALL))
        assert plan.expected_dummies_per_company() == dummies
        assert plan.max_dummies_per_company() == 2 * dummies
        assert plan.extra_multiplications_per_company() == multiplications
        assert plan.expected_dummies_per_company(Padding.PAIRS) == k * 27


def test_floats_are_refused_by_the_sampler() -> None:
    with pytest.raises(TypeError):
        region_noise(SEED, "r", PAIR, 0.5, MU)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        region_noise(SEED, "r", ("alpha",), EPS_C, MU)
    with pytest.raises(ValueError):
        region_noise(SEED, "r", ("alpha", "alpha"), EPS_C, MU)
    with pytest.raises(ValueError):
        region_noise(SEED[:8], "r", PAIR, EPS_C, MU)
    with pytest.raises(ValueError):
        offset(EPS_C, 0)


# ---------------------------------------------------------------- the sampler


def test_noise_is_in_range_and_reaches_both_ends() -> None:
    values = _draws(3000)
    assert min(values) >= 0 and max(values) <= 2 * MU
    # With a small offset, rejection is frequent and both ends are reached, never passed.
    small = [region_noise(SEED, f"r{i}", PAIR, Fraction(1, 4), 2) for i in range(2000)]
    assert set(small) == {0, 1, 2, 3, 4}


def test_same_inputs_same_noise_any_change_independent() -> None:
    n = 3000
    base = _draws(n)
    assert base == _draws(n)  # a retry of the round, or another member of R
    assert base == _draws(n, region=tuple(reversed(PAIR)))  # a region is a set
    assert [singleton_noise(SEED, f"round-{i}", "alpha", EPS_C, MU) for i in range(5)] == [
        singleton_noise(SEED, f"round-{i}", "alpha", EPS_C, MU) for i in range(5)
    ]
    pmf = [float(p) for p in noise_pmf(EPS_C, MU).values()]
    collision = sum(p * p for p in pmf)  # P(two independent draws agree), about 0.13
    changes = {
        "seed": _draws(n, seed=SEED[:-1] + b"\x00"),
        "round": _draws(n, suffix="x"),
        "region": _draws(n, region=("alpha", "gamma")),
        "region members": _draws(n, region=("alpha", "beta", "gamma")),
        "names split otherwise": _draws(n, region=("alph", "abeta")),
    }
    for name, other in changes.items():
        agree = sum(a == b for a, b in zip(base, other, strict=True)) / n
        assert abs(agree - collision) < 5 * math.sqrt(collision * (1 - collision) / n), name
        correlation = float(stats.pearsonr(base, other).statistic)
        assert abs(correlation) < 5 / math.sqrt(n), name
    # length-prefixed names: no two regions share an encoding
    assert noise_info("r", ("ab", "c")) != noise_info("r", ("a", "bc"))


def test_key_is_hkdf_sha256_as_specified() -> None:
    """Another implementation can reproduce the key: HKDF-SHA256 (RFC 5869) by hand with hmac."""
    info = (
        b"\x00\x00\x00\x16monoculture/v2 dummies"
        + b"\x00\x00\x00\x07round-1"
        + b"\x00\x00\x00\x02"
        + b"\x00\x00\x00\x05alpha"
        + b"\x00\x00\x00\x04beta"
    )
    assert noise_info("round-1", ("beta", "alpha")) == info
    prk = hmac.new(bytes(32), SEED, hashlib.sha256).digest()
    okm = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    assert noise_key(SEED, "round-1", PAIR) == okm


def test_unbiased_and_distributed_as_the_exact_pmf() -> None:
    n = 10_000
    values = _draws(n)
    pmf = {v: float(p) for v, p in noise_pmf(EPS_C, MU).items()}
    sd = math.sqrt(sum(p * (v - MU) ** 2 for v, p in pmf.items()))
    assert sd == pytest.approx(2.8, abs=0.05)
    mean = sum(values) / n - MU
    assert abs(mean) < 4 * sd / math.sqrt(n)  # o_R - mu is unbiased
    # chi-square against the exact pmf; the tails are pooled to expected counts of at least 5
    low = min(v for v in pmf if sum(p for w, p in pmf.items() if w <= v) * n >= 5)
    high = max(v for v in pmf if sum(p for w, p in pmf.items() if w >= v) * n >= 5)
    observed = [sum(1 for x in values if x <= low)]
    expected = [sum(p for v, p in pmf.items() if v <= low) * n]
    for v in range(low + 1, high):
        observed.append(values.count(v))
        expected.append(pmf[v] * n)
    observed.append(sum(1 for x in values if x >= high))
    expected.append(sum(p for v, p in pmf.items() if v >= high) * n)
    statistic, p_value = stats.chisquare(observed, expected)
    assert p_value > 1e-3, (statistic, p_value)
    # the same test rejects a sampler with the wrong scale (eps_c = 0.6 instead of 0.5)
    wrong = [region_noise(SEED, f"round-{i}", PAIR, Fraction(3, 5), MU) for i in range(n)]
    observed_wrong = [sum(1 for x in wrong if x <= low)]
    observed_wrong += [wrong.count(v) for v in range(low + 1, high)]
    observed_wrong.append(sum(1 for x in wrong if x >= high))
    assert stats.chisquare(observed_wrong, expected).pvalue < 1e-6


def test_bernoulli_exp_above_one() -> None:
    bits = RandomBits(bytes(32))
    n = 20_000
    hits = sum(bits.bernoulli_exp(Fraction(3, 2)) for _ in range(n))
    p = math.exp(-1.5)
    assert abs(hits / n - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_new_seeds_differ() -> None:
    assert len(new_seed()) == 32 and new_seed() != new_seed()


# ----------------------------------------------------- the privacy loss, exactly


def _shifted(pmf: dict[int, Decimal], count: int) -> dict[int, Decimal]:
    return {count + v: p for v, p in pmf.items()}


def _hockey_stick(p: dict[int, Decimal], q: dict[int, Decimal], e_eps: Decimal) -> Decimal:
    return sum((max(Decimal(0), pv - e_eps * q.get(o, Decimal(0))) for o, pv in p.items()), Decimal(0))


def _one_cell_loss(eps_c: Fraction, delta_c: Fraction, mu: int) -> tuple[Decimal, Decimal]:
    """(P(outside the set where the loss is within eps_c), hockey-stick delta at eps_c), the
    worse of both directions, for counts c and c + 1."""
    with localcontext() as context:
        context.prec = 60
        e_eps = (Decimal(eps_c.numerator) / Decimal(eps_c.denominator)).exp()
        pmf = noise_pmf(eps_c, mu)
        worst_outside, worst_delta = Decimal(0), Decimal(0)
        c = 100
        for p, q in [(_shifted(pmf, c), _shifted(pmf, c + 1)), (_shifted(pmf, c + 1), _shifted(pmf, c))]:
            slack = Decimal(1) + Decimal(10) ** -40  # rounding of the 60-digit quotients
            outside = sum(
                (pv for o, pv in p.items() if q.get(o, Decimal(0)) * e_eps * slack < pv), Decimal(0)
            )
            worst_outside = max(worst_outside, outside)
            worst_delta = max(worst_delta, _hockey_stick(p, q, e_eps))
        return worst_outside, worst_delta


@pytest.mark.parametrize(
    ("eps_c", "delta_c"),
    [(EPS_C, DELTA_C), (Fraction(1), Fraction(1, 10**6)), (Fraction(1, 10), Fraction(1, 10**8))],
)
def test_privacy_loss_within_eps_outside_delta(eps_c: Fraction, delta_c: Fraction) -> None:
    mu = offset(eps_c, delta_c)
    bound = Decimal(delta_c.numerator) / Decimal(delta_c.denominator)
    outside, delta = _one_cell_loss(eps_c, delta_c, mu)
    assert outside <= bound and delta <= bound
    # the loss is exactly +-eps_c or unbounded, so the two notions agree (up to 60-digit rounding)
    assert abs(outside - delta) < bound * Decimal(10) ** -30
    # one dummy fewer is not enough: the test can fail
    outside, delta = _one_cell_loss(eps_c, delta_c, mu - 1)
    assert outside > bound and delta > bound


def _two_cell_delta(eps_c: Fraction, mu: int, eps: Fraction) -> Decimal:
    """Exact hockey-stick delta at eps of the pair (o_R, o_{R+j}) when one person moves from R
    to R + j: counts (a, b) against (a - 1, b + 1), independent noise on each, both directions."""
    with localcontext() as context:
        context.prec = 60
        e_eps = (Decimal(eps.numerator) / Decimal(eps.denominator)).exp()
        pmf = noise_pmf(eps_c, mu)
        a, b = 50, 80
        before = {(x, y): px * py for x, px in _shifted(pmf, a).items() for y, py in _shifted(pmf, b).items()}
        after = {
            (x, y): px * py
            for x, px in _shifted(pmf, a - 1).items()
            for y, py in _shifted(pmf, b + 1).items()
        }

        def one_way(p: dict[tuple[int, int], Decimal], q: dict[tuple[int, int], Decimal]) -> Decimal:
            total = Decimal(0)
            for o, pv in p.items():
                total += max(Decimal(0), pv - e_eps * q.get(o, Decimal(0)))
            return total

        return max(one_way(before, after), one_way(after, before))


def test_a_change_of_two_cells_is_eps_delta() -> None:
    """A person added to one list moves between two cells: with eps_c = eps / 2 and mu = 27 the
    pair of noisy counts is (1, 1e-6)-DP; the one-cell offset (eps_c = eps, mu = 14) is not."""
    eps, delta = Fraction(1), Decimal("1e-6")
    assert _two_cell_delta(EPS_C, 27, eps) <= delta
    assert _two_cell_delta(Fraction(1), 14, eps) > delta


# ------------------------------------------------------------------ the 10% rule


def test_ten_percent_rule_thresholds() -> None:
    # The note: every region fits within 10% of a list up to k = 6, 9, 12 for 1e4, 1e5, 1e6.
    for size, largest in [(10**4, 6), (10**5, 9), (10**6, 12)]:
        assert DummyPlan.for_round(1, 1e-6, largest).padding_for(size) is Padding.ALL
        assert DummyPlan.for_round(1, 1e-6, largest + 1).padding_for(size) is Padding.PAIRS
    plan = DummyPlan.for_round(1, 1e-6, 4)  # 7 regions * 27 = 189 expected dummies per company
    assert plan.padding_for(1890) is Padding.ALL  # exactly 10%
    assert plan.padding_for(1889) is Padding.PAIRS
    assert plan.round_padding([10**6, 1890, 5000]) is Padding.ALL
    assert plan.round_padding([10**6, 1889, 5000]) is Padding.PAIRS  # one small list decides for all


def test_ten_percent_rule_regions() -> None:
    roster = ["a", "b", "c", "d"]
    pairs = padded_regions(roster, Padding.PAIRS)
    assert pairs == [
        ("a",),
        ("b",),
        ("c",),
        ("d",),
        ("a", "b"),
        ("a", "c"),
        ("a", "d"),
        ("b", "c"),
        ("b", "d"),
        ("c", "d"),
    ]
    assert exact_regions(roster, Padding.PAIRS) == [
        ("a", "b", "c"), ("a", "b", "d"), ("a", "c", "d"), ("b", "c", "d"), ("a", "b", "c", "d"),
    ]  # fmt: skip
    assert exact_regions(roster, Padding.ALL) == [("a", "b", "c", "d")]  # the output only
    assert len(padded_regions(roster, Padding.ALL)) == 14
    assert company_regions("b", roster, Padding.PAIRS) == [("b",), ("a", "b"), ("b", "c"), ("b", "d")]
    assert len(company_regions("b", roster, Padding.ALL)) == 7
    plan = DummyPlan.for_round(1, 1e-6, 4)
    for level in Padding:
        assert len(company_regions("b", roster, level)) == plan.regions_per_company(level)
        padded, exact = padded_regions(roster, level), exact_regions(roster, level)
        assert not set(padded) & set(exact) and len(padded) + len(exact) == 2**4 - 1
    # At k = 3 the two levels coincide: no region has 3 to k - 1 companies.
    assert padded_regions(["a", "b", "c"], Padding.PAIRS) == padded_regions(["a", "b", "c"], Padding.ALL)
    with pytest.raises(ValueError):
        padded_regions(["a", "a"], Padding.ALL)


def test_region_seeds_are_sealed_to_the_members_and_checked() -> None:
    """Regions of three or more: the first member's envelope to each other member holds exactly
    the seeds of the regions they share, opens only under their pair key, and every member of a
    region then adds the same dummy ids; no dummy is in every list."""
    import itertools
    import os
    from dataclasses import replace

    from monoculture.core.dummies import (
        SeedEnvelope,
        company_dummies,
        led_regions,
        round_padding_level,
        sealed_seeds_size,
    )

    roster = ["a", "b", "c", "d", "e"]
    plan = DummyPlan.for_round(8, 1e-6, 5)
    assert round_padding_level(plan, 10**6) is Padding.ALL
    assert round_padding_level(plan, 10) is Padding.PAIRS
    assert led_regions("a", "c", roster, Padding.ALL) == [
        r for r in padded_regions(roster, Padding.ALL) if len(r) >= 3 and r[0] == "a" and "c" in r
    ]
    assert (
        led_regions("a", "c", roster, Padding.PAIRS) == []
        and led_regions("e", "a", roster, Padding.ALL) == []
    )
    keys = {frozenset(p): os.urandom(32) for p in itertools.combinations(roster, 2)}
    own = {name: os.urandom(32) for name in roster}
    received: dict[str, dict[tuple[str, ...], bytes]] = {name: {} for name in roster}
    for sender, receiver in itertools.permutations(roster, 2):
        key = keys[frozenset((sender, receiver))]
        envelope = SeedEnvelope(key, "r1", sender, receiver, tuple(roster), Padding.ALL)
        sealed = envelope.seal(own[sender])
        assert len(sealed) == sealed_seeds_size(sender, receiver, roster, Padding.ALL)
        received[receiver].update(envelope.open(sealed))
        if sealed:
            with pytest.raises(ValueError, match="do not open"):
                replace(envelope, pair_key=os.urandom(32)).open(sealed)
            with pytest.raises(ValueError, match="do not open"):  # another round's envelope
                replace(envelope, round_id="r2").open(sealed)
            with pytest.raises(ValueError, match="bytes"):
                envelope.open(sealed[:-1])
    positions = {name: at for at, name in enumerate(roster)}
    dummies = {}
    for name in roster:
        pair_keys = {positions[o]: keys[frozenset((name, o))] for o in roster if o != name}
        ids = company_dummies(name, roster, "r1", plan, own[name], pair_keys, Padding.ALL, received[name])
        dummies[name] = set(ids)
        assert len(ids) == len(dummies[name])
    for region in padded_regions(roster, Padding.ALL):
        inside = set.intersection(*(dummies[n] for n in region))
        outside = set().union(*(dummies[n] for n in roster if n not in region))
        assert len(inside - outside) <= 2 * plan.mu  # the region's own dummies, 0..2mu of them
    assert not set.intersection(*dummies.values())  # the output stays exact
    with pytest.raises(ValueError, match="no seed"):  # a member without its leader's envelope
        company_dummies("c", roster, "r1", plan, own["c"], {positions[o]: keys[frozenset(("c", o))]
                        for o in roster if o != "c"}, Padding.ALL, {})  # fmt: skip
