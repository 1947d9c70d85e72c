"""Released group tables against a linear-programming adversary.

The adversary reads only the released JSON (overall and per group), and solves for
every group's cells at once: whole tables are non-negative, each group's cells add up
to what its published figures say, and the groups add up to the overall figures. For
every cell a group withholds it computes the smallest and largest value consistent with
all of that; the release must leave each at least `min_cell_count` wide. (The LP range
contains the integer range, so an LP range that is too narrow is a certain leak.)
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linprog

from monoculture.analysis.groups import with_groups
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable, count_patterns

MIN = 5


def _tables(seed: int, parties: int, groups: int) -> dict[str, PatternTable]:
    rng = random.Random(seed)
    tables = {}
    for g in range(groups):
        size = rng.choice([3, 8, 15, 30, 60])
        rates = [rng.uniform(0.05, 0.6) for _ in range(parties)]
        bits = [[int(rng.random() < r) for _ in range(size)] for r in rates]
        counts = count_patterns(bits) if size else np.zeros(2**parties, dtype=np.int64)
        tables[f"g{g}"] = PatternTable(tuple(f"c{i}" for i in range(parties)), tuple(int(c) for c in counts))
    return tables


def _released(tables: dict[str, PatternTable]) -> dict[str, Any]:
    overall_counts = np.sum([np.asarray(t.counts) for t in tables.values()], axis=0)
    first = next(iter(tables.values()))
    overall = PatternTable(first.companies, tuple(int(c) for c in overall_counts))
    policy = ReleasePolicy(min_cell_count=MIN)
    return json.loads(json.dumps(with_groups(release(overall, policy), overall, tables, policy)))


def _equations(
    released: dict[str, Any], labels: list[str], parties: int
) -> tuple[list[np.ndarray], list[float]]:
    """Every published linear statistic as a row over all groups' cells."""
    cells = 2**parties
    width = cells * len(labels)
    bits = [[(c >> (parties - 1 - i)) & 1 for i in range(parties)] for c in range(cells)]
    rows: list[np.ndarray] = []
    values: list[float] = []

    def add(mask_by_group: dict[int, np.ndarray], value: Any) -> None:
        if value is None:
            return
        row = np.zeros(width)
        for g, mask in mask_by_group.items():
            row[g * cells : (g + 1) * cells] = mask
        rows.append(row)
        values.append(float(value))

    every = dict.fromkeys(range(len(labels)))
    scopes: list[tuple[dict[int, Any], dict[str, Any]]] = [(every, released)]
    scopes += [({g: None}, released["groups"][label]) for g, label in enumerate(labels)]
    for scope, figures in scopes:
        if figures.get("suppressed"):
            continue
        groups = list(scope)
        add({g: np.ones(cells) for g in groups}, figures.get("shared_individuals"))
        for name, count in (figures.get("pattern_counts") or {}).items():
            add({g: (np.arange(cells) == int(name, 2)).astype(float) for g in groups}, count)
        for i, name in enumerate(f"c{i}" for i in range(parties)):
            mask = np.array([b[i] for b in bits], dtype=float)
            add({g: mask for g in groups}, (figures.get("failures") or {}).get(name))
        add(
            {g: (np.arange(cells) == cells - 1).astype(float) for g in groups},
            figures.get("systemic_failures"),
        )
    return rows, values


def _ranges(released: dict[str, Any], labels: list[str], parties: int) -> list[tuple[str, float, float, int]]:
    rows, values = _equations(released, labels, parties)
    cells = 2**parties
    a_eq, b_eq = np.array(rows), np.array(values)
    out = []
    for g, label in enumerate(labels):
        group = released["groups"][label]
        if group.get("suppressed"):
            hidden = range(cells)
        else:
            hidden = [int(name, 2) for name, count in group["pattern_counts"].items() if count is None]
        for cell in hidden:
            objective = np.zeros(cells * len(labels))
            objective[g * cells + cell] = 1
            low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            assert low.status == 0 and high.status == 0
            out.append((f"{label}:{cell:0{parties}b}", low.fun, -high.fun, cell))
    return out


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize("groups", [2, 3, 4])
def test_no_withheld_group_cell_is_narrowed_below_the_minimum(parties: int, groups: int) -> None:
    checked = 0
    for seed in range(8):
        tables = _tables(seed * 31 + parties * 7 + groups, parties, groups)
        released = _released(tables)
        if released.get("suppressed"):
            continue
        labels = list(tables)
        for name, low, high, cell in _ranges(released, labels, parties):
            checked += 1
            true = tables[name.split(":")[0]].counts[cell]
            assert low - 1e-6 <= true <= high + 1e-6
            if true == 0 and high < 1e-6:
                continue  # an empty cell known to be empty tells nothing about anyone
            assert high - low >= MIN - 1e-6, (seed, name, low, high, true)
    assert checked > 0
