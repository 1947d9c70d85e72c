"""Conversion between lists and their wire form: chunks under gRPC's 4 MiB limit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monoculture.core.errors import MalformedRequest, ProtocolError
from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE, decode_points, encode_points, split_points
from monoculture.core.rerandomise import ELGAMAL_TAG_SIZE
from monoculture.v1 import monoculture_pb2 as pb

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# 13,312 elements x (33-byte point + 2 bytes framing + 44-byte tag) is about 1 MiB.
CHUNK_ELEMENTS = 13312
# The larger tag (re-randomised, 64 bytes) sets the bound, so every chunk fits either way.
MAX_CHUNK_ELEMENTS = (MAX_MESSAGE_BYTES - 4096) // (POINT_SIZE + 2 + max(TAG_SIZE, ELGAMAL_TAG_SIZE))


def round_tag_size(rerandomise: bool) -> int:
    """Bytes of one failure tag: a re-randomised ElGamal tag, or a sealed masked value."""
    return ELGAMAL_TAG_SIZE if rerandomise else TAG_SIZE


@dataclass(frozen=True)
class ListAddress:
    """Which list at which hop of which round."""

    round_id: str
    list_owner: str
    hop: int

    def describe(self) -> str:
        return f"round {self.round_id}, list of {self.list_owner}, hop {self.hop}"


# An ECDSA P-256 signature in DER is at most 72 bytes.
MAX_SIGNATURE_BYTES = 72
_GCM_TAG_BYTES = 16


def _field_bytes(length: int) -> int:
    """Bytes a length-delimited protobuf field of `length` bytes takes (field number < 16)."""
    return 1 + (length.bit_length() + 6) // 7 + length if length else 0


def sealed_size(elements: int, tag_size: int = TAG_SIZE) -> int:
    """The exact length of `sealed` for a chunk of `elements` elements: AES-GCM over a
    ListChunkBody of their points (a psi.Request: reveal flag, 33-byte points) and tags."""
    points = 2 + elements * _field_bytes(POINT_SIZE)
    return _field_bytes(points) + _field_bytes(elements * tag_size) + _GCM_TAG_BYTES


def chunk_count(list_size: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    return max(1, -(-list_size // chunk_elements))


def list_chunks(
    address: ListAddress,
    sender: str,
    points: bytes | bytearray,
    tags: bytes | bytearray,
    chunk_elements: int = CHUNK_ELEMENTS,
    order: npt.NDArray[np.int64] | None = None,
) -> Iterator[pb.ListChunk]:
    """Split a list (`points`: concatenated 33-byte points) into self-describing chunks under 4 MiB.

    With `order`, element `order[p]` is sent at position p (a shuffle applied chunk by chunk).
    """
    if not 0 < chunk_elements <= MAX_CHUNK_ELEMENTS:
        raise ValueError(f"chunk_elements must be in 1..{MAX_CHUNK_ELEMENTS}")
    size = len(points) // POINT_SIZE
    count = chunk_count(size, chunk_elements)
    point_rows = np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT_SIZE)
    tag_bytes = np.frombuffer(tags, dtype=np.uint8)
    tag_rows = tag_bytes.reshape(size, -1) if size else tag_bytes.reshape(0, 0)  # one tag per point
    for index in range(count):
        lo, hi = index * chunk_elements, min(size, (index + 1) * chunk_elements)
        rows = order[lo:hi] if order is not None else slice(lo, hi)
        yield pb.ListChunk(
            round_id=address.round_id,
            sender=sender,
            list_owner=address.list_owner,
            hop=address.hop,
            chunk_index=index,
            chunk_count=count,
            list_size=size,
            chunk_elements=hi - lo,
            points=encode_points(split_points(point_rows[rows].tobytes())),
            tags=tag_rows[rows].tobytes(),
        )


def chunk_content(chunk: pb.ListChunk, tag_size: int = TAG_SIZE) -> list[bytes]:
    """The points of an open chunk, checked against its declared element count and tags
    (`tag_size` bytes each: `round_tag_size`)."""
    if chunk.sealed:
        raise ProtocolError("chunk is sealed; open it first", where=chunk.sender)
    points = decode_points(chunk.points)
    if len(points) != chunk.chunk_elements or len(chunk.tags) != len(points) * tag_size:
        raise ProtocolError(
            f"chunk {chunk.chunk_index} declares {chunk.chunk_elements} elements but holds "
            f"{len(points)} points and {len(chunk.tags) / tag_size:g} tags",
            where=chunk.sender,
        )
    return points


class ChunkSequence:
    """Checks that chunks arrive complete, in order, for one list, from one sender.

    Works on sealed chunks too (it reads only their headers); keeps the chunks.
    """

    def __init__(
        self,
        expected: ListAddress | None = None,
        sender: str | None = None,
        keep: bool = True,
        tag_size: int = TAG_SIZE,
    ) -> None:
        self.expected = expected
        self.tag_size = tag_size
        self.sender = sender
        self.keep = keep  # False: the caller consumes each chunk as it comes
        self.address: ListAddress | None = None
        self.list_size = 0
        self.chunk_count = 0
        self.chunks: list[pb.ListChunk] = []
        self.received = 0
        self.elements = 0

    def add(self, chunk: pb.ListChunk) -> None:
        """Validate one chunk's place in the list and, if open, its content."""
        address = ListAddress(chunk.round_id, chunk.list_owner, chunk.hop)
        if self.address is None:
            self._first(chunk, address)
        elif address != self.address or chunk.chunk_count != self.chunk_count:
            raise ProtocolError("chunks of one stream name different lists", where=chunk.sender)
        if self.sender is not None and chunk.sender != self.sender:
            raise ProtocolError(f"chunk claims sender {chunk.sender!r}", where=self.sender)
        if chunk.list_size != self.list_size:
            raise ProtocolError("chunks of one list declare different sizes", where=chunk.sender)
        if chunk.chunk_index >= self.chunk_count:
            raise MalformedRequest(
                f"chunk {chunk.chunk_index} of a list announced as {self.chunk_count} chunks",
                where=chunk.sender,
            )
        if len(chunk.signature) > MAX_SIGNATURE_BYTES:
            raise MalformedRequest("a chunk signature longer than an ECDSA signature", where=chunk.sender)
        if chunk.chunk_index != self.received:
            raise ProtocolError(
                f"chunk {chunk.chunk_index} arrived where chunk {self.received} was due",
                where=chunk.sender,
            )
        if chunk.chunk_elements == 0 and self.list_size > 0:
            raise ProtocolError("a chunk declares no elements", where=chunk.sender)
        if chunk.sealed:
            if chunk.points or chunk.tags:
                raise ProtocolError("a sealed chunk also carries clear points or tags", where=chunk.sender)
            expected = sealed_size(chunk.chunk_elements, self.tag_size)
            if len(chunk.sealed) != expected:
                raise MalformedRequest(
                    f"sealed chunk {chunk.chunk_index} is {len(chunk.sealed)} bytes; "
                    f"{chunk.chunk_elements} elements seal to {expected}",
                    where=chunk.sender,
                )
        else:
            chunk_content(chunk, self.tag_size)
        self.elements += chunk.chunk_elements
        if self.elements > self.list_size:
            raise ProtocolError("more elements than the list declares", where=chunk.sender)
        self.received += 1
        if self.keep:
            self.chunks.append(chunk)

    def _first(self, chunk: pb.ListChunk, address: ListAddress) -> None:
        if self.expected is not None and address != self.expected:
            raise ProtocolError(
                f"sent {address.describe()} where {self.expected.describe()} was asked for",
                where=chunk.sender,
            )
        if not 1 <= chunk.chunk_count <= max(1, chunk.list_size):
            raise ProtocolError("chunk count does not fit the list size", where=chunk.sender)
        self.address = address
        self.list_size = chunk.list_size
        self.chunk_count = chunk.chunk_count

    def finish(self) -> None:
        """The stream ended: every chunk and every element must be there."""
        if self.address is None:
            raise ProtocolError("the stream held no chunks", where=self.sender or "")
        if self.received != self.chunk_count or self.elements != self.list_size:
            raise ProtocolError(
                f"{self.address.describe()}: stream ended after {self.received} of "
                f"{self.chunk_count} chunks ({self.elements} of {self.list_size} elements)",
                where=self.sender or "",
            )
