"""Blinding spread over the cores: worker processes, one openmined-psi object each.

openmined-psi objects are not thread-safe, and the calls hold a core each, so a
company with N cores runs N worker processes (`python -m monoculture.client.workers`). They
speak a small binary protocol over their stdin/stdout — no pickle:

    request:  op (1 byte: H = hash-to-curve and multiply ids, M = multiply points,
              E = encrypt re-randomised tags, R = re-randomise tags), key (32 bytes: the
              blinding key; for E and R the coordinator's ElGamal key), count (4 bytes),
              payload length (4 bytes), payload
              (H: count ids as 4-byte length + UTF-8; M: count 33-byte points;
               E: count 32-byte values, then count 32-byte randomness scalars;
               R: count 64-byte tags, count 32-byte scalars, then none or count 32-byte shifts)
    response: status (1 byte: 0 ok, 1 invalid point), length (4 bytes), then
              count 33-byte points or 64-byte tags (ok) or a UTF-8 message.

Batches go to the workers round-robin and come back in order.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from monoculture.core import rerandomise as rr
from monoculture.core.psi_crypto import POINT_SIZE, BlindingKey, InvalidPoint

_HEADER = struct.Struct(">c32sII")
_REPLY = struct.Struct(">BI")


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        part = stream.read(size - len(data))
        if not part:
            raise EOFError("blinding worker pipe closed")
        data += part
    return bytes(data)


def _encode_ids(ids: Sequence[str]) -> bytes:
    out = bytearray()
    for record_id in ids:
        raw = record_id.encode()
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def _decode_ids(payload: bytes, count: int) -> list[str]:
    ids, offset = [], 0
    for _ in range(count):
        (size,) = struct.unpack_from(">I", payload, offset)
        ids.append(payload[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return ids


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The worker's loop: one BlindingKey per key bytes, kept while the key stays the same."""
    key: BlindingKey | None = None
    while True:
        try:
            op, key_bytes, count, length = _HEADER.unpack(_read_exact(stdin, _HEADER.size))
        except EOFError:
            return
        payload = _read_exact(stdin, length)
        try:
            if op in (b"E", b"R"):
                result = _tags_op(op, key_bytes, count, payload)
            else:
                if key is None or key.key_bytes != key_bytes:
                    key = BlindingKey(key_bytes)
                result = _points_op(op, key, count, payload)
            stdout.write(_REPLY.pack(0, len(result)) + result)
        except InvalidPoint as exc:
            message = exc.message.encode()
            stdout.write(_REPLY.pack(1, len(message)) + message)
        stdout.flush()


def _points_op(op: bytes, key: BlindingKey, count: int, payload: bytes) -> bytes:
    """H: hash count ids to the curve and blind them; M: re-blind count points."""
    if op == b"H":
        return b"".join(key.hash_and_blind(_decode_ids(payload, count)))
    return b"".join(key.reblind([payload[i : i + POINT_SIZE] for i in range(0, len(payload), POINT_SIZE)]))


def _tags_op(op: bytes, public_key: bytes, count: int, payload: bytes) -> bytes:
    """E: encrypt count values; R: re-randomise count tags (core/rerandomise.py)."""
    scalars = count * rr.SCALAR_BYTES
    if op == b"E":
        return rr.encrypt(public_key, payload[:scalars], payload[scalars : 2 * scalars])
    tags = count * rr.ELGAMAL_TAG_SIZE
    return rr.rerandomise(
        public_key, payload[:tags], payload[tags : tags + scalars], payload[tags + scalars :]
    )


def _read_reply(process: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    """One worker's next reply: (status, body)."""
    assert process.stdout is not None
    status, length = _REPLY.unpack(_read_exact(process.stdout, _REPLY.size))
    return status, _read_exact(process.stdout, length)


class BlindingPool:
    """N worker processes; `hash_and_blind` / `reblind` over batches, results in order."""

    def __init__(self, workers: int) -> None:
        self._processes = [
            subprocess.Popen(
                [sys.executable, "-P", "-m", "monoculture.client.workers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for _ in range(workers)
        ]

    def close(self) -> None:
        for process in self._processes:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)

    def _run(self, op: bytes, key: bytes, payloads: Iterable[tuple[int, bytes]]) -> Iterator[bytes]:
        """Replies in order. However the run ends (an invalid point, the caller stopping early),
        every reply still owed is read and dropped, so the next run starts with every pipe
        empty: a reply left behind would be taken for the next batch's (seen: a cheating
        company's invalid point made an honest daemon miscount its next rounds, or hang)."""
        pending: list[subprocess.Popen[bytes]] = []
        try:
            for sent, (count, payload) in enumerate(payloads):
                if len(pending) == len(self._processes):
                    yield self._reply(pending.pop(0))
                process = self._processes[sent % len(self._processes)]
                assert process.stdin is not None
                process.stdin.write(_HEADER.pack(op, key, count, len(payload)) + payload)
                process.stdin.flush()
                pending.append(process)
            while pending:
                yield self._reply(pending.pop(0))
        finally:
            for process in pending:
                _read_reply(process)  # owed, and dropped

    @staticmethod
    def _reply(process: subprocess.Popen[bytes]) -> bytes:
        status, body = _read_reply(process)
        if status:
            raise InvalidPoint(body.decode())
        return body

    def hash_and_blind(self, key: BlindingKey, batches: Iterable[Sequence[str]]) -> Iterator[bytes]:
        return self._run(b"H", key.key_bytes, ((len(b), _encode_ids(b)) for b in batches))

    def reblind(self, key: BlindingKey, batches: Iterable[Sequence[bytes]]) -> Iterator[bytes]:
        return self._run(b"M", key.key_bytes, ((len(b), b"".join(b)) for b in batches))

    def encrypt(self, public_key: bytes, batches: Iterable[tuple[bytes, bytes]]) -> Iterator[bytes]:
        return self._run(b"E", public_key, ((len(v) // rr.SCALAR_BYTES, v + r) for v, r in batches))

    def rerandomise(self, public_key: bytes, batches: Iterable[rr.TagBatch]) -> Iterator[bytes]:
        return self._run(
            b"R", public_key, ((len(s) // rr.SCALAR_BYTES, t + s + shift) for t, s, shift in batches)
        )


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
