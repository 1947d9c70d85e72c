#!/usr/bin/env python3
"""Coverage of the published 95% intervals, by simulation (monoculture.analysis.stats).

Rows: k companies, N shared individuals, true H, failure rate (low 0.15, moderate
0.35). Tables are drawn from a latent-class model: a share of "hard" individuals
whom every company fails more often; H = 1 is independence. E[X] is the expected
all-fail count. Where fewer than stats.SMALL_EXPECTED (3) individuals would be
failed by everyone under independence, judged from the observed failure counts
(N prod_i fail_i), the release gives a one-sided 95% upper bound for H instead of
a two-sided interval. Columns: for H, the share of replicates publishing a
two-sided interval, its coverage over those, its misses below / above the truth,
and the coverage of the one-sided bound over the replicates publishing that
(necessarily at least about 95%: "no one failed by everyone" must be covered);
then S's interval (always two-sided) and every fail_i's (pooled).

    .venv/bin/python scripts/coverage.py                 # 1000 replicates per row
    .venv/bin/python scripts/coverage.py --reps 200 --timing
    .venv/bin/python scripts/coverage.py --by-expected   # the threshold's calibration

`--by-expected` draws its own grid (k = 2..4, rates 0.1-0.3, H 1-2, N chosen for
1 to 10 all-fail individuals expected under independence; other seeds) and
prints the coverage of the two-sided intervals, computed for every replicate
whatever the policy, by the observed N prod_i fail_i: the table SMALL_EXPECTED
was read from.
"""

from __future__ import annotations

import argparse
import itertools
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

    def add_upper(self, bound: float | None, truth: float) -> None:
        self.add(None if bound is None else [0.0, bound], truth)

    @property
    def published(self) -> int:
        return self.covered + self.below + self.above

    def share(self) -> float:
        total = self.published + self.unpublished
        return self.published / total if total else math.nan

    def coverage(self) -> float:
        return self.covered / self.published if self.published else math.nan

    def mean_width(self) -> float:
        return self.width / self.published if self.published else math.nan


Setting = tuple[int, int, float, float, int, int]
Row = tuple[tuple[int, int, float, float], dict[str, Tally]]


def _table(names: tuple[str, ...], rng: np.random.Generator, n: int, cells: np.ndarray) -> PatternTable:
    return PatternTable(names, tuple(int(c) for c in rng.multinomial(n, cells)))


def simulate(setting: Setting) -> Row:
    k, n, rate, h, reps, seed = setting
    rng = np.random.default_rng(seed)
    cells = cell_probabilities(k, rate, h)
    true_s = float(cells[-1])
    tallies = {name: Tally() for name in ("H", "H_upper", "S", "fail")}
    names = tuple(f"c{i}" for i in range(k))
    for _ in range(reps):
        counts = stats.Counts.of(_table(names, rng, n, cells))
        null = stats.null_distribution(n, list(counts.failures)) if stats._test_defined(counts) else None
        inference = stats.h_inference(counts, null)
        small = counts.too_small_for_two_sided
        tallies["H"].add(inference.interval, h)
        if small:
            tallies["H_upper"].add_upper(inference.upper, h)
        tallies["S"].add(stats.binomial_midp_ci(counts.systemic, n), true_s)
        for failures in counts.failures:
            tallies["fail"].add(stats.binomial_midp_ci(failures, n), rate)
    return (k, n, rate, h), tallies


def grid(reps: int) -> list[Setting]:
    rows = []
    for k in (2, 3, 5):
        for n in (50, 200, 2000):
            for rate in (0.15, 0.35):
                for h in (1.0, 2.0):
                    rows.append((k, n, rate, h, reps, 1000 * k + 10 * n + int(100 * rate) + int(h)))
    return rows


def _num(value: float, digits: int = 3) -> str:
    return "  -  " if math.isnan(value) else f"{value:.{digits}f}"


def print_table(results: list[Row], reps: int) -> None:
    print(f"coverage of the 95% intervals, {reps} replicates per row (latent-class tables)")
    print("pub = share of replicates publishing a two-sided interval; cov = covered / published;")
    print("lo/hi = misses with the interval below / above the truth; up cov = coverage of the one-sided")
    print("95% upper bound where it is published instead (counts too small); S's interval is always")
    print("published; fail_i pools every company")
    print(
        f"{'k':>2} {'N':>5} {'rate':>5} {'H':>4} {'E[X]':>6} | {'H: pub':>6} {'cov':>5} {'lo/hi':>7} "
        f"{'up cov':>6} | {'S: cov':>6} {'lo/hi':>7} | {'fail_i cov':>10}"
    )
    for (k, n, rate, h), t in results:
        expected = n * float(cell_probabilities(k, rate, h)[-1])
        misses, s_misses = f"{t['H'].below}/{t['H'].above}", f"{t['S'].below}/{t['S'].above}"
        print(
            f"{k:2d} {n:5d} {rate:5.2f} {h:4.1f} {expected:6.2f} | {t['H'].share():6.3f} "
            f"{_num(t['H'].coverage()):>5} {misses:>7} {_num(t['H_upper'].coverage()):>6} | "
            f"{_num(t['S'].coverage()):>6} {s_misses:>7} | {t['fail'].coverage():10.3f}"
        )


EXPECTED_BINS = (0.0, 1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0)


def calibrate(setting: Setting) -> list[tuple[float, int, int]]:
    """Per replicate: observed N prod fail_i, whether the two-sided H and S intervals cover
    (computed whatever the policy; -1 where none exists)."""
    k, n, rate, h, reps, seed = setting
    rng = np.random.default_rng(seed)
    cells = cell_probabilities(k, rate, h)
    names = tuple(f"c{i}" for i in range(k))
    out = []
    for _ in range(reps):
        counts = stats.Counts.of(_table(names, rng, n, cells))
        null = stats.null_distribution(n, list(counts.failures)) if stats._test_defined(counts) else None
        interval = stats.h_interval(counts, null)[0]
        s_interval = stats.binomial_midp_ci(counts.systemic, n) or [0.0, 1.0]
        covers = -1 if interval is None else int(interval[0] <= h <= interval[1])
        out.append((counts.null_mean, covers, int(s_interval[0] <= cells[-1] <= s_interval[1])))
    return out


def calibration_grid(reps: int) -> list[Setting]:
    rows, seed = [], 777000
    for k in (2, 3, 4):
        for rate in (0.1, 0.2, 0.3):
            for h in (1.0, 1.5, 2.0):
                for target in (1, 2, 3, 4, 5, 6, 8, 10):
                    n = round(target / rate**k)
                    if 10 <= n <= 20000:
                        seed += 1
                        rows.append((k, n, rate, h, reps, seed))
    return rows


def print_calibration(settings: list[Setting], results: list[list[tuple[float, int, int]]]) -> None:
    print("two-sided 95% intervals by the observed N prod fail_i (E0), pooled over the calibration grid")
    print(f"{'E0 from':>7} {'to':>5} | {'H':>4} {'replicates':>10} {'H cov':>6} {'S cov':>6}")
    for h in (1.0, 1.5, 2.0):
        rows = np.array([r for s, rr in zip(settings, results, strict=True) if s[3] == h for r in rr])
        for lo, hi in itertools.pairwise(EXPECTED_BINS):
            m = (rows[:, 0] >= lo) & (rows[:, 0] < hi) & (rows[:, 1] >= 0)
            h_cov, s_cov = rows[m, 1].mean(), rows[m, 2].mean()
            print(f"{lo:7.1f} {hi:5.1f} | {h:4.1f} {int(m.sum()):10d} {h_cov:6.3f} {s_cov:6.3f}")


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
    parser.add_argument(
        "--by-expected", action="store_true", help="coverage of the two-sided intervals by observed E0"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    with Pool(args.processes) as pool:
        if args.by_expected:
            settings = calibration_grid(args.reps)
            print_calibration(settings, pool.map(calibrate, settings, chunksize=1))
        else:
            print_table(pool.map(simulate, grid(args.reps), chunksize=1), args.reps)
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.timing:
        timing()


if __name__ == "__main__":
    main()
