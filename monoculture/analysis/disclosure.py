"""Disclosure control: which cells and failure counts of a published table are withheld.

What an adversary has beside a table with withheld cells: N, every published failure count,
every published cell (S among them unless the all-fail cell is withheld), and the knowledge
that counts are non-negative integers. Every withheld cell and every withheld failure count is
a *protected figure*, and the rule is the protection-interval rule of statistical agencies:
over all non-negative integer tables that agree with everything published, each protected
figure must take values at least `protection` apart (default: `min_cell_count`; never less
than 1, so no figure is pinned). A withheld cell whose true count is 0 is held to the same
rule: a published 0 is information, and so is a withheld cell that can only be 0.

Guarantee: for every protected figure the audit has two integer tables, both consistent with
the release, whose values of the figure differ by at least `protection` (or an exact integer
program saying so). The LP relaxation is only a filter: its interval contains the integer one,
so an LP width below `protection` rejects a figure for certain, but an LP width at or above it
is slightly generous (vertices of these margin polytopes can be fractional when k >= 3) and
never accepts a figure by itself. An integer program that hits its time limit counts as a
failed audit: more suppression, never less.

Steps (`plan_suppression`):
1. Primary suppression: cells with 0 < count < min_cell_count, and failure counts f with
   0 < f < min_cell_count or 0 < N - f < min_cell_count (a withheld failure count is not a
   constraint of the audit, and everything computed from it is withheld too).
2. Audit (`_audit`): integer witness tables, found in batches when many cells are unconfirmed
   (one LP empties as many as it can, further LPs raise as many as they can to `protection`
   above their lowest value so far; each vertex is rounded to an integer table by a small
   integer program over its fractional cells and their neighbours), then one figure at a time
   for what is left: LP minimum and maximum (rounded likewise), and exact integer programs
   where the LP allows the width but no integer witness shows it yet (with few withheld cells,
   straight away: they cost no more than rounding).
3. Complementary suppression (`_complements`): for each figure that fails, the cheapest cell
   that can widen its LP interval (a favourable reduced cost against the LP's duals): non-zero
   cells before zero cells, the smallest count first, the all-fail cell last (S is the headline
   figure). Withholding a further cell only enlarges the feasible set, so figures that passed
   stay passed and only the others are audited again. A failing figure whose LP interval is
   too narrow and that no cell can widen is, if a complement, published again (and never chosen
   again); if primary, it cannot be protected by cell suppression at all: the plan says so and
   the release is withheld as a whole (with every cell withheld it would still be narrower).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

# scipy ships no type information (as in stats.py, which imports it the same way).
from monoculture.analysis.lazy import lazy_import
from monoculture.analysis.table import IntArray, PatternTable, pattern_string

# SciPy on first use (see analysis/lazy.py).
sparse: Any = lazy_import("scipy.sparse")
_optimize: Any = lazy_import("scipy.optimize")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# HiGHS's feasibility tolerance: solver values within it of an integer are that integer.
_TOLERANCE = 1e-7
# Below this many cells, auditing them one by one costs less than batch LPs, and integer programs
# over all withheld cells cost less than rounding LP vertices.
_FEW_CELLS = 32
_BATCH_ROUNDS = 64
# Hamming neighbourhoods of a fractional vertex searched when rounding it to an integer table.
_ROUNDING_RADIUS = 3
_ROUNDING_SECONDS = 2.0
_INTEGER_PROGRAM_SECONDS = 10.0


@dataclass(frozen=True)
class SuppressionPlan:
    """What a release withholds from a table, and whether that protects every withheld figure."""

    cells: tuple[int, ...] = ()
    failure_counts: tuple[int, ...] = ()  # companies, by position
    protected: bool = True
    protection: int = 1


class _Figure(NamedTuple):
    """A protected figure: a withheld cell (by pattern index) or a company's withheld failure count."""

    kind: str  # "cell" or "failures"
    which: int  # the pattern index of a cell, the position of a company


class _Vertex(NamedTuple):
    x: FloatArray
    value: float
    duals: FloatArray  # d objective / d right-hand side, one per published statistic


class _Shortfall(NamedTuple):
    """A figure that failed the audit, with what the complement choice needs."""

    figure: _Figure
    duals: tuple[FloatArray, FloatArray] | None  # of its LP minimum and maximum
    relaxation_too_narrow: bool  # even the LP interval is narrower than the protection


def _bit(cells: IntArray, parties: int, company: int) -> IntArray:
    """Company `company`'s failure bit in each pattern index (company 0 is the top bit)."""
    return (cells >> (parties - 1 - company)) & 1


def _statistic_rows(cells: IntArray, parties: int, companies: Sequence[int]) -> FloatArray:
    """Each cell's share of the published linear statistics: N, then each published failure count."""
    rows = [np.ones(cells.size)] + [_bit(cells, parties, c).astype(np.float64) for c in companies]
    return np.vstack(rows)


@dataclass(frozen=True)
class _Release:
    """The linear system an adversary solves: the unknowns are the withheld cells."""

    parties: int
    cells: IntArray  # withheld pattern indices, ascending
    truth: FloatArray  # their true counts
    shown_companies: tuple[int, ...]  # companies whose failure counts are published
    equations: sparse.csr_array  # one row per published statistic, one column per withheld cell
    totals: FloatArray  # the statistics less the published cells' share
    figures: tuple[_Figure, ...]  # the withheld cells in `cells` order, then withheld failure counts
    figure_rows: sparse.csr_array  # each figure as a linear function of the unknowns

    @classmethod
    def of(cls, table: PatternTable, cells: Iterable[int], companies: Sequence[int]) -> _Release:
        parties = table.parties
        unknown = np.array(sorted(cells), dtype=np.int64)
        truth = np.asarray(table.counts, dtype=np.float64)[unknown]
        shown = tuple(c for c in range(parties) if c not in companies)
        equations = sparse.csr_array(_statistic_rows(unknown, parties, shown))
        margins = [_bit(unknown, parties, c).astype(np.float64) for c in companies]
        figure_rows = sparse.vstack(
            [sparse.identity(unknown.size, format="csr")]
            + [sparse.csr_array(row.reshape(1, -1)) for row in margins],
            format="csr",
        )
        figures = tuple(_Figure("cell", int(c)) for c in unknown)
        figures += tuple(_Figure("failures", c) for c in companies)
        return cls(parties, unknown, truth, shown, equations, equations @ truth, figures, figure_rows)


class _Witnesses:
    """Smallest and largest value of every figure over the integer tables found so far."""

    def __init__(self, release: _Release) -> None:
        self._rows = release.figure_rows
        self.low = self._rows @ release.truth  # the true table is one of them
        self.high = self.low.copy()

    def add(self, table: FloatArray) -> None:
        values = self._rows @ table
        np.minimum(self.low, values, out=self.low)
        np.maximum(self.high, values, out=self.high)

    def spread(self) -> FloatArray:
        return np.asarray(self.high - self.low, dtype=np.float64)


# ------------------------------------------------------------------ solver calls


def _solve(release: _Release, objective: FloatArray, bounds: FloatArray | None = None) -> _Vertex | None:
    """Minimise `objective` over the non-negative tables consistent with the release (an LP)."""
    result: Any = _optimize.linprog(
        objective,
        A_eq=release.equations,
        b_eq=release.totals,
        bounds=(0, None) if bounds is None else bounds,
        method="highs",
        # With a few dozen rows HiGHS's presolve costs more than it saves (0.1 s against 0.015 s
        # for an LP over 10,000 withheld cells).
        options={"presolve": False},
    )
    if result.status != 0:
        return None
    return _Vertex(
        np.asarray(result.x, dtype=np.float64), float(result.fun), np.asarray(result.eqlin.marginals)
    )


def _integer_program(
    objective: FloatArray, equations: sparse.csr_array, totals: FloatArray, seconds: float
) -> tuple[FloatArray, float] | None:
    """Minimise `objective` over non-negative integer solutions; None unless solved to optimality."""
    result: Any = _optimize.linprog(
        objective,
        A_eq=equations,
        b_eq=totals,
        bounds=(0, None),
        method="highs",
        integrality=np.ones(objective.size),
        options={"time_limit": seconds},
    )
    if result.status != 0:
        return None
    return np.rint(np.asarray(result.x, dtype=np.float64)), float(result.fun)


def _neighbours(release: _Release, support: IntArray) -> IntArray:
    """`support` (positions among the withheld cells) and the withheld cells one bit away."""
    flipped = (release.cells[support][:, None] ^ (1 << np.arange(release.parties))[None, :]).ravel()
    positions = np.searchsorted(release.cells, flipped)
    found = positions < release.cells.size
    found[found] = release.cells[positions[found]] == flipped[found]
    return np.union1d(support, positions[found])


def _integer_table_near(release: _Release, point: FloatArray) -> FloatArray | None:
    """An integer table consistent with the release, at least `floor(point)` in every cell.

    An LP vertex has at most one fractional cell per published statistic; what their fractional
    parts add up to is found again as whole individuals among those cells and their neighbours
    (a small integer program). None if that fails.
    """
    if np.all(np.abs(point - np.rint(point)) <= _TOLERANCE):
        return np.rint(point)
    floor = np.floor(point + _TOLERANCE)
    residual = np.rint(release.totals - release.equations @ floor)
    if not residual.any():
        return floor
    if (residual < 0).any():
        return None
    for support in _rounding_supports(release, point):
        found = _integer_program(
            np.zeros(support.size), release.equations[:, support], residual, _ROUNDING_SECONDS
        )
        if found is not None:
            floor[support] += found[0]
            return floor
    return None


def _rounding_supports(release: _Release, point: FloatArray) -> Iterator[IntArray]:
    """Where to look for the individuals a rounded-down vertex lacks: its fractional cells, then
    their Hamming neighbourhoods, widening."""
    support = np.flatnonzero(np.abs(point - np.rint(point)) > _TOLERANCE)
    yield support
    for _ in range(_ROUNDING_RADIUS):
        support = _neighbours(release, support)
        yield support


# ------------------------------------------------------------------ the audit


def _batch_witnesses(release: _Release, witnesses: _Witnesses, need: int, settled: set[_Figure]) -> None:
    """Integer tables that move many withheld cells at once (module docstring, step 2)."""
    cells = release.cells.size
    # Cells already passed, or left to the one-by-one audit because their vertex would not round.
    aside = np.array([f in settled for f in release.figures[:cells]], dtype=bool)

    def unconfirmed() -> BoolArray:
        return np.asarray(~aside & (witnesses.spread()[:cells] < need))

    if unconfirmed().sum() < _FEW_CELLS:
        return
    emptied = _solve(release, unconfirmed().astype(np.float64))
    rounded = None if emptied is None else _integer_table_near(release, emptied.x)
    if rounded is not None:
        witnesses.add(rounded)
    for _ in range(_BATCH_ROUNDS):
        targets = unconfirmed()
        if not targets.any():
            return
        # Capped at `need` above their lowest value so far, the targets share the mass out.
        caps = np.where(targets, witnesses.low[:cells] + need, np.inf)
        filled = _solve(release, -targets.astype(np.float64), np.column_stack([np.zeros(cells), caps]))
        if filled is None:
            return
        rounded = _integer_table_near(release, filled.x)
        if rounded is None:
            aside |= np.abs(filled.x - np.rint(filled.x)) > _TOLERANCE
            continue
        witnesses.add(rounded)
        if unconfirmed().sum() == targets.sum():
            return


def _check_figure(release: _Release, position: int, witnesses: _Witnesses, need: int) -> _Shortfall | None:
    """None if figure `position` can be shown to span `need`, else why not (module docstring)."""
    figure = release.figures[position]
    objective = release.figure_rows[[position], :].toarray().ravel()
    extremes: list[_Vertex] = []
    for sense in (-1.0, 1.0):  # the maximum first: a withheld cell's low side is often 0 already
        vertex = _solve(release, sense * objective)
        if vertex is None:
            return _Shortfall(figure, None, relaxation_too_narrow=False)
        extremes.append(vertex)
        # Few cells: the integer programs below are as cheap as rounding, and exact.
        rounded = _integer_table_near(release, vertex.x) if release.cells.size > _FEW_CELLS else None
        if rounded is not None:
            witnesses.add(rounded)
        if witnesses.spread()[position] >= need:
            return None
    highest, lowest = -extremes[0].value, extremes[1].value
    duals = (extremes[1].duals, extremes[0].duals)
    # Only integers are feasible: the LP interval rounded inwards still holds the integer one.
    if math.floor(highest + _TOLERANCE) - math.ceil(lowest - _TOLERANCE) < need:
        return _Shortfall(figure, duals, relaxation_too_narrow=True)
    for sense in (-1.0, 1.0):
        found = _integer_program(
            sense * objective, release.equations, release.totals, _INTEGER_PROGRAM_SECONDS
        )
        if found is None:
            break  # not solved in time: counts as a failed audit
        witnesses.add(found[0])
    if witnesses.spread()[position] >= need:
        return None
    return _Shortfall(figure, duals, relaxation_too_narrow=False)


def _audit(release: _Release, need: int, settled: set[_Figure]) -> list[_Shortfall]:
    """The figures not yet in `settled` that fail the protection rule; adds those that pass."""
    witnesses = _Witnesses(release)
    _batch_witnesses(release, witnesses, need, settled)
    shortfalls = []
    spread = witnesses.spread()
    for position, figure in enumerate(release.figures):
        if figure in settled:
            continue
        shortfall = None
        if spread[position] < need:
            shortfall = _check_figure(release, position, witnesses, need)
            spread = witnesses.spread()  # its LPs may have found tables that settle later figures
        if shortfall is None:
            settled.add(figure)
        else:
            shortfalls.append(shortfall)
    return shortfalls


# ------------------------------------------------------------------ complementary suppression


def _structural_zeros(table: PatternTable, shown_companies: Sequence[int]) -> BoolArray:
    """Cells that a published failure count of 0 (or of N) already says are empty."""
    cells = np.arange(2**table.parties)
    known = np.zeros(cells.size, dtype=bool)
    every = _failure_counts(table)
    for company in shown_companies:
        failures = every[company]
        if failures == 0:
            known |= _bit(cells, table.parties, company) == 1
        elif failures == table.shared_individuals:
            known |= _bit(cells, table.parties, company) == 0
    return known


class _Candidates(NamedTuple):
    """Published cells that may be withheld next, with what the complement choice reads of them."""

    cells: IntArray
    counts: IntArray
    design: FloatArray  # each one's share of the published statistics (`_statistic_rows`)
    cost: IntArray  # rank in the order of choice: non-zero first, smallest first, all-fail cell last

    @classmethod
    def of(cls, table: PatternTable, release: _Release, excluded: set[int]) -> _Candidates:
        every = np.arange(2**table.parties)
        open_ = ~np.isin(every, list(excluded)) & ~_structural_zeros(table, release.shown_companies)
        cells = every[open_]
        counts = np.asarray(table.counts, dtype=np.int64)[cells]
        order = np.lexsort((cells, counts, counts == 0, cells == every.size - 1))
        cost = np.empty(cells.size, dtype=np.int64)
        cost[order] = np.arange(cells.size)
        return cls(cells, counts, _statistic_rows(cells, table.parties, release.shown_companies), cost)


def _helpful(parties: int, shortfall: _Shortfall, candidates: _Candidates) -> BoolArray:
    """Candidates whose withholding can move the figure's LP minimum or maximum.

    A published cell c is a variable fixed at its count v_c. Freed to [0, inf), it improves the
    LP optimum iff its reduced cost against the optimum's duals has the sign of an allowed move:
    negative (c may grow), or positive with v_c > 0 (c may shrink; a zero cell cannot). If no
    candidate qualifies, the current optimum stays optimal whatever further cells are withheld.
    """
    assert shortfall.duals is not None
    if shortfall.figure.kind == "failures":
        coefficient = _bit(candidates.cells, parties, shortfall.figure.which).astype(np.float64)
    else:
        coefficient = np.zeros(candidates.cells.size)
    helpful = np.zeros(candidates.cells.size, dtype=bool)
    for sense, duals in ((1.0, shortfall.duals[0]), (-1.0, shortfall.duals[1])):
        reduced = sense * coefficient - duals @ candidates.design
        helpful |= (reduced < -_TOLERANCE) | ((reduced > _TOLERANCE) & (candidates.counts > 0))
    return helpful


def _widening(parties: int, shortfall: _Shortfall, candidates: _Candidates) -> BoolArray | None:
    """The candidates worth withholding for a failing figure; None if provably none widens it."""
    every = np.ones(candidates.cells.size, dtype=bool)
    if shortfall.duals is None:
        return every  # the solver failed: any cell, smallest first
    helpful = _helpful(parties, shortfall, candidates)
    if helpful.any():
        return helpful
    if shortfall.relaxation_too_narrow:
        return None  # the LP interval stays as it is whatever further cells are withheld
    return every  # an integer gap that the LP does not see: any cell, smallest first


def _complements(candidates: _Candidates, pools: Sequence[BoolArray]) -> list[int]:
    """One cell from each pool (one per failing figure), unless a cell chosen already is in it:
    non-zero cells before zero cells, the smallest count first, the all-fail cell last."""
    chosen = np.zeros(candidates.cells.size, dtype=bool)
    for pool in pools:
        if pool.any() and not (pool & chosen).any():
            chosen[np.flatnonzero(pool)[np.argmin(candidates.cost[pool])]] = True
    return [int(c) for c in candidates.cells[chosen]]


# ------------------------------------------------------------------ the plan


def _primary_cells(table: PatternTable, min_cell_count: int) -> set[int]:
    return {i for i, c in enumerate(table.counts) if 0 < c < min_cell_count}


def _failure_counts(table: PatternTable) -> IntArray:
    """Every company's failure count (vectorised: `PatternTable.failures` is a loop per company)."""
    counts = np.asarray(table.counts, dtype=np.int64)
    cells = np.arange(counts.size)
    return np.array([counts[_bit(cells, table.parties, c) == 1].sum() for c in range(table.parties)])


def _primary_failure_counts(table: PatternTable, min_cell_count: int) -> tuple[int, ...]:
    """Companies whose failure count, or count of individuals not failed, is 1 to min - 1."""
    failures = _failure_counts(table)
    small = ((failures > 0) & (failures < min_cell_count)) | (
        (table.shared_individuals - failures > 0) & (table.shared_individuals - failures < min_cell_count)
    )
    return tuple(int(c) for c in np.flatnonzero(small))


def plan_suppression(
    table: PatternTable, min_cell_count: int, protection: int | None = None
) -> SuppressionPlan:
    """Primary and complementary suppression under the protection-interval rule (module docstring).

    `protection` (default `min_cell_count`, at least 1): the width every withheld figure's set of
    feasible values must span. `protected` is False when cell suppression cannot achieve that
    (e.g. N < protection); the release must then be withheld as a whole.
    """
    need = max(min_cell_count if protection is None else protection, 1)
    primary = _primary_cells(table, min_cell_count)
    companies = _primary_failure_counts(table, min_cell_count)
    cells = set(primary)
    given_back: set[int] = set()  # complements that could not be protected themselves
    settled: set[_Figure] = set()
    while cells or companies:
        release = _Release.of(table, cells, companies)
        shortfalls = _audit(release, need, settled)
        if not shortfalls:
            break
        candidates = _Candidates.of(table, release, cells | given_back)
        pools = [_widening(table.parties, s, candidates) for s in shortfalls]
        stuck = {s.figure for s, pool in zip(shortfalls, pools, strict=True) if pool is None}
        if any(f.kind == "failures" or f.which in primary for f in stuck):
            return SuppressionPlan(tuple(sorted(cells)), companies, protected=False, protection=need)
        if stuck:
            # A complement nothing can protect is published again and never chosen again; with
            # fewer cells withheld the feasible set shrinks, so every figure is audited anew.
            given_back |= {f.which for f in stuck}
            cells -= given_back
            settled.clear()
            continue
        more = _complements(candidates, [pool for pool in pools if pool is not None])
        if not more:
            return SuppressionPlan(tuple(sorted(cells)), companies, protected=False, protection=need)
        cells.update(more)
    return SuppressionPlan(tuple(sorted(cells)), companies, protected=True, protection=need)


def cells_to_withhold(table: PatternTable, min_cell_count: int, protection: int | None = None) -> list[int]:
    """The cells `plan_suppression` withholds (primary and complementary), ascending."""
    return list(plan_suppression(table, min_cell_count, protection).cells)


# ------------------------------------------------------------------ the result JSON

# Figures that involve every cell (joint failures of pairs, the weights of the histogram).
_NEEDS_EVERY_CELL = (
    "failure_count_histogram", "pairwise_homogenization", "homogenization_ci95", "homogenization_upper95",
    "homogenization_ci_method", "pairwise_homogenization_ci95", "pairwise_homogenization_upper95",
    "pairwise_homogenization_test",
)  # fmt: skip
_NEEDS_SYSTEMIC = (
    "systemic_failures", "systemic_failure_rate", "systemic_failure_rate_ci95", "homogenization",
    "homogenization_ci95", "homogenization_upper95", "homogenization_ci_method", "homogenization_test",
    "inference_note",
)  # fmt: skip
# Figures computed from every company's failure count: with one withheld, they would give it back.
_NEEDS_EVERY_FAILURE_COUNT = (
    "expected_systemic_failure_rate", "homogenization", "homogenization_ci95", "homogenization_upper95",
    "homogenization_ci_method", "homogenization_test", "expected_failure_count_histogram", "inference_note",
)  # fmt: skip
_PER_COMPANY = ("failures", "failure_rates", "failure_rate_ci95")


def _null(result: dict[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        if key in result:
            result[key] = None


def withhold(
    result: dict[str, Any],
    withheld: Sequence[int],
    parties: int,
    min_cell_count: int,
    *,
    failure_counts: Sequence[int] = (),
) -> None:
    """Null the withheld cells and failure counts in `result`, and every figure computed from them."""
    names = [pattern_string(c, parties) for c in withheld]
    for name in names:
        result["pattern_counts"][name] = None
    notes = []
    if names:
        _null(result, _NEEDS_EVERY_CELL)
        notes.append(
            f"cells with 1 to {min_cell_count - 1} individuals are withheld (null), and further cells "
            "until every withheld cell could hold values at least that far apart given everything "
            "published (N, the failure counts shown, the cells shown, and that counts are whole and "
            "non-negative); the histogram, pairwise figures and confidence intervals go with them"
        )
    if 2**parties - 1 in withheld:
        _null(result, _NEEDS_SYSTEMIC)
        result["homogenization_note"] = "withheld: the systemic-failure cell (S) is withheld"
    if failure_counts:
        companies = [result["companies"][c] for c in failure_counts]
        for key in _PER_COMPANY:
            if isinstance(result.get(key), dict):
                result[key] = dict(result[key]) | dict.fromkeys(companies)
        _null(result, _NEEDS_EVERY_FAILURE_COUNT)
        notes.append(
            f"the failure counts of {', '.join(companies)} are withheld (null): they, or the number "
            f"of individuals not failed, are 1 to {min_cell_count - 1}; their failure rates, the "
            "expected systemic failure rate and H (whose denominator they are) go with them"
        )
        result["suppressed_failures"] = companies
        result.setdefault("homogenization_note", "withheld: a company's failure count is withheld")
    if names or failure_counts:
        result["suppressed_cells"] = names
        result["suppression_note"] = "; ".join(notes)


def _small(counts: npt.ArrayLike, min_cell_count: int) -> bool:
    values = np.asarray(counts)
    return bool(((values > 0) & (values < min_cell_count)).any())


def _pair_tables(table: PatternTable) -> IntArray:
    """The four counts of every pair of companies' 2x2 table (both failed, one only, neither)."""
    counts = np.asarray(table.counts, dtype=np.int64)
    cells = np.arange(counts.size)
    bits = np.array([_bit(cells, table.parties, c) for c in range(table.parties)])
    failures = bits @ counts
    both = (bits * counts) @ bits.T
    first, second = np.triu_indices(table.parties, k=1)
    joint = both[first, second]
    only_first, only_second = failures[first] - joint, failures[second] - joint
    neither = table.shared_individuals - joint - only_first - only_second
    return np.concatenate([joint, only_first, only_second, neither])


def apply_suppression(
    result: dict[str, Any], table: PatternTable, plan: SuppressionPlan, min_cell_count: int
) -> None:
    """Withhold what `plan` says from `result` (the result JSON of `table`), and the histogram
    or pairwise figures when their own counts would show a group of 1 to min - 1 individuals.

    (Each histogram entry and each pair's 2x2 count is a sum of cells; with every cell either 0
    or at least `min_cell_count` such sums are too, so the second rule is a guard that only a
    change to primary suppression could make bite.)
    """
    withhold(result, plan.cells, table.parties, min_cell_count, failure_counts=plan.failure_counts)
    if min_cell_count <= 1:
        return
    if result.get("failure_count_histogram") is not None and _small(
        table.failure_count_histogram(), min_cell_count
    ):
        result["failure_count_histogram"] = None
        result["histogram_note"] = f"withheld: an entry is 1 to {min_cell_count - 1}"
    if result.get("pairwise_homogenization") is not None and _small(_pair_tables(table), min_cell_count):
        _null(
            result,
            (
                "pairwise_homogenization",
                "pairwise_homogenization_ci95",
                "pairwise_homogenization_upper95",
                "pairwise_homogenization_test",
            ),
        )
        result["pairwise_note"] = f"withheld: a pair's 2x2 table has a count of 1 to {min_cell_count - 1}"
