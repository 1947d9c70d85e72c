"""Wire chunks: under 4 MiB, complete, in order, for the list asked for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoculture.core.errors import ProtocolError
from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE
from monoculture.core.wire import (
    MAX_CHUNK_ELEMENTS,
    MAX_MESSAGE_BYTES,
    ChunkSequence,
    ListAddress,
    chunk_content,
    chunk_count,
    list_chunks,
)

ADDRESS = ListAddress("r-1", "acme", 1)


def _list(size: int) -> tuple[bytes, bytes]:
    points = b"".join(bytes([2]) + i.to_bytes(POINT_SIZE - 1, "big") for i in range(size))
    tags = b"".join(i.to_bytes(TAG_SIZE, "big") for i in range(size))
    return points, tags


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 300), chunk=st.integers(1, 70))
def test_chunks_reassemble_to_the_list(size: int, chunk: int) -> None:
    points, tags = _list(size)
    sequence = ChunkSequence(expected=ADDRESS, sender="globex")
    messages = list(list_chunks(ADDRESS, "globex", points, tags, chunk))
    assert len(messages) == chunk_count(size, chunk)
    for message in messages:
        sequence.add(message)
    sequence.finish()
    assert b"".join(p for c in sequence.chunks for p in chunk_content(c)) == points
    assert b"".join(c.tags for c in sequence.chunks) == tags


def test_largest_chunk_stays_under_the_grpc_limit() -> None:
    points, tags = _list(MAX_CHUNK_ELEMENTS)
    (message,) = list_chunks(ADDRESS, "globex", points, tags, MAX_CHUNK_ELEMENTS)
    assert message.ByteSize() < MAX_MESSAGE_BYTES


def test_default_chunk_is_about_one_mebibyte() -> None:
    points, tags = _list(40_000)
    sizes = [m.ByteSize() for m in list_chunks(ADDRESS, "globex", points, tags)]
    assert max(sizes) < 1.1 * 2**20


def _messages(size: int = 10, chunk: int = 3) -> list:
    points, tags = _list(size)
    return list(list_chunks(ADDRESS, "globex", points, tags, chunk))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: [m[1], m[0], *m[2:]], "chunk 1 arrived where chunk 0"),
        (lambda m: [m[0], m[0], *m[1:]], "chunk 0 arrived where chunk 1"),
        (lambda m: [m[0], *m[2:]], "chunk 2 arrived where chunk 1"),
    ],
)
def test_reordered_replayed_or_dropped_chunks_are_refused(mutate, match: str) -> None:
    sequence = ChunkSequence(expected=ADDRESS)
    with pytest.raises(ProtocolError, match=match):
        for message in mutate(_messages()):
            sequence.add(message)


def test_a_truncated_stream_is_refused() -> None:
    sequence = ChunkSequence(expected=ADDRESS)
    for message in _messages()[:-1]:
        sequence.add(message)
    with pytest.raises(ProtocolError, match="stream ended after 3 of 4 chunks"):
        sequence.finish()


def test_an_empty_stream_is_refused() -> None:
    with pytest.raises(ProtocolError, match="no chunks"):
        ChunkSequence().finish()


def test_the_wrong_list_is_refused() -> None:
    sequence = ChunkSequence(expected=ListAddress("r-1", "acme", 2))
    with pytest.raises(ProtocolError, match="was asked for"):
        sequence.add(_messages()[0])


def test_tags_that_do_not_match_points_are_refused() -> None:
    message = _messages()[0]
    message.tags = message.tags[:-1]
    with pytest.raises(ProtocolError, match="declares 3 elements but holds 3 points and"):
        ChunkSequence().add(message)


def test_a_chunk_claiming_another_sender_is_refused() -> None:
    with pytest.raises(ProtocolError, match="claims sender"):
        ChunkSequence(sender="initech").add(_messages()[0])


def test_more_elements_than_declared_are_refused() -> None:
    message = _messages()[0]
    message.list_size = 2
    message.chunk_count = 1
    with pytest.raises(ProtocolError, match="more elements"):
        ChunkSequence().add(message)


def test_a_sealed_chunk_with_clear_content_is_refused() -> None:
    message = _messages()[0]
    message.sealed = b"x" * 40
    with pytest.raises(ProtocolError, match="also carries clear"):
        ChunkSequence().add(message)


def test_a_chunk_declaring_no_elements_is_refused() -> None:
    message = _messages()[0]
    message.chunk_elements = 0
    with pytest.raises(ProtocolError, match="declares no elements"):
        ChunkSequence().add(message)
