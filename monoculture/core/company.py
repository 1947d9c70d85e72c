"""A company's two protocol steps, without I/O (docs/PROTOCOL.md, "Steps").

- `blind_own_list` (hop 0): shuffle, hash every id to the curve and multiply by
  the round key (one hash-to-curve + one multiplication per record), seal every
  failure bit in a tag only the coordinator can open.
- `relay_list` (hops 1..k-1): shuffle again and multiply every point by the
  round key (one multiplication per record); tags travel with their points.
- `open_chunks` / `outgoing_chunks`: a relayed list arrives sealed to this
  company by the one before it and leaves sealed to the one after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from monoculture.core.dataset import CompanyRecords
from monoculture.core.errors import ProtocolError
from monoculture.core.psi_crypto import TAG_SIZE, BlindingKey, TagSealer, random_permutation
from monoculture.core.relay import ChunkOpener, ChunkSealer
from monoculture.core.wire import CHUNK_ELEMENTS, ListAddress, chunk_content, list_chunks
from monoculture.v1 import monoculture_pb2 as pb

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


def shuffle_label(owner: str, hop: int) -> bytes:
    return f"{owner}|{hop}".encode()


def blind_own_list(
    records: CompanyRecords,
    key: BlindingKey,
    sealer: TagSealer,
    counts: OperationCounts,
    progress: Progress = _no_progress,
    seed: bytes | None = None,
    owner: str = "",
) -> tuple[list[bytes], bytes]:
    """Hop 0: the company's own list as shuffled blinded points and sealed tags.

    With the round's secret `seed` the result is the same every time (restarts).
    """
    order = random_permutation(len(records), seed, shuffle_label(owner, 0))
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
    seed: bytes | None = None,
    label: bytes = b"",
) -> tuple[list[bytes], bytes]:
    """Hops 1..k-1: re-shuffle and re-blind a list; tags move with their points."""
    order = random_permutation(len(points), seed, label).tolist()
    shuffled = [points[i] for i in order]
    tag_array = np.frombuffer(tags, dtype=np.uint8).reshape(-1, TAG_SIZE)
    shuffled_tags = tag_array[order].tobytes()
    blinded: list[bytes] = []
    for start in range(0, len(shuffled), BLIND_BATCH):
        blinded += key.reblind(shuffled[start : start + BLIND_BATCH])
        progress(len(blinded), len(shuffled))
    counts.multiplications += len(blinded)
    return blinded, shuffled_tags


def open_chunks(chunks: Sequence[pb.ListChunk], opener: ChunkOpener) -> tuple[list[bytes], bytes]:
    """Points and tags of a relayed list; every chunk must be sealed to us and open cleanly."""
    points: list[bytes] = []
    tags: list[bytes] = []
    for chunk in chunks:
        if not chunk.sealed:
            raise ProtocolError(f"chunk {chunk.chunk_index} came unsealed", where=chunk.sender)
        opened = opener.open(chunk)
        points += chunk_content(opened)
        tags.append(opened.tags)
    return points, b"".join(tags)


def outgoing_chunks(
    address: ListAddress,
    sender: str,
    points: Sequence[bytes],
    tags: bytes,
    sealer: ChunkSealer | None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Iterator[pb.ListChunk]:
    """A list's chunks, sealed to the next company (or open at the last hop: sealer None)."""
    for chunk in list_chunks(address, sender, points, tags, chunk_elements):
        yield sealer.seal(chunk) if sealer is not None else chunk
