"""Cell suppression against an adversary who reads the released JSON.

The adversary knows N, every published failure count, every published cell (S among them when
its cell is shown) and that counts are non-negative integers. Two adversaries, written here
independently of monoculture.analysis.disclosure:
- an LP adversary (scipy's HiGHS): the feasible interval of every withheld figure over the
  real relaxation, which contains the integer one;
- a brute-force adversary: every integer value a withheld figure can take, by exhaustive search
  over the integer tables consistent with the release (small N only).
For every withheld cell and every withheld failure count, both must find values at least the
protection apart (default: min_cell_count).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linprog

from monoculture.analysis.disclosure import (
    SuppressionPlan,
    apply_suppression,
    cells_to_withhold,
    plan_suppression,
)
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable, pattern_string

REVIEWER = PatternTable(("a", "b", "c"), (2, 20, 0, 0, 0, 4, 3, 100))

# ------------------------------------------------------------------ what the adversary sees


def _knowledge(result: dict[str, Any]) -> tuple[list[str], list[tuple[int, ...]], tuple[int, ...], list[str]]:
    """(withheld patterns, each one's column, the right-hand side, withheld companies).

    Columns and right-hand side cover the published linear statistics: N, then every published
    failure count, less the published cells' share.
    """
    companies = result["companies"]
    shown = [i for i, name in enumerate(companies) if result["failures"][name] is not None]
    hidden = [name for name in companies if result["failures"][name] is None]
    cells = result["pattern_counts"]
    unknown = [p for p, c in cells.items() if c is None]

    def column(pattern: str) -> tuple[int, ...]:
        return (1, *(int(pattern[i]) for i in shown))

    rhs = [result["shared_individuals"]] + [result["failures"][companies[i]] for i in shown]
    for pattern, count in cells.items():
        if count is not None:
            rhs = [r - count * c for r, c in zip(rhs, column(pattern), strict=True)]
    return unknown, [column(p) for p in unknown], tuple(rhs), hidden


def _figures(result: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """Every withheld figure as (name, its coefficient on each withheld cell)."""
    unknown, _, _, hidden = _knowledge(result)
    figures = [(p, [int(q == p) for q in unknown]) for p in unknown]
    position = {name: i for i, name in enumerate(result["companies"])}
    figures += [(f"failures of {name}", [int(q[position[name]]) for q in unknown]) for name in hidden]
    return figures


def lp_ranges(result: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The LP adversary: min and max of every withheld figure over the relaxation."""
    unknown, columns, rhs, _ = _knowledge(result)
    if not unknown:
        return {}
    a_eq = np.array(columns, dtype=float).T
    ranges = {}
    for name, coefficients in _figures(result):
        c = np.array(coefficients, dtype=float)
        low = linprog(c, A_eq=a_eq, b_eq=rhs, bounds=(0, None), method="highs")
        high = linprog(-c, A_eq=a_eq, b_eq=rhs, bounds=(0, None), method="highs")
        assert low.status == 0 and high.status == 0, (name, low.message, high.message)
        ranges[name] = (low.fun, -high.fun)
    return ranges


def integer_values(result: dict[str, Any]) -> dict[str, set[int]]:
    """The brute-force adversary: every value each withheld figure takes over the integer tables.

    Exhaustive, by whichever is smaller: enumerating the free cells of the linear system (the
    others follow) or dynamic programming over the reachable values of the published statistics.
    """
    unknown, columns, rhs, _ = _knowledge(result)
    figures = _figures(result)
    if not unknown:
        return {}
    tables = _integer_tables(np.array(columns, dtype=np.int64).T, np.array(rhs))
    if tables is not None:
        return {name: {int(v) for v in tables @ np.array(q)} for name, q in figures}
    assert math.prod(r + 1 for r in rhs) * (rhs[0] + 1) <= 2e7, "too large: keep N small"
    values = {}
    for name, coefficients in figures:
        extended = [(*col, q) for col, q in zip(columns, coefficients, strict=True)]
        reached = _reachable(extended, (*rhs, rhs[0]))
        values[name] = {int(v) for v in np.flatnonzero(reached[rhs])}
    return values


def _echelon(a_eq: np.ndarray, rhs: np.ndarray) -> tuple[list[list[Fraction]], list[int]]:
    """Reduced row echelon form of [a_eq | rhs] in exact arithmetic, and the pivot columns."""
    rows, cols = a_eq.shape
    echelon = [[Fraction(int(v)) for v in [*a_eq[r], rhs[r]]] for r in range(rows)]
    pivots: list[int] = []
    for col in range(cols):
        row = next((r for r in range(len(pivots), rows) if echelon[r][col] != 0), None)
        if row is None:
            continue
        top = len(pivots)
        echelon[top], echelon[row] = echelon[row], echelon[top]
        echelon[top] = [v / echelon[top][col] for v in echelon[top]]
        for r in range(rows):
            if r != top and echelon[r][col] != 0:
                echelon[r] = [a - echelon[r][col] * b for a, b in zip(echelon[r], echelon[top], strict=True)]
        pivots.append(col)
    return echelon, pivots


def _integer_tables(a_eq: np.ndarray, rhs: np.ndarray, limit: float = 2e6) -> np.ndarray | None:
    """Every non-negative integer x with a_eq x = rhs, or None if there are too many candidates:
    the free variables range over 0..(the smallest statistic they count towards), the pivot
    variables follow and must be whole and >= 0."""
    echelon, pivots = _echelon(a_eq, rhs)
    free = [c for c in range(a_eq.shape[1]) if c not in pivots]
    bounds = [int(min(rhs[r] for r in range(a_eq.shape[0]) if a_eq[r, f])) for f in free]
    if math.prod(b + 1 for b in bounds) > limit:
        return None
    grid = np.indices([b + 1 for b in bounds]).reshape(len(free), -1).T
    solved = np.array([[float(echelon[r][f]) for f in free] for r in range(len(pivots))])
    constants = np.array([float(echelon[r][-1]) for r in range(len(pivots))])
    x = np.zeros((len(grid), a_eq.shape[1]))
    x[:, free] = grid
    x[:, pivots] = constants - grid @ solved.reshape(len(pivots), len(free)).T
    whole = np.all(np.abs(x - np.rint(x)) < 1e-9, axis=1) & np.all(x > -1e-9, axis=1)
    return np.rint(x[whole]).astype(np.int64)


def _reachable(columns: list[tuple[int, ...]], bound: tuple[int, ...]) -> np.ndarray:
    """Boolean array over 0..bound: which sums of non-negative integer multiples of `columns`
    (every column has a 1 first, for N) stay within `bound` and hit each point."""
    reached = np.zeros(tuple(b + 1 for b in bound), dtype=bool)
    if min(bound) < 0:
        return reached
    reached[(0,) * len(bound)] = True
    for column in columns:
        step = reached
        while True:  # add one more individual of this pattern to every reachable point
            moved = np.zeros_like(step)
            target = tuple(slice(c, None) for c in column)
            source = tuple(slice(0, b + 1 - c) for b, c in zip(bound, column, strict=True))
            moved[target] = step[source]
            if not moved.any():
                break
            reached = reached | moved
            step = moved
    return reached


# ------------------------------------------------------------------ random tables


def _random_table(rng: random.Random, parties: int, individuals: int) -> PatternTable:
    """Few individuals spread over a handful of likely patterns: zeros, tiny and larger cells."""
    cells = 2**parties
    likely = rng.sample(range(cells), k=rng.randint(1, min(cells, 6)))
    weights = [rng.random() ** 2 for _ in likely]
    counts = [0] * cells
    for _ in range(individuals):
        if rng.random() < 0.15:
            counts[rng.randrange(cells)] += 1  # a stray individual anywhere
        else:
            counts[rng.choices(likely, weights)[0]] += 1
    return PatternTable(tuple("abcde"[:parties]), tuple(counts))


def _assert_protected(
    result: dict[str, Any], ranges: dict[str, Any], protection: int, table: PatternTable
) -> None:
    for name, span in ranges.items():
        low, high = (min(span), max(span)) if isinstance(span, set) else span
        assert high - low >= protection - 1e-6, (table.counts, name, span, result["suppressed_cells"])


def _withheld_figures_are_consistent(result: dict[str, Any], table: PatternTable) -> None:
    """Every published cell is the table's, and nothing published gives a withheld figure back:
    the adversaries above only need N, the failure counts and the cells."""
    for index, count in enumerate(table.counts):
        shown = result["pattern_counts"][pattern_string(index, table.parties)]
        assert shown is None or shown == count
    if result.get("suppressed_cells"):
        assert result["failure_count_histogram"] is None and result["pairwise_homogenization"] is None
        assert result["homogenization_ci95"] is None
    all_fail = result["pattern_counts"]["1" * table.parties]
    assert result["systemic_failures"] == all_fail  # S is the all-fail cell, shown or withheld
    if all_fail is None:
        assert result["systemic_failure_rate"] is None and result["homogenization"] is None
    hidden = [name for name, count in result["failures"].items() if count is None]
    for name in hidden:
        assert result["failure_rates"][name] is None
        assert (result.get("failure_rate_ci95") or {}).get(name) is None
    if hidden:
        assert result["homogenization"] is None and result["expected_systemic_failure_rate"] is None
        assert result["expected_failure_count_histogram"] is None and result["homogenization_test"] is None


@pytest.mark.parametrize("parties", [2, 3, 4, 5])
def test_lp_adversary_cannot_narrow_any_withheld_figure(parties: int) -> None:
    rng = random.Random(1000 + parties)
    checked = 0
    for _ in range(15):
        table = _random_table(rng, parties, rng.randint(5, 120))
        minimum = rng.randint(2, 10)
        result = release(table, ReleasePolicy(min_cell_count=minimum))
        if result["suppressed"]:
            continue
        _withheld_figures_are_consistent(result, table)
        ranges = lp_ranges(result)
        _assert_protected(result, ranges, minimum, table)
        checked += bool(ranges)
    assert checked >= 8  # the random tables did exercise suppression


@pytest.mark.parametrize("parties", [2, 3, 4, 5])
def test_brute_force_adversary_cannot_narrow_any_withheld_figure(parties: int) -> None:
    rng = random.Random(2000 + parties)
    checked = 0
    for _ in range(20):
        table = _random_table(rng, parties, rng.randint(4, 24 if parties <= 3 else 12))
        minimum = rng.randint(2, 5)
        result = release(table, ReleasePolicy(min_cell_count=minimum))
        if result["suppressed"]:
            assert set(result) == {
                "schema_version",
                "companies",
                "suppressed",
                "suppression_reason",
                "release_policy",
            }
            continue
        _withheld_figures_are_consistent(result, table)
        values = integer_values(result)
        _assert_protected(result, values, minimum, table)
        for name, seen in values.items():
            assert len(seen) >= 2, (table.counts, name)  # never pinned
        checked += bool(values)
    assert checked >= 6


def test_reviewers_example_pins_no_withheld_cell() -> None:
    # N, the failure counts, S and the shown cells used to admit one non-negative table only:
    # 000, 101 and 110 came back as (2, 4, 3).
    result = release(REVIEWER, ReleasePolicy(min_cell_count=5))
    assert {"000", "101", "110"} <= set(result["suppressed_cells"])
    values = integer_values(result)
    assert set(values) >= {"000", "101", "110"}
    for name, seen in values.items():
        assert max(seen) - min(seen) >= 5, (name, sorted(seen))
    for name, (low, high) in lp_ranges(result).items():
        assert high - low >= 5, name
    # With S shown, cells 010, 011 and 110 would sum to b's failures less S = 3: S must go.
    assert result["systemic_failures"] is None and result["homogenization"] is None


def test_a_larger_protection_is_honoured() -> None:
    table = PatternTable(("a", "b", "c"), (40, 3, 12, 0, 25, 7, 1, 30))
    narrow, wide = cells_to_withhold(table, 5), cells_to_withhold(table, 5, protection=12)
    assert set(narrow) <= set(wide)
    plan = plan_suppression(table, 5, protection=12)
    result = result_dict(table)
    apply_suppression(result, table, plan, 5)
    _assert_protected(result, integer_values(result), 12, table)


def test_zero_cells_are_complements_only_when_needed() -> None:
    # 010 is small; 011 (0) and 001 (20) could both complement it, and the non-zero one does.
    table = PatternTable(("a", "b", "c"), (300, 20, 4, 0, 250, 60, 45, 90))
    withheld = {pattern_string(c, 3) for c in cells_to_withhold(table, 5)}
    assert "010" in withheld and "011" not in withheld
    result = release(table, ReleasePolicy(min_cell_count=5))
    _assert_protected(result, lp_ranges(result), 5, table)


def test_small_failure_counts_are_withheld_with_what_is_derived_from_them() -> None:
    # c failed 3 individuals: its count, rate, H (whose denominator it is) and the expected
    # systemic rate are withheld, and the audit does not treat it as known.
    table = PatternTable(("a", "b", "c"), (30, 1, 25, 2, 28, 0, 40, 0))
    result = release(table, ReleasePolicy(min_cell_count=5))
    assert not result["suppressed"]
    assert result["failures"]["c"] is None and result["failure_rates"]["c"] is None
    assert result["failures"]["a"] == 68 and result["failure_rates"]["a"] == 68 / 126
    assert result["homogenization"] is None and result["expected_systemic_failure_rate"] is None
    assert result["suppressed_failures"] == ["c"]
    assert "failure counts of c" in result["suppression_note"]
    values = integer_values(result)
    _assert_protected(result, values, 5, table)
    assert "failures of c" in values


def test_a_count_of_those_not_failed_below_the_minimum_is_withheld() -> None:
    table = PatternTable(("a", "b"), (2, 1, 40, 30))  # a failed 70 of 73: 3 not failed
    plan = plan_suppression(table, 5)
    assert 0 in plan.failure_counts


def test_a_release_that_cannot_be_protected_is_withheld_whole() -> None:
    # N = 3 < 5: whatever is withheld, every cell lies in [0, 3].
    result = release(PatternTable(("a", "b"), (1, 1, 0, 1)), ReleasePolicy(min_cell_count=5))
    assert result["suppressed"] is True
    assert set(result) == {
        "schema_version",
        "companies",
        "suppressed",
        "suppression_reason",
        "release_policy",
    }
    assert not plan_suppression(PatternTable(("a", "b"), (1, 1, 0, 1)), 5).protected


def test_nothing_small_means_nothing_withheld() -> None:
    table = PatternTable(("a", "b", "c"), (50, 0, 30, 20, 0, 10, 0, 60))
    assert plan_suppression(table, 5) == SuppressionPlan(protection=5)
    assert "suppressed_cells" not in release(table, ReleasePolicy(min_cell_count=5))


def test_histogram_and_pairwise_guard_their_own_small_entries() -> None:
    # A guard: with primary suppression in place no sum of cells is 1 to min - 1, so this calls
    # apply_suppression with an empty plan on a table whose histogram has an entry of 3.
    table = PatternTable(("a", "b"), (50, 2, 1, 20))
    result = result_dict(table)
    apply_suppression(result, table, SuppressionPlan(), 5)
    assert result["failure_count_histogram"] is None and "histogram_note" in result
    assert result["pairwise_homogenization"] is None and "pairwise_note" in result
    assert result["pattern_counts"]["01"] == 2  # the cells are the plan's business


def test_larger_tables_stay_protected() -> None:
    # k = 7 with 2,000 individuals: the batch audit (many withheld cells) against the LP adversary.
    rng = np.random.default_rng(5)
    failed = (rng.random((2000, 7)) < 0.3) | (rng.random((2000, 1)) < 0.1)
    index = (failed.astype(np.int64) * (1 << np.arange(6, -1, -1))).sum(axis=1)
    table = PatternTable(tuple("abcdefg"), tuple(int(c) for c in np.bincount(index, minlength=128)))
    result = release(table, ReleasePolicy(min_cell_count=10))
    assert len(result["suppressed_cells"]) > 32
    _withheld_figures_are_consistent(result, table)
    _assert_protected(result, lp_ranges(result), 10, table)
