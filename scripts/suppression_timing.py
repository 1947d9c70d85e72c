"""Benchmark (not a test): cell suppression of a 16-company table.

A realistic table: N individuals, each company failing an individual when a uniform draw is
below its failure rate; with probability `correlation` one draw is shared by every company for
that individual (the model of `monoculture simulate`). Prints the time `plan_suppression` takes
and how many cells and failure counts it withholds.

    .venv/bin/python scripts/suppression_timing.py [--parties 16] [--individuals 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from monoculture.analysis.disclosure import plan_suppression
from monoculture.analysis.table import PatternTable, count_patterns


def correlated_table(
    parties: int, individuals: int, rate: float, correlation: float, seed: int
) -> PatternTable:
    """The pattern table of `individuals` people with correlated failures (simulation data)."""
    rng = np.random.default_rng(seed)
    shared = rng.random(individuals)
    own = rng.random((individuals, parties))
    correlated = rng.random(individuals) < correlation
    draws = np.where(correlated[:, None], shared[:, None], own)
    failed = (draws < rate).astype(np.int64)
    counts = count_patterns([failed[:, c] for c in range(parties)])
    return PatternTable(tuple(f"company-{c + 1}" for c in range(parties)), tuple(int(c) for c in counts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parties", type=int, default=16)
    parser.add_argument("--individuals", type=int, default=100_000)
    parser.add_argument("--failure-rate", type=float, default=0.2)
    parser.add_argument("--correlation", type=float, default=0.3)
    parser.add_argument("--min-cell-count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    table = correlated_table(args.parties, args.individuals, args.failure_rate, args.correlation, args.seed)
    counts = np.asarray(table.counts)
    small = int(((counts > 0) & (counts < args.min_cell_count)).sum())
    start = time.perf_counter()
    plan = plan_suppression(table, args.min_cell_count)
    elapsed = time.perf_counter() - start
    print(
        f"k = {args.parties}, N = {table.shared_individuals}, min_cell_count = {args.min_cell_count}: "
        f"{small} cells below the minimum, {int((counts == 0).sum())} empty"
    )
    print(
        f"suppression took {elapsed:.2f} s: {len(plan.cells)} cells withheld "
        f"({len(plan.cells) - small} complementary), {len(plan.failure_counts)} failure counts withheld, "
        f"protected: {plan.protected}"
    )


if __name__ == "__main__":
    main()
