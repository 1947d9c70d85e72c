"""The crypto wrapper: commutative blinding, order, tags, invalid points."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoculture.core.errors import ProtocolError
from monoculture.core.psi_crypto import (
    POINT_SIZE,
    TAG_SIZE,
    BlindingKey,
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


def _pair(round_id: str = "r-1", company: str = "acme") -> tuple[TagSealer, object]:
    opener = TagOpener()
    sealer = TagSealer(round_id, company, opener.public_key)
    return sealer, opener.opener_for(round_id, company, sealer.public_key)


def test_tags_round_trip_and_are_all_distinct() -> None:
    sealer, company_tags = _pair()
    bits = np.array([0, 1, 1, 0, 1, 0, 0, 0], dtype=np.uint8)
    tags = split_tags(sealer.seal(bits))
    assert all(len(t) == TAG_SIZE for t in tags)
    assert len(set(tags)) == len(tags)  # equal bits never give equal tags
    assert company_tags.open(tags).tolist() == bits.tolist()  # type: ignore[attr-defined]


def test_a_flipped_tag_byte_is_detected() -> None:
    sealer, company_tags = _pair()
    tags = split_tags(sealer.seal(np.array([1, 0], dtype=np.uint8)))
    flipped = bytearray(tags[1])
    flipped[-1] ^= 1
    with pytest.raises(ProtocolError, match="authenticate"):
        company_tags.open([tags[0], bytes(flipped)])  # type: ignore[attr-defined]


def test_a_tag_moved_to_another_company_or_round_is_detected() -> None:
    opener = TagOpener()
    sealer = TagSealer("r-1", "acme", opener.public_key)
    tags = split_tags(sealer.seal(np.array([1], dtype=np.uint8)))
    other_company = opener.opener_for("r-1", "globex", sealer.public_key)
    other_round = opener.opener_for("r-2", "acme", sealer.public_key)
    for wrong in (other_company, other_round):
        with pytest.raises(ProtocolError):
            wrong.open(tags)


def test_a_third_party_cannot_open_tags() -> None:
    sealer, _ = _pair()
    eavesdropper = TagOpener().opener_for("r-1", "acme", sealer.public_key)
    with pytest.raises(ProtocolError):
        eavesdropper.open(split_tags(sealer.seal(np.array([0], dtype=np.uint8))))


def test_split_tags_refuses_partial_tags() -> None:
    with pytest.raises(ProtocolError):
        split_tags(b"\x00" * (TAG_SIZE + 1))


def test_random_permutation_is_a_permutation_and_varies() -> None:
    first, second = random_permutation(1000), random_permutation(1000)
    assert sorted(first.tolist()) == list(range(1000))
    assert first.tolist() != second.tolist()
    assert random_permutation(0).tolist() == []
