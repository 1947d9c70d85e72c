"""A company's two protocol steps, without I/O (docs/PROTOCOL.md, "Steps").

- `blind_own_list` (hop 0): shuffle, hash every id to the curve and multiply by
  the round key (one hash-to-curve + one multiplication per record), seal every
  failure bit in a tag only the coordinator can open.
- `relay_list` (hops 1..k-1): shuffle again and multiply every point by the
  round key (one multiplication per record); tags travel with their points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from monoculture.core.dataset import CompanyRecords
from monoculture.core.psi_crypto import TAG_SIZE, BlindingKey, TagSealer, random_permutation

# Blinding runs in batches so progress can be shown and memory stays flat.
BLIND_BATCH = 16384

Progress = Callable[[int, int], None]


@dataclass
class OperationCounts:
    """Elliptic-curve work one company did in one round (for the benchmark)."""

    hash_to_curve: int = 0
    multiplications: int = 0


def _no_progress(done: int, total: int) -> None:
    return None


def blind_own_list(
    records: CompanyRecords,
    key: BlindingKey,
    sealer: TagSealer,
    counts: OperationCounts,
    progress: Progress = _no_progress,
) -> tuple[list[bytes], bytes]:
    """Hop 0: the company's own list as shuffled blinded points and sealed tags."""
    order = random_permutation(len(records))
    ids = [records.ids[i] for i in order.tolist()]
    points: list[bytes] = []
    for start in range(0, len(ids), BLIND_BATCH):
        points += key.hash_and_blind(ids[start : start + BLIND_BATCH])
        progress(len(points), len(ids))
    del ids
    counts.hash_to_curve += len(points)
    counts.multiplications += len(points)
    return points, sealer.seal(records.failed[order])


def relay_list(
    points: Sequence[bytes],
    tags: bytes,
    key: BlindingKey,
    counts: OperationCounts,
    progress: Progress = _no_progress,
) -> tuple[list[bytes], bytes]:
    """Hops 1..k-1: re-shuffle and re-blind a list; tags move with their points."""
    order = random_permutation(len(points)).tolist()
    shuffled = [points[i] for i in order]
    tag_array = np.frombuffer(tags, dtype=np.uint8).reshape(-1, TAG_SIZE)
    shuffled_tags = tag_array[order].tobytes()
    blinded: list[bytes] = []
    for start in range(0, len(shuffled), BLIND_BATCH):
        blinded += key.reblind(shuffled[start : start + BLIND_BATCH])
        progress(len(blinded), len(shuffled))
    counts.multiplications += len(blinded)
    return blinded, shuffled_tags
