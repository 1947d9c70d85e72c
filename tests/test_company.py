"""A company's two steps: what they send, in what order, and that a list is held once."""

from __future__ import annotations

import os

import numpy as np
import pytest
from support.masking import round_pair_keys

from monoculture.client import company
from monoculture.client.company import (
    INLINE,
    ListInTransit,
    Masking,
    OperationCounts,
    blind_own_list,
    outgoing_chunks,
    relay_list,
    shuffle_label,
)
from monoculture.client.workers import BlindingPool
from monoculture.core.dataset import CompanyRecords, IdColumn
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import (
    add_values,
    decode_sums,
    id_digests,
    masked_values,
    values_from_bytes,
)
from monoculture.core.psi_crypto import (
    NONCE_SIZE,
    POINT_SIZE,
    TAG_SIZE,
    BlindingKey,
    TagOpener,
    TagSealer,
    random_permutation,
    split_points,
    split_tags,
)
from monoculture.core.wire import ListAddress, chunk_content

SEED = os.urandom(32)
ADDRESS = ListAddress("r-1", "acme", 1)


def _records(size: int) -> CompanyRecords:
    failed = np.array([i % 3 == 0 for i in range(size)], dtype=np.uint8)
    return CompanyRecords(IdColumn.from_strings(f"id-{i}" for i in range(size)), failed, size)


def _sent(outgoing: ListInTransit, chunk_elements: int = 16) -> tuple[list[bytes], list[bytes]]:
    """What leaves the company, in the order it leaves (open chunks)."""
    points, tags = [], []
    for chunk in outgoing_chunks(ADDRESS, "globex", outgoing, None, chunk_elements):
        points += chunk_content(chunk)
        tags += split_tags(chunk.tags)
    return points, tags


@pytest.fixture(scope="module")
def pool():
    pool = BlindingPool(2)
    yield pool
    pool.close()


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "worker-processes"])
def test_a_relay_sends_each_element_reblinded_at_its_shuffled_place(monkeypatch, pool, workers) -> None:
    monkeypatch.setattr(company, "BLIND_BATCH", 7)  # many batches, re-blinded in place
    received_points = BlindingKey.fresh().hash_and_blind([f"id-{i}" for i in range(60)])
    received_tags = [i.to_bytes(TAG_SIZE, "big") for i in range(60)]
    incoming = ListInTransit(bytearray(b"".join(received_points)), bytearray(b"".join(received_tags)))
    key = BlindingKey.fresh()
    label = shuffle_label("acme", 1)
    outgoing = relay_list(incoming, key, OperationCounts(), seed=SEED, label=label,
                          blinder=pool if workers else INLINE)  # fmt: skip
    assert len(incoming) == 0  # the received buffers were taken, not copied
    order = random_permutation(60, SEED, label).tolist()
    points, tags = _sent(outgoing)
    assert points == key.reblind([received_points[j] for j in order])
    assert tags == [received_tags[j] for j in order]


def test_a_restarted_relay_sends_the_same_bytes() -> None:
    points = b"".join(BlindingKey.fresh().hash_and_blind([f"id-{i}" for i in range(40)]))
    tags = os.urandom(40 * TAG_SIZE)
    key = BlindingKey.fresh()

    def relay(seed: bytes | None) -> tuple[list[bytes], list[bytes]]:
        incoming = ListInTransit(bytearray(points), bytearray(tags))
        return _sent(relay_list(incoming, key, OperationCounts(), seed=seed))

    assert relay(SEED) == relay(SEED)
    unseeded = relay(None)  # a fresh shuffle from the OS
    assert sorted(unseeded[0]) == sorted(relay(SEED)[0]) and unseeded != relay(SEED)


def test_hop_zero_loads_once_and_seals_each_masked_value_at_its_sent_position() -> None:
    """v2 (was: ..._seals_each_bit_at_its_sent_position): a tag opens to a masked value, not to the
    bit, so the bit at each sent position is checked the only way it can be read: acme's value
    there plus the other companies' masked values of the same id decodes to the right pattern,
    acme's lane holding that element's failure bit. Acme's values alone, or summed with the
    others' values of other ids (one position off), decode to nothing."""
    roster = ("globex", "acme", "initech")  # acme in the middle lane
    keys = round_pair_keys("r-1", roster)
    records = _records(50)
    loads = []

    def load() -> CompanyRecords:
        loads.append(1)
        return records

    key, opener = BlindingKey.fresh(), TagOpener()
    sealer = TagSealer("r-1", "acme", opener.public_key)
    counts = OperationCounts()
    masking = Masking(roster.index("acme"), len(roster), keys["acme"])
    outgoing = blind_own_list(load, key, sealer, counts, masking, seed=SEED, owner="acme")
    assert loads == [1]
    assert (counts.hash_to_curve, counts.multiplications) == (50, 50)
    order = random_permutation(50, SEED, shuffle_label("acme", 0)).tolist()
    sent_ids = [records.ids[j] for j in order]
    points, tags = _sent(outgoing)
    assert points == key.hash_and_blind(sent_ids)
    assert [int.from_bytes(t[:NONCE_SIZE], "big") for t in tags] == list(range(50))
    acme = values_from_bytes(opener.opener_for("r-1", "acme", sealer.public_key).open(tags).tobytes())
    u = id_digests(sent_ids)
    rng = np.random.default_rng(7)  # the other companies' bits: test data only
    other_bits = {name: rng.integers(0, 2, 50) for name in ("globex", "initech")}
    others = [
        values_from_bytes(masked_values(roster.index(name), keys[name], u, bits))
        for name, bits in other_bits.items()
    ]
    patterns, codes, ok = decode_sums(add_values(add_values(acme, others[0]), others[1]), len(roster))
    assert ok.all() and (codes == 0).all()
    acme_bits = records.failed[order].astype(np.int64)
    assert acme_bits.any() and not acme_bits.all()  # both bits occur
    assert patterns.tolist() == (other_bits["globex"] << 2 | acme_bits << 1 | other_bits["initech"]).tolist()
    assert not decode_sums(acme, len(roster))[2].any()  # a value alone is masked
    shifted = add_values(np.roll(acme, 1, axis=0), add_values(others[0], others[1]))
    assert not decode_sums(shifted, len(roster))[2].any()  # another id's masks do not cancel


def test_a_list_in_transit_counts_points() -> None:
    points = b"".join(BlindingKey.fresh().hash_and_blind(["a", "b", "c"]))
    held = ListInTransit(bytearray(points), bytearray(3 * TAG_SIZE))
    assert len(held) == 3 and split_points(bytes(held.points)) == split_points(points)
    assert len(points) == 3 * POINT_SIZE


class _Miscounting:
    """A blinder that returns one point too many or too few (a bug the collector must catch)."""

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def hash_and_blind(self, key, batches):
        for batch in batches:
            yield b"\x02" * POINT_SIZE * (len(batch) + self.extra)

    def reblind(self, key, batches):
        return self.hash_and_blind(key, batches)


@pytest.mark.parametrize("extra", [1, -1])
def test_a_blinder_returning_the_wrong_number_of_points_is_caught(extra: int) -> None:
    incoming = ListInTransit(bytearray(b"\x02" * POINT_SIZE * 5), bytearray(5 * TAG_SIZE))
    with pytest.raises(ProtocolError, match="blinding returned"):
        relay_list(incoming, BlindingKey.fresh(), OperationCounts(), blinder=_Miscounting(extra))
