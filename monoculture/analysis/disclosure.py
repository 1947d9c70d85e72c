"""Disclosure control: which cells of a published table are withheld."""

from __future__ import annotations

from typing import Any

import numpy as np

from monoculture.analysis.table import PatternTable, pattern_string


def _margin_rows(parties: int, with_systemic: bool) -> np.ndarray:
    """Rows: the linear statistics published beside a suppressed table (N, failures, S)."""
    cells = np.arange(2**parties)
    rows = [np.ones(2**parties)]  # N
    rows += [((cells >> (parties - 1 - i)) & 1).astype(float) for i in range(parties)]
    if with_systemic:
        rows.append((cells == 2**parties - 1).astype(float))
    return np.array(rows)


def _determined(constraints: np.ndarray, withheld: list[int]) -> list[int]:
    """Withheld cells whose value follows exactly from the published statistics."""
    sub = constraints[:, withheld]
    rank = np.linalg.matrix_rank(sub)
    determined = []
    for position, cell in enumerate(withheld):
        unit = np.zeros(len(withheld))
        unit[position] = 1
        if np.linalg.matrix_rank(np.vstack([sub, unit])) == rank:
            determined.append(cell)
    return determined


def cells_to_withhold(table: PatternTable, min_cell_count: int) -> list[int]:
    """Primary suppression (0 < count < threshold) plus complementary suppression.

    Complementary cells (smallest first, the all-fail cell last) are added until
    no withheld cell can be recomputed from N, the companies' failure counts and,
    unless its cell is withheld, S.
    """
    withheld = [i for i, c in enumerate(table.counts) if 0 < c < min_cell_count]
    if not withheld:
        return []
    all_fail = 2**table.parties - 1
    # The all-fail cell is S, the headline figure: withheld as a last resort only
    # (with k = 2, N, the failure counts and S pin down every cell).
    candidates = sorted((c, i) for i, c in enumerate(table.counts) if i not in withheld and i != all_fail)
    if all_fail not in withheld:
        candidates.append((table.counts[all_fail], all_fail))
    while candidates:
        constraints = _margin_rows(table.parties, with_systemic=all_fail not in withheld)
        if not _determined(constraints, withheld):
            break
        withheld.append(candidates.pop(0)[1])
    return sorted(withheld)


_NEEDS_EVERY_CELL = ("failure_count_histogram", "pairwise_homogenization", "homogenization_ci95")
_NEEDS_SYSTEMIC = (
    "systemic_failures", "systemic_failure_rate", "homogenization",
    "homogenization_ci95", "homogenization_test",
)  # fmt: skip


def withhold(result: dict[str, Any], withheld: list[int], parties: int, min_cell_count: int) -> None:
    names = [pattern_string(c, parties) for c in withheld]
    for name in names:
        result["pattern_counts"][name] = None
    for key in _NEEDS_EVERY_CELL:
        result[key] = None
    note = (
        f"cells with 1 to {min_cell_count - 1} individuals are withheld (null), and further cells so "
        "that none can be recomputed from N and the companies' failure counts; the histogram, pairwise "
        "figures and confidence interval are withheld with them"
    )
    if 2**parties - 1 in withheld:
        for key in _NEEDS_SYSTEMIC:
            result[key] = None
        result["homogenization_note"] = "withheld: the systemic-failure cell is below the release minimum"
    result["suppressed_cells"] = names
    result["suppression_note"] = note
