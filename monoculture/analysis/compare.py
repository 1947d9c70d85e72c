"""Comparing two measurements of the same people: the paired bootstrap of a difference in H.

Pure (no I/O). Two regimes (or two rounds) measured on the same shared individuals give each
individual two failure patterns, one per regime. Resampling individuals, with both patterns
kept together, gives the distribution of H_b - H_a that sampling alone explains; its percentile
interval is the paired 95% interval, and the share of replicates on the other side of 0 gives a
two-sided bootstrap p-value. Over several seeds (independent splits), each seed is resampled on
its own and the differences are averaged, so the pooled interval is for the mean difference.

H is computed as everywhere (`metrics.homogenization`): S / prod_i fail_i from the pattern counts;
a replicate where H is undefined (a company that never fails) is dropped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monoculture.analysis.dp_inference import Figures, pattern_bits

REPLICATES = 2000
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def h_of_counts(counts: npt.ArrayLike, parties: int) -> FloatArray:
    """H for each row of pattern counts (shape (..., 2^k)); NaN where undefined (dp_inference's
    Figures, which computes every figure of many tables at once)."""
    table = np.asarray(counts, dtype=np.float64)
    figures = Figures.of(table.reshape(-1, 2**parties), pattern_bits(parties))
    return figures.homogenization().reshape(table.shape[:-1])


MAX_DROPPED = 0.01  # replicates with H undefined above this share: no interval (it would be biased)


@dataclass(frozen=True)
class PairedDifference:
    """H_b - H_a (mean over seeds) over the same individuals, with its bootstrap interval."""

    h_a: float
    h_b: float
    difference: float
    ci95: tuple[float, float]  # NaN when too many replicates had H undefined (see `note`)
    p_value: float  # two-sided, bootstrap; NaN with the interval
    replicates: int  # replicates where both H are defined
    seeds: int = 1
    dropped: float = 0.0  # share of replicates where some H was undefined
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "h_a": self.h_a, "h_b": self.h_b, "difference": self.difference, "ci95": list(self.ci95),
            "p_value": self.p_value, "replicates": self.replicates, "seeds": self.seeds,
            "dropped_share": self.dropped, "note": self.note,
            "method": METHOD if self.seeds > 1 else METHOD_ONE_SEED,
        }  # fmt: skip


METHOD = (
    "two-level bootstrap: seeds resampled with replacement, then the shared individuals within each "
    "(percentile interval): the interval includes the variation between trained models"
)
METHOD_ONE_SEED = (
    "paired bootstrap over the shared individuals (percentile interval), conditional on the one set of "
    "trained models: it leaves out the variation between training runs"
)


def _replicate_h(patterns: IntArray, parties: int, draws: IntArray) -> FloatArray:
    """H of each bootstrap replicate: `draws` holds, per replicate, the individuals drawn."""
    cells = 2**parties
    counts = np.zeros((len(draws), cells), dtype=np.int64)
    for row, drawn in enumerate(draws):
        counts[row] = np.bincount(patterns[drawn], minlength=cells)
    return h_of_counts(counts, parties)


def paired_difference(
    seeds: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
    parties: int,
    replicates: int = REPLICATES,
    rng: np.random.Generator | None = None,
) -> PairedDifference:
    """The mean over seeds of H_b - H_a. `seeds`: per seed, the pattern indices of the same
    shared individuals (same order) under regime a and regime b.

    With several seeds each replicate draws the seeds with replacement and, within each drawn
    seed, its individuals (a two-level bootstrap): the seeds are the unit that repeats (each
    trains the models anew), so an interval over individuals alone would be too narrow (an
    attacker-statistician's review: per-seed differences spread twice the within-seed standard
    error on the digits). With one seed the interval is conditional on the fitted models. Where
    more than MAX_DROPPED of the replicates have some H undefined (a company failing almost no
    one), no interval is given: dropping them would bias it."""
    rng = rng or np.random.default_rng()
    pairs = []
    for patterns_a, patterns_b in seeds:
        a, b = np.asarray(patterns_a, dtype=np.int64), np.asarray(patterns_b, dtype=np.int64)
        if len(a) != len(b) or not len(a):
            raise ValueError("both regimes must give a pattern for each of the same shared individuals")
        pairs.append((a, b))
    cells = 2**parties
    point_a = [float(h_of_counts(np.bincount(a, minlength=cells), parties)) for a, _ in pairs]
    point_b = [float(h_of_counts(np.bincount(b, minlength=cells), parties)) for _, b in pairs]
    chosen = (
        rng.integers(0, len(pairs), size=(replicates, len(pairs)))
        if len(pairs) > 1
        else np.zeros((replicates, 1), dtype=np.int64)
    )
    total = np.zeros(replicates)
    for column in range(chosen.shape[1]):
        for seed, (a, b) in enumerate(pairs):
            rows = np.nonzero(chosen[:, column] == seed)[0]
            if not len(rows):
                continue
            draws = rng.integers(0, len(a), size=(len(rows), len(a)))
            total[rows] += _replicate_h(b, parties, draws) - _replicate_h(a, parties, draws)
    mean = total / chosen.shape[1]
    kept = mean[np.isfinite(mean)]
    h_a, h_b = float(np.mean(point_a)), float(np.mean(point_b))
    dropped = 1.0 - len(kept) / replicates
    if dropped > MAX_DROPPED or not len(kept):
        note = (
            f"no interval: H was undefined in {dropped:.0%} of the replicates (a company fails almost no "
            "one); dropping them would bias the interval"
        )
        nan = float("nan")
        return PairedDifference(h_a, h_b, h_b - h_a, (nan, nan), nan, len(kept), len(pairs), dropped, note)
    low, high = np.percentile(kept, [2.5, 97.5])
    p = min(1.0, 2 * min(float((kept <= 0).mean()), float((kept >= 0).mean())) + 1 / (len(kept) + 1))
    return PairedDifference(h_a, h_b, h_b - h_a, (float(low), float(high)), p, len(kept), len(pairs), dropped)


# ----------------------------------------------------------------------------- two results


def _mover(a: float, a_ci: Sequence[float], b: float, b_ci: Sequence[float]) -> tuple[float, float]:
    """95% interval of b - a from the two estimates' own intervals (MOVER, Zou and Donner 2008),
    treating the two as independent. Where the two estimates are positively correlated (usual
    when the same people are measured twice) it is wider than it need be; where they are
    negatively correlated (a company moving its failures onto other people) it is too narrow: a
    review's simulation called such a change significant 18.5% of the time instead of 5%."""
    d = b - a
    low = d - math.sqrt((b - b_ci[0]) ** 2 + (a_ci[1] - a) ** 2)
    high = d + math.sqrt((b_ci[1] - b) ** 2 + (a - a_ci[0]) ** 2)
    return low, high


def _change(old: float | None, old_ci: Any, new: float | None, new_ci: Any) -> dict[str, Any]:
    if old is None or new is None:
        return {"old": old, "new": new, "change": None, "ci95": None, "significant": None}
    if not old_ci or not new_ci:
        return {"old": old, "new": new, "change": new - old, "ci95": None, "significant": None}
    low, high = _mover(old, old_ci, new, new_ci)
    direction = "up" if low > 0 else "down" if high < 0 else None
    return {"old": old, "new": new, "change": new - old, "ci95": [low, high], "significant": direction}


def compare_results(
    old: dict[str, Any], new: dict[str, Any], upstream_improved: bool = False
) -> dict[str, Any]:
    """Per company the change in fail_i, and the change in S and H, each with a 95% interval
    (MOVER from each result's own intervals); and the flags of a self-defeating improvement
    ("Fixes That Fail", Wu et al. 2021):

    - `downstream` (their Definition 2.1): the shared upstream improved on its own objective
      (`upstream_improved`, which only the experiment knows) while some company's failure rate
      rose significantly after retraining;
    - `ecosystem`: some company's failure rate fell significantly while S or H rose significantly.
    """
    if old.get("suppressed") or new.get("suppressed"):
        raise ValueError("a withheld result cannot be compared (the release policy showed no figures)")
    companies = [c for c in new["companies"] if c in old["companies"]]
    old_ci, new_ci = old.get("failure_rate_ci95") or {}, new.get("failure_rate_ci95") or {}
    rates = {
        c: _change(old["failure_rates"].get(c), old_ci.get(c), new["failure_rates"].get(c), new_ci.get(c))
        for c in companies
    }
    s = _change(old.get("systemic_failure_rate"), old.get("systemic_failure_rate_ci95"),
                new.get("systemic_failure_rate"), new.get("systemic_failure_rate_ci95"))  # fmt: skip
    h = _change(old.get("homogenization"), old.get("homogenization_ci95"),
                new.get("homogenization"), new.get("homogenization_ci95"))  # fmt: skip
    worse = [c for c, r in rates.items() if r["significant"] == "up"]
    better = [c for c, r in rates.items() if r["significant"] == "down"]
    ecosystem_up = [name for name, change in (("S", s), ("H", h)) if change["significant"] == "up"]
    flags = []
    if upstream_improved and worse:
        flags.append({
            "kind": "downstream",
            "reason": "the upstream improved on its own objective, yet the failure rate of "
            f"{', '.join(worse)} "
            "rose significantly after retraining",
        })  # fmt: skip
    if better and ecosystem_up:
        flags.append({
            "kind": "ecosystem",
            "reason": f"the failure rate of {', '.join(better)} fell significantly while "
            f"{' and '.join(ecosystem_up)} rose significantly",
        })  # fmt: skip
    return {
        "old_round": old.get("round_id"), "new_round": new.get("round_id"),
        "companies": companies, "failure_rates": rates, "systemic_failure_rate": s, "homogenization": h,
        "self_defeating": flags,
        "method": "95% intervals of each change by MOVER from the two results' own intervals, as if "
        "independent: wider than needed when the two are positively correlated (usual), too narrow when "
        "negatively; each company is tested at 5% without correction, so with k companies and no change "
        "some company is flagged up to about k x 5% of the time",
    }  # fmt: skip
