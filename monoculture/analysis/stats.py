"""Inference for the homogenization figures, from the 2^k pattern counts alone.

Definitions: research notes section 1 (Bommasani et al., NeurIPS 2022). With
N shared individuals, n_i failures of company i and X individuals failed by
every company: fail_i = n_i / N, S = X / N, H = S / prod_i fail_i.

- Null distribution of X: each company's failure count is held fixed and its
  failures are placed at random, independently of the other companies. X is
  then a chain of hypergeometrics, M_1 = n_1, M_i ~ Hypergeom(N, M_{i-1}, n_i),
  X = M_k, computed by dynamic programming with a certified truncation error
  (`NullDistribution.lost`). For k = 2 it is Fisher's exact test.
- Interval for H: the exponential tilt P_theta(x) ~ P_0(x) e^(theta x) of that
  null is the conditional distribution of X given the failure counts in the
  log-linear model with one k-way interaction (for k = 2, Fisher's noncentral
  hypergeometric). Its mid-p interval (Lancaster 1961), mapped to H by
  h(theta) = E_theta[X] / E_0[X], carries the small-count discreteness; the
  rest of Var(log H) (the failure rates' share, delta method) is added by
  MOVER on the log scale (Zou and Donner 2008). At large counts this is the
  delta method.
- Intervals for S and every fail_i: mid-p binomial intervals.
- Small counts: where fewer than SMALL_EXPECTED individuals would be failed by
  everyone under independence (N prod_i fail_i, observed), no two-sided interval
  for H is published (simulated, it covers 0.97-0.99 there: "no one failed by
  everyone" is most outcomes and must be covered), but a one-sided 95% upper
  bound: the exact (not mid-p) conditional bound, widened for the rates' share of
  Var(log H) as above; it covers at least 95%. The criterion is a function of the
  failure counts the conditional interval conditions on, so given them it selects
  no all-fail count. S keeps its two-sided interval: any such criterion is
  correlated with the all-fail count (which is in every failure count), and
  choosing S's interval by it would bias S's coverage (measured: 0.60-0.88 in the
  replicates it picks where it picks few).
- Pairwise: the k = 2 case on each pair's 2 x 2 table; Holm's step-down
  adjustment (Holm 1979) over the k(k-1)/2 pairs.
- The independence baseline of the failure-count histogram (Poisson-binomial
  with p_i = fail_i).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from monoculture.analysis.lazy import lazy_import

# SciPy on first use (see analysis/lazy.py); untyped, hence Any.
optimize: Any = lazy_import("scipy.optimize")
special: Any = lazy_import("scipy.special")
stats: Any = lazy_import("scipy.stats")

if TYPE_CHECKING:
    from monoculture.analysis.table import PatternTable

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ALPHA = 0.05
Z_95 = 1.959963984540054
Z_90 = 1.6448536269514722  # one-sided 95%
# Below this count (individuals failed by every company, and expected so under
# independence) the intervals rest on a handful of people: said in `inference_note`.
SMALL_COUNT = 10
# Below this expected all-fail count under independence (N prod_i fail_i, from the observed
# failure counts) two-sided intervals for H and S are not published, one-sided upper bounds
# are: simulated, the two-sided mid-p interval covers 0.966 pooled over E0 in [2, 3), 0.978 in
# [1, 2) and 0.986 below 1, against 0.952-0.956 from 3 up (docs/STATISTICS.md, "How well the
# intervals cover").
SMALL_EXPECTED = 3.0
# p-values are floats; below this they are reported as the floor (double precision).
MIN_P_VALUE_FLOOR = 1e-300
# Dynamic programming budget: hypergeometric terms evaluated per chain (about 0.4 s
# at N = 10^6); past it the truncation level is raised and the reported floor with it.
_TERM_BUDGET = 1.2e7
_MAX_TRUNCATION = 680.0  # -log of the smallest probability kept (e^-680 ~ 1e-295)
_MIN_TRUNCATION = 40.0
# Entries of the null distribution used for the interval must exceed the
# truncation error by this factor (relative error below 1e-6).
_RESOLUTION = 1e6
_LOG_TINY = -700.0  # e^-700 ~ 1e-304: smaller terms are dropped (and counted)

EXACT_TEST_METHOD = (
    "exact conditional test of independence, which implies H = 1 (failure counts fixed, failures "
    "placed at random: a chain of hypergeometrics; Fisher's exact test for k = 2); p-values below "
    "p_value_floor are reported as the floor"
)
TILT_CI_METHOD = (
    "conditional mid-p interval (exponential tilt of the exact null given the failure counts; "
    "Fisher's noncentral hypergeometric for k = 2) combined with the delta-method variance of the "
    "failure rates by MOVER on the log scale"
)
DELTA_CI_METHOD = (
    "delta method on the log scale (large counts: the conditional null distribution is not resolved "
    "far enough around the observed all-fail count for the conditional interval, which the delta "
    "method matches at such counts)"
)
UPPER_METHOD = (
    "one-sided 95% upper bound, given instead of a two-sided interval because fewer than "
    f"{SMALL_EXPECTED:g} individuals would be failed by everyone under independence: exact "
    "conditional bound (the tilt at which P(X <= observed) = 5%) widened for the failure rates' "
    "share of Var(log H) by MOVER on the log scale; conservative (covers at least 95%)"
)
INFERENCE_METHODS = {
    "homogenization_upper95": UPPER_METHOD,
    "pairwise_homogenization_upper95": "as homogenization_upper95, on each pair's 2 x 2 table",
    "systemic_failure_rate_ci95": "mid-p binomial interval on the all-fail count",
    "failure_rate_ci95": "mid-p binomial interval on each company's failure count",
    "pairwise_homogenization_ci95": "as homogenization_ci95, on each pair's 2 x 2 table",
    "pairwise_homogenization_test": (
        "Fisher's exact test per pair (one-sided both ways); *_holm: Holm's step-down adjustment "
        "over the pairs with a defined test"
    ),
}


# --- counts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """The sufficient counts of the table: N, each n_i, X and each pair's joint failures."""

    population: int
    failures: tuple[int, ...]
    systemic: int
    joint: dict[tuple[int, int], int]

    @classmethod
    def of(cls, table: PatternTable) -> Counts:
        # Vectorised over the 2^k cells: PatternTable's per-company loops cost seconds at k = 16.
        cells = np.asarray(table.counts, dtype=np.int64)
        index = np.arange(len(cells))
        bits = [((index >> (table.parties - 1 - i)) & 1).astype(bool) for i in range(table.parties)]
        joint = {
            (a, b): int(cells[bits[a] & bits[b]].sum()) for a, b in combinations(range(table.parties), 2)
        }
        return cls(int(cells.sum()), tuple(int(cells[b].sum()) for b in bits), int(cells[-1]), joint)

    def pair(self, a: int, b: int) -> Counts:
        """The 2 x 2 table of companies a and b."""
        return Counts(self.population, (self.failures[a], self.failures[b]), self.joint[(a, b)], {})

    @property
    def rates(self) -> list[float]:
        return [n / self.population for n in self.failures]

    @property
    def null_mean(self) -> float:
        """E_0[X] = N prod_i (n_i / N): exact for the chain of hypergeometrics."""
        return self.population * math.prod(self.rates)

    @property
    def too_small_for_two_sided(self) -> bool:
        """Fewer than SMALL_EXPECTED all-fail individuals expected under independence: a
        function of N and the failure counts alone (what the conditional interval conditions
        on), so choosing a one-sided bound here selects no particular all-fail count."""
        return self.population > 0 and self.null_mean < SMALL_EXPECTED

    def joint_rates(self) -> dict[tuple[int, int], float]:
        if len(self.failures) == 2:  # the pair's joint failures are the all-fail count
            return {(0, 1): self.systemic / self.population}
        return {pair: count / self.population for pair, count in self.joint.items()}


def log_h_variance_at(counts: Counts, s: float, shift: float = 0.0) -> float | None:
    """Delta-method Var(log H) at systemic rate s (research notes section 1):

    (1/N) [ (1-S)/S - sum_i (1-f_i)/f_i + 2 sum_{i<i'} (f_ii'/(f_i f_i') - 1) ],
    with every joint rate f_ii' moved by `shift` (the all-fail individuals are in every pair).
    """
    rates = counts.rates
    if s <= 0 or any(r == 0 for r in rates):
        return None
    total = (1 - s) / s - sum((1 - f) / f for f in rates)
    for (a, b), joint in counts.joint_rates().items():
        moved = min(joint + shift, rates[a], rates[b])
        total += 2 * (moved / (rates[a] * rates[b]) - 1)
    return total / counts.population


# --- the exact null distribution of the all-fail count ----------------------------------------------


def _log_factorials(n: int) -> FloatArray:
    # gammaln per entry: a running sum of logs drifts by ~1e-6 at N = 10^6.
    return np.asarray(special.gammaln(np.arange(n + 1, dtype=np.float64) + 1.0), dtype=np.float64)


def _hypergeom_logpmf(
    lf: FloatArray, population: int, marked: IntArray, draws: int, x: IntArray
) -> FloatArray:
    """log P(x marked among `draws` taken from `population` holding `marked` marked), x in support."""
    rest = population - marked
    log_pmf = (
        lf[marked]
        - lf[x]
        - lf[marked - x]
        + lf[rest]
        - lf[draws - x]
        - lf[rest - draws + x]
        - (lf[population] - lf[draws] - lf[population - draws])
    )
    return np.asarray(log_pmf, dtype=np.float64)


def _support(population: int, marked: IntArray, draws: int) -> tuple[IntArray, IntArray]:
    return np.maximum(0, draws - (population - marked)), np.minimum(marked, draws)


def _band(
    lf: FloatArray, population: int, marked: IntArray, draws: int, log_floor: float
) -> tuple[IntArray, IntArray]:
    """Per row, the first and last x with log pmf >= log_floor.

    The hypergeometric pmf is log-concave in x, so these x form one interval
    around the mode; both ends are found by vectorised bisection.
    """
    low, high = _support(population, marked, draws)
    mode = np.clip((marked + 1) * (draws + 1) // (population + 2), low, high)

    def above(x: IntArray) -> npt.NDArray[np.bool_]:
        return np.asarray(_hypergeom_logpmf(lf, population, marked, draws, x) >= log_floor)

    # Both ends: the x farthest from the mode (which is always above the floor: pmf >= 1/(N+1)).
    return _farthest_above(mode, low, above), _farthest_above(mode, high, above)


def _farthest_above(
    start: IntArray, end: IntArray, above: Callable[[IntArray], npt.NDArray[np.bool_]]
) -> IntArray:
    """Per element, the x between `start` (where `above` holds) and `end`, farthest from `start`,
    where `above` still holds; `above` holds on a run from `start`. Vectorised bisection."""
    near, far = start.copy(), end.copy()
    near = np.where(above(far), far, near)
    while np.any(np.abs(far - near) > 1):
        middle = (near + far) // 2
        ok = above(middle)
        near, far = np.where(ok, middle, near), np.where(ok, far, middle)
    return near


def _chernoff_at_least(trials: int, share: float, x: IntArray) -> FloatArray:
    """Upper bound on P(Bin(trials, share) >= x): 1 up to the mean, exp(-n KL(x/n || q)) beyond."""
    out = np.where(x <= trials, 1.0, 0.0)
    if share >= 1.0 or trials == 0:
        return out
    a = np.clip(x / trials, 0.0, 1.0)
    beyond = (x > trials * share) & (x <= trials)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = special.xlogy(a, a / share) + special.xlogy(1 - a, (1 - a) / (1 - share))
    return np.where(beyond, np.exp(-trials * np.nan_to_num(kl, nan=0.0)), out)


@dataclass(frozen=True)
class Loss:
    """Probability mass dropped at one step of the chain.

    The mass sat at intermediate counts of at most `at_most`, and `share` is the
    product of n_j / N over the steps still to come. Given M = m, the rest of the
    chain is dominated in convex order by Bin(m, share) (Hoeffding 1963), so the
    mass reaches X >= x with at most the binomial Chernoff bound.
    """

    mass: float
    at_most: int
    share: float


@dataclass(frozen=True)
class NullDistribution:
    """P_0(X = first + j) for the all-fail count under independence, failure counts fixed.

    Entries are never above the truth; the mass they miss is `losses`, so every
    tail sum is exact to within `lost` in absolute terms, and P(X >= x) (hence
    every entry at x or above) to within `error_at_or_above(x)`.
    """

    first: int
    pmf: FloatArray
    losses: tuple[Loss, ...]
    support: tuple[int, int]  # the exact support, [max(0, sum n_i - (k-1) N), min n_i]

    @property
    def lost(self) -> float:
        return sum(loss.mass for loss in self.losses)

    @property
    def last(self) -> int:
        return self.first + len(self.pmf) - 1

    def error_at_or_above(self, x: IntArray) -> FloatArray:
        error = np.zeros(len(x))
        for loss in self.losses:
            error += loss.mass * _chernoff_at_least(loss.at_most, loss.share, x)
        return np.minimum(error, self.lost)

    def upper_tail(self, x: int) -> float:
        return float(self.pmf[max(x - self.first, 0) :].sum()) if x <= self.last else 0.0

    def lower_tail(self, x: int) -> float:
        return float(self.pmf[: x - self.first + 1].sum()) if x >= self.first else 0.0

    def test(self, observed: int) -> dict[str, float]:
        """One-sided p-values P(X >= x) and P(X <= x), and the floor of the smaller one.

        The floor is the smallest p-value whose absolute error is certified below 0.1% of it.
        """
        greater = min(self.upper_tail(observed), 1.0)
        less = min(self.lower_tail(observed), 1.0)
        error = self.lost if less < greater else float(self.error_at_or_above(np.array([observed]))[0])
        floor = float(10.0 ** math.ceil(math.log10(max(1000.0 * error, MIN_P_VALUE_FLOOR))))
        return {
            "p_value_greater": max(greater, floor),
            "p_value_less": max(less, floor),
            "p_value_floor": floor,
        }

    def resolved(self) -> tuple[IntArray, FloatArray, bool, bool]:
        """(x, log pmf) where the pmf exceeds its error bound a millionfold; whether each end is cut."""
        x = np.arange(self.first, self.last + 1, dtype=np.int64)
        keep = np.nonzero(self.pmf > _RESOLUTION * self.error_at_or_above(x))[0]
        if len(keep) == 0:
            return x[:0], self.pmf[:0], True, True
        lo, hi = int(keep[0]), int(keep[-1])
        with np.errstate(divide="ignore"):
            log_pmf = np.log(self.pmf[lo : hi + 1])
        return x[lo : hi + 1], log_pmf, int(x[lo]) > self.support[0], int(x[hi]) < self.support[1]


def _chunks(widths: IntArray, limit: int) -> list[slice]:
    """Consecutive row ranges whose widths add up to about `limit` terms each."""
    ends = np.cumsum(widths)
    slices, start = [], 0
    while start < len(widths):
        stop = int(np.searchsorted(ends, ends[start] - widths[start] + limit, side="right"))
        stop = max(stop, start + 1)
        slices.append(slice(start, stop))
        start = stop
    return slices


Placed = list[tuple[float, int]]  # (mass, the largest count it can sit at)


def _geometric_buckets(masses: FloatArray, positions: IntArray) -> Placed:
    """Group dropped mass, ordered outward from the kept range, in buckets of 1, 2, 4, ... entries."""
    placed: Placed = []
    start, size = 0, 1
    while start < len(masses):
        stop = min(start + size, len(masses))
        placed.append((float(masses[start:stop].sum()), int(positions[start:stop].max())))
        start, size = stop, 2 * size
    return placed


def _pruned_states(pmf: FloatArray, first: int, keep: npt.NDArray[np.bool_]) -> Placed:
    """Mass of the states dropped below the floor, with where it sat."""
    kept = np.nonzero(keep)[0]
    above = np.arange(int(kept[-1]) + 1, len(pmf))
    below = np.nonzero(~keep[: int(kept[0])])[0]
    placed = _geometric_buckets(pmf[above], first + above)
    if len(below):
        placed.append((float(pmf[below].sum()), first + int(below.max())))
    return placed


def _row_tails(
    lf: FloatArray,
    population: int,
    marked: IntArray,
    draws: int,
    band: tuple[IntArray, IntArray],
    weight: FloatArray,
) -> Placed:
    """Mass of the rows outside their bands, weighted by the rows' probabilities, with where it sat.

    The pmf is log-concave, so past the band's ends the ratio r of successive
    terms only shrinks: the terms from j steps past the end on weigh at most
    first r^j / (1 - r). The upper tail is split at j = 1, 3, 7, ... so that
    little mass is placed at the far counts the Chernoff bound is weakest for.
    """
    left, right = band
    low, high = _support(population, marked, draws)

    def edge(inside: IntArray, step: int, bound: IntArray) -> tuple[FloatArray, FloatArray]:
        has = inside != bound
        outside = np.where(has, inside + step, bound)
        log_first = _hypergeom_logpmf(lf, population, marked, draws, outside)
        log_ratio = log_first - _hypergeom_logpmf(lf, population, marked, draws, np.where(has, inside, bound))
        scale = np.where(has, weight * np.exp(log_first) / np.maximum(-np.expm1(log_ratio), 1e-300), 0.0)
        return scale, np.where(has, log_ratio, 0.0)

    scale, log_ratio = edge(right, 1, high)
    placed: Placed = []
    skip = 0
    while skip <= int((high - right).max()):
        mass = scale * np.exp(log_ratio * skip) * (right + skip < high)
        reach = np.minimum(right + 2 * skip + 1, high)
        placed.append((float(mass.sum()), int(reach.max())))
        skip = 2 * skip + 1
    lower_scale, _ = edge(left, -1, low)
    placed.append((float(lower_scale.sum()), int(left.max())))
    return placed


def _chain_step(
    lf: FloatArray, population: int, first: int, pmf: FloatArray, draws: int, log_floor: float
) -> tuple[int, FloatArray, Placed, Placed]:
    """One hypergeometric step: (first, pmf) of the next M, and the mass dropped before the step
    (states below the floor) and after it (row terms below the floor), with where it sat."""
    keep = pmf >= math.exp(log_floor)
    pruned = _pruned_states(pmf, first, keep)
    marked = first + np.nonzero(keep)[0].astype(np.int64)
    weight = pmf[keep]
    left, right = _band(lf, population, marked, draws, log_floor)
    cut = _row_tails(lf, population, marked, draws, (left, right), weight)
    widths = right - left + 1
    out_first = int(left.min())
    out = np.zeros(int(right.max()) - out_first + 1)
    log_weight = np.log(weight)
    tiny_count = 0
    for rows in _chunks(widths, 1 << 21):
        row = np.repeat(np.arange(rows.start, rows.stop), widths[rows])
        offset = np.arange(len(row)) - np.repeat(np.cumsum(widths[rows]) - widths[rows], widths[rows])
        x = left[row] + offset
        log_terms = _hypergeom_logpmf(lf, population, marked[row], draws, x) + log_weight[row]
        # Terms below e^-700 are dropped and counted as lost, rather than kept as
        # subnormal floats that slow every later operation a hundredfold.
        tiny = log_terms <= _LOG_TINY
        tiny_count += int(np.count_nonzero(tiny))
        terms = np.exp(log_terms, out=np.zeros_like(log_terms), where=~tiny)
        out += np.bincount(x - out_first, weights=terms, minlength=len(out))
    cut.append((math.exp(_LOG_TINY) * tiny_count, int(right.max())))
    return out_first, out, pruned, cut


def _step_costs(population: int, counts: list[int]) -> list[Callable[[float], float]]:
    """Per step, terms evaluated at truncation level T: (states kept) x (row width kept),
    each about 2 sqrt(2 T) standard deviations wide (Gaussian estimate)."""
    costs: list[Callable[[float], float]] = []
    mean, var = float(counts[0]), 0.0
    for draws in counts[1:]:
        share = draws / population
        row_var = mean * share * (1 - share) * (1 - mean / population) * population / max(population - 1, 1)
        states_sd, row_sd = math.sqrt(var), math.sqrt(max(row_var, 0.0))

        def cost(level: float, states_sd: float = states_sd, row_sd: float = row_sd) -> float:
            width = 2 * math.sqrt(2 * level)
            return (width * states_sd + 2) * (width * row_sd + 2)

        costs.append(cost)
        mean, var = mean * share, row_var + share * share * var
    return costs


def _truncation_levels(population: int, counts: list[int]) -> list[float]:
    """-log of each step's truncation floor: the deepest level the term budget allows.

    Steps that are cheap at the deepest level keep it (the late steps, which
    shape the tail of X when the all-fail count is small); the expensive early
    steps of a large population share what is left of the budget equally.
    """
    costs = _step_costs(population, counts)
    levels = [_MAX_TRUNCATION] * len(costs)
    expensive = sorted(range(len(costs)), key=lambda i: costs[i](_MAX_TRUNCATION))
    budget = _TERM_BUDGET
    for position, step in enumerate(expensive):
        share = budget / (len(expensive) - position)
        cost = costs[step]
        if cost(_MAX_TRUNCATION) > share:
            lo, hi = _MIN_TRUNCATION, _MAX_TRUNCATION
            for _ in range(30):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if cost(mid) <= share else (lo, mid)
            levels[step] = lo
        budget -= cost(levels[step])
    return levels


def null_distribution(
    population: int, failure_counts: list[int], lf: FloatArray | None = None
) -> NullDistribution:
    """The exact null distribution of X with a certified truncation error.

    Companies are taken in increasing order of failure count (the order does
    not change the distribution and keeps the intermediate counts small).
    """
    order = sorted(failure_counts)
    if lf is None:
        lf = _log_factorials(population)
    levels = _truncation_levels(population, order)
    first, pmf = order[0], np.ones(1)
    losses: list[Loss] = []
    for step, (draws, level) in enumerate(zip(order[1:], levels, strict=True), start=1):
        later = math.prod(n / population for n in order[step + 1 :])
        first, pmf, pruned, cut = _chain_step(lf, population, first, pmf, draws, -level)
        # Pruned states still had this step to go; cut row terms are values of the new M.
        losses += [Loss(mass, at, later * draws / population) for mass, at in pruned if mass > 0]
        losses += [Loss(mass, at, later) for mass, at in cut if mass > 0]
    nonzero = np.nonzero(pmf)[0]
    pmf = pmf[nonzero[0] : nonzero[-1] + 1]
    support = (max(0, sum(order) - (len(order) - 1) * population), order[0])
    return NullDistribution(first + int(nonzero[0]), pmf, tuple(losses), support)


def all_fail_null_distribution(population: int, failure_counts: list[int]) -> FloatArray:
    """P(all-fail count = m) for m = 0, 1, ... under independence with fixed failure counts."""
    null = null_distribution(population, failure_counts)
    return np.concatenate([np.zeros(null.first), null.pmf])


def _test_defined(counts: Counts) -> bool:
    return counts.population > 0 and len(counts.failures) >= 2 and all(n > 0 for n in counts.failures)


def exact_test(table: PatternTable) -> dict[str, Any] | None:
    """Exact conditional test of independence (hence of H = 1), one-sided p-values both ways."""
    counts = Counts.of(table)
    if not _test_defined(counts):
        return None
    null = null_distribution(counts.population, list(counts.failures))
    return {"method": EXACT_TEST_METHOD, **null.test(counts.systemic)}


# --- the conditional (tilted) interval --------------------------------------------------------------


def _tilted(x: IntArray, log_pmf: FloatArray, theta: float) -> FloatArray:
    """P_theta(x) ~ P_0(x) e^(theta x), normalised."""
    log_w = log_pmf + theta * x
    log_w -= log_w.max()
    # Weights below e^-100 are dropped: they cannot move a tail sum, and subnormal
    # floats would slow every operation on the array a hundredfold.
    weights = np.exp(log_w, out=np.zeros_like(log_w), where=log_w > -100.0)
    return np.asarray(weights / weights.sum(), dtype=np.float64)


def _solve_theta(fn: Callable[[float], float]) -> float:
    """Root of an increasing function of theta, bracketed by doubling (|theta| < 2^60)."""
    lo, hi = -1.0, 1.0
    for _ in range(60):
        if fn(lo) <= 0:
            break
        lo *= 2
    for _ in range(60):
        if fn(hi) >= 0:
            break
        hi *= 2
    return float(optimize.brentq(fn, lo, hi, xtol=1e-12, rtol=1e-12))


@dataclass(frozen=True)
class _Conditional:
    """Mid-p bounds of E_theta[X], the finite tilts reaching them (a bound at an end of the
    support needs none) and Var_theta(X) at the conditional MLE (observed inside the support)
    or at the upper bound (observed at its bottom)."""

    lower_mean: float
    upper_mean: float
    thetas: list[float]
    variance: float


def _moments(x: IntArray, log_pmf: FloatArray, theta: float) -> tuple[float, float]:
    """(E_theta[X], Var_theta(X)). Sums of products, not np.dot: BLAS threads spin for
    milliseconds per call on a busy machine."""
    p = _tilted(x, log_pmf, theta)
    mean = float((p * x).sum())
    return mean, float((p * (x - mean) ** 2).sum())


def _conditional_bounds(x: IntArray, log_pmf: FloatArray, observed: int) -> _Conditional:
    """Invert the mid-p tails of the tilted family at the observed count (alpha/2 each side)."""
    at = observed - int(x[0])

    def above_midp(theta: float) -> float:  # increasing in theta
        p = _tilted(x, log_pmf, theta)
        return float(p[at + 1 :].sum() + 0.5 * p[at]) - ALPHA / 2

    def below_midp(theta: float) -> float:  # decreasing in theta
        p = _tilted(x, log_pmf, theta)
        return float(p[:at].sum() + 0.5 * p[at]) - ALPHA / 2

    thetas: list[float] = []
    lower = float(x[0])
    if at > 0:
        thetas.append(_solve_theta(above_midp))
        lower = _moments(x, log_pmf, thetas[-1])[0]
    upper, variance = float(x[-1]), 0.0
    if at < len(x) - 1:
        thetas.append(_solve_theta(lambda t: -below_midp(t)))
        upper, variance = _moments(x, log_pmf, thetas[-1])
    if 0 < at < len(x) - 1:
        mle = _solve_theta(lambda t: _moments(x, log_pmf, t)[0] - observed)
        variance = _moments(x, log_pmf, mle)[1]
    elif at > 0:
        variance = 0.0  # observed at the top of the support: the MLE tilt is infinite
    return _Conditional(lower, upper, thetas, variance)


def _edges_negligible(x: IntArray, log_pmf: FloatArray, thetas: list[float], cut: tuple[bool, bool]) -> bool:
    """At every theta used, the tilted pmf at a truncated end is negligible (< 1e-10): past
    it the tilted terms keep falling, so the mass cut off cannot move a 2.5% tail."""
    for theta in thetas:
        p = _tilted(x, log_pmf, theta)
        if (cut[0] and p[0] > 1e-10) or (cut[1] and p[-1] > 1e-10):
            return False
    return True


def _mover(estimate: float, lower: float, upper: float, extra_variance: float) -> list[float]:
    """MOVER on the log scale: each side's half-width and z sqrt(extra variance) add in quadrature."""
    extra = Z_95 * Z_95 * extra_variance
    log_h = math.log(estimate)
    low = 0.0 if lower <= 0 else math.exp(log_h - math.sqrt((log_h - math.log(lower)) ** 2 + extra))
    high = math.exp(log_h + math.sqrt((math.log(upper) - log_h) ** 2 + extra))
    return [low, high]


def _tilt_interval(counts: Counts, null: NullDistribution) -> list[float] | None:
    """The conditional mid-p interval for H widened by the failure rates' share; None if unresolved."""
    x, log_pmf, cut_low, cut_high = null.resolved()
    observed = counts.systemic
    if len(x) < 2 or not x[0] <= observed <= x[-1]:
        return None
    bounds = _conditional_bounds(x, log_pmf, observed)
    if not _edges_negligible(x, log_pmf, bounds.thetas, (cut_low, cut_high)):
        return None
    mean0 = counts.null_mean
    if observed == 0:
        # H estimate 0: no log scale. Widen the upper bound by the rates' share of Var(log H)
        # evaluated there (the conditional share is Var/E^2 of the tilt at that bound).
        s_upper = bounds.upper_mean / counts.population
        v_delta = log_h_variance_at(counts, s_upper, shift=s_upper) or 0.0
        v_cond = bounds.variance / bounds.upper_mean**2
        widen = math.exp(Z_95 * math.sqrt(max(v_delta - v_cond, 0.0)))
        return [0.0, bounds.upper_mean / mean0 * widen]
    v_delta = log_h_variance_at(counts, observed / counts.population) or 0.0
    v_cond = bounds.variance / observed**2
    extra = max(v_delta - v_cond, 0.0)
    return _mover(observed / mean0, bounds.lower_mean / mean0, bounds.upper_mean / mean0, extra)


def _tilt_upper(counts: Counts, null: NullDistribution) -> float | None:
    """The one-sided 95% upper bound for H at small counts; None if the null is unresolved.

    Exact, not mid-p: the tilt at which P_theta(X <= observed) = 5% (the top of the support
    if the observed count is there), mapped to H, so the conditional bound covers at least
    95%; then widened for the rates' share of Var(log H) as the two-sided interval is
    (MOVER on the log scale, one-sided z)."""
    x, log_pmf, cut_low, cut_high = null.resolved()
    observed = counts.systemic
    if len(x) < 2 or not x[0] <= observed <= x[-1]:
        return None
    at = observed - int(x[0])

    def at_most(theta: float) -> float:  # P_theta(X <= observed) - 5%, decreasing in theta
        return float(_tilted(x, log_pmf, theta)[: at + 1].sum()) - ALPHA

    thetas: list[float] = []
    upper_mean, upper_variance = float(x[-1]), 0.0
    if at < len(x) - 1:
        thetas.append(_solve_theta(lambda t: -at_most(t)))
        upper_mean, upper_variance = _moments(x, log_pmf, thetas[-1])
    if not _edges_negligible(x, log_pmf, thetas, (cut_low, cut_high)):
        return None
    mean0 = counts.null_mean
    if observed == 0:
        s_upper = upper_mean / counts.population
        v_delta = log_h_variance_at(counts, s_upper, shift=s_upper) or 0.0
        v_cond = upper_variance / upper_mean**2
        return upper_mean / mean0 * math.exp(Z_90 * math.sqrt(max(v_delta - v_cond, 0.0)))
    v_cond = 0.0  # observed at the top of the support: the MLE tilt is infinite
    if at < len(x) - 1:
        mle = _solve_theta(lambda t: _moments(x, log_pmf, t)[0] - observed)
        v_cond = _moments(x, log_pmf, mle)[1] / observed**2
    v_delta = log_h_variance_at(counts, observed / counts.population) or 0.0
    log_h = math.log(observed / mean0)
    reach = math.log(upper_mean / mean0) - log_h
    return math.exp(log_h + math.sqrt(reach**2 + Z_90 * Z_90 * max(v_delta - v_cond, 0.0)))


def h_upper_bound(counts: Counts, null: NullDistribution | None) -> float | None:
    """One-sided 95% upper bound for H (the small-count alternative to `h_interval`)."""
    if null is None or any(n in (0, counts.population) for n in counts.failures):
        return None
    bound = _tilt_upper(counts, null)
    if bound is not None or counts.systemic == 0:
        return bound
    variance = log_h_variance_at(counts, counts.systemic / counts.population)
    if variance is None or variance < 0:
        return None
    return counts.systemic / counts.null_mean * math.exp(Z_90 * math.sqrt(variance))


@dataclass(frozen=True)
class HInference:
    """What is published for H: a two-sided interval and its method, or (counts too small
    for a calibrated two-sided interval) a one-sided 95% upper bound; or neither."""

    interval: list[float] | None
    method: str | None
    upper: float | None


def h_inference(counts: Counts, null: NullDistribution | None) -> HInference:
    """The two-sided interval where counts allow one, else the one-sided upper bound."""
    if counts.too_small_for_two_sided:
        return HInference(None, None, h_upper_bound(counts, null))
    interval, method = h_interval(counts, null)
    return HInference(interval, method, None)


def _degenerate_reason(counts: Counts, names: list[str]) -> str | None:
    """Why no interval for H is given though H is defined, or None."""
    if len(names) < 2:
        return "with one company H = 1 by definition: no interval"
    full = [name for name, n in zip(names, counts.failures, strict=True) if n == counts.population]
    if full:
        return (
            f"{', '.join(full)} failed every shared individual: the all-fail count's distribution given "
            "the failure counts ignores that rate's uncertainty, so no interval for H is given"
        )
    return None


def h_interval(counts: Counts, null: NullDistribution | None) -> tuple[list[float] | None, str | None]:
    """(interval, method) for H; (None, None) where H or its interval is undefined."""
    if null is None or any(n in (0, counts.population) for n in counts.failures):
        return None, None
    interval = _tilt_interval(counts, null)
    if interval is not None:
        return interval, TILT_CI_METHOD
    h_value = counts.systemic / counts.null_mean
    variance = log_h_variance_at(counts, counts.systemic / counts.population)
    if variance is None or variance < 0:
        return None, None
    half = Z_95 * math.sqrt(variance)
    return [h_value * math.exp(-half), h_value * math.exp(half)], DELTA_CI_METHOD


# --- binomial intervals ----------------------------------------------------------------------------


def binomial_midp_ci(successes: int, trials: int) -> list[float] | None:
    """Mid-p interval for a binomial proportion (Lancaster 1961; Berry and Armitage 1995).

    Lower p: P(Y > y) + P(Y = y)/2 = alpha/2; upper p: P(Y < y) + P(Y = y)/2 = alpha/2.
    At y = 0 the upper bound is 1 - 0.05^(1/n), the one-sided 95% bound.
    """
    if trials == 0:
        return None
    y, n = successes, trials

    def above(p: float) -> float:
        return float(stats.binom.sf(y, n, p) + 0.5 * stats.binom.pmf(y, n, p)) - ALPHA / 2

    def below(p: float) -> float:
        return float(stats.binom.cdf(y - 1, n, p) + 0.5 * stats.binom.pmf(y, n, p)) - ALPHA / 2

    lower = 0.0 if y == 0 else float(optimize.brentq(above, 0.0, y / n, xtol=1e-15))
    upper = 1.0 if y == n else float(optimize.brentq(below, y / n, 1.0, xtol=1e-15))
    return [lower, upper]


# --- pairwise --------------------------------------------------------------------------------------


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: p_(j) -> max_{l <= j} min(1, (m - l + 1) p_(l))."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def pairwise_inference(
    counts: Counts, names: list[str], lf: FloatArray
) -> tuple[dict[str, list[float] | None], dict[str, float | None], dict[str, dict[str, float] | None]]:
    """Interval (or, at small counts, one-sided upper bound) and Fisher's exact test of
    H_ii' = 1 for every pair, Holm-adjusted over the pairs."""
    intervals: dict[str, list[float] | None] = {}
    uppers: dict[str, float | None] = {}
    tests: dict[str, dict[str, float] | None] = {}
    for a, b in combinations(range(len(names)), 2):
        key = f"{names[a]},{names[b]}"
        pair = counts.pair(a, b)
        null = null_distribution(pair.population, list(pair.failures), lf) if _test_defined(pair) else None
        inference = h_inference(pair, null)
        intervals[key], uppers[key] = inference.interval, inference.upper
        tests[key] = None if null is None else null.test(pair.systemic)
    defined = [key for key, test in tests.items() if test is not None]
    for side in ("greater", "less"):
        adjusted = holm([tests[key][f"p_value_{side}"] for key in defined])  # type: ignore[index]
        for key, p in zip(defined, adjusted, strict=True):
            tests[key][f"p_value_{side}_holm"] = p  # type: ignore[index]
    return intervals, uppers, tests


# --- notes and the result keys ---------------------------------------------------------------------


def inference_note(counts: Counts, names: list[str], null: NullDistribution | None) -> str | None:
    """Say when the counts are too small for the figures to say much, and what too small means."""
    notes: list[str] = []
    if counts.population == 0:
        return None
    degenerate = _degenerate_reason(counts, names)
    if degenerate is not None and all(n > 0 for n in counts.failures):
        notes.append(degenerate)
    if counts.too_small_for_two_sided:
        notes.append(
            f"counts too small for a two-sided interval: {counts.null_mean:.3g} individuals would be "
            f"failed by every company under independence (fewer than {SMALL_EXPECTED:g}); there a "
            "two-sided 95% interval for H covers more than 95%, because the outcomes with no one or "
            "almost no one failed by everyone, most of them, must be covered; H gets a one-sided 95% "
            "upper bound instead (homogenization_upper95, where H is defined), which covers at least "
            "95%, and S's interval is conservative: as any interval that is not randomised, it must "
            "cover more than 95% there"
        )
    elif null is not None and counts.systemic < SMALL_COUNT and counts.null_mean < SMALL_COUNT:
        notes.append(
            f"small counts: fewer than {SMALL_COUNT} individuals were failed by every company and fewer "
            f"than {SMALL_COUNT} would be expected under independence, so the interval for H rests on "
            "a handful of people and is wide"
        )
    if null is not None and null.upper_tail(null.support[1]) > ALPHA:
        notes.append(
            "too few individuals to show H > 1: even the largest all-fail count these failure counts "
            "allow would not be significant at the 5% level"
        )
    thin = [
        name
        for name, n in zip(names, counts.failures, strict=True)
        if min(n, counts.population - n) < SMALL_COUNT
    ]
    if thin:
        notes.append(
            f"the failure rates of {', '.join(thin)} rest on fewer than {SMALL_COUNT} failures or "
            "fewer than that many successes"
        )
    return "; ".join(notes) if notes else None


def poisson_binomial(rates: list[float]) -> FloatArray:
    """Distribution of the number of failures when companies fail independently."""
    dist = np.array([1.0])
    for p in rates:
        dist = np.concatenate([dist * (1 - p), [0.0]]) + np.concatenate([[0.0], dist * p])
    return dist


def uncertainty(table: PatternTable, h_value: float | None) -> dict[str, Any]:
    """The statistics keys of the result JSON, given H (None where undefined)."""
    counts = Counts.of(table)
    names = list(table.companies)
    n = counts.population
    lf = _log_factorials(n)
    null = null_distribution(n, list(counts.failures), lf) if _test_defined(counts) else None
    inference = h_inference(counts, null) if h_value is not None else HInference(None, None, None)
    pair_intervals, pair_uppers, pair_tests = pairwise_inference(counts, names, lf)
    return {
        "homogenization_ci95": inference.interval,
        "homogenization_ci_method": inference.method,
        "homogenization_upper95": inference.upper,
        "homogenization_test": None
        if null is None
        else {"method": EXACT_TEST_METHOD, **null.test(counts.systemic)},
        "systemic_failure_rate_ci95": binomial_midp_ci(counts.systemic, n),
        "failure_rate_ci95": {
            name: binomial_midp_ci(f, n) for name, f in zip(names, counts.failures, strict=True)
        },
        "pairwise_homogenization_ci95": pair_intervals,
        "pairwise_homogenization_upper95": pair_uppers,
        "pairwise_homogenization_test": pair_tests,
        "inference_methods": INFERENCE_METHODS,
        "inference_note": inference_note(counts, names, null),
        "expected_failure_count_histogram": [float(v) for v in n * poisson_binomial(counts.rates)]
        if n
        else None,
    }
