"""Uncertainty of H from counts alone (research notes section 1).

- Delta method on the log scale: CI = H * exp(+-1.96 SE) with
  Var(log H) ~ (1/N) [ (1-S)/S - sum_i (1-f_i)/f_i + 2 sum_{i<i'} (f_ii'/(f_i f_i') - 1) ].
- Exact conditional test of H = 1: each company's failure count is held fixed
  and failures are placed independently at random; the all-fail count is then a
  chain of hypergeometrics (M_1 = n_1, M_i ~ Hypergeom(N, M_{i-1}, n_i)).
  For k = 2 this is Fisher's exact test.
- The independence baseline of the failure-count histogram (Poisson-binomial
  with p_i = fail_i).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from monoculture.analysis.table import PatternTable

FloatArray = npt.NDArray[np.float64]

Z_95 = 1.959963984540054
# Hypergeometric steps are evaluated within this many standard deviations of
# their mean; the mass left out is below 1e-40 and cannot move a reported p-value.
_WINDOW_SD = 14.0
P_VALUE_FLOOR = 1e-30


def log_h_variance(table: PatternTable) -> float | None:
    """Delta-method variance of log H, or None where it is undefined."""
    n = table.shared_individuals
    if n == 0 or table.systemic_failures == 0:
        return None
    rates = [table.failures(i) / n for i in range(table.parties)]
    if any(r == 0 for r in rates):
        return None
    s = table.systemic_failures / n
    total = (1 - s) / s - sum((1 - f) / f for f in rates)
    for a, b in combinations(range(table.parties), 2):
        joint = table.joint_failures(a, b) / n
        total += 2 * (joint / (rates[a] * rates[b]) - 1)
    variance = total / n
    return variance if variance >= 0 else None


def homogenization_ci95(table: PatternTable, h_value: float) -> list[float] | None:
    variance = log_h_variance(table)
    if variance is None:
        return None
    half_width = Z_95 * math.sqrt(variance)
    return [h_value * math.exp(-half_width), h_value * math.exp(half_width)]


def _log_factorials(n: int) -> FloatArray:
    table = np.zeros(n + 1, dtype=np.float64)
    if n:
        table[1:] = np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))
    return table


def _hypergeom_row(lf: FloatArray, population: int, marked: int, draws: int) -> tuple[int, FloatArray]:
    """(first x, pmf over a window) of Hypergeom(population, marked, draws)."""
    lo = max(0, draws - (population - marked))
    hi = min(marked, draws)
    mean = draws * marked / population
    var = mean * (population - marked) / population * (population - draws) / max(population - 1, 1)
    spread = _WINDOW_SD * math.sqrt(var) + 2
    lo = max(lo, math.floor(mean - spread))
    hi = min(hi, math.ceil(mean + spread))
    x = np.arange(lo, hi + 1)
    log_pmf = (
        lf[marked]
        - lf[x]
        - lf[marked - x]
        + lf[population - marked]
        - lf[draws - x]
        - lf[population - marked - draws + x]
        - (lf[population] - lf[draws] - lf[population - draws])
    )
    pmf = np.exp(log_pmf)
    # Renormalise: log-factorial differences of large numbers carry ~1e-11 error.
    return lo, pmf / pmf.sum()


def all_fail_null_distribution(population: int, failure_counts: list[int]) -> FloatArray:
    """P(all-fail count = m) under independence with fixed failure counts."""
    lf = _log_factorials(population)
    dist = np.zeros(failure_counts[0] + 1)
    dist[failure_counts[0]] = 1.0
    for draws in failure_counts[1:]:
        nxt = np.zeros(min(len(dist) - 1, draws) + 1)
        for marked in np.nonzero(dist > 1e-300)[0]:
            lo, row = _hypergeom_row(lf, population, int(marked), draws)
            nxt[lo : lo + len(row)] += dist[marked] * row
        dist = nxt
    return dist


def exact_test(table: PatternTable) -> dict[str, Any] | None:
    """Exact conditional test of H = 1 (one-sided p-values both ways)."""
    n = table.shared_individuals
    counts = [table.failures(i) for i in range(table.parties)]
    if n == 0 or table.parties < 2 or any(c == 0 for c in counts):
        return None
    dist = all_fail_null_distribution(n, counts)
    observed = table.systemic_failures
    greater = float(dist[observed:].sum()) if observed < len(dist) else 0.0
    less = float(dist[: observed + 1].sum())
    return {
        "method": "exact conditional test of H = 1 (failure counts fixed; chain of hypergeometrics)",
        "p_value_greater": max(min(greater, 1.0), P_VALUE_FLOOR),
        "p_value_less": max(min(less, 1.0), P_VALUE_FLOOR),
        "p_value_floor": P_VALUE_FLOOR,
    }


def poisson_binomial(rates: list[float]) -> FloatArray:
    """Distribution of the number of failures when companies fail independently."""
    dist = np.array([1.0])
    for p in rates:
        dist = np.concatenate([dist * (1 - p), [0.0]]) + np.concatenate([[0.0], dist * p])
    return dist


def uncertainty(table: PatternTable, h_value: float | None) -> dict[str, Any]:
    """The statistics keys of the result JSON, given H (None where undefined)."""
    n = table.shared_individuals
    rates = [table.failures(i) / n for i in range(table.parties)] if n else []
    return {
        "homogenization_ci95": None if h_value is None else homogenization_ci95(table, h_value),
        "homogenization_test": exact_test(table),
        "expected_failure_count_histogram": [float(v) for v in n * poisson_binomial(rates)] if n else None,
    }
