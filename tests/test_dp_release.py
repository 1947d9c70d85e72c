"""Differential privacy in the release: OpenDP's samplers and accounting pinned by known
answers, no clamping bias, a threshold noise cannot fake, inference that includes the noise,
and two rounds that differ by one person telling no more than epsilon apart."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2

from monoculture.analysis.dp_inference import noisy_release, pattern_bits
from monoculture.analysis.privacy import THRESHOLD_FAILURE_PROBABILITY, NoiseMechanism
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable

DIGIT = PatternTable(("google", "microsoft", "ibm"), (576, 20, 5, 1, 858, 199, 54, 287))
LAPLACE_1 = NoiseMechanism.calibrated("discrete-laplace", 1.0)


# ------------------------------------------------------- OpenDP, pinned


def test_opendp_accounting_known_answers() -> None:
    """The privacy maps the ledger relies on, pinned across OpenDP upgrades."""
    assert LAPLACE_1.scale == 1.0 and LAPLACE_1.guarantee() == (1.0, 0.0)
    assert NoiseMechanism.calibrated("discrete-laplace", 0.1).guarantee() == pytest.approx((0.1, 0.0))
    gaussian = NoiseMechanism.calibrated("discrete-gaussian", 1.0, 1e-6)
    assert gaussian.scale == pytest.approx(4.530877, abs=1e-5)  # OpenDP 0.16's zCDP -> (eps, delta)
    epsilon, delta = gaussian.guarantee()
    assert epsilon <= 1.0 + 1e-9 and delta == 1e-6


@pytest.mark.parametrize(
    "mechanism",
    [LAPLACE_1, NoiseMechanism.calibrated("discrete-gaussian", 1.0, 1e-6)],
    ids=["laplace", "gaussian"],
)
def test_opendp_samples_have_the_stated_distribution(mechanism: NoiseMechanism) -> None:
    draws = mechanism.noisy([0] * 40_000)
    counts = Counter(draws)
    support = [x for x in range(-30, 31) if mechanism.pmf([x])[0] * len(draws) >= 20]
    expected = np.array([mechanism.pmf([x])[0] * len(draws) for x in support])
    observed = np.array([counts.get(x, 0) for x in support])
    chi_square = float(np.sum((observed - expected) ** 2 / expected))
    # A false alarm once in a million runs (seen once at the old bound, df + 5 sd, about 1e-4);
    # 60 runs of the right sampler gave 11.2 on average, at most 23.4.
    assert chi_square < chi2.isf(1e-6, len(support))
    assert np.var(draws) == pytest.approx(mechanism.variance(), rel=0.05)


def test_noise_is_fresh_every_time() -> None:
    assert LAPLACE_1.noisy([0] * 200) != LAPLACE_1.noisy([0] * 200)


# ------------------------------------------------------- no clamping bias, no bypass


def test_noisy_cells_are_unbiased_even_at_zero() -> None:
    """Clamping at 0 added about 0.43 per cell at epsilon 1; the cells are now left as drawn."""
    table = [0, 0, 3, 0, 1, 0, 0, 50]
    draws = np.array([LAPLACE_1.noisy(table) for _ in range(3000)])
    assert np.all(np.abs(draws.mean(axis=0) - table) < 0.12)  # standard error 0.025
    assert (draws < 0).any()  # a negative count is published as it is


def test_noise_cannot_lift_a_small_population_over_the_threshold() -> None:
    """k = 12, about 200 shared, threshold 1000, epsilon 1: clamping published N of about 1961."""
    rng = np.random.default_rng(12)
    counts = tuple(int(c) for c in rng.multinomial(200, np.full(4096, 1 / 4096)))
    table = PatternTable(tuple(f"c{i}" for i in range(12)), counts)
    policy = ReleasePolicy(min_shared_individuals=1000, mechanism="discrete-laplace", epsilon=1.0)
    for _ in range(3):
        result = release(table, policy)
        assert result["suppressed"] is True and "noise margin" in result["suppression_reason"]


def test_the_threshold_margin_holds_and_is_not_absurd() -> None:
    terms = 4096
    margin = LAPLACE_1.sum_upper_tail(terms)
    sums = np.random.default_rng(3).geometric(1 - math.exp(-1), (4000, terms))
    sums = sums - np.random.default_rng(4).geometric(1 - math.exp(-1), (4000, terms))
    totals = sums.sum(axis=1)
    assert (totals >= margin).sum() == 0  # at most 1e-9 of the time
    sd = math.sqrt(terms * LAPLACE_1.variance())
    assert margin < 8 * sd  # a Chernoff bound at 1e-9, not a blanket refusal
    assert THRESHOLD_FAILURE_PROBABILITY <= 1e-9


def test_a_large_enough_population_is_published_with_estimates() -> None:
    result = release(
        DIGIT, ReleasePolicy(min_shared_individuals=1000, mechanism="discrete-laplace", epsilon=1)
    )
    assert result["suppressed"] is False and result["noisy"] is True
    assert abs(result["shared_individuals"] - 2000) < 40
    assert result["homogenization"] == pytest.approx(4.6676, rel=0.1)
    assert result["homogenization_test"]["exact"] is False
    assert result["homogenization_ci95"][0] < 4.6676 < result["homogenization_ci95"][1]


# ------------------------------------------------------- inference includes the noise


def _population(rates: list[float], hard: float) -> np.ndarray:
    """Cell probabilities: a share `hard` failed by everyone, the rest independently."""
    bits = pattern_bits(len(rates))
    rate = np.asarray(rates)
    independent = np.prod(np.where(bits == 1, rate, 1 - rate), axis=1)
    joint = np.zeros(len(independent))
    joint[-1] = 1.0
    return (1 - hard) * independent + hard * joint


@pytest.mark.parametrize(("hard", "epsilon"), [(0.0, 0.1), (0.1, 0.1), (0.0, 1.0)])
def test_coverage_and_size_under_dp(hard: float, epsilon: float) -> None:
    """k = 3, N = 2000: the CI covers H about 95% of the time and the test of H = 1 rejects
    about 5% of the time at H = 1 (it rejected 45% at epsilon 0.1 when it ignored the noise)."""
    rng = np.random.default_rng(int(hard * 100 + epsilon * 10))
    rates = [0.3, 0.2, 0.25]
    probabilities = _population(rates, hard)
    bits = pattern_bits(3)
    failure = probabilities @ bits
    truth = probabilities[-1] / np.prod(failure)
    mechanism = NoiseMechanism.calibrated("discrete-laplace", epsilon)
    covered = rejected = published = 0
    replicates = 200
    from monoculture.analysis.dp_inference import noisy_inference

    for _ in range(replicates):
        noisy = rng.multinomial(2000, probabilities) + mechanism.simulate(rng, (8,))
        out = noisy_inference(noisy.tolist(), mechanism, ["a", "b", "c"], replicates=200, rng=rng)
        ci = out["homogenization_ci95"]
        if ci is not None:
            published += 1
            covered += ci[0] <= truth <= ci[1]
        test = out["homogenization_test"]
        rejected += test is not None and test["p_value_greater"] < 0.05
    assert published >= 0.95 * replicates
    assert 0.91 <= covered / published <= 0.985  # 0.95 within about 2.6 standard errors
    if hard == 0:
        assert rejected / replicates <= 0.09
    else:
        assert rejected / replicates >= 0.9


def test_the_failure_rate_interval_counts_the_noise_shared_with_n() -> None:
    """fail_i = F~ / N~ where N~ holds F~'s noise too; treating N~ as exact and F~'s noise as
    the rate's covered 0.975-0.983 at epsilon 0.1. Checked over 1000 noisy tables (cheap:
    a closed form), tolerance three binomial standard errors (0.021)."""
    from monoculture.analysis.dp_inference import _joint_rate_interval

    rng = np.random.default_rng(101)
    probabilities = _population([0.3, 0.2, 0.25], 0.0)
    bits = pattern_bits(3)
    mechanism = NoiseMechanism.calibrated("discrete-laplace", 0.1)
    covered, reps = 0, 1000
    for _ in range(reps):
        noisy = rng.multinomial(2000, probabilities) + mechanism.simulate(rng, (8,))
        low, high = _joint_rate_interval(
            float(noisy @ bits[:, 0]), float(noisy.sum()), 4, mechanism.variance()
        )  # type: ignore[misc]
        covered += low <= 0.3 <= high
    assert abs(covered / reps - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / reps)


def test_small_counts_under_dp_give_one_sided_bounds_that_cover() -> None:
    """k = 5, N = 2000, epsilon 1, independence: about 1.6 individuals failed by everyone. The
    two-sided bootstrap interval covered 0.995 there; now H gets a one-sided 95% upper bound,
    which must cover at least 95% (bar sampling error)."""
    from monoculture.analysis.dp_inference import noisy_inference

    rng = np.random.default_rng(55)
    probabilities = _population([0.3, 0.2, 0.25, 0.35, 0.15], 0.0)
    failure = probabilities @ pattern_bits(5)
    truth_h = probabilities[-1] / np.prod(failure)
    mechanism = NoiseMechanism.calibrated("discrete-laplace", 1.0)
    bounded = h_covered = 0
    reps = 200
    for _ in range(reps):
        noisy = rng.multinomial(2000, probabilities) + mechanism.simulate(rng, (32,))
        out = noisy_inference(noisy.tolist(), mechanism, list("abcde"), replicates=200, rng=rng)
        if out["homogenization_upper95"] is None:
            assert out["homogenization_ci95"] is not None
            continue
        assert out["homogenization_ci95"] is None and out["homogenization_ci_method"] is None
        assert "counts too small for a two-sided interval" in out["inference_note"]
        bounded += 1
        h_covered += truth_h <= out["homogenization_upper95"]
    assert bounded >= 0.9 * reps
    tolerance = 3 * math.sqrt(0.95 * 0.05 / bounded)
    assert h_covered / bounded >= 0.95 - tolerance


@pytest.mark.parametrize(("count", "n"), [(0, 200), (3, 100), (40, 1000)])
def test_the_noisy_upper_bound_of_s_is_clopper_pearson_without_noise(count: int, n: int) -> None:
    """At epsilon 50 the noise is almost always 0: the exact one-sided bound inverting
    binomial + noise is then the Clopper-Pearson one (scipy)."""
    from scipy import stats as sps

    from monoculture.analysis.dp_inference import _noisy_binomial_upper

    expected = sps.binomtest(count, n).proportion_ci(confidence_level=0.9, method="exact").high
    bound = _noisy_binomial_upper(count, n, NoiseMechanism.calibrated("discrete-laplace", 50.0))
    assert bound == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------- differencing


def test_two_rounds_differing_by_one_person_differ_by_at_most_epsilon() -> None:
    """Without DP the changed cell gives the person's outcome away; with it, every released
    value of that cell is about as likely either way (likelihood ratio within e^epsilon)."""
    with_person = PatternTable(("a", "b"), (40, 3, 2, 1))
    without = PatternTable(("a", "b"), (40, 3, 2, 0))
    exact = [release(t, ReleasePolicy())["pattern_counts"]["11"] for t in (with_person, without)]
    assert exact == [1, 0]  # the exact release reads the person's outcome off the difference

    epsilon = 0.5
    mechanism = NoiseMechanism.calibrated("discrete-laplace", epsilon)
    released = [noisy_release(("a", "b"), t.counts, mechanism, 0) for t in (with_person, without)]
    assert all(r["pattern_counts"]["11"] is not None for r in released)
    # The whole release is a function of the noisy cells alone, and only cell 11 differs
    # between the two tables: its noisy value is what could tell them apart. Draw it many times.
    first = Counter(mechanism.noisy([1] * 60_000))
    second = Counter(mechanism.noisy([0] * 60_000))
    for value in range(-3, 5):
        if first[value] > 1500 and second[value] > 1500:
            ratio = abs(math.log(first[value] / second[value]))
            assert ratio <= epsilon + 0.12, (value, ratio)


def test_undecodable_sums_are_noised_in_the_same_draw_as_the_pattern_cells(monkeypatch) -> None:
    """The round's undecodable sums are one more cell of the vector the mechanism noises (one
    person added or removed still moves one cell by one); they enter neither N nor any figure."""
    drawn: list[list[int]] = []

    def noisy(self: NoiseMechanism, counts: list[int]) -> list[int]:
        drawn.append(list(counts))
        return [c + 100 for c in counts]  # a recognisable "noise"

    monkeypatch.setattr(NoiseMechanism, "noisy", noisy)
    policy = ReleasePolicy(mechanism="discrete-laplace", epsilon=1.0)
    result = release(DIGIT, policy, undecodable=3)
    assert drawn == [[*DIGIT.counts, 3]]  # one draw, the undecodable cell last
    assert result["undecodable_sums"] == 103
    assert result["shared_individuals"] == DIGIT.shared_individuals + 8 * 100  # the pattern cells alone


def test_an_exact_release_never_publishes_the_undecodable_sums() -> None:
    """Honest rounds have none: an exact 0, 1 or withheld figure would be the bit a company
    shifting another company's lane probes for (tests/adversarial/test_round_oracle.py)."""
    for undecodable in (0, 1, 7, 500):
        for policy in (ReleasePolicy(), ReleasePolicy(min_cell_count=5)):
            result = release(DIGIT, policy, undecodable=undecodable)
            assert result["undecodable_sums"] is None and "undecodable_sums_note" in result
            assert result["shared_individuals"] == DIGIT.shared_individuals
