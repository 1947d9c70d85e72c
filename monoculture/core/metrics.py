"""Homogenization metrics from the 2^k table of failure patterns.

Definitions: `shared/notes/protocol-research.md` section 1 (Bommasani et al.,
NeurIPS 2022). Everything here is computed from counts alone, so the secure
round and the plaintext reference share this code.

Pattern strings and indices: character i of a pattern is company i's failure
bit, in the order of `companies`; the index of a pattern is that string read
as a binary number (company 0 is the most significant bit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from monoculture.core import stats

IntArray = npt.NDArray[np.int64]


def pattern_string(index: int, parties: int) -> str:
    """The pattern string of `index` for `parties` companies ("101", ...)."""
    return format(index, f"0{parties}b")


def pattern_indices(failure_bits: Sequence[npt.ArrayLike]) -> IntArray:
    """Pattern index of every individual, given one 0/1 vector per company."""
    vectors = [np.asarray(bits, dtype=np.int64) for bits in failure_bits]
    index = np.zeros_like(vectors[0]) if vectors else np.zeros(0, dtype=np.int64)
    for bits in vectors:
        index = (index << 1) | bits
    return index


def count_patterns(failure_bits: Sequence[npt.ArrayLike]) -> IntArray:
    """The 2^k table of pattern counts over aligned per-company 0/1 vectors."""
    parties = len(failure_bits)
    return np.bincount(pattern_indices(failure_bits), minlength=2**parties).astype(np.int64)


@dataclass(frozen=True)
class PatternTable:
    """Counts of the 2^k failure patterns over the shared individuals."""

    companies: tuple[str, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != 2 ** len(self.companies):
            raise ValueError(
                f"{len(self.companies)} companies need {2 ** len(self.companies)} pattern "
                f"counts, got {len(self.counts)}"
            )
        if any(c < 0 for c in self.counts):
            raise ValueError("pattern counts must be non-negative")

    @property
    def parties(self) -> int:
        return len(self.companies)

    @property
    def shared_individuals(self) -> int:
        return sum(self.counts)

    def failures(self, company: int) -> int:
        """Individuals on whom company `company` (by position) failed."""
        shift = self.parties - 1 - company
        return sum(c for idx, c in enumerate(self.counts) if (idx >> shift) & 1)

    def joint_failures(self, first: int, second: int) -> int:
        """Individuals on whom both companies failed."""
        mask = (1 << (self.parties - 1 - first)) | (1 << (self.parties - 1 - second))
        return sum(c for idx, c in enumerate(self.counts) if idx & mask == mask)

    @property
    def systemic_failures(self) -> int:
        return self.counts[-1]

    def failure_count_histogram(self) -> list[int]:
        """How many individuals were failed by exactly 0, 1, ..., k companies."""
        histogram = [0] * (self.parties + 1)
        for idx, count in enumerate(self.counts):
            histogram[idx.bit_count()] += count
        return histogram


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
    """The result JSON (README, "Result JSON") computed from the pattern table."""
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


def plaintext_table(companies: Sequence[str], outcomes: Sequence[dict[str, int]]) -> PatternTable:
    """Reference computation in the clear: join per-company {id: failed} maps.

    Used by tests, by `monoculture plaintext` and by the simulator's ground truth;
    never by the protocol.
    """
    if len(companies) != len(outcomes):
        raise ValueError("one outcome map per company")
    shared = set(outcomes[0]) if outcomes else set()
    for outcome in outcomes[1:]:
        shared &= outcome.keys()
    ordered = sorted(shared)
    vectors = [np.fromiter((o[i] for i in ordered), dtype=np.int64, count=len(ordered)) for o in outcomes]
    counts = count_patterns(vectors) if ordered else np.zeros(2 ** len(companies), dtype=np.int64)
    return PatternTable(tuple(companies), tuple(int(c) for c in counts))
