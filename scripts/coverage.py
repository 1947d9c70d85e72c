#!/usr/bin/env python3
"""Coverage of the published 95% intervals, by simulation (monoculture.analysis.stats).

Rows: k companies, N shared individuals, true H, failure rate (low 0.15, moderate
0.35). Tables are drawn from a latent-class model: a share of "hard" individuals
whom every company fails more often; H = 1 is independence. Columns: the share
of replicates whose H interval covers the true H (among those that publish one),
misses below / above the truth, how many replicates publish no interval, the
same for S and for every fail_i, and mean interval widths. E[X] is the expected
all-fail count: below about 3 no interval can cover 95% exactly (X = 0 is most
of the outcomes and must be covered), so coverage runs high there.

    .venv/bin/python scripts/coverage.py                 # 1000 replicates per row
    .venv/bin/python scripts/coverage.py --reps 200 --timing
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np
from scipy import optimize

from monoculture.analysis import stats
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import PatternTable

HARD_SHARES = (0.15, 0.2, 0.25, 0.3, 0.33)


def _bits(k: int) -> np.ndarray:
    return (np.arange(2**k)[None, :] >> (k - 1 - np.arange(k))[:, None]) & 1


def _mixture(k: int, rate: float, hard: float, hard_rate: float) -> np.ndarray:
    """Cell probabilities: with probability `hard` every company fails w.p. hard_rate, else easy_rate."""
    easy_rate = (rate - hard * hard_rate) / (1 - hard)
    failed = _bits(k).sum(axis=0)
    hard_cells = hard_rate**failed * (1 - hard_rate) ** (k - failed)
    easy_cells = easy_rate**failed * (1 - easy_rate) ** (k - failed)
    return hard * hard_cells + (1 - hard) * easy_cells


def cell_probabilities(k: int, rate: float, h: float) -> np.ndarray:
    """A latent-class model with every fail_i = rate and the given H (independence at H = 1)."""
    if h == 1:
        return _mixture(k, rate, 0.5, rate)
    for hard in HARD_SHARES:
        top = min(1.0, rate / hard)

        def excess(hard_rate: float, hard: float = hard) -> float:
            return float(_mixture(k, rate, hard, hard_rate)[-1] / rate**k - h)

        if excess(top) > 0:
            return _mixture(k, rate, hard, float(optimize.brentq(excess, rate, top)))
    raise ValueError(f"H = {h} is out of reach at k = {k}, rate {rate}")


@dataclass
class Tally:
    covered: int = 0
    below: int = 0  # interval entirely below the truth
    above: int = 0  # interval entirely above the truth
    unpublished: int = 0
    width: float = 0.0

    def add(self, interval: list[float] | None, truth: float) -> None:
        if interval is None:
            self.unpublished += 1
            return
        if interval[1] < truth:
            self.below += 1
        elif interval[0] > truth:
            self.above += 1
        else:
            self.covered += 1
        self.width += interval[1] - interval[0]

    @property
    def published(self) -> int:
        return self.covered + self.below + self.above

    def coverage(self) -> float:
        return self.covered / self.published if self.published else math.nan

    def mean_width(self) -> float:
        return self.width / self.published if self.published else math.nan


def simulate(
    setting: tuple[int, int, float, float, int, int],
) -> tuple[tuple[int, int, float, float], dict[str, Tally]]:
    k, n, rate, h, reps, seed = setting
    rng = np.random.default_rng(seed)
    cells = cell_probabilities(k, rate, h)
    true_s = float(cells[-1])
    tallies = {"H": Tally(), "S": Tally(), "fail": Tally()}
    names = tuple(f"c{i}" for i in range(k))
    for _ in range(reps):
        table = PatternTable(names, tuple(int(c) for c in rng.multinomial(n, cells)))
        counts = stats.Counts.of(table)
        null = stats.null_distribution(n, list(counts.failures)) if stats._test_defined(counts) else None
        tallies["H"].add(stats.h_interval(counts, null)[0], h)
        tallies["S"].add(stats.binomial_midp_ci(counts.systemic, n), true_s)
        for failures in counts.failures:
            tallies["fail"].add(stats.binomial_midp_ci(failures, n), rate)
    return (k, n, rate, h), tallies


def grid(reps: int) -> list[tuple[int, int, float, float, int, int]]:
    rows = []
    for k in (2, 3, 5):
        for n in (50, 200, 2000):
            for rate in (0.15, 0.35):
                for h in (1.0, 2.0):
                    rows.append((k, n, rate, h, reps, 1000 * k + 10 * n + int(100 * rate) + int(h)))
    return rows


def _cell(tally: Tally) -> str:
    return f"{tally.coverage():6.3f} {tally.below:4d}/{tally.above:<4d}{tally.unpublished:5d}"


def print_table(results: list[tuple[tuple[int, int, float, float], dict[str, Tally]]], reps: int) -> None:
    print(f"coverage of the 95% intervals, {reps} replicates per row (latent-class tables)")
    print("cov = covered / published; lo/hi = misses with the interval below / above the truth;")
    print("none = replicates publishing no interval; fail_i pools every company's interval")
    print(
        f"{'k':>2} {'N':>5} {'rate':>5} {'H':>4} {'E[X]':>7} | {'H: cov  lo/hi  none':<22}{'width':>9} | "
        f"{'S: cov  lo/hi  none':<22}{'width':>8} | {'fail_i: cov lo/hi':<22}"
    )
    for (k, n, rate, h), t in results:
        expected = n * float(cell_probabilities(k, rate, h)[-1])
        print(
            f"{k:2d} {n:5d} {rate:5.2f} {h:4.1f} {expected:7.2f} | "
            f"{_cell(t['H'])}  {t['H'].mean_width():9.3g} | "
            f"{_cell(t['S'])}  {t['S'].mean_width():8.4f} | {t['fail'].coverage():6.3f} "
            f"{t['fail'].below:4d}/{t['fail'].above:<4d}"
        )


def timing() -> None:
    """result_dict and the statistics alone at N = 10^6, moderate rates (0.3)."""
    rng = np.random.default_rng(7)
    for k, h in ((3, 1.0), (3, 2.0), (16, 1.0), (16, 10000.0)):
        cells = cell_probabilities(k, 0.3, h)
        table = PatternTable(
            tuple(f"c{i}" for i in range(k)), tuple(int(c) for c in rng.multinomial(10**6, cells))
        )
        start = time.perf_counter()
        stats.uncertainty(table, 1.0)
        alone = time.perf_counter() - start
        start = time.perf_counter()
        result = result_dict(table)
        whole = time.perf_counter() - start
        test = result["homogenization_test"]
        print(
            f"N = 10^6, k = {k:2d}, true H {h:g}: result_dict {whole:5.2f} s (statistics {alone:5.2f} s); "
            f"H = {result['homogenization']:.4g}, CI {result['homogenization_ci95']}, "
            f"p_greater {test['p_value_greater']:.3g} (floor {test['p_value_floor']:.0e}); "
            f"{(result['homogenization_ci_method'] or 'none').split(' (')[0]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--timing", action="store_true", help="also time result_dict at N = 10^6")
    args = parser.parse_args()
    start = time.perf_counter()
    with Pool(args.processes) as pool:
        results = pool.map(simulate, grid(args.reps), chunksize=1)
    print_table(results, args.reps)
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.timing:
        timing()


if __name__ == "__main__":
    main()
