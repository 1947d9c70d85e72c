"""The crypto wrapper: commutative blinding, order, tags, invalid points."""

from __future__ import annotations

import itertools
import os

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoculture.core.errors import ProtocolError
from monoculture.core.psi_crypto import (
    NONCE_SIZE,
    POINT_SIZE,
    TAG_SIZE,
    VALUE_SIZE,
    BlindingKey,
    CompanyTags,
    InvalidPoint,
    TagOpener,
    TagSealer,
    decode_points,
    encode_points,
    random_permutation,
    split_tags,
)

IDS = [f"person-{i}" for i in range(50)]


def _full_blind(keys: list[BlindingKey], ids: list[str]) -> list[bytes]:
    points = keys[0].hash_and_blind(ids)
    for key in keys[1:]:
        points = key.reblind(points)
    return points


def test_every_key_order_gives_identical_tokens() -> None:
    keys = [BlindingKey.fresh() for _ in range(4)]
    reference = _full_blind(keys, IDS)
    for order in itertools.permutations(keys):
        assert _full_blind(list(order), IDS) == reference
    assert len(set(reference)) == len(IDS)


def test_blinding_keeps_input_order_and_point_size() -> None:
    key, other = BlindingKey.fresh(), BlindingKey.fresh()
    points = key.hash_and_blind(IDS)
    reblinded = other.reblind(points)
    single = [other.reblind([p])[0] for p in points[:5]]
    assert reblinded[:5] == single
    assert all(len(p) == POINT_SIZE for p in reblinded)


def test_fresh_keys_differ_and_repr_hides_the_key() -> None:
    a, b = BlindingKey.fresh(), BlindingKey.fresh()
    assert a.key_bytes != b.key_bytes
    assert a.hash_and_blind(["x"]) != b.hash_and_blind(["x"])
    assert a.key_bytes.hex() not in repr(a)


def test_out_of_range_key_is_refused() -> None:
    with pytest.raises(ValueError, match="scalar"):
        BlindingKey(b"\xff" * 32)


def test_undecodable_point_raises_invalid_point() -> None:
    key = BlindingKey.fresh()
    with pytest.raises(InvalidPoint):
        key.reblind([b"\x05" * POINT_SIZE])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=POINT_SIZE, max_size=POINT_SIZE), max_size=40))
def test_point_encoding_round_trips(points: list[bytes]) -> None:
    assert decode_points(encode_points(points)) == points


def test_decode_refuses_garbage_and_wrong_sizes() -> None:
    with pytest.raises(ProtocolError):
        decode_points(b"\xff\xff\xff")
    with pytest.raises(ProtocolError, match="33 bytes"):
        decode_points(encode_points([b"\x02" * 10]))


def _pair(round_id: str = "r-1", company: str = "acme") -> tuple[TagSealer, CompanyTags]:
    opener = TagOpener()
    sealer = TagSealer(round_id, company, opener.public_key)
    return sealer, opener.opener_for(round_id, company, sealer.public_key)


def _values(count: int) -> npt.NDArray[np.uint8]:
    """`count` masked values as a company seals them: VALUE_SIZE bytes each, uniform (a masked
    value alone is, core/masks.py)."""
    return np.frombuffer(os.urandom(count * VALUE_SIZE), dtype=np.uint8).reshape(count, VALUE_SIZE)


def test_tags_round_trip_and_are_all_distinct() -> None:
    """v2: a tag seals a 16-byte masked value, not one bit. Opening gives back every value at its
    position, whether sealed from bytes or from an (n, 16) array; equal values (here repeated
    rows and all-zero rows) never give equal tags."""
    sealer, company_tags = _pair()
    fresh = _values(5)
    values = np.concatenate([fresh, fresh[[0, 0, 3]], np.zeros((2, VALUE_SIZE), dtype=np.uint8)])
    assert len({row.tobytes() for row in values}) < len(values)  # some values repeat
    sealed = sealer.seal(values)
    assert sealer.seal(values.tobytes()) == sealed  # bytes in, the same tags
    tags = split_tags(sealed)
    assert len(tags) == len(values) and all(len(t) == TAG_SIZE for t in tags)
    assert len(set(tags)) == len(tags)  # equal values never give equal tags
    opened = company_tags.open(tags)
    assert opened.dtype == np.uint8 and opened.shape == (len(values), VALUE_SIZE)
    assert opened.tolist() == values.tolist()


@pytest.mark.parametrize(
    "where",
    [0, NONCE_SIZE, NONCE_SIZE + VALUE_SIZE - 1, TAG_SIZE - 1],
    ids=["nonce", "value-first", "value-last", "gcm-tag"],
)
def test_a_flipped_tag_byte_is_detected(where: int) -> None:
    """A flipped bit anywhere in a tag (its nonce, its encrypted masked value, its GCM tag) fails
    opening; the unflipped tag still opens to its value."""
    sealer, company_tags = _pair()
    values = _values(2)
    tags = split_tags(sealer.seal(values))
    assert company_tags.open(tags[:1]).tolist() == values[:1].tolist()
    flipped = bytearray(tags[1])
    flipped[where] ^= 1
    with pytest.raises(ProtocolError, match="authenticate"):
        company_tags.open([tags[0], bytes(flipped)])


def test_a_tag_moved_to_another_company_or_round_is_detected() -> None:
    """The key and AAD name the round and the company: a value sealed for acme in r-1 does not
    open as globex's or as r-2's (the masked sum would catch it too, but opening already does)."""
    opener = TagOpener()
    sealer = TagSealer("r-1", "acme", opener.public_key)
    values = _values(1)
    tags = split_tags(sealer.seal(values))
    assert opener.opener_for("r-1", "acme", sealer.public_key).open(tags).tolist() == values.tolist()
    other_company = opener.opener_for("r-1", "globex", sealer.public_key)
    other_round = opener.opener_for("r-2", "acme", sealer.public_key)
    for wrong in (other_company, other_round):
        with pytest.raises(ProtocolError, match="authenticate"):
            wrong.open(tags)


def test_a_third_party_cannot_open_tags() -> None:
    """Only the coordinator's key opens a tag: another X25519 key, with the right round, company
    and sealer public key, does not."""
    sealer, company_tags = _pair()
    values = _values(1)
    tags = split_tags(sealer.seal(values))
    assert company_tags.open(tags).tolist() == values.tolist()
    eavesdropper = TagOpener().opener_for("r-1", "acme", sealer.public_key)
    with pytest.raises(ProtocolError, match="authenticate"):
        eavesdropper.open(tags)


def test_a_value_that_is_not_16_bytes_a_row_is_refused() -> None:
    """Sealing takes whole VALUE_SIZE-byte values (v1's one-bit input no longer fits)."""
    sealer, _ = _pair()
    with pytest.raises(ValueError):
        sealer.seal(np.array([0, 1, 1, 0], dtype=np.uint8))


def test_split_tags_refuses_partial_tags() -> None:
    with pytest.raises(ProtocolError):
        split_tags(b"\x00" * (TAG_SIZE + 1))


def test_random_permutation_is_a_permutation_and_varies() -> None:
    first, second = random_permutation(1000), random_permutation(1000)
    assert sorted(first.tolist()) == list(range(1000))
    assert first.tolist() != second.tolist()
    assert random_permutation(0).tolist() == []
