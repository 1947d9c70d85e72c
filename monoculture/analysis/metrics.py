"""Homogenization metrics from the 2^k table of failure patterns.

Definitions: `shared/notes/protocol-research.md` section 1 (Bommasani et al.,
NeurIPS 2022). Everything here is computed from counts alone, so the secure
round and the plaintext reference share this code.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

from monoculture.analysis import stats
from monoculture.analysis.table import PatternTable, pattern_string


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def homogenization(table: PatternTable) -> tuple[float | None, str | None]:
    """H = S / prod fail_i, or (None, why) where it is undefined."""
    n = table.shared_individuals
    if n == 0:
        return None, "no shared individuals: the companies' lists do not intersect"
    zero = [c for i, c in enumerate(table.companies) if table.failures(i) == 0]
    if zero:
        return None, (
            f"undefined: failure rate is 0 for {', '.join(zero)} (H divides by the product of failure rates)"
        )
    expected = math.prod(table.failures(i) / n for i in range(table.parties))
    return (table.systemic_failures / n) / expected, None


def pairwise_homogenization(table: PatternTable) -> dict[str, float | None]:
    """H_ii' = f_ii' / (f_i f_i') for every pair of companies."""
    n = table.shared_individuals
    pairs: dict[str, float | None] = {}
    for a, b in combinations(range(table.parties), 2):
        key = f"{table.companies[a]},{table.companies[b]}"
        fa, fb = table.failures(a), table.failures(b)
        pairs[key] = None if n == 0 or fa == 0 or fb == 0 else table.joint_failures(a, b) * n / (fa * fb)
    return pairs


def result_dict(table: PatternTable) -> dict[str, Any]:
    """The result JSON (docs/STATISTICS.md, "Result JSON") computed from the pattern table."""
    n = table.shared_individuals
    names = table.companies
    failures = {name: table.failures(i) for i, name in enumerate(names)}
    rates = {name: _rate(count, n) for name, count in failures.items()}
    h_value, h_note = homogenization(table)
    expected_s = math.prod(r for r in rates.values() if r is not None) if n else None
    result: dict[str, Any] = {
        "companies": list(names),
        "shared_individuals": n,
        "failures": failures,
        "failure_rates": rates,
        "systemic_failures": table.systemic_failures,
        "systemic_failure_rate": _rate(table.systemic_failures, n),
        "expected_systemic_failure_rate": expected_s,
        "homogenization": h_value,
        "failure_count_histogram": table.failure_count_histogram(),
        "pattern_counts": {pattern_string(i, table.parties): c for i, c in enumerate(table.counts)},
        "pairwise_homogenization": pairwise_homogenization(table),
    }
    if h_note is not None:
        result["homogenization_note"] = h_note
    result.update(stats.uncertainty(table, h_value))
    return result
