"""A coordinator that tampers with relayed lists (test aid for the tamper tests).

    python tests/evil_coordinator.py MODE --config FILE [--insecure]

MODE: flip-byte, drop, replay, reorder or swap. It tampers with the first list
a company downloads, in the way least likely to be caught by bookkeeping alone
(indices, counts and sizes are kept consistent), so only the cryptography can
catch it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from monoculture.coordinator.config import load_coordinator_config
from monoculture.coordinator.rounds import RoundBook
from monoculture.coordinator.server import serve
from monoculture.core.wire import ListAddress
from monoculture.v1 import monoculture_pb2 as pb


def _copy(chunk: pb.ListChunk) -> pb.ListChunk:
    clone = pb.ListChunk()
    clone.CopyFrom(chunk)
    return clone


def _renumber(chunks: list[pb.ListChunk]) -> list[pb.ListChunk]:
    size = sum(c.chunk_elements for c in chunks)
    for index, chunk in enumerate(chunks):
        chunk.chunk_index, chunk.chunk_count, chunk.list_size = index, len(chunks), size
    return chunks


def tamper(mode: str, chunks: list[pb.ListChunk], other: list[pb.ListChunk]) -> list[pb.ListChunk]:
    chunks = [_copy(c) for c in chunks]
    if mode == "flip-byte":
        sealed = bytearray(chunks[0].sealed)
        sealed[len(sealed) // 2] ^= 0x01
        chunks[0].sealed = bytes(sealed)
        return chunks
    if mode == "drop":
        return _renumber(chunks[:1] + chunks[2:])
    if mode == "replay":
        replayed = _copy(chunks[0])
        return _renumber([chunks[0], replayed, *chunks[2:]])
    if mode == "reorder":
        chunks[0], chunks[1] = chunks[1], chunks[0]
        return _renumber(chunks)
    if mode == "swap":
        swapped = [_copy(c) for c in other]
        for chunk in swapped:  # relabel another company's list as the one asked for
            chunk.list_owner, chunk.sender, chunk.receiver = (
                chunks[0].list_owner,
                chunks[0].sender,
                chunks[0].receiver,
            )
        return swapped
    raise SystemExit(f"unknown mode {mode}")


def book_for(mode: str) -> type[RoundBook]:
    class TamperingBook(RoundBook):
        tampered = False

        def download_list(self, company: str, address: ListAddress) -> Iterator[pb.ListChunk]:
            chunks = list(super().download_list(company, address))
            if TamperingBook.tampered:
                return iter(chunks)
            TamperingBook.tampered = True
            other = chunks
            if mode == "swap":  # wait for another company's list at this hop to swap in
                roster = self.status(address.round_id).ring.roster
                deadline = time.monotonic() + 60
                while other is chunks and time.monotonic() < deadline:
                    for owner in roster:
                        stored = list(self._store.chunks(address.round_id, owner, address.hop))
                        if owner != address.list_owner and stored and len(stored) == stored[0].chunk_count:
                            other = stored
                            break
                    time.sleep(0.1)
            logging.getLogger("evil").warning("tampering (%s) with %s", mode, address.describe())
            return iter(tamper(mode, chunks, other))

    return TamperingBook


def main() -> int:
    mode, config_path = sys.argv[1], Path(sys.argv[sys.argv.index("--config") + 1])
    logging.basicConfig(level="INFO", stream=sys.stderr)
    config = load_coordinator_config(config_path, insecure="--insecure" in sys.argv)
    return serve(config, book_for(mode))


if __name__ == "__main__":
    raise SystemExit(main())
