"""The pattern table: counts of the 2^k failure patterns, the one structure
every figure is computed from.

Pattern strings and indices: character i of a pattern is company i's failure
bit, in the order of `companies`; the index of a pattern is that string read
as a binary number (company 0 is the most significant bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
