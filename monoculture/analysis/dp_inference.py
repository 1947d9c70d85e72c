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
  and log-scale intervals by measured coverage (scripts/dp_coverage.py); S and each fail_i
  get a mid-p interval inverting the exact distribution of a binomial count plus the noise;
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
from monoculture.analysis.stats import poisson_binomial

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REPLICATES = 1000
_BATCH_CELLS = 4_000_000  # cells simulated at once (memory: 32 MB)
METHOD = (
    "parametric bootstrap over sampling and the release's noise ({replicates} replicates): "
    "percentile interval (S and fail_i: mid-p, inverting binomial + noise exactly)"
)
TEST_METHOD = (
    "parametric bootstrap test of H = 1: independent failures at the estimated rates, the same "
    "noise, {replicates} replicates (approximate, not exact)"
)


def _bits(parties: int) -> IntArray:
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


def _convolved_tails(x: int, n: int, p: float, support: IntArray, noise: FloatArray) -> tuple[float, float]:
    """(P(X + e < x) + P(X + e = x) / 2, P(X + e > x) + P(X + e = x) / 2) for X ~ Bin(n, p)."""
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
    lower_tail = below + at / 2
    return lower_tail, max(0.0, 1.0 - below - at) + at / 2


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
    bits = _bits(len(rates))
    return np.asarray(np.prod(np.where(bits == 1, rates, 1 - rates), axis=1), dtype=np.float64)


def noisy_inference(
    noisy_cells: Sequence[int],
    mechanism: NoiseMechanism,
    companies: Sequence[str],
    replicates: int = REPLICATES,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Confidence intervals and the test of H = 1 for a noisy table (result JSON keys)."""
    rng = rng or np.random.default_rng()
    parties = len(companies)
    bits = _bits(parties)
    noisy = np.asarray(noisy_cells, dtype=np.int64)
    observed = Figures.of(noisy, bits)
    n, probabilities = _fitted(noisy)
    boot = _simulate(rng, n, probabilities, mechanism, replicates, bits)
    h = float(observed.homogenization()[0])
    rates = observed.rates()[0]
    result: dict[str, Any] = {
        "homogenization_ci95": _percentile_interval(h, boot.homogenization()),
        "systemic_failure_rate_ci95": _noisy_binomial_interval(int(noisy[-1]), n, mechanism),
        "failure_rate_ci95": {
            name: _noisy_binomial_interval(int(observed.failures[0][i]), n, mechanism, 2 ** (parties - 1))
            for i, name in enumerate(companies)
        },
        "homogenization_ci_method": METHOD.format(replicates=replicates),
        "homogenization_test": _noisy_test(rng, n, rates, mechanism, replicates, bits, h),
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
    bits = _bits(len(companies))
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
    bits = _bits(parties)
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
    companies: Sequence[str], true_cells: Sequence[int], mechanism: NoiseMechanism, min_shared: int
) -> dict[str, Any]:
    """Noise every cell once (OpenDP), then publish estimates, or only the roster when the noisy
    N could come from a population below `min_shared`.

    The threshold is applied to what noise cannot fake: the noisy N minus a margin that the
    sum of 2^k noise draws exceeds with probability at most THRESHOLD_FAILURE_PROBABILITY.
    So a population below the threshold is published with at most that probability, and the
    decision, made from noisy counts only, is itself covered by the release's epsilon.
    """
    noisy = mechanism.noisy(true_cells)
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
    return result
