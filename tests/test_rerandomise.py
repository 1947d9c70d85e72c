"""Re-randomised failure tags (core/rerandomise.py, issue 12): exact, tamper-evident, and
unlinkable by the coordinator together with a list's owner.

The linking attack is played in full: the coordinator holds every final list and its own
keys; the owner knows its ids, its failure bits, its pair keys and every tag it sent at hop 0.
On masked tags (no re-randomisation) the pair links every one of the owner's ids to its final
token; with re-randomised tags it links none."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.bindings as sodium
import numpy as np
import pytest
from conftest import EXAMPLES

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.client.company import Masking, chunk_has_invalid_points
from monoculture.client.workers import BlindingPool
from monoculture.core import rerandomise as rr
from monoculture.core.dataset import CompanyRecords, IdColumn, InputSpec, load_records
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import id_digests
from monoculture.core.psi_crypto import POINT_SIZE, BlindingKey, InvalidPoint, encode_points
from monoculture.research.inprocess import (
    ObservedRound,
    observed_round_in_process,
    run_grouped_round_in_process,
    run_round_in_process,
)
from monoculture.v1 import monoculture_pb2 as pb

APIS = ("google", "microsoft", "ibm")
NOT_A_POINT = (2).to_bytes(32, "little")  # y = 2: (y^2 - 1) / (d y^2 + 1) has no square root


def _records(outcomes: dict[str, int]) -> CompanyRecords:
    failed = np.array(list(outcomes.values()), dtype=np.uint8)
    return CompanyRecords(IdColumn.from_strings(outcomes), failed, len(outcomes))


def _real(count: int = 150) -> list[tuple[str, CompanyRecords]]:
    """The first `count` digit clips of three real APIs, each company missing a different few."""
    out = []
    for at, api in enumerate(APIS):
        real = load_records(InputSpec(EXAMPLES / "digit" / f"{api}.csv")).as_mapping()
        held = [x for n, x in enumerate(sorted(real)[:count]) if n % 7 != at]
        out.append((api, _records({x: real[x] for x in held})))
    return out


def _outcomes(companies: list[tuple[str, CompanyRecords]]) -> list[dict[str, int]]:
    return [records.as_mapping() for _, records in companies]


# ------------------------------------------------------------------ exact


@pytest.mark.parametrize("k", [2, 3, 5])
def test_rerandomised_round_equals_plaintext(k: int) -> None:
    rng = np.random.default_rng(k)
    population = [f"person-{n}" for n in range(90)]
    companies = []
    for i in range(k):
        held = [x for x in population if rng.random() < 0.85]
        companies.append((f"c{i}", _records({x: int(rng.random() < 0.7) for x in held})))
    table = run_round_in_process(companies, chunk_elements=17, rerandomise=True)
    assert table == plaintext_table([n for n, _ in companies], _outcomes(companies))
    assert table.counts[-1] > 0  # some individuals failed by every company


def test_sixteen_companies_with_groups_rerandomised(tmp_path: Path) -> None:
    """k = 16 on real data with google's speakers as groups: the table of valid sums holds
    2^16 x 4 points, and every shared individual's 16 ciphertexts decrypt into it."""
    from monoculture.analysis.groups import plaintext_group_tables

    speakers = load_records(InputSpec(EXAMPLES / "digit-speaker" / "google.csv", group_column="speaker"),
                            groups=True)  # fmt: skip
    assert speakers.groups is not None
    group_of = {
        speakers.ids[i]: speakers.groups.labels[speakers.groups.codes[i]] for i in range(len(speakers))
    }
    rng = np.random.default_rng(1616)
    records, outcomes = [], []
    for i in range(16):
        real = load_records(InputSpec(EXAMPLES / "digit" / f"{APIS[i % 3]}.csv")).as_mapping()
        held = [x for x in sorted(real)[:60] if rng.random() < 0.95]
        path = tmp_path / f"c{i:02d}.csv"
        path.write_text("id,failed,speaker\n" + "".join(f"{x},{real[x]},{group_of[x]}\n" for x in held))
        records.append((f"c{i:02d}", load_records(InputSpec(path, group_column="speaker"), groups=i == 4)))
        outcomes.append({x: real[x] for x in held})
    labels = sorted(set(group_of.values()))
    counted = run_grouped_round_in_process(records, "c04", labels, chunk_elements=23, rerandomise=True)
    names = [name for name, _ in records]
    assert counted.table == plaintext_table(names, outcomes)
    assert counted.groups == plaintext_group_tables(names, outcomes, "c04", group_of, labels)
    assert sum(counted.table.counts) > 10


# ------------------------------------------------------------------ the linking attack


def _owner_view(round_: ObservedRound, owner: str, records: CompanyRecords) -> dict[bytes, str]:
    """What the owner can compute for each of its ids: e_o(x)*B, its plaintext at hop 0."""
    masking = round_.masking[owner]
    ids = list(records.ids)
    values = rr.exponent_values(masking.position, masking.pair_keys, id_digests(ids), records.failed)
    return {rr.times_base(v): x for v, x in zip(values, ids, strict=True)}


def _plaintexts(round_: ObservedRound, owner: str) -> list[bytes]:
    """The coordinator decrypts every final tag of `owner`'s list on its own: P = C2 - y*C1."""
    key = rr.CoordinatorKey(round_.tag_opener.private_bytes())
    secret = key._secret  # the coordinator's own key: this test plays the coordinator
    out = []
    for row in round_.finals[owner].tags:
        c1, c2 = row[: rr.POINT_BYTES].tobytes(), row[rr.POINT_BYTES :].tobytes()
        out.append(sodium.crypto_core_ed25519_sub(c2, sodium.crypto_scalarmult_ed25519_noclamp(secret, c1)))
    return out


def test_masked_tags_let_the_coordinator_and_owner_link_every_id() -> None:
    """The control: without re-randomisation a tag's bytes survive the ring, so the owner's
    hop-0 tags are found unchanged beside the final tokens (what re-randomisation removes)."""
    companies = _real()
    round_ = observed_round_in_process(companies, rerandomise=False)
    owner, size = APIS[0], len(companies[0][1])
    sent = round_.sent_at_hop_0[owner]
    width = len(sent) // size
    hop0 = {sent[at : at + width] for at in range(0, len(sent), width)}
    finals = [row.tobytes() for row in round_.finals[owner].tags]
    assert sum(tag in hop0 for tag in finals) == size


def test_rerandomised_tags_link_no_id_for_the_coordinator_and_owner() -> None:
    companies = _real()
    round_ = observed_round_in_process(companies, rerandomise=True)
    assert round_.counts.table == plaintext_table(list(APIS), _outcomes(companies))
    for position, (owner, records) in enumerate(companies):
        sent = round_.sent_at_hop_0[owner]
        hop0 = {sent[at : at + rr.ELGAMAL_TAG_SIZE] for at in range(0, len(sent), rr.ELGAMAL_TAG_SIZE)}
        finals = [row.tobytes() for row in round_.finals[owner].tags]
        assert len(finals) == len(records)
        # 1. no tag's bytes (nor either half) survive the ring
        halves = {t[: rr.POINT_BYTES] for t in hop0} | {t[rr.POINT_BYTES :] for t in hop0}
        assert not any(
            t in hop0 or t[: rr.POINT_BYTES] in halves or t[rr.POINT_BYTES :] in halves for t in finals
        )
        # 2. the plaintexts: the coordinator decrypts each final tag, the owner computes e_o(x)*B
        guesses = _owner_view(round_, owner, records)
        plaintexts = _plaintexts(round_, owner)
        assert not set(plaintexts) & set(guesses)
        # 3. ... and it is the last relay's token mask that hides them: with the mask taken off
        # (which needs a pair key of the last relay with a third company), every id links.
        last = round_.masking[APIS[(position - 1) % 3]]
        tokens = round_.finals[owner].tokens
        shifts = rr.token_masks(last.position, last.pair_keys, tokens, POINT_SIZE)
        unmasked = [
            sodium.crypto_core_ed25519_sub(p, rr.times_base(t))
            for p, t in zip(plaintexts, shifts, strict=True)
        ]
        linked = {guesses[p] for p in unmasked if p in guesses}
        assert len(linked) == len(records)


def test_non_shared_plaintexts_carry_no_lane() -> None:
    """A tag of a token not held by every company decrypts, alone, to (e + t)*B: never the
    point of a bare lane value (a failure bit in the clear would be one of those)."""
    companies = _real()
    round_ = observed_round_in_process(companies, rerandomise=True)
    lanes = {rr.times_base(v << (2 * j)) for v in (0, 1) for j in range(3)}
    seen: set[bytes] = set()
    for owner, _ in companies:
        plaintexts = _plaintexts(round_, owner)
        assert not set(plaintexts) & lanes
        seen |= set(plaintexts)
    assert len(seen) == sum(len(r) for _, r in companies)  # all distinct: no tag repeats a value


# ------------------------------------------------------------------ tampering


def _three_party_tags(bits: np.ndarray) -> tuple[rr.CoordinatorKey, list[bytes], list[Masking], bytes]:
    """The k = 3 final tags of n shared individuals, built from the core functions (no ring)."""
    n = bits.shape[1]
    key = rr.CoordinatorKey(os.urandom(32))
    pair = {frozenset((i, j)): os.urandom(32) for i in range(3) for j in range(3) if i < j}
    masking = [Masking(i, 3, {j: pair[frozenset((i, j))] for j in range(3) if j != i}) for i in range(3)]
    u = id_digests([f"x{n}" for n in range(n)])
    tokens = b"".join(os.urandom(POINT_SIZE) for _ in range(n))
    columns = []
    for i in range(3):
        values = rr.exponent_values(i, masking[i].pair_keys, u, bits[i])
        tags = rr.encrypt(key.public_key, rr.scalars(values), rr.scalars(rr.randomisers(None, b"", n)))
        shifts = rr.scalars(rr.token_masks(i, masking[i].pair_keys, tokens, POINT_SIZE))
        columns.append(rr.rerandomise(key.public_key, tags, rr.scalars(rr.randomisers(None, b"", n)), shifts))
    return key, columns, masking, tokens


def test_swap_move_replay_and_lane_shift_fail_the_sum() -> None:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, size=(3, 40))
    key, columns, _, _ = _three_party_tags(bits)
    table = rr.SumTable(3)
    patterns, _, bad = key.decrypt_sums(columns, table)
    assert bad == 0 and patterns == [int(b[0]) * 4 + int(b[1]) * 2 + int(b[2]) for b in bits.T]
    width = rr.ELGAMAL_TAG_SIZE
    swapped = bytearray(columns[1])
    swapped[:width], swapped[width : 2 * width] = columns[1][width : 2 * width], columns[1][:width]
    assert key.decrypt_sums([columns[0], bytes(swapped), columns[2]], table)[2] == 2
    # moved: a tag of one list in place of another list's tag of the same individual
    assert key.decrypt_sums([columns[0], columns[0], columns[2]], table)[2] == 40
    # replayed from another round (other keys, same people, same bits)
    _, other, _, _ = _three_party_tags(bits)
    assert key.decrypt_sums([columns[0], other[1], columns[2]], table)[2] == 40
    # company 2 adds +1 to company 1's lane (4^(k-1-1) = 4): caught exactly where that bit is 1
    shifted = bytearray(columns[1])
    for n in range(40):
        c2 = shifted[n * width + rr.POINT_BYTES : (n + 1) * width]
        shifted[n * width + rr.POINT_BYTES : (n + 1) * width] = sodium.crypto_core_ed25519_add(
            bytes(c2), rr.times_base(4)
        )
    caught = key.decrypt_sums([columns[0], bytes(shifted), columns[2]], table)[2]
    assert caught == int(bits[1].sum())


def test_a_tag_that_is_not_a_point_is_its_senders_fault() -> None:
    key = rr.CoordinatorKey(os.urandom(32))
    good = rr.encrypt(key.public_key, rr.scalars([5, 6]), rr.scalars(rr.randomisers(None, b"", 2)))
    bad = good[: rr.POINT_BYTES] + NOT_A_POINT + good[rr.ELGAMAL_TAG_SIZE :]
    assert rr.tags_decode(good) and not rr.tags_decode(bad)
    with pytest.raises(InvalidPoint):
        rr.rerandomise(key.public_key, bad, rr.scalars([1, 2]))
    points = [rr_point_p256() for _ in range(2)]
    chunk = pb.ListChunk(chunk_elements=2, points=encode_points(points), tags=bad)
    assert chunk_has_invalid_points(chunk, rerandomise=True)
    fine = pb.ListChunk(chunk_elements=2, points=encode_points(points), tags=good)
    assert not chunk_has_invalid_points(fine, rerandomise=True)


def rr_point_p256() -> bytes:
    """A valid blinded point (P-256, compressed), as the tokens are."""
    return BlindingKey.fresh().hash_and_blind([os.urandom(8).hex()])[0]


def test_the_worker_pool_encrypts_and_rerandomises_as_inline() -> None:
    key = rr.CoordinatorKey(os.urandom(32))
    values = rr.scalars(range(1, 41))
    randomness = rr.scalars(rr.randomisers(b"s" * 32, b"label", 40))
    pool = BlindingPool(2)
    try:
        halves = [(values[:640], randomness[:640]), (values[640:], randomness[640:])]
        pooled = b"".join(pool.encrypt(key.public_key, iter(halves)))
        assert pooled == rr.encrypt(key.public_key, values, randomness)
        again = b"".join(pool.rerandomise(key.public_key, iter([(pooled, randomness, b"")])))
        assert again == rr.rerandomise(key.public_key, pooled, randomness)
        broken = NOT_A_POINT + pooled[32:]
        with pytest.raises(InvalidPoint):
            list(pool.rerandomise(key.public_key, iter([(broken, randomness, b"")])))
        # the pool drained the failed run: the next one is answered correctly
        assert b"".join(pool.encrypt(key.public_key, iter(halves))) == pooled
    finally:
        pool.close()


def test_randomness_from_the_round_seed_is_the_same_on_a_restart() -> None:
    assert rr.randomisers(b"k" * 32, b"a|1", 5) == rr.randomisers(b"k" * 32, b"a|1", 5)
    assert rr.randomisers(b"k" * 32, b"a|1", 5) != rr.randomisers(b"k" * 32, b"a|2", 5)
    assert rr.randomisers(None, b"", 5) != rr.randomisers(None, b"", 5)
    assert all(0 <= s < rr.GROUP_ORDER for s in rr.randomisers(None, b"", 50))


def test_bad_round_keys_and_oversized_tables_are_refused() -> None:
    small_order = bytes(32)  # (0, -1)... any encoding of a small-order point is refused
    for key in (small_order, rr.IDENTITY, b"\x01" * 31, os.urandom(33)):
        with pytest.raises(ProtocolError):
            rr.check_public_key(key)
    rr.check_public_key(rr.CoordinatorKey(os.urandom(32)).public_key)
    rr.check_sum_table(16, 16)
    with pytest.raises(ProtocolError, match="valid sums"):
        rr.check_sum_table(16, 17)


def test_separate_processes_with_rerandomised_tags_equal_plaintext(tmp_path: Path) -> None:
    """The option end to end: real daemons over mTLS, the worker pool, sealed relays, the
    coordinator's sum table; the result is the plaintext one."""
    from monoculture.research.simulate import CompanyInput, run_round

    companies = [CompanyInput(api, InputSpec(EXAMPLES / "digit" / f"{api}.csv")) for api in APIS]
    run = run_round(companies, tmp_path, timeout=120, rerandomise=True)
    outcomes = [load_records(c.spec).as_mapping() for c in companies]
    expected = result_dict(plaintext_table(list(APIS), outcomes))["pattern_counts"]
    assert run.result["pattern_counts"] == expected and sum(expected.values()) > 100


TORSION_2 = (2**255 - 19 - 1).to_bytes(32, "little")  # (0, -1): the point of order 2


def test_an_owners_torsion_mark_is_refused_by_the_next_relay() -> None:
    """Review of 31cb398: libsodium's addition accepts a point with a small-order component, so
    an owner could mark its tags (8 x 8 classes) and honest relays would carry the mark to the
    coordinator. Every relay now checks every point it receives; the mark is its sender's fault."""
    key = rr.CoordinatorKey(os.urandom(32))
    tag = rr.encrypt(key.public_key, rr.scalars([7]), rr.scalars(rr.randomisers(None, b"", 1)))
    marked = tag[: rr.POINT_BYTES] + sodium.crypto_core_ed25519_add(tag[rr.POINT_BYTES :], TORSION_2)
    assert sodium.crypto_core_ed25519_add(marked[rr.POINT_BYTES :], rr.IDENTITY)  # it decodes
    assert rr.tags_decode(tag) and not rr.tags_decode(marked)
    with pytest.raises(InvalidPoint, match="prime-order"):
        rr.rerandomise(key.public_key, marked, rr.scalars([3]))
    points = [rr_point_p256()]
    assert chunk_has_invalid_points(
        pb.ListChunk(chunk_elements=1, points=encode_points(points), tags=marked), True
    )


def test_a_last_relays_torsion_is_named_by_the_coordinator() -> None:
    from monoculture.coordinator.counting import FinalList, count_rerandomised

    bits = np.random.default_rng(9).integers(0, 2, size=(3, 12))
    key, columns, _, _ = _three_party_tags(bits)
    tokens = b"".join(rr_point_p256() for _ in range(12))
    roster = ("alpha", "beta", "gamma")
    counted = count_rerandomised(roster, [FinalList(o, tokens, np.frombuffer(c, np.uint8).reshape(12, -1))
                                          for o, c in zip(roster, columns, strict=True)], key)  # fmt: skip
    assert counted.table.counts == tuple(
        sum(1 for b in bits.T if int(b[0]) * 4 + int(b[1]) * 2 + int(b[2]) == p) for p in range(8)
    )
    marked = bytearray(columns[1])
    marked[rr.POINT_BYTES : rr.ELGAMAL_TAG_SIZE] = sodium.crypto_core_ed25519_add(
        bytes(marked[rr.POINT_BYTES : rr.ELGAMAL_TAG_SIZE]), TORSION_2
    )
    finals = [FinalList(o, tokens, np.frombuffer(bytes(c), np.uint8).reshape(12, -1))
              for o, c in zip(roster, [columns[0], marked, columns[2]], strict=True)]  # fmt: skip
    with pytest.raises(ProtocolError, match="prime-order") as caught:
        count_rerandomised(roster, finals, key)
    assert caught.value.where == "alpha"  # the last relay of beta's list (its ring predecessor)


def test_a_torsion_point_on_a_token_no_one_else_holds_is_named_all_the_same() -> None:
    """The coordinator used to check the points of failed sums only, so whether a last relay's
    mark failed the round told it whether the marked token was shared. Every point of every final
    list is checked now: a mark on a token in one list alone names the last relay the same way."""
    from monoculture.coordinator.counting import FinalList, count_rerandomised

    bits = np.random.default_rng(9).integers(0, 2, size=(3, 12))
    key, columns, _, _ = _three_party_tags(bits)
    tokens = b"".join(rr_point_p256() for _ in range(12))
    roster = ("alpha", "beta", "gamma")
    lonely = rr.encrypt(key.public_key, rr.scalars([5]), rr.scalars(rr.randomisers(None, b"x", 1)))
    marked = lonely[: rr.POINT_BYTES] + sodium.crypto_core_ed25519_add(lonely[rr.POINT_BYTES :], TORSION_2)
    extra = {"beta": (rr_point_p256(), marked)}  # a token only beta's final list holds

    def finals(with_mark: bool) -> list[FinalList]:
        out = []
        for owner, column in zip(roster, columns, strict=True):
            add_token, add_tag = extra[owner] if with_mark and owner in extra else (b"", b"")
            tags = np.frombuffer(bytes(column) + add_tag, np.uint8).reshape(-1, rr.ELGAMAL_TAG_SIZE)
            out.append(FinalList(owner, tokens + add_token, tags))
        return out

    assert count_rerandomised(roster, finals(False), key).undecodable == 0
    with pytest.raises(ProtocolError, match="prime-order") as caught:
        count_rerandomised(roster, finals(True), key)
    assert caught.value.where == "alpha"


def test_an_undecodable_sum_is_counted_not_failed() -> None:
    """A ciphertext replaced by a valid one of another value: the sum of that token is not in the
    table of valid sums. It is counted apart (`undecodable`), the rest of the table exact."""
    from monoculture.coordinator.counting import FinalList, count_rerandomised

    bits = np.random.default_rng(9).integers(0, 2, size=(3, 12))
    key, columns, _, _ = _three_party_tags(bits)
    tokens = b"".join(rr_point_p256() for _ in range(12))
    roster = ("alpha", "beta", "gamma")
    shifted = bytearray(columns[2])
    shifted[: rr.ELGAMAL_TAG_SIZE] = rr.rerandomise(
        key.public_key, bytes(shifted[: rr.ELGAMAL_TAG_SIZE]), rr.scalars([3]), rr.scalars([2 * 4**0])
    )  # 2 more in gamma's lane of token 0
    finals = [FinalList(o, tokens, np.frombuffer(bytes(c), np.uint8).reshape(12, -1))
              for o, c in zip(roster, [columns[0], columns[1], shifted], strict=True)]  # fmt: skip
    counted = count_rerandomised(roster, finals, key)
    assert counted.undecodable == 1
    expected = [
        sum(1 for b in bits.T[1:] if int(b[0]) * 4 + int(b[1]) * 2 + int(b[2]) == p) for p in range(8)
    ]
    assert list(counted.table.counts) == expected


def test_a_company_can_require_rerandomised_tags(tmp_path: Path) -> None:
    """Review of 31cb398: the option protects against the coordinator, which opens the rounds; a
    company that needs it says so ([client] require_rerandomised_tags) and refuses rounds without
    it, and rounds of two, before anything is sent. The daemons' round with the option is exact."""

    from support.harness import Harness

    from monoculture.core.protocol import RoundPhase

    population = {
        "alpha": [(f"p{i}", i % 2) for i in range(40)],
        "beta": [(f"p{i}", i % 3 == 0) for i in range(10, 50)],
        "gamma": [(f"p{i}", i % 5 == 0) for i in range(5, 45)],
    }
    harness = Harness(tmp_path, {n: [(x, int(f)) for x, f in rows] for n, rows in population.items()})
    try:
        harness.reconfigure("beta", require_rerandomised_tags=True)
        plain = harness.open_round()
        assert harness.run(plain) == RoundPhase.FAILED
        assert "require_rerandomised_tags" in harness.status(plain).failure_reason
        pair = harness.open_round(companies=["alpha", "beta"], rerandomise=True)
        assert harness.run(pair) == RoundPhase.FAILED
        assert "two companies" in harness.status(pair).failure_reason
        good = harness.open_round(rerandomise=True)
        assert harness.run(good) == RoundPhase.COMPLETE
        outcomes = [{x: int(f) for x, f in rows} for rows in population.values()]
        expected = result_dict(plaintext_table(list(population), outcomes))["pattern_counts"]
        assert harness.result(good)["pattern_counts"] == expected
    finally:
        harness.close()


def test_decryption_over_threads_equals_one_thread() -> None:
    bits = np.random.default_rng(12).integers(0, 2, size=(3, 37))
    key, columns, _, _ = _three_party_tags(bits)
    broken = bytearray(columns[2])
    broken[rr.POINT_BYTES : rr.ELGAMAL_TAG_SIZE] = rr.times_base(1)  # one sum that fails
    columns = [columns[0], columns[1], bytes(broken)]
    table = rr.SumTable(3)
    one = key.decrypt_sums(columns, table, threads=1)
    assert one[2] == 1 and one[0][0] == -1
    for threads in (2, 3, 5, 64):
        assert key.decrypt_sums(columns, table, threads=threads) == one
