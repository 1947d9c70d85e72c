"""Known-answer vectors (tests/vectors/, see PROVENANCE.md there) for the failure tags,
relay sealing, the wire framing of points, seeded shuffles, the result JSON, the
masked tags of v2 (core/masks.py) and the re-randomised tags of v2 (core/rerandomise.py).

Each vector is reproduced twice: by the code under test, and by the independent
implementation in tests/vectors/independent.py (RFC 5869 HKDF over hmac, bare
`cryptography` primitives, protobuf by hand, exact rationals, edwards25519 in pure
Python), which imports nothing from monoculture. So the vectors, the independent code and
the code under test agree, and a change to any of these formats fails here even when every
round trip still works.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from fractions import Fraction
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from vectors import generate
from vectors import independent as ind

from monoculture.analysis import metrics
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable
from monoculture.client import company
from monoculture.core import masks, psi_crypto, relay, rerandomise
from monoculture.core.errors import ProtocolError
from monoculture.core.psi_crypto import (
    POINT_SIZE,
    TAG_SIZE,
    VALUE_SIZE,
    TagOpener,
    TagSealer,
    decode_points,
    random_permutation,
    split_tags,
)
from monoculture.core.relay import RelayKeys, RelayPeer, chunk_statement, key_statement
from monoculture.core.wire import ListAddress, list_chunks
from monoculture.v1 import monoculture_pb2 as pb

VECTORS = Path(__file__).parent / "vectors"


@cache
def _text(name: str) -> str:
    return (VECTORS / name).read_text()


def load(name: str) -> dict[str, Any]:
    return json.loads(_text(name))


def result_schema() -> dict[str, Any]:
    """The result JSON's schema as the package ships it (monoculture.research.result)."""
    from monoculture.research.result import result_schema as shipped

    return shipped()


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON text: 1398 and 1398.0, or true and 1, differ."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ================================================================== the code under test


def _values(case: dict[str, Any]) -> npt.NDArray[np.uint8]:
    """The case's whole list of values: the pinned ones where pinned, all-zero elsewhere."""
    values = np.zeros((case["list_length"], VALUE_SIZE), dtype=np.uint8)
    for tag in case["tags"]:
        values[tag["position"]] = np.frombuffer(h(tag["value"]), dtype=np.uint8)
    return values


def _check_tag_case_with_code(case: dict[str, Any], labels: list[str]) -> None:
    """Seal the case's values with TagSealer (the bytes must be the pinned tags), open the pinned
    tags with CompanyTags.open (to the pinned values) and refuse every must_reject tag."""
    name = case["name"]
    opener = TagOpener(h(case["coordinator_private_key"]))
    assert opener.public_key.hex() == case["coordinator_public_key"], name
    sealer = TagSealer(
        case["round_id"],
        case["company"],
        opener.public_key,
        h(case["company_private_key"]),
        group_labels=labels,
    )
    assert sealer.public_key.hex() == case["company_public_key"], name
    values = _values(case)
    sealed = sealer.seal(values)
    assert len(sealed) == case["list_length"] * TAG_SIZE == case["list_length"] * 44, name
    for tag in case["tags"]:
        at = tag["position"] * TAG_SIZE
        assert sealed[at : at + TAG_SIZE].hex() == tag["tag"], f"{name}: position {tag['position']}"
    if "sealed_list" in case:
        assert sealed.hex() == case["sealed_list"], name
        assert sealer.seal(values.tobytes()) == sealed, name  # values as bytes seal the same
    tags = opener.opener_for(case["round_id"], case["company"], sealer.public_key, labels)
    assert tags.group_count == len(labels), name
    pinned = case["tags"] + case.get("open_only", [])
    opened = tags.open([h(t["tag"]) for t in pinned])
    assert opened.dtype == np.uint8 and opened.shape == (len(pinned), VALUE_SIZE), name
    assert [bytes(v).hex() for v in opened] == [t["value"] for t in pinned], name
    for reject in case.get("must_reject", []):
        with pytest.raises(ProtocolError):
            tags.open([h(reject["tag"])])


def check_failure_tags_with_code(data: dict[str, Any]) -> None:
    for case in data["cases"]:
        _check_tag_case_with_code(case, [])
    for case in data.get("grouped_cases", []):
        check_grouped_tags_with_code(case)


def check_grouped_tags_with_code(case: dict[str, Any]) -> None:
    """The groups company's tags: the same format under the AAD naming the round's labels (the
    group code is in the value); an opener without the labels refuses every one of them."""
    name, labels = case["name"], case["group_labels"]
    assert psi_crypto.group_labels_digest(labels).hex() == case["group_labels_digest"], name
    _check_tag_case_with_code(case, labels)
    opener = TagOpener(h(case["coordinator_private_key"]))
    no_groups = opener.opener_for(case["round_id"], case["company"], h(case["company_public_key"]))
    for tag in case["tags"]:  # a grouped tag never opens as a tag of a company without groups
        with pytest.raises(ProtocolError):
            no_groups.open([h(tag["tag"])])


def _peer(party: dict[str, str]) -> RelayPeer:
    return RelayPeer(party["company"], h(party["relay_public_key"]), h(party["tag_public_key"]), b"", b"")


def _header_chunk(chunk: dict[str, Any], sender: str) -> pb.ListChunk:
    points = [h(p) for p in chunk["points"]]
    return pb.ListChunk(
        **chunk["header"], sender=sender, points=psi_crypto.encode_points(points), tags=h(chunk["tags"])
    )


def _whole_list(case: dict[str, Any]) -> bool:
    chunks = case["chunks"]
    return [c["header"]["chunk_index"] for c in chunks] == list(range(chunks[0]["header"]["chunk_count"]))


def check_relay_sealing_with_code(data: dict[str, Any]) -> None:
    for case in data["cases"]:
        name, sender, receiver = case["name"], case["sender"], case["receiver"]
        round_id, owner, hop = case["round_id"], case["list_owner"], case["hop"]
        sender_keys = RelayKeys(h(sender["relay_private_key"]))
        receiver_keys = RelayKeys(h(receiver["relay_private_key"]))
        assert sender_keys.public_key.hex() == sender["relay_public_key"], name
        assert receiver_keys.public_key.hex() == receiver["relay_public_key"], name
        statement = key_statement(
            round_id, sender["company"], sender_keys.public_key, h(sender["tag_public_key"]), case["roster"]
        )
        assert statement.hex() == case["sender_key_statement"], name
        sealer = sender_keys.sealer(_peer(receiver), round_id, sender["company"], owner, hop)
        opener = receiver_keys.opener(_peer(sender), round_id, receiver["company"], owner, hop)
        owner_tag_key = (
            psi_crypto.x25519_key(h(case["owner_tag_private_key"])).public_key().public_bytes_raw()
        )
        owner_tags = TagOpener(h(case["coordinator_tag_private_key"])).opener_for(
            round_id, owner, owner_tag_key
        )
        for chunk in case["chunks"]:
            where = f"{name}: chunk {chunk['header']['chunk_index']}"
            assert psi_crypto.encode_points([h(p) for p in chunk["points"]]).hex() == chunk["points_field"], (
                where
            )
            sealed = sealer.seal(_header_chunk(chunk, sender["company"]))
            assert sealed.sealed.hex() == chunk["sealed"], where
            assert sealed.SerializeToString().hex() == chunk["wire_chunk"], where
            assert chunk_statement(sealed).hex() == chunk["chunk_statement"], where
            opened = opener.open(pb.ListChunk.FromString(h(chunk["wire_chunk"])))
            assert (opened.points.hex(), opened.tags.hex()) == (chunk["points_field"], chunk["tags"]), where
            assert [p.hex() for p in decode_points(opened.points)] == chunk["points"], where
            tags = split_tags(opened.tags)  # real failure tags of the owner's list
            values = owner_tags.open(tags) if tags else np.zeros((0, VALUE_SIZE), dtype=np.uint8)
            assert [bytes(v).hex() for v in values] == chunk["tag_values"], where
        if _whole_list(case):  # the list as wire.list_chunks cuts it seals to the same chunks
            points = b"".join(h(p) for c in case["chunks"] for p in c["points"])
            tags = b"".join(h(c["tags"]) for c in case["chunks"])
            per_chunk = max(1, case["chunks"][0]["header"]["chunk_elements"])
            made = list_chunks(ListAddress(round_id, owner, hop), sender["company"], points, tags, per_chunk)
            wire = [sealer.seal(c).SerializeToString().hex() for c in made]
            assert wire == [c["wire_chunk"] for c in case["chunks"]], name
        for reject in case.get("must_reject", []):
            chunk = pb.ListChunk.FromString(h(case["chunks"][reject["chunk"]]["wire_chunk"]))
            for field, value in reject["header_changes"].items():
                setattr(chunk, field, value)
            with pytest.raises(ProtocolError):
                opener.open(chunk)


def check_points_framing_with_code(data: dict[str, Any]) -> None:
    for case in data["cases"]:
        points = [h(p) for p in case["points"]]
        assert psi_crypto.encode_points(points).hex() == case["encoded"], case["name"]
        assert decode_points(h(case["encoded"])) == points, case["name"]
    for reject in data["must_reject"]:
        with pytest.raises(ProtocolError):
            decode_points(h(reject["encoded"]))


def _permutation_digest(perm: list[int]) -> str:
    return hashlib.sha256(b"".join(i.to_bytes(8, "little") for i in perm)).hexdigest()


def check_shuffle_with_code(data: dict[str, Any]) -> None:
    for case in data["cases"]:
        seed = h(case["seed"])
        if case["owner"] is None:
            perm = random_permutation(case["size"], seed)  # the default label
        else:
            label = company.shuffle_label(case["owner"], case["hop"])
            assert label.hex() == case["label"], case["name"]
            perm = random_permutation(case["size"], seed, label)
        assert perm.dtype == np.int64
        got = perm.tolist()
        if "permutation" in case:
            assert got == case["permutation"], case["name"]
        else:
            assert got[:16] == case["permutation_head"], case["name"]
            assert _permutation_digest(got) == case["permutation_sha256"], case["name"]


def _close(got: Any, expected: Any, tolerance: float, where: str) -> None:
    """`expected` holds "p/q" strings (or None) where `got` holds floats (or None)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            _close(got[key], expected[key], tolerance, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _close(g, e, tolerance, f"{where}[{i}]")
    elif expected is None:
        assert got is None, where
    else:
        assert isinstance(got, float), f"{where}: {got!r} is not a float"
        assert math.isclose(got, float(Fraction(expected)), rel_tol=tolerance), (
            f"{where}: {got} vs {expected}"
        )


def check_result_with_code(data: dict[str, Any]) -> None:
    table = PatternTable(tuple(data["input"]["companies"]), tuple(data["input"]["pattern_counts"]))
    expected = data["expected"]
    result = json.loads(json.dumps(result_dict(table)))
    published = json.loads(json.dumps(release(table, ReleasePolicy())))
    for figures in (result, published):
        for key, value in expected["integer"].items():
            assert same_json(figures[key], value), key
        for key, value in expected["rational"].items():
            _close(figures[key], value, expected["relative_tolerance"], key)
    for key, value in expected["release_default_policy"].items():
        assert same_json(published[key], value), key
    assert not ind.schema_errors(published, result_schema())


def check_masks_with_code(data: dict[str, Any]) -> None:
    """Masked tags (v2): transcript, pairwise keys, confirmations, u(x), masks, lanes, values, sums."""
    for case in data["cases"]:
        name, round_id, roster = case["name"], case["round_id"], case["roster"]
        k, group_count = len(roster), case["group_count"]
        parties = case["parties"]
        signed = [
            RelayPeer(p["company"], h(p["relay_public_key"]), h(p["tag_public_key"]), b"", h(p["signature"]))
            for p in parties
        ]
        transcript = masks.transcript_digest(round_id, roster, reversed(signed), h(case["settings"]))
        assert transcript.hex() == case["transcript_digest"], name
        private = {p["company"]: h(p["relay_private_key"]) for p in parties}
        public = {p["company"]: h(p["relay_public_key"]) for p in parties}
        for party in parties:
            assert (
                psi_crypto.x25519_key(private[party["company"]]).public_key().public_bytes_raw()
                == (public[party["company"]])
            ), name
        for pair in case["pairs"]:
            first, second = pair["first"], pair["second"]
            where = f"{name}: {first}, {second}"
            assert masks.mask_key_info(round_id, second, first, roster).hex() == pair["hkdf_info"], where
            key = masks.pairwise_key(
                private[first], public[second], transcript, round_id, first, second, roster
            )
            assert key.hex() == pair["pair_key"], where
            assert (
                masks.pairwise_key(
                    private[second], public[first], transcript, round_id, second, first, roster
                )
                == key
            ), where
            to_second = masks.key_confirmation(key, transcript, first, second)
            to_first = masks.key_confirmation(key, transcript, second, first)
            assert (to_second.hex(), to_first.hex()) == (
                pair["confirm_first_to_second"],
                pair["confirm_second_to_first"],
            ), where
            assert masks.confirmation_matches(key, transcript, first, second, to_second), where
            assert not masks.confirmation_matches(key, transcript, first, second, to_first), where
        keys = {
            i: masks.pair_keys(
                private[c], c, {n: public[n] for n in roster if n != c}, transcript, round_id, roster
            )
            for i, c in enumerate(roster)
        }
        rows = case["rows"]
        u = masks.id_digests(row["id"] for row in rows)
        assert [bytes(x).hex() for x in u] == [row["u"] for row in rows], name
        groups_at = roster.index(case["groups_from"]) if case["groups_from"] is not None else None
        codes = [row["group_code"] for row in rows]
        total = masks.values_from_ints([0] * len(rows))
        for i in range(k):
            where = f"{name}: company {roster[i]}"
            got_masks = masks.masks(i, keys[i], u)
            assert [f"{m:032x}" for m in masks.values_to_ints(got_masks)] == [r["masks"][i] for r in rows], (
                where
            )
            bits = [row["bits"][i] for row in rows]
            lanes = masks.lane_values(i, k, bits, codes if i == groups_at else None)
            assert [f"{x:032x}" for x in masks.values_to_ints(lanes)] == [r["lanes"][i] for r in rows], where
            blob = masks.masked_values(i, keys[i], u, bits, codes if i == groups_at else None)
            assert blob.hex() == "".join(r["masked_values"][i] for r in rows), where
            total = masks.add_values(total, masks.values_from_bytes(blob))
        assert masks.values_to_bytes(total).hex() == "".join(r["sum"] for r in rows), name
        patterns, decoded, ok = masks.decode_sums(total, k, group_count)
        assert ok.all(), name
        assert patterns.tolist() == [r["pattern"] for r in rows], name
        assert decoded.tolist() == [r["decoded_code"] for r in rows], name
        rejects = masks.values_from_bytes(b"".join(h(r["sum"]) for r in case["must_reject"]))
        assert not masks.decode_sums(rejects, k, group_count)[2].any(), name


def _scalars_hex(values: list[int]) -> list[str]:
    return [rerandomise.scalar(v).hex() for v in values]


def _rr_keys(case: dict[str, Any]) -> Callable[[int], dict[int, bytes]]:
    """Position i's pair keys {j: s_ij} of a masks case of rerandomise.json."""
    keys = {(p["first"], p["second"]): h(p["pair_key"]) for p in case["pair_keys"]}
    assert len(keys) == case["k"] * (case["k"] - 1) // 2
    return lambda i: {j: keys[min(i, j), max(i, j)] for j in range(case["k"]) if j != i}


def check_rerandomise_with_code(data: dict[str, Any]) -> None:
    """Re-randomised tags (v2): the PRF mod L, id and token masks, exponents, randomisers, the
    coordinator key, encryption, a round's lists hop by hop, decryption of the sums, the points
    a relay refuses, and the sum tables."""
    curve = data["curve"]
    assert str(rerandomise.GROUP_ORDER) == curve["group_order"]
    assert rerandomise.times_base(1).hex() == curve["base_point"]
    assert rerandomise.times_base(0).hex() == rerandomise.IDENTITY.hex() == curve["identity"]
    order = rerandomise.GROUP_ORDER
    for case in data["prf"]:
        key, label, block = h(case["pair_key"]), case["label"].encode(), h(case["block"])
        where = f"PRF {case['label']}, block {case['block']}"
        assert [k.hex() for k in rerandomise._block_keys(key, label)] == case["block_keys"], where
        assert _scalars_hex(rerandomise._prf(key, label, block)) == [case["value"]], where
        value = int.from_bytes(h(case["value"]), "little")
        assert value == int(case["prf_bytes"], 16) % order, where
        if "id" in case:  # k = 2: M_0 = +F, M_1 = -F
            u = masks.id_digests([case["id"]])
            assert bytes(u[0]).hex() == case["block"], where
            assert _scalars_hex(rerandomise.id_masks(0, {1: key}, u)) == [case["value"]], where
            assert _scalars_hex(rerandomise.id_masks(1, {0: key}, u)) == _scalars_hex([-value]), where
        if "token" in case:
            token = h(case["token"])
            assert rerandomise.token_blocks(token, POINT_SIZE).hex() == case["block"], where
            assert _scalars_hex(rerandomise.token_masks(0, {1: key}, token, POINT_SIZE)) == [case["value"]], (
                where
            )
            assert _scalars_hex(rerandomise.token_masks(1, {0: key}, token, POINT_SIZE)) == _scalars_hex(
                [-value]
            )
    for case in data["masks"]:
        name, k, rows = case["name"], case["k"], case["rows"]
        own = _rr_keys(case)
        u = masks.id_digests(row["id"] for row in rows)
        assert [bytes(x).hex() for x in u] == [row["u"] for row in rows], name
        tokens = b"".join(h(t["token"]) for t in case["tokens"])
        assert rerandomise.token_blocks(tokens, POINT_SIZE).hex() == "".join(
            t["block"] for t in case["tokens"]
        )
        codes = [row["group_code"] for row in rows]
        for i in range(k):
            where = f"{name}: position {i}"
            group_codes = codes if i == case["groups_from"] else None
            bits = [row["bits"][i] for row in rows]
            got = rerandomise.id_masks(i, own(i), u)
            assert _scalars_hex(got) == [row["id_masks"][i] for row in rows], where
            lanes = masks.values_to_ints(masks.lane_values(i, k, bits, group_codes))
            assert lanes == [row["lanes"][i] for row in rows], where
            exponents = rerandomise.exponent_values(i, own(i), u, bits, group_codes)
            assert _scalars_hex(exponents) == [row["exponents"][i] for row in rows], where
            token_masks = rerandomise.token_masks(i, own(i), tokens, POINT_SIZE)
            assert _scalars_hex(token_masks) == [t["token_masks"][i] for t in case["tokens"]], where
    for case in data["randomisers"]:
        got = rerandomise.randomisers(h(case["seed"]), case["label"].encode(), case["count"])
        assert _scalars_hex(got) == case["values"], case["name"]
    check_rerandomised_round_with_code(data)
    for table_case in data["sum_tables"]:
        table = rerandomise.SumTable(table_case["k"], table_case["group_count"])
        assert len(table) == len(table_case["entries"])
        for entry in table_case["entries"]:
            assert rerandomise.times_base(entry["lanes"]).hex() == entry["point"], entry
            assert table.lookup(h(entry["point"])) == (entry["pattern"], entry["code"]), entry


def check_rerandomised_round_with_code(data: dict[str, Any]) -> None:
    elgamal = data["elgamal"]
    coordinator = rerandomise.CoordinatorKey(h(elgamal["coordinator_tag_private_key"]))
    public_key = coordinator.public_key
    assert public_key.hex() == elgamal["public_key"]
    assert coordinator._secret.hex() == elgamal["secret"]
    rerandomise.check_public_key(public_key)
    cases = elgamal["encrypt"]
    tags = rerandomise.encrypt(
        public_key, b"".join(h(c["value"]) for c in cases), b"".join(h(c["randomness"]) for c in cases)
    )
    assert tags.hex() == "".join(c["tag"] for c in cases)
    ring = elgamal["round"]
    roster, k = ring["roster"], len(ring["roster"])
    case = next(c for c in data["masks"] if c["name"] == ring["masks_case"])
    own, rows = _rr_keys(case), case["rows"]
    u = masks.id_digests(row["id"] for row in rows)
    tokens = b"".join(h(t["token"]) for t in case["tokens"])
    finals = []
    for one_list in ring["lists"]:
        owner = roster.index(one_list["owner"])
        first, *relays = one_list["hops"]
        where = f"list of {one_list['owner']}"
        assert (first["hop"], first["company"]) == (0, one_list["owner"]), where
        assert first["randomiser_label"] == f"{company.shuffle_label(one_list['owner'], 0).decode()}|0"
        values = rerandomise.exponent_values(owner, own(owner), u, [row["bits"][owner] for row in rows])
        assert _scalars_hex(values) == first["values"], where
        randomness = rerandomise.randomisers(
            h(ring["seeds"][first["company"]]), first["randomiser_label"].encode(), len(rows)
        )
        assert _scalars_hex(randomness) == first["randomness"], where
        tags = rerandomise.encrypt(public_key, rerandomise.scalars(values), rerandomise.scalars(randomness))
        assert tags.hex() == first["tags"], f"{where}: hop 0"
        for step in relays:
            hop, relay_at = step["hop"], roster.index(step["company"])
            assert relay_at == (owner + hop) % k, where
            label = f"{company.shuffle_label(one_list['owner'], hop).decode()}|0"
            assert step["randomiser_label"] == label, where
            randomness = rerandomise.randomisers(h(ring["seeds"][step["company"]]), label.encode(), len(rows))
            assert _scalars_hex(randomness) == step["randomness"], f"{where}: hop {hop}"
            shifts = (
                rerandomise.token_masks(relay_at, own(relay_at), tokens, POINT_SIZE) if hop == k - 1 else []
            )
            assert _scalars_hex(shifts) == step["shifts"], f"{where}: hop {hop}"
            tags = rerandomise.rerandomise(
                public_key, tags, rerandomise.scalars(randomness), rerandomise.scalars(shifts)
            )
            assert tags.hex() == step["tags"], f"{where}: hop {hop}"
        assert rerandomise.tags_decode(tags), where
        finals.append(tags)
    table = rerandomise.SumTable(k)
    patterns, codes, bad = coordinator.decrypt_sums(finals, table)
    assert (patterns, codes, bad) == ([s["pattern"] for s in ring["sums"]], [0] * len(rows), 0)
    for total in ring["sums"]:
        assert rerandomise.times_base(total["lanes"]).hex() == total["decrypted"], total["id"]
        assert table.lookup(h(total["decrypted"])) == (total["pattern"], 0), total["id"]
    for reject in ring["must_reject"]:
        patterns, codes, bad = coordinator.decrypt_sums([h(c) for c in reject["columns"]], table)
        assert bad == len(reject["bad_rows"]), reject["why"]
        assert [n for n, p in enumerate(patterns) if p == -1] == reject["bad_rows"], reject["why"]
    base = h(data["curve"]["base_point"])
    for reject in elgamal["must_reject_points"]:
        point = h(reject["point"])
        for tag in (point + base, base + point):
            assert not rerandomise.tags_decode(tag), reject["why"]
            with pytest.raises(rerandomise.InvalidTagPoint):
                rerandomise.rerandomise(public_key, tag, rerandomise.scalar(1))
        with pytest.raises(ProtocolError):
            rerandomise.check_public_key(point)


CODE_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "failure-tags.json": check_failure_tags_with_code,
    "relay-sealing.json": check_relay_sealing_with_code,
    "points-framing.json": check_points_framing_with_code,
    "shuffle.json": check_shuffle_with_code,
    "result-digit.json": check_result_with_code,
    "masks.json": check_masks_with_code,
    "rerandomise.json": check_rerandomise_with_code,
}


@pytest.mark.parametrize("name", sorted(CODE_CHECKS))
def test_code_under_test_reproduces_every_vector(name: str) -> None:
    CODE_CHECKS[name](load(name))


# ================================================================== the independent implementation


def test_independent_hkdf_matches_rfc5869_test_cases() -> None:
    ikm = bytes([0x0B] * 22)
    okm_a1 = ind.hkdf_sha256(ikm, bytes(range(0xF0, 0xFA)), 42, salt=bytes(range(13)))
    assert okm_a1.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )  # RFC 5869 A.1
    assert ind.hkdf_sha256(ikm, b"", 42).hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )  # RFC 5869 A.3: no salt, no info


def test_independent_hkdf_agrees_with_the_cryptography_package() -> None:
    secret = generate.fixed_bytes("hkdf cross-check")
    for info in (b"", b"monoculture/v1 shuffle|", b"x" * 300):
        theirs = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
        assert ind.hkdf_sha256(secret, info) == theirs


def test_rfc7748_keys_give_the_rfc_shared_secret() -> None:
    tags = load("failure-tags.json")["cases"][0]
    relayed = load("relay-sealing.json")["cases"][0]
    assert tags["shared_secret"] == relayed["shared_secret"] == generate.RFC7748_SHARED
    assert ind.x25519_shared(generate.RFC7748_BOB, ind.x25519_public(generate.RFC7748_ALICE)).hex() == (
        generate.RFC7748_SHARED
    )


def _check_tag_case_independently(case: dict[str, Any], aad: bytes) -> bytes:
    """Keys, the pinned tags (sealed from their values and opened back), refusals; the tag key."""
    company_key, coordinator_key = h(case["company_private_key"]), h(case["coordinator_private_key"])
    assert ind.x25519_public(company_key).hex() == case["company_public_key"]
    assert ind.x25519_public(coordinator_key).hex() == case["coordinator_public_key"]
    shared = ind.x25519_shared(coordinator_key, h(case["company_public_key"]))
    assert shared.hex() == case["shared_secret"]
    round_id, name = case["round_id"], case["company"]
    assert ind.tag_key_info(round_id, name).hex() == case["hkdf_info"]
    key = ind.tag_key(shared, round_id, name)
    assert (key.hex(), aad.hex()) == (case["tag_key"], case["aad"])
    for tag in case["tags"] + case.get("open_only", []):
        value = h(tag["value"])
        assert len(value) == 16
        assert tag["nonce"] == ind.nonce(tag["position"]).hex() == tag["tag"][:24]
        assert ind.seal_tag(key, aad, tag["position"], value).hex() == tag["tag"]
        assert len(h(tag["tag"])) == 44  # nonce, the encrypted 16-byte value, the GCM tag
        assert ind.open_value(key, aad, h(tag["tag"])) == value
    if "sealed_list" in case:
        assert len(case["tags"]) == case["list_length"]
        assert "".join(t["tag"] for t in case["tags"]) == case["sealed_list"]
    for reject in case.get("must_reject", []):
        with pytest.raises(ValueError):  # does not authenticate, or not a 16-byte value
            ind.open_value(key, aad, h(reject["tag"]))
    return key


def test_independent_implementation_reproduces_the_failure_tags() -> None:
    data = load("failure-tags.json")
    values = [h(t["value"]) for case in data["cases"] for t in case["tags"] + case.get("open_only", [])]
    assert bytes(16) in values and b"\xff" * 16 in values  # the all-zero and all-0xff values
    for case in data["cases"]:
        assert "group_labels" not in case
        _check_tag_case_independently(case, ind.tag_aad(case["round_id"], case["company"]))


def test_independent_implementation_reproduces_the_grouped_failure_tags() -> None:
    for case in load("failure-tags.json")["grouped_cases"]:
        labels, round_id, name = case["group_labels"], case["round_id"], case["company"]
        assert ind.group_labels_digest(labels).hex() == case["group_labels_digest"]
        key = _check_tag_case_independently(case, ind.group_tag_aad(round_id, name, labels))
        for tag in case["tags"]:
            with pytest.raises(InvalidTag):  # not a tag of a company without groups
                ind.open_tag(key, ind.tag_aad(round_id, name), h(tag["tag"]))


def test_independent_implementation_reproduces_the_relay_sealing() -> None:
    for case in load("relay-sealing.json")["cases"]:
        sender, receiver = case["sender"], case["receiver"]
        for party in (sender, receiver):
            assert ind.x25519_public(h(party["relay_private_key"])).hex() == party["relay_public_key"]
        statement = ind.key_statement(
            case["round_id"],
            sender["company"],
            h(sender["relay_public_key"]),
            h(sender["tag_public_key"]),
            case["roster"],
        )
        assert statement.hex() == case["sender_key_statement"]
        shared = ind.x25519_shared(h(receiver["relay_private_key"]), h(sender["relay_public_key"]))
        assert shared.hex() == case["shared_secret"]
        fields = (case["round_id"], sender["company"], receiver["company"], case["list_owner"], case["hop"])
        assert ind.relay_key_info(*fields).hex() == case["hkdf_info"]
        key = ind.relay_key(shared, *fields)
        assert key.hex() == case["chunk_key"]
        owner, coordinator = h(case["owner_tag_private_key"]), h(case["coordinator_tag_private_key"])
        for party in (sender, receiver):  # the owner's tag key is the one it enrolled with
            if party["company"] == case["list_owner"]:
                assert ind.x25519_public(owner).hex() == party["tag_public_key"]
        owner_shared = ind.x25519_shared(coordinator, ind.x25519_public(owner))
        tag_key = ind.tag_key(owner_shared, case["round_id"], case["list_owner"])
        tag_aad = ind.tag_aad(case["round_id"], case["list_owner"])
        for chunk in case["chunks"]:
            header = chunk["header"]
            assert (header["round_id"], header["list_owner"], header["hop"]) == (fields[0], *fields[3:])
            points_field = ind.psi_request([h(p) for p in chunk["points"]])
            assert points_field.hex() == chunk["points_field"]
            body = ind.list_chunk_body(points_field, h(chunk["tags"]))
            assert body.hex() == chunk["body"]
            aad = ind.chunk_aad(header, sender["company"], receiver["company"])
            assert (aad.hex(), ind.nonce(header["chunk_index"]).hex()) == (chunk["aad"], chunk["nonce"])
            sealed = ind.seal_chunk(key, header["chunk_index"], body, aad)
            assert sealed.hex() == chunk["sealed"]
            assert ind.open_chunk(key, header["chunk_index"], sealed, aad) == body
            wire = ind.list_chunk(header, sender["company"], receiver["company"], sealed)
            assert wire.hex() == chunk["wire_chunk"]
            statement = ind.chunk_statement(header, sender["company"], receiver["company"], sealed)
            assert statement.hex() == chunk["chunk_statement"]
            tags = h(chunk["tags"])  # real failure tags of the owner's list, 44 bytes each
            assert len(tags) == 44 * header["chunk_elements"] == 44 * len(chunk["tag_values"])
            opened = [ind.open_value(tag_key, tag_aad, tags[i : i + 44]) for i in range(0, len(tags), 44)]
            assert [v.hex() for v in opened] == chunk["tag_values"]
        for reject in case.get("must_reject", []):
            chunk = case["chunks"][reject["chunk"]]
            header = {**chunk["header"], **reject["header_changes"]}
            aad = ind.chunk_aad(header, sender["company"], receiver["company"])
            with pytest.raises(InvalidTag):
                ind.open_chunk(key, header["chunk_index"], h(chunk["sealed"]), aad)


def test_independent_implementation_reproduces_the_points_framing() -> None:
    data = load("points-framing.json")
    for case in data["cases"]:
        points = [h(p) for p in case["points"]]
        assert ind.psi_request(points).hex() == case["encoded"]
        assert ind.parse_psi_request(h(case["encoded"])) == points
        assert all(len(p) == 33 and p[0] in (2, 3) for p in points)  # compressed P-256
    for reject in data["must_reject"]:
        try:
            elements = ind.parse_psi_request(h(reject["encoded"]))
        except ValueError:
            continue
        assert any(len(e) != 33 for e in elements), reject["why"]


def test_independent_implementation_reproduces_the_shuffles() -> None:
    for case in load("shuffle.json")["cases"]:
        seed = h(case["seed"])
        label = b"" if case["owner"] is None else ind.shuffle_label(case["owner"], case["hop"])
        assert label.hex() == case["label"]
        assert (b"monoculture/v1 shuffle|" + label).hex() == case["hkdf_info"]
        assert ind.shuffle_key(seed, label).hex() == case["aes_key"]
        keys = ind.shuffle_sort_keys(seed, label, case["size"])
        assert [str(k) for k in keys[:4]] == case["first_sort_keys"]
        perm = ind.permutation(seed, label, case["size"])
        assert sorted(perm) == list(range(case["size"]))
        if "permutation" in case:
            assert perm == case["permutation"]
        else:
            assert perm[:16] == case["permutation_head"]
            assert _permutation_digest(perm) == case["permutation_sha256"]


def test_independent_ctr_keystream_agrees_with_the_cryptography_package() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = generate.fixed_bytes("ctr cross-check")
    theirs = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(136))
    assert ind.aes_ctr_keystream(key, 136) == theirs


def test_independent_implementation_reproduces_the_masked_tags() -> None:
    for case in load("masks.json")["cases"]:
        name, round_id, roster, parties = case["name"], case["round_id"], case["roster"], case["parties"]
        k, group_count = len(roster), case["group_count"]
        transcript = ind.mask_transcript(round_id, roster, parties, h(case["settings"]))
        assert transcript.hex() == case["transcript_digest"], name
        for party in parties:
            assert ind.x25519_public(h(party["relay_private_key"])).hex() == party["relay_public_key"]
        position = {c: i for i, c in enumerate(roster)}
        keys: dict[tuple[int, int], bytes] = {}
        assert len(case["pairs"]) == k * (k - 1) // 2
        for pair in case["pairs"]:
            i, j = position[pair["first"]], position[pair["second"]]
            assert i < j, name  # the earlier in the ring first
            shared = ind.x25519_shared(h(parties[j]["relay_private_key"]), h(parties[i]["relay_public_key"]))
            assert shared.hex() == pair["shared_secret"]
            assert ind.mask_key_info(round_id, roster[i], roster[j]).hex() == pair["hkdf_info"]
            key = ind.mask_key(shared, transcript, round_id, roster[i], roster[j])
            assert key.hex() == pair["pair_key"]
            assert (
                ind.mask_confirmation(key, transcript, roster[i], roster[j]).hex()
                == (pair["confirm_first_to_second"])
            )
            assert (
                ind.mask_confirmation(key, transcript, roster[j], roster[i]).hex()
                == (pair["confirm_second_to_first"])
            )
            keys[i, j] = key
        groups_at = roster.index(case["groups_from"]) if case["groups_from"] is not None else None
        for row in case["rows"]:
            assert row["id"].encode().hex() == row["id_utf8"]
            u = ind.id_digest(row["id"])
            assert u.hex() == row["u"]
            row_masks = [
                ind.mask(i, {j: keys[min(i, j), max(i, j)] for j in range(k) if j != i}, u) for i in range(k)
            ]
            assert [f"{m:032x}" for m in row_masks] == row["masks"]
            assert sum(row_masks) % ind.MOD128 == 0
            lanes = [
                ind.lane(i, k, row["bits"][i], row["group_code"] if i == groups_at else None)
                for i in range(k)
            ]
            assert [f"{x:032x}" for x in lanes] == row["lanes"]
            values = [(x + m) % ind.MOD128 for x, m in zip(lanes, row_masks, strict=True)]
            assert [f"{v:032x}" for v in values] == row["masked_values"]
            total = sum(values) % ind.MOD128
            assert f"{total:032x}" == row["sum"]
            assert ind.decode_sum(total, k, group_count) == (row["pattern"], row["decoded_code"], True)
            assert format(row["pattern"], f"0{k}b") == "".join(map(str, row["bits"]))  # company 0 first
        for reject in case["must_reject"]:
            assert not ind.decode_sum(int(reject["sum"], 16), k, group_count)[2], reject["why"]


# RFC 8032 section 7.1, tests 1-3: secret key -> public key.
RFC8032_KEYS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    ),
]


def test_independent_edwards25519_matches_rfc8032() -> None:
    """The pure-Python curve of independent.py against published facts: d and the base point's
    encoding (RFC 8032 5.1), L * B = O, and the public keys of RFC 8032's tests 1-3 (SHA-512 of
    the secret, clamped, times B, encoded: scalar multiplication and encoding), decoded back."""
    assert ind.ED_D == 37095705934669439343138083508754565189542113879843219016388785533085940283555
    assert ind.ed_encode(ind.ED_B).hex() == "58" + "66" * 31
    assert ind.ed_equal(ind.ed_mul(ind.ED_L, ind.ED_B), ind.ED_IDENTITY)
    assert not ind.ed_equal(ind.ed_mul(ind.ED_L - 1, ind.ED_B), ind.ED_IDENTITY)
    assert ind.ed_equal(ind.ed_mul(ind.ED_L - 1, ind.ED_B), ind.ed_neg(ind.ED_B))
    for secret, public in RFC8032_KEYS:
        digest = hashlib.sha512(h(secret)).digest()
        a = int.from_bytes(digest[:32], "little") & ((1 << 254) - 8) | (1 << 254)  # clamped
        point = ind.ed_mul(a, ind.ED_B)
        assert ind.ed_encode(point).hex() == public
        decoded = ind.ed_decode(h(public))
        assert decoded is not None and ind.ed_equal(decoded, point)
        assert ind.ed_valid_point(h(public))
    assert ind.ed_decode((ind.ED_P + 1).to_bytes(32, "little")) is None  # y >= p: not canonical
    assert ind.ed_decode((1 | 1 << 255).to_bytes(32, "little")) is None  # x = 0 with the sign bit set


def test_independent_implementation_reproduces_the_rerandomised_tags() -> None:
    data = load("rerandomise.json")
    curve = data["curve"]
    assert curve["group_order"] == str(ind.ED_L)
    assert curve["base_point"] == ind.ed_encode(ind.ED_B).hex()
    assert curve["identity"] == ind.ed_encode(ind.ED_IDENTITY).hex()
    order = ind.ED_L
    for case in data["prf"]:
        key, label, block = h(case["pair_key"]), case["label"].encode(), h(case["block"])
        assert label in (ind.RERANDOMISE_ID_LABEL, ind.RERANDOMISE_TOKEN_LABEL)
        if "id" in case:
            assert ind.id_digest(case["id"]) == block
        if "token" in case:
            assert ind.token_block(h(case["token"])) == block
        assert [k.hex() for k in ind.prf_block_keys(key, label)] == case["block_keys"]
        assert ind.prf_bytes(key, label, block).hex() == case["prf_bytes"]
        assert ind.scalar_bytes(ind.prf_mod_l(key, label, block)).hex() == case["value"]

    def scalars_hex(values: list[int]) -> list[str]:
        return [ind.scalar_bytes(v).hex() for v in values]

    def own_keys(case: dict[str, Any]) -> Callable[[int], dict[int, bytes]]:
        keys = {(p["first"], p["second"]): h(p["pair_key"]) for p in case["pair_keys"]}
        assert sorted(keys) == list(combinations(range(case["k"]), 2))
        return lambda i: {j: keys[min(i, j), max(i, j)] for j in range(case["k"]) if j != i}

    for case in data["masks"]:
        k, own = case["k"], own_keys(case)
        for row in case["rows"]:
            u = ind.id_digest(row["id"])
            assert u.hex() == row["u"]
            id_masks = [ind.id_mask_mod_l(i, own(i), u) for i in range(k)]
            assert scalars_hex(id_masks) == row["id_masks"]
            assert sum(id_masks) % order == 0  # the k masks of one id cancel
            codes = [row["group_code"] if i == case["groups_from"] else None for i in range(k)]
            lanes = [ind.lane(i, k, row["bits"][i], codes[i]) for i in range(k)]
            assert lanes == row["lanes"]
            exponents = [ind.exponent(i, k, own(i), u, row["bits"][i], codes[i]) for i in range(k)]
            assert exponents == [(x + m) % order for x, m in zip(lanes, id_masks, strict=True)]
            assert scalars_hex(exponents) == row["exponents"]
            pattern = int("".join(map(str, row["bits"])), 2)
            assert sum(exponents) % order == ind.sum_lanes(pattern, k, row["group_code"] or 0)
        for token in case["tokens"]:
            assert ind.token_block(h(token["token"])).hex() == token["block"]
            token_masks = [ind.token_mask_mod_l(i, own(i), h(token["token"])) for i in range(k)]
            assert scalars_hex(token_masks) == token["token_masks"]
            assert sum(token_masks) % order == 0  # the k masks of one token cancel

    for case in data["randomisers"]:
        seed, label = h(case["seed"]), case["label"].encode()
        assert (ind.RERANDOMISE_RANDOM_LABEL + label).hex() == case["hkdf_info"]
        assert ind.randomiser_key(seed, label).hex() == case["aes_key"]
        stream = ind.aes_ctr_keystream(h(case["aes_key"]), 64 * case["count"])
        assert stream.hex() == case["keystream"]
        assert scalars_hex(ind.randomisers(seed, label, case["count"])) == case["values"]

    elgamal = data["elgamal"]
    coordinator_key = h(elgamal["coordinator_tag_private_key"])
    assert ind.coordinator_key_digest(coordinator_key).hex() == elgamal["key_digest"]
    secret = ind.coordinator_secret(coordinator_key)
    assert ind.scalar_bytes(secret).hex() == elgamal["secret"]
    public_key = ind.ed_base_times(secret)
    assert public_key.hex() == elgamal["public_key"] and ind.ed_valid_point(public_key)
    for enc in elgamal["encrypt"]:
        e, r = (int.from_bytes(h(enc[f]), "little") for f in ("value", "randomness"))
        assert ind.elgamal_encrypt(public_key, e, r).hex() == enc["tag"]
        assert ind.elgamal_decrypt(secret, h(enc["tag"])) == ind.ed_base_times(e)

    ring = elgamal["round"]
    roster, k = ring["roster"], len(ring["roster"])
    case = next(c for c in data["masks"] if c["name"] == ring["masks_case"])
    own, rows = own_keys(case), case["rows"]
    tokens = [h(t["token"]) for t in case["tokens"]]
    finals: list[list[bytes]] = []
    for one_list in ring["lists"]:
        owner = roster.index(one_list["owner"])
        first, *relays = one_list["hops"]
        assert (first["hop"], first["company"]) == (0, one_list["owner"])
        values = [ind.exponent(owner, k, own(owner), ind.id_digest(r["id"]), r["bits"][owner]) for r in rows]
        assert scalars_hex(values) == first["values"]
        randomness = ind.randomisers(
            h(ring["seeds"][first["company"]]), f"{one_list['owner']}|0|0".encode(), len(rows)
        )
        assert scalars_hex(randomness) == first["randomness"]
        tags = [ind.elgamal_encrypt(public_key, e, r) for e, r in zip(values, randomness, strict=True)]
        assert b"".join(tags).hex() == first["tags"]
        assert [s["hop"] for s in relays] == list(range(1, k))
        for step in relays:
            relay_at = (owner + step["hop"]) % k  # hop h of owner o's list: company o + h
            assert step["company"] == roster[relay_at]
            label = f"{one_list['owner']}|{step['hop']}|0".encode()
            randomness = ind.randomisers(h(ring["seeds"][step["company"]]), label, len(rows))
            assert scalars_hex(randomness) == step["randomness"]
            last = step["hop"] == k - 1  # the last relay adds its token masks t_j(T)
            shifts = [ind.token_mask_mod_l(relay_at, own(relay_at), t) for t in tokens] if last else []
            assert scalars_hex(shifts) == step["shifts"]
            tags = [
                ind.elgamal_rerandomise(public_key, tag, s, shifts[n] if last else 0)
                for n, (tag, s) in enumerate(zip(tags, randomness, strict=True))
            ]
            assert b"".join(tags).hex() == step["tags"]
        finals.append(tags)
    assert sorted(roster[(roster.index(li["owner"]) + k - 1) % k] for li in ring["lists"]) == sorted(roster)
    valid = {ind.ed_base_times(ind.sum_lanes(p, k)): p for p in range(1 << k)}
    assert len(valid) == 1 << k
    for n, (row, total) in enumerate(zip(rows, ring["sums"], strict=True)):
        summed = ind.elgamal_add([final[n] for final in finals])
        assert (summed[:32].hex(), summed[32:].hex()) == (total["c1"], total["c2"])
        decrypted = ind.elgamal_decrypt(secret, summed)
        pattern = int("".join(map(str, row["bits"])), 2)
        assert (total["id"], total["pattern"], total["lanes"]) == (
            row["id"],
            pattern,
            ind.sum_lanes(pattern, k),
        )
        assert decrypted.hex() == total["decrypted"] == ind.ed_base_times(total["lanes"]).hex()
        assert valid[decrypted] == pattern
    for reject in ring["must_reject"]:
        columns = [h(c) for c in reject["columns"]]
        sums = [ind.elgamal_add([c[64 * n : 64 * n + 64] for c in columns]) for n in range(len(rows))]
        bad = [n for n, s in enumerate(sums) if ind.elgamal_decrypt(secret, s) not in valid]
        assert bad == reject["bad_rows"] and bad, reject["why"]
    for reject in elgamal["must_reject_points"]:
        assert not ind.ed_valid_point(h(reject["point"])), reject["why"]

    for table in data["sum_tables"]:
        k, group_count = table["k"], table["group_count"]
        entries = table["entries"]
        assert len(entries) == (1 << k) * max(group_count, 1) == len({e["point"] for e in entries})
        for entry in entries:
            assert entry["lanes"] == ind.sum_lanes(entry["pattern"], k, entry["code"])
            assert ind.ed_base_times(entry["lanes"]).hex() == entry["point"]


def test_independent_implementation_reproduces_the_digit_result() -> None:
    data = load("result-digit.json")
    figures = ind.result_figures(data["input"]["companies"], data["input"]["pattern_counts"])
    assert figures["integer"] == data["expected"]["integer"]
    assert figures["rational"] == data["expected"]["rational"]
    # The README's example agrees: H = 4.6676..., S = 0.1435.
    assert round(float(Fraction(figures["rational"]["homogenization"])), 4) == 4.6676
    assert float(Fraction(figures["rational"]["systemic_failure_rate"])) == 0.1435


@pytest.mark.parametrize("name", sorted(generate.BUILDERS))
def test_every_vector_file_is_exactly_what_the_generator_writes(name: str) -> None:
    assert generate.render(generate.BUILDERS[name]()) == _text(name)


# ================================================================== the result schema


def _published(table: PatternTable, policy: ReleasePolicy, coordinator_keys: bool = True) -> dict[str, Any]:
    result = release(table, policy)
    if coordinator_keys:  # what the coordinator adds before publishing
        result["round_id"] = "r-0123456789abcdef"
        if policy.mechanism == "none":
            result["list_sizes"] = dict.fromkeys(table.companies, 2000)
    return json.loads(json.dumps(result))


DIGIT = PatternTable(("google", "microsoft", "ibm"), (576, 20, 5, 1, 858, 199, 54, 287))
RELEASES = {
    "digit, default policy": (DIGIT, ReleasePolicy()),
    "digit, small cells withheld": (DIGIT, ReleasePolicy(min_cell_count=10)),
    "digit, all-fail cell withheld": (DIGIT, ReleasePolicy(min_cell_count=300)),
    "digit, below the release minimum": (DIGIT, ReleasePolicy(min_shared_individuals=5000)),
    "digit, discrete Laplace": (DIGIT, ReleasePolicy(mechanism="discrete-laplace", epsilon=1.0)),
    "digit, discrete Gaussian": (
        DIGIT,
        ReleasePolicy(mechanism="discrete-gaussian", epsilon=1.0, delta=1e-6),
    ),
    "no shared individuals": (PatternTable(("a", "b"), (0, 0, 0, 0)), ReleasePolicy()),
    "a company that never fails": (PatternTable(("a", "b"), (5, 0, 3, 0)), ReleasePolicy()),
    "no systemic failure": (PatternTable(("a", "b"), (5, 2, 3, 0)), ReleasePolicy()),
}


@pytest.mark.parametrize("case", sorted(RELEASES))
def test_every_kind_of_released_result_validates_against_the_schema(case: str) -> None:
    table, policy = RELEASES[case]
    schema = result_schema()
    assert ind.schema_errors(_published(table, policy), schema) == []
    assert ind.schema_errors(_published(table, policy, coordinator_keys=False), schema) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.pop("pattern_counts"), "required key 'pattern_counts'"),
        (lambda r: r.pop("homogenization_test"), "required key 'homogenization_test'"),
        (lambda r: r.update(shared_individuals="2000"), "shared_individuals"),
        (lambda r: r.update(failures={"google": 1398.0}), "failures.google"),
        (lambda r: r["pattern_counts"].update({"2": 1}), "key '2' is not allowed"),
        (lambda r: r.update(homogenization_ci95=[4.2]), "fewer than 2 items"),
        (lambda r: r.update(suppressed=True), "suppressed"),
        (lambda r: r.update(noisy=0), "noisy"),
        (lambda r: r.update(undecodable_sums=1), "undecodable_sums"),  # exact: never published
    ],
)
def test_schema_refuses_a_result_with_a_missing_key_or_a_wrong_type(
    change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    result = _published(DIGIT, ReleasePolicy())
    change(result)
    errors = ind.schema_errors(result, result_schema())
    assert errors and expected in errors[0], errors


def test_schema_lets_new_top_level_keys_through() -> None:
    result = _published(DIGIT, ReleasePolicy())
    result["homogenization_bootstrap_ci95"] = [4.2, 5.1]
    assert ind.schema_errors(result, result_schema()) == []


# ================================================================== the vectors catch a change


def _relabelled_tag_aad(round_id: str, company_name: str) -> bytes:
    return f"monoculture/v2 failure tag|{round_id}|{company_name}".encode()


def _relabelled_group_tag_aad(round_id: str, company_name: str, labels: Any) -> bytes:
    return f"monoculture/v2 group tag|{round_id}|{company_name}|{','.join(labels)}".encode()


_original_lane_values = masks.lane_values


def _reversed_lanes(position: int, k: int, bits: Any, group_codes: Any = None) -> Any:
    return _original_lane_values(k - 1 - position, k, bits, group_codes)


def _little_endian_prf(pair_key: bytes, label: bytes, blocks: bytes) -> list[int]:
    """F_s read as a little-endian integer instead of big-endian."""
    return [
        int.from_bytes(ind.prf_bytes(pair_key, label, blocks[at : at + 16]), "little")
        % rerandomise.GROUP_ORDER
        for at in range(0, len(blocks), 16)
    ]


def _token_tails(tokens: bytes | bytearray, point_size: int) -> bytes:
    """The last 16 bytes of SHA-256 of every token instead of the first."""
    return b"".join(
        hashlib.sha256(tokens[at : at + point_size]).digest()[16:] for at in range(0, len(tokens), point_size)
    )


MUTATIONS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "failure tag AAD label": (
        lambda mp: mp.setattr(psi_crypto, "_tag_aad", _relabelled_tag_aad),
        "failure-tags.json",
    ),
    "group tag AAD (labels joined instead of digested)": (
        lambda mp: mp.setattr(psi_crypto, "_group_tag_aad", _relabelled_group_tag_aad),
        "failure-tags.json",
    ),
    "failure tag HKDF label": (
        lambda mp: mp.setattr(psi_crypto, "_TAG_KEY_INFO", b"monoculture/v2 failure-tag key"),
        "failure-tags.json",
    ),
    "relay chunk key label": (
        lambda mp: mp.setattr(relay, "_KEY_INFO", b"monoculture/v1 relay key"),
        "relay-sealing.json",
    ),
    "relay chunk nonce byte order": (
        lambda mp: mp.setattr(relay, "_nonce", lambda chunk: chunk.chunk_index.to_bytes(12, "little")),
        "relay-sealing.json",
    ),
    "points framing without reveal_intersection": (
        lambda mp: mp.setattr(psi_crypto, "encode_points", lambda points: ind.psi_request(points)[2:]),
        "points-framing.json",
    ),
    "shuffle label separator": (
        lambda mp: mp.setattr(company, "shuffle_label", lambda owner, hop: f"{owner}/{hop}".encode()),
        "shuffle.json",
    ),
    "mask HKDF label": (
        lambda mp: mp.setattr(masks, "_MASK_INFO", b"monoculture/v2 masks"),
        "masks.json",
    ),
    "lane order (company 0 in the least significant lane)": (
        lambda mp: mp.setattr(masks, "lane_values", _reversed_lanes),
        "masks.json",
    ),
    "rerandomise id PRF label": (
        lambda mp: mp.setattr(rerandomise, "_ID_LABEL", b"monoculture/v2 rerandomise ids"),
        "rerandomise.json",
    ),
    "rerandomise token PRF label": (
        lambda mp: mp.setattr(rerandomise, "_TOKEN_LABEL", b"monoculture/v2 rerandomise tokens"),
        "rerandomise.json",
    ),
    "rerandomise PRF output read little-endian": (
        lambda mp: mp.setattr(rerandomise, "_prf", _little_endian_prf),
        "rerandomise.json",
    ),
    "rerandomise token block (last 16 bytes of SHA-256)": (
        lambda mp: mp.setattr(rerandomise, "token_blocks", _token_tails),
        "rerandomise.json",
    ),
    "rerandomise coordinator key label": (
        lambda mp: mp.setattr(rerandomise, "_KEY_LABEL", b"monoculture/v2 rerandomise keys"),
        "rerandomise.json",
    ),
    "rerandomise randomness HKDF label": (
        lambda mp: mp.setattr(rerandomise, "_RANDOM_LABEL", b"monoculture/v2 rerandomise randomness/"),
        "rerandomise.json",
    ),
    "pattern bit order": (
        lambda mp: mp.setattr(
            metrics, "pattern_string", lambda index, parties: format(index, f"0{parties}b")[::-1]
        ),
        "result-digit.json",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_format_change_that_round_trips_still_fails_its_vector(
    mutation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply, name = MUTATIONS[mutation]
    data = load(name)
    CODE_CHECKS[name](data)  # passes as the code stands
    apply(monkeypatch)
    with pytest.raises(AssertionError):
        CODE_CHECKS[name](data)
