"""Bucket files for counting in bounded memory (coordinator/counting.py).

Counting joins the k final lists by token. Held in memory that takes about 200 B
per final token (60 GB for k = 3 at 100M records). Spilled instead, each list is
written once, in rows, to P bucket files chosen by a keyed function of each row's
key (the token; for the nonce check, the tag's nonce), and the join then reads one
bucket of every list at a time: a token falls in the same bucket in every list, so
each bucket is counted on its own in memory and the buckets' counts add up.

- P is a power of two chosen from the list sizes and the memory budget
  (`SpillPlan.buckets`), so one bucket of every list fits the budget.
- The bucket of a row is the first 8 bytes of a CBC-MAC under AES-256 of its key
  with a key drawn from os.urandom for this counting alone: blinded tokens are uniform
  anyway, but a last relay that chose its tokens (or an owner its nonces) cannot crowd
  them into one bucket without knowing the key.
- The files hold what the store holds (tokens and sealed or re-randomised tags,
  nonces: no id, no bit in the clear), encrypted with AES-256-CTR under another key of
  this counting that never leaves memory: a file left behind (a crash) reads as noise,
  as do the disk blocks the files freed. They live in a private folder (mode 0700)
  made inside the coordinator's state folder, removed when counting ends, whether it
  succeeds or fails; `remove_leftovers` removes those a crashed coordinator left.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

log = logging.getLogger("monoculture.coordinator")

_PREFIX = "counting-"
_BLOCK = 16
# Rows gathered before they are spread over the buckets: each bucket's write is then big
# enough (thousands of rows) to cost little per row, for a few MiB held.
FLUSH_ROWS = 1 << 17
MAX_BUCKETS = 1024
# Bytes counting holds per token in memory, measured with scripts/bench-counting.py (docs/USAGE.md,
# "Counting benchmark"): the in-memory path, 114 B per final token above the idle process (every
# list sorted, its tags opened); one bucket being counted, 238 B per row (the rows read and
# decrypted, their tokens sorted, their tags opened), taken as 400 for the buckets' spread and
# the write buffers of the first pass.
MEMORY_BYTES_PER_TOKEN = 128
BUCKET_BYTES_PER_ROW = 400

U8 = npt.NDArray[np.uint8]


@dataclass
class SpillStats:
    """What the last counting under a plan spilled (for the benchmark and the log)."""

    buckets: int = 0
    disk_bytes: int = 0
    tokens: int = 0

    def record(self, buckets: int, disk_bytes: int, tokens: int) -> None:
        self.buckets, self.disk_bytes, self.tokens = buckets, disk_bytes, tokens
        log.info(
            "counted %d tokens in %d buckets: %d bytes on disk (%.1f B per token)",
            tokens, buckets, disk_bytes, disk_bytes / max(1, tokens),
        )  # fmt: skip


@dataclass(frozen=True)
class SpillPlan:
    """Where counting may spill (a per-round folder is made inside `folder`) and how many
    bytes it may hold (`memory`)."""

    folder: Path
    memory: int
    stats: SpillStats | None = field(default=None, compare=False)

    def buckets(self, sizes: Sequence[int]) -> int:
        """0 when lists of these sizes are counted in memory within the budget, else the number of
        buckets (a power of two) that keeps one bucket of every list within it."""
        total = sum(sizes)
        if total * MEMORY_BYTES_PER_TOKEN <= self.memory:
            return 0
        wanted = -(-total * BUCKET_BYTES_PER_ROW // max(1, self.memory))
        return min(MAX_BUCKETS, 1 << max(1, (wanted - 1).bit_length()))


def remove_leftovers(folder: Path) -> None:
    """Remove bucket folders a coordinator stopped while counting left in `folder` (their keys
    died with it: they can never be read; the round is counted again from the store)."""
    for leftover in folder.glob(_PREFIX + "*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
            log.info("removed %s, left by an interrupted counting", leftover)


def _encrypt(key: bytes, blocks: bytes) -> bytes:
    # ECB here is AES applied block by block as a PRF (the CBC-MAC below), not to hide a message.
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(blocks) + encryptor.finalize()


def bucket_of(key: bytes, keys: U8, buckets: int) -> npt.NDArray[np.int64]:
    """The bucket of each row of `keys` (n, L): CBC-MAC-AES-256 of the row, zero-padded to whole
    blocks (a PRF on rows of one length), its first 8 bytes modulo `buckets` (a power of two)."""
    rows, width = keys.shape
    padded = np.zeros((rows, -(-width // _BLOCK) * _BLOCK), dtype=np.uint8)
    padded[:, :width] = keys
    state = np.zeros((rows, _BLOCK), dtype=np.uint8)
    for at in range(0, padded.shape[1], _BLOCK):
        state ^= padded[:, at : at + _BLOCK]
        state = np.frombuffer(_encrypt(key, state.tobytes()), dtype=np.uint8).reshape(rows, _BLOCK).copy()
    first = np.ascontiguousarray(state[:, :8]).view(">u8").ravel()
    return (first & np.uint64(buckets - 1)).astype(np.int64)


@dataclass(frozen=True)
class Stream:
    """One kind of bucket file: rows of `width` bytes, bucketed by their first `key_width`."""

    name: str
    width: int
    key_width: int


class _Pending:
    """One list's rows of one stream, gathered until FLUSH_ROWS."""

    def __init__(self) -> None:
        self.parts: list[U8] = []
        self.rows = 0

    def add(self, rows: U8) -> None:
        self.parts.append(rows)
        self.rows += len(rows)

    def take(self) -> U8 | None:
        if not self.parts:
            return None
        rows = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        self.parts, self.rows = [], 0
        return rows


class Partition:
    """The bucket files of one counting: `add` a list's rows (list by list), `close_list`, then
    read them back bucket by bucket (`rows`). A context manager: the folder goes on exit."""

    def __init__(self, folder: Path, buckets: int, lists: int, streams: Sequence[Stream]) -> None:
        if buckets < 1 or buckets & (buckets - 1):
            raise ValueError(f"the number of buckets must be a power of two, not {buckets}")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=folder))  # mode 0700
        self.buckets = buckets
        self.streams = {s.name: (number, s) for number, s in enumerate(streams)}
        self.lists = lists
        self.counts = {s.name: np.zeros((lists, buckets), dtype=np.int64) for s in streams}
        self.disk_bytes = 0
        self._bucket_key = os.urandom(32)
        self._file_key = os.urandom(32)
        self._open: dict[tuple[str, int], tuple[BinaryIO, CipherContext]] = {}
        self._pending: dict[str, _Pending] = {s.name: _Pending() for s in streams}
        self._list: int | None = None

    def __enter__(self) -> Partition:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        for handle, _ in self._open.values():
            handle.close()
        self._open.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _path(self, stream: str, index: int, bucket: int) -> Path:
        return self.folder / f"{stream}-{index}-{bucket}"

    def _counter(self, stream: str, index: int, bucket: int) -> bytes:
        """The first counter block of a file: distinct for every file, so no two share keystream."""
        number = (self.streams[stream][0] * self.lists + index) * self.buckets + bucket
        return number.to_bytes(8, "big") + bytes(8)

    def _cipher(self, stream: str, index: int, bucket: int) -> Cipher[modes.CTR]:
        return Cipher(algorithms.AES(self._file_key), modes.CTR(self._counter(stream, index, bucket)))

    def add(self, index: int, stream: str, rows: U8) -> None:
        """Rows (n, width) of list `index`: lists are added one after the other."""
        if self._list is not None and index != self._list:
            raise ValueError("close a list before adding the next")
        self._list = index
        width = self.streams[stream][1].width
        if rows.ndim != 2 or rows.shape[1] != width:
            raise ValueError(f"rows of {stream} are {width} bytes wide, not {rows.shape}")
        pending = self._pending[stream]
        pending.add(rows)
        if pending.rows >= FLUSH_ROWS:
            self._spread(index, stream, pending.take())

    def close_list(self, index: int) -> None:
        for stream, pending in self._pending.items():
            self._spread(index, stream, pending.take())
        for handle, encryptor in self._open.values():
            handle.write(encryptor.finalize())
            handle.close()
        self._open.clear()
        self._list = None

    def _spread(self, index: int, stream: str, rows: U8 | None) -> None:
        if rows is None or not len(rows):
            return
        spec = self.streams[stream][1]
        where = bucket_of(self._bucket_key, rows[:, : spec.key_width], self.buckets)
        order = np.argsort(where, kind="stable")
        counts = np.bincount(where, minlength=self.buckets)
        ordered = rows[order]
        start = 0
        for bucket in np.flatnonzero(counts).tolist():
            end = start + int(counts[bucket])
            self._write(stream, index, bucket, ordered[start:end])
            start = end
        self.counts[stream][index] += counts

    def _write(self, stream: str, index: int, bucket: int, rows: U8) -> None:
        opened = self._open.get((stream, bucket))
        if opened is None:
            descriptor = os.open(
                self._path(stream, index, bucket), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
            opened = (os.fdopen(descriptor, "wb"), self._cipher(stream, index, bucket).encryptor())
            self._open[(stream, bucket)] = opened
        handle, encryptor = opened
        data = rows.tobytes()
        handle.write(encryptor.update(data))
        self.disk_bytes += len(data)

    def rows(self, index: int, stream: str, bucket: int) -> U8:
        """The rows of list `index` in `bucket`, in the order they were added."""
        width = self.streams[stream][1].width
        if not self.counts[stream][index, bucket]:
            return np.empty((0, width), dtype=np.uint8)
        decryptor = self._cipher(stream, index, bucket).decryptor()
        data = decryptor.update(self._path(stream, index, bucket).read_bytes()) + decryptor.finalize()
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, width)
