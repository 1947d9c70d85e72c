"""Inference from a noisy pattern table: a parametric bootstrap over sampling and the
known noise distribution.

Under differential privacy the published cells are c~ = c + e, with c the true counts
(multinomial given N) and e independent draws of the release's noise. Intervals and
tests that ignore e are too narrow. Here both sources are simulated:

- the fitted model: cell probabilities p^ = max(c~, 0) / sum(max(c~, 0)) and
  N^ = sum(c~) (the projection is only for the model; the published figures are
  computed from the unclamped noisy cells, so they stay unbiased for the linear ones);
- each replicate draws c* ~ Multinomial(N^, p^) and adds fresh noise e* of the
  mechanism's exact distribution, then recomputes every figure from c* + e*;
- the interval for H is the percentile interval of the replicates (H on its natural
  scale: noise can make a replicate's S negative; bounds held at 0), chosen over basic
  and log-scale intervals by measured coverage (scripts/dp_coverage.py); S gets a mid-p
  interval inverting the exact distribution of a binomial count plus the noise; each fail_i
  a score interval from its noisy failure count and the noisy N together (they share the
  noise of the company's failed cells, which partly cancels in the ratio);
- small counts (fewer than stats.SMALL_EXPECTED individuals failed by everyone expected
  under independence, from the noisy counts): no two-sided interval for H, but a
  one-sided 95% upper bound: S's exact one-sided bound (inverting binomial + noise, not
  mid-p) over the product of the estimated rates, widened for the product's bootstrap
  variance by MOVER on the log scale;
- the test of H = 1 simulates the null model (companies fail independently at the
  estimated rates) with the same noise, and reports Monte Carlo p-values
  (1 + #{H* >= H^}) / (B + 1): approximate, never labelled exact.

The replicates use numpy's generator seeded from the operating system: they are a
statistical simulation, not a privacy mechanism (the release's noise comes from OpenDP).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monoculture.analysis.privacy import NoiseMechanism
from monoculture.analysis.stats import SMALL_EXPECTED, Z_90, poisson_binomial

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REPLICATES = 1000
Z_95 = 1.959963984540054
ALPHA_ONE_SIDED = 0.05
_BATCH_CELLS = 4_000_000  # cells simulated at once (memory: 32 MB)
METHOD = (
    "parametric bootstrap over sampling and the release's noise ({replicates} replicates): "
    "percentile interval"
)
INFERENCE_METHODS = {
    "systemic_failure_rate_ci95": "mid-p interval inverting the exact distribution of binomial + noise",
    "failure_rate_ci95": (
        "score interval for the rate from the noisy failure count and the noisy N together: the noise "
        "they share (the company's failed cells) enters both, so the rate's noise variance is "
        "((1 - p)^2 + p^2) times that of the failed cells' noise (N taken as the noisy N)"
    ),
    "homogenization_upper95": (
        f"one-sided 95% upper bound, given instead of a two-sided interval because fewer than "
        f"{SMALL_EXPECTED:g} individuals would be failed by everyone under independence: S's exact "
        "one-sided upper bound (inverting binomial + noise) over the product of the estimated failure "
        "rates, widened for that product's bootstrap variance by MOVER on the log scale; conservative"
    ),
}
TEST_METHOD = (
    "parametric bootstrap test of H = 1: independent failures at the estimated rates, the same "
    "noise, {replicates} replicates (approximate, not exact)"
)


def pattern_bits(parties: int) -> IntArray:
    """(2^k, k) matrix: row = pattern index, column i = company i's failure bit."""
    cells = np.arange(2**parties)[:, None]
    shifts = parties - 1 - np.arange(parties)[None, :]
    return np.asarray((cells >> shifts) & 1, dtype=np.int64)


@dataclass(frozen=True)
class Figures:
    """Figures of (possibly noisy) tables, one row per table."""

    n: FloatArray
    failures: FloatArray  # (tables, k)
    systemic: FloatArray

    @classmethod
    def of(cls, cells: npt.ArrayLike, bits: IntArray) -> Figures:
        table = np.atleast_2d(np.asarray(cells, dtype=np.float64))
        return cls(table.sum(axis=1), table @ bits, table[:, -1])

    def rates(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.failures / self.n[:, None], dtype=np.float64)

    def systemic_rate(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.systemic / self.n, dtype=np.float64)

    def homogenization(self) -> FloatArray:
        """H = S / prod fail_i on the natural scale (negative where noise made S negative;
        NaN where a rate is not positive)."""
        rates, s = self.rates(), self.systemic_rate()
        valid = (self.n > 0) & np.all(rates > 0, axis=1)
        out = np.full(len(self.n), np.nan)
        out[valid] = s[valid] / np.prod(rates[valid], axis=1)
        return out


def _fitted(noisy: IntArray) -> tuple[int, FloatArray]:
    positive = np.clip(noisy, 0, None).astype(np.float64)
    total = positive.sum()
    probabilities = positive / total if total > 0 else np.full(len(noisy), 1 / len(noisy))
    return max(round(float(noisy.sum())), 1), probabilities


def _replicates(
    rng: np.random.Generator, n: int, probabilities: FloatArray, mechanism: NoiseMechanism, count: int
) -> Iterator[IntArray]:
    """`count` simulated noisy tables, in batches that bound memory."""
    batch = max(1, _BATCH_CELLS // len(probabilities))
    for start in range(0, count, batch):
        size = min(batch, count - start)
        tables = rng.multinomial(n, probabilities, size=size)
        yield np.asarray(tables + mechanism.simulate(rng, tables.shape), dtype=np.int64)


def _simulate(
    rng: np.random.Generator, n: int, probabilities: FloatArray, mechanism: NoiseMechanism,
    count: int, bits: IntArray,
) -> Figures:  # fmt: skip
    parts = [Figures.of(tables, bits) for tables in _replicates(rng, n, probabilities, mechanism, count)]
    return Figures(
        np.concatenate([p.n for p in parts]),
        np.concatenate([p.failures for p in parts]),
        np.concatenate([p.systemic for p in parts]),
    )


def _percentile_interval(
    estimate: float, replicates: FloatArray, floor: float | None = 0.0
) -> list[float] | None:
    """The 2.5% and 97.5% quantiles of the finite replicates (None if fewer than 90% are
    finite, or the estimate is not); the lower end is held at `floor` (figures that cannot
    be negative: a negative bound only shows the noise)."""
    finite = replicates[np.isfinite(replicates)]
    if not math.isfinite(estimate) or len(finite) < 0.9 * len(replicates):
        return None
    low, high = (float(v) for v in np.quantile(finite, [0.025, 0.975]))
    if floor is not None:
        low, high = max(low, floor), max(high, floor)
    return [low, high]


def _noisy_binomial_interval(
    noisy_count: int, n: int, mechanism: NoiseMechanism, terms: int = 1
) -> list[float] | None:
    """Mid-p 95% interval for a rate p from a count X ~ Binomial(n, p) published as X + e,
    e the sum of `terms` draws of the release's noise (a count summed over that many cells;
    n taken as the noisy N): the p for which the observed noisy
    count lies in neither 2.5% tail of the convolved distribution (roots by Brent's method)."""
    if n <= 0:
        return None
    from scipy.optimize import brentq  # type: ignore[import-untyped]

    support, noise = mechanism.sum_pmf(terms)
    # A noisy count beyond what any p makes plausible (noise far below 0 or above n) is
    # read as the nearest plausible one: the interval then sits at that end, never empty.
    cdf = np.cumsum(noise)
    lowest = int(support[np.searchsorted(cdf, 0.025)]) + 1
    highest = n + int(support[np.searchsorted(cdf, 0.975)]) - 1
    observed = min(max(noisy_count, lowest), highest)

    def tails(p: float) -> tuple[float, float]:
        return _convolved_tails(observed, n, p, support, noise)

    def upper_excess(p: float) -> float:  # P(X + e > x) + half the point mass, less 2.5%
        return tails(p)[1] - 0.025

    def lower_excess(p: float) -> float:  # P(X + e < x) + half the point mass, less 2.5%
        return tails(p)[0] - 0.025

    low = 0.0 if upper_excess(0.0) >= 0 else float(brentq(upper_excess, 0.0, 1.0, xtol=1e-10))
    high = 1.0 if lower_excess(1.0) >= 0 else float(brentq(lower_excess, 0.0, 1.0, xtol=1e-10))
    return [low, max(low, high)]


def _noisy_binomial_upper(noisy_count: int, n: int, mechanism: NoiseMechanism) -> float | None:
    """Exact one-sided 95% upper bound for p from X ~ Binomial(n, p) published as X + e: the p
    at which P(X + e <= x) = 5% (not mid-p, so it covers at least 95%; n taken as the noisy N).
    A noisy count below what any p makes plausible is read as the lowest plausible one."""
    if n <= 0:
        return None
    from scipy.optimize import brentq

    support, noise = mechanism.sum_pmf(1)
    lowest = int(support[np.searchsorted(np.cumsum(noise), ALPHA_ONE_SIDED, side="right")])
    observed = min(max(noisy_count, lowest), n + int(support[-1]))

    def at_most_excess(p: float) -> float:  # P(X + e <= x) - 5%, decreasing in p
        below, at = _convolved_masses(observed, n, p, support, noise)
        return below + at - ALPHA_ONE_SIDED

    if at_most_excess(1.0) >= 0:
        return 1.0
    if at_most_excess(0.0) <= 0:  # unreachable after the clamp above; kept for safety
        return float(np.finfo(float).eps)
    return float(brentq(at_most_excess, 0.0, 1.0, xtol=1e-10))


def _joint_rate_interval(failed: float, n: float, cells: int, noise_variance: float) -> list[float] | None:
    """95% interval for a failure rate p from the noisy failure count F~ = F + U and the noisy
    N~ = F~ + G~, G~ = (N - F) + V, U and V each the sum of `cells` noise draws (the failed
    and the not-failed cells of that company).

    The noise of F~ and of N~ is shared (U is in both), so the rate's noise is not the count's:
    the pivot T(p) = F~ - p N~ = (F - pN) + (1 - p) U - p V has mean 0 and variance
    N p (1 - p) + ((1 - p)^2 + p^2) cells var(e) at the true p. The interval is every p with
    T(p)^2 <= z^2 Var(T(p)) (a score interval: Wilson's without noise), roots of a quadratic;
    N in the variance is taken as the noisy N. A noisy count beyond what any p makes
    plausible is read as the nearest plausible one, so the interval is never empty."""
    if n <= 0:
        return None
    z2, w = Z_95 * Z_95, cells * noise_variance
    reach = Z_95 * math.sqrt(w)  # |T| at p = 0 (or p = 1) where the score test just accepts
    f = min(max(failed, -reach), n + reach)
    a = n * n + z2 * n - 2 * z2 * w
    b = -2 * n * f - z2 * n + 2 * z2 * w
    c = f * f - z2 * w
    disc = b * b - 4 * a * c
    if a <= 0 or disc < 0:
        return [0.0, 1.0]  # the noise swamps N: nothing is learnt about p
    root = math.sqrt(disc)
    low, high = (-b - root) / (2 * a), (-b + root) / (2 * a)
    return [min(max(low, 0.0), 1.0), min(max(high, 0.0), 1.0)]


def _convolved_tails(x: int, n: int, p: float, support: IntArray, noise: FloatArray) -> tuple[float, float]:
    """(P(X + e < x) + P(X + e = x) / 2, P(X + e > x) + P(X + e = x) / 2) for X ~ Bin(n, p)."""
    below, at = _convolved_masses(x, n, p, support, noise)
    return below + at / 2, max(0.0, 1.0 - below - at) + at / 2


def _convolved_masses(x: int, n: int, p: float, support: IntArray, noise: FloatArray) -> tuple[float, float]:
    """(P(X + e < x), P(X + e = x)) for X ~ Bin(n, p)."""
    from scipy.stats import binom  # type: ignore[import-untyped]

    # X + e = x needs X in [x - max e, x - min e]; below that window X + e < x surely.
    lo, hi = max(0, x - int(support[-1])), min(n, x - int(support[0]))
    below = float(binom.cdf(lo - 1, n, p)) if lo > 0 else 0.0
    at = 0.0
    if lo <= hi:
        window = np.arange(lo, hi + 1)
        pmf = binom.pmf(window, n, p)
        below += float(np.sum(pmf * _noise_cdf_below(x - window, support, noise)))
        at = float(np.sum(pmf * _noise_at(x - window, support, noise)))
    return below, at


def _noise_at(values: IntArray, support: IntArray, pmf: FloatArray) -> FloatArray:
    index = values - support[0]
    inside = (index >= 0) & (index < len(support))
    out = np.zeros(len(values))
    out[inside] = pmf[index[inside]]
    return out


def _noise_cdf_below(values: IntArray, support: IntArray, pmf: FloatArray) -> FloatArray:
    """P(e < v) for each v."""
    cdf = np.concatenate([[0.0], np.cumsum(pmf)])
    index = np.clip(values - support[0], 0, len(support))
    return np.asarray(cdf[index], dtype=np.float64)


def _null_probabilities(rates: FloatArray) -> FloatArray:
    """Cell probabilities when companies fail independently at `rates`."""
    bits = pattern_bits(len(rates))
    return np.asarray(np.prod(np.where(bits == 1, rates, 1 - rates), axis=1), dtype=np.float64)


def _small_counts_note(expected: float) -> str:
    said = f"{expected:.3g}" if math.isfinite(expected) else "no positive number of"
    return (
        f"counts too small for a two-sided interval: {said} individuals would be failed by every "
        f"company under independence, estimated from the noisy counts (fewer than {SMALL_EXPECTED:g}); "
        "there a two-sided 95% interval for H covers more than 95%, so H gets a one-sided 95% upper "
        "bound instead (homogenization_upper95, where H is defined), which covers at least 95%; S's "
        "interval covers more than 95% too"
    )


def _h_upper(s_hat: float, s_upper: float | None, rates: FloatArray, boot_rates: FloatArray) -> float | None:
    """One-sided 95% upper bound for H at small counts: S's exact upper bound over the product
    of the estimated rates, widened for that product's relative variance over the bootstrap
    replicates (sampling and noise) by MOVER on the log scale, one-sided z. S and the product
    are positively correlated (the all-fail individuals are in every failure count), so adding
    their variances overstates Var(log H): conservative."""
    product = float(np.prod(rates))
    if s_upper is None or not product > 0 or not math.isfinite(product):
        return None
    products = np.prod(boot_rates, axis=1)
    products = products[np.isfinite(products)]
    if len(products) < 0.9 * len(boot_rates):
        return None
    extra = Z_90 * Z_90 * float(np.var(products)) / product**2
    if not s_hat > 0:
        log_bound = math.log(s_upper / product) + math.sqrt(extra) if s_upper > 0 else -math.inf
    else:
        reach = math.log(max(s_upper, s_hat) / s_hat)
        log_bound = math.log(s_hat / product) + math.sqrt(reach * reach + extra)
    # Noisy rates near 0 can make the widening huge: past what a float holds the data bound
    # nothing, and the bound is withheld (None, with the note) rather than overflowing.
    return math.exp(log_bound) if log_bound < 700 else None


def noisy_inference(
    noisy_cells: Sequence[int],
    mechanism: NoiseMechanism,
    companies: Sequence[str],
    replicates: int = REPLICATES,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Confidence intervals (or, at small counts, one-sided upper bounds) and the test of
    H = 1 for a noisy table (result JSON keys)."""
    rng = rng or np.random.default_rng()
    parties = len(companies)
    bits = pattern_bits(parties)
    noisy = np.asarray(noisy_cells, dtype=np.int64)
    observed = Figures.of(noisy, bits)
    n, probabilities = _fitted(noisy)
    boot = _simulate(rng, n, probabilities, mechanism, replicates, bits)
    h = float(observed.homogenization()[0])
    rates = observed.rates()[0]
    noisy_n = float(observed.n[0])
    positive = noisy_n > 0 and bool(np.all(rates > 0))
    expected = noisy_n * float(np.prod(rates)) if positive else math.nan
    small = not expected >= SMALL_EXPECTED
    s_hat = float(observed.systemic_rate()[0])
    s_upper = _noisy_binomial_upper(int(noisy[-1]), n, mechanism) if small else None
    cells = 2 ** (parties - 1)  # a company's failed cells, and its not-failed cells
    result: dict[str, Any] = {
        "homogenization_ci95": None if small else _percentile_interval(h, boot.homogenization()),
        "homogenization_upper95": _h_upper(s_hat, s_upper, rates, boot.rates())
        if small and math.isfinite(h)
        else None,
        "systemic_failure_rate_ci95": _noisy_binomial_interval(int(noisy[-1]), n, mechanism),
        "failure_rate_ci95": {
            name: _joint_rate_interval(float(observed.failures[0][i]), noisy_n, cells, mechanism.variance())
            for i, name in enumerate(companies)
        },
        "homogenization_ci_method": None if small else METHOD.format(replicates=replicates),
        "homogenization_test": _noisy_test(rng, n, rates, mechanism, replicates, bits, h),
        "inference_methods": INFERENCE_METHODS,
        "inference_note": _small_counts_note(expected) if small else None,
    }
    return result


def _noisy_test(
    rng: np.random.Generator, n: int, rates: FloatArray, mechanism: NoiseMechanism, replicates: int,
    bits: IntArray, h: float,
) -> dict[str, Any] | None:  # fmt: skip
    if not math.isfinite(h) or not np.all((rates > 0) & (rates < 1)):
        return None
    null = _simulate(rng, n, _null_probabilities(rates), mechanism, replicates, bits).homogenization()
    null = null[np.isfinite(null)]
    greater = (1 + int(np.sum(null >= h))) / (len(null) + 1)
    less = (1 + int(np.sum(null <= h))) / (len(null) + 1)
    return {
        "method": TEST_METHOD.format(replicates=replicates),
        "exact": False,
        "p_value_greater": greater,
        "p_value_less": less,
        "p_value_floor": 1 / (replicates + 1),
    }


def _pairwise(figures: Figures, cells: IntArray, companies: Sequence[str]) -> dict[str, float | None]:
    n, failures = float(figures.n[0]), figures.failures[0]
    bits = pattern_bits(len(companies))
    pairs: dict[str, float | None] = {}
    for a in range(len(companies)):
        for b in range(a + 1, len(companies)):
            joint = float(cells[(bits[:, a] == 1) & (bits[:, b] == 1)].sum())
            valid = n > 0 and failures[a] > 0 and failures[b] > 0
            value = joint * n / (failures[a] * failures[b]) if valid else None
            pairs[f"{companies[a]},{companies[b]}"] = value
    return pairs


def _expected_histogram(n: int, rates: FloatArray) -> list[float] | None:
    """The histogram if companies failed independently at the estimated rates (None where a
    noisy rate falls outside [0, 1])."""
    if n <= 0 or not np.all((rates >= 0) & (rates <= 1)):
        return None
    return [float(v) for v in n * poisson_binomial([float(r) for r in rates])]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def noisy_result(
    companies: Sequence[str],
    noisy_cells: Sequence[int],
    mechanism: NoiseMechanism,
    replicates: int = REPLICATES,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """The result JSON of a noisy table: every figure from the unclamped noisy cells (linear
    ones, counts and histogram, are unbiased; ratios are consistent), with bootstrap inference.

    A noisy cell can be negative where the noise is larger than the count: that is the
    estimate, and clamping it at 0 would bias every figure built on it upwards.
    """
    parties = len(companies)
    bits = pattern_bits(parties)
    cells = np.asarray(noisy_cells, dtype=np.int64)
    figures = Figures.of(cells, bits)
    rates = figures.rates()[0]
    n = int(figures.n[0])
    histogram = [int(cells[bits.sum(axis=1) == j].sum()) for j in range(parties + 1)]
    expected_s = float(np.prod(rates)) if n > 0 else math.nan
    result: dict[str, Any] = {
        "companies": list(companies),
        "shared_individuals": n,
        "failures": {name: int(figures.failures[0][i]) for i, name in enumerate(companies)},
        "failure_rates": {name: _finite(float(rates[i])) for i, name in enumerate(companies)},
        "systemic_failures": int(cells[-1]),
        "systemic_failure_rate": _finite(float(figures.systemic_rate()[0])),
        "expected_systemic_failure_rate": _finite(expected_s),
        "homogenization": _finite(float(figures.homogenization()[0])),
        "failure_count_histogram": histogram,
        "pattern_counts": {format(i, f"0{parties}b"): int(c) for i, c in enumerate(cells)},
        "pairwise_homogenization": _pairwise(figures, cells, companies),
        "expected_failure_count_histogram": _expected_histogram(n, rates),
    }
    result.update(noisy_inference(cells.tolist(), mechanism, companies, replicates, rng))
    result["noise_note"] = (
        f"every count carries {mechanism.name} noise (scale {mechanism.scale:.4g}, variance "
        f"{mechanism.variance():.4g} per cell): figures are estimates from the noisy cells, which are "
        "not clamped (a negative count is noise); intervals and the test include the noise"
    )
    return result


def noisy_release(
    companies: Sequence[str],
    true_cells: Sequence[int],
    mechanism: NoiseMechanism,
    min_shared: int,
    undecodable: int | None = None,
) -> dict[str, Any]:
    """Noise every cell once (OpenDP), then publish estimates, or only the roster when the noisy
    N could come from a population below `min_shared`.

    `undecodable`: the shared individuals whose sum did not decode (a round's count; None for a
    table alone). It is one more cell of the same vector, noised in the same call: one individual
    added or removed still moves one cell by one, so the release spends what it spent before. It
    is published as `undecodable_sums` and enters neither N nor any figure.

    The threshold is applied to what noise cannot fake: the noisy N minus a margin that the
    sum of 2^k noise draws exceeds with probability at most THRESHOLD_FAILURE_PROBABILITY.
    So a population below the threshold is published with at most that probability, and the
    decision, made from noisy counts only, is itself covered by the release's epsilon.
    """
    cells = [*true_cells] if undecodable is None else [*true_cells, undecodable]
    drawn = mechanism.noisy(cells)
    noisy = drawn[: len(true_cells)]
    margin = mechanism.sum_upper_tail(len(noisy))
    if min_shared > 0 and sum(noisy) - margin < min_shared:
        return {
            "companies": list(companies),
            "suppressed": True,
            "suppression_reason": (
                f"the noisy number of shared individuals, less the noise margin of {margin}, is below "
                f"the release minimum of {min_shared}"
            ),
        }
    result = noisy_result(companies, noisy, mechanism)
    result["noise_margin"] = margin
    if undecodable is not None:
        result["undecodable_sums"] = drawn[-1]
    return result
