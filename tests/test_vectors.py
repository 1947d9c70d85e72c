"""Known-answer vectors (tests/vectors/, see PROVENANCE.md there) for the failure tags,
relay sealing, the wire framing of points, seeded shuffles and the result JSON.

Each vector is reproduced twice: by the code under test, and by the independent
implementation in tests/vectors/independent.py (RFC 5869 HKDF over hmac, bare
`cryptography` primitives, protobuf by hand, exact rationals), which imports nothing
from monoculture. So the vectors, the independent code and the code under test agree,
and a change to any of these formats fails here even when every round trip still works.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
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
from monoculture.core import psi_crypto, relay
from monoculture.core.errors import ProtocolError
from monoculture.core.psi_crypto import (
    TAG_SIZE,
    TagOpener,
    TagSealer,
    decode_points,
    random_permutation,
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


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON text: 1398 and 1398.0, or true and 1, differ."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ================================================================== the code under test


def check_failure_tags_with_code(data: dict[str, Any]) -> None:
    for case in data["cases"]:
        name = case["name"]
        opener = TagOpener(h(case["coordinator_private_key"]))
        assert opener.public_key.hex() == case["coordinator_public_key"], name
        sealer = TagSealer(
            case["round_id"], case["company"], opener.public_key, h(case["company_private_key"])
        )
        assert sealer.public_key.hex() == case["company_public_key"], name
        bits = np.zeros(case["list_length"], dtype=np.uint8)
        for tag in case["tags"]:
            bits[tag["position"]] = tag["bit"]
        sealed = sealer.seal(bits)
        assert len(sealed) == case["list_length"] * TAG_SIZE
        for tag in case["tags"]:
            at = tag["position"] * TAG_SIZE
            assert sealed[at : at + TAG_SIZE].hex() == tag["tag"], f"{name}: position {tag['position']}"
        if "sealed_list" in case:
            assert sealed.hex() == case["sealed_list"], name
        tags = opener.opener_for(case["round_id"], case["company"], sealer.public_key)
        pinned = case["tags"] + case.get("open_only", [])
        assert tags.open([h(t["tag"]) for t in pinned]).tolist() == [t["bit"] for t in pinned], name
        for reject in case.get("must_reject", []):
            with pytest.raises(ProtocolError):
                tags.open([h(reject["tag"])])
    for case in data.get("grouped_cases", []):
        check_grouped_tags_with_code(case)


def check_grouped_tags_with_code(case: dict[str, Any]) -> None:
    """The groups company's tags: sealed with the round's labels, opened to bits and codes."""
    name, labels = case["name"], case["group_labels"]
    assert psi_crypto.group_labels_digest(labels).hex() == case["group_labels_digest"], name
    opener = TagOpener(h(case["coordinator_private_key"]))
    sealer = TagSealer(
        case["round_id"],
        case["company"],
        opener.public_key,
        h(case["company_private_key"]),
        group_labels=labels,
    )
    assert sealer.public_key.hex() == case["company_public_key"], name
    bits = np.zeros(case["list_length"], dtype=np.uint8)
    codes = np.zeros(case["list_length"], dtype=np.uint8)
    for tag in case["tags"]:
        bits[tag["position"]], codes[tag["position"]] = tag["bit"], tag["code"]
    sealed = sealer.seal(bits, codes)
    assert len(sealed) == case["list_length"] * TAG_SIZE
    for tag in case["tags"]:
        at = tag["position"] * TAG_SIZE
        assert sealed[at : at + TAG_SIZE].hex() == tag["tag"], f"{name}: position {tag['position']}"
    if "sealed_list" in case:
        assert sealed.hex() == case["sealed_list"], name
    grouped = opener.opener_for(case["round_id"], case["company"], sealer.public_key, labels)
    pinned = [h(t["tag"]) for t in case["tags"]]
    opened_bits, opened_codes = grouped.open_grouped(pinned)
    assert opened_bits.tolist() == [t["bit"] for t in case["tags"]], name
    assert opened_codes.tolist() == [t["code"] for t in case["tags"]], name
    assert grouped.open(pinned).tolist() == [t["bit"] for t in case["tags"]], name
    one_bit = opener.opener_for(case["round_id"], case["company"], sealer.public_key)
    with pytest.raises(ProtocolError):  # a grouped tag never opens as a one-bit tag
        one_bit.open(pinned[:1])
    for reject in case.get("must_reject", []):
        with pytest.raises(ProtocolError):
            grouped.open_grouped([h(reject["tag"])])


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
    assert not ind.schema_errors(published, load("result-schema.json"))


CODE_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "failure-tags.json": check_failure_tags_with_code,
    "relay-sealing.json": check_relay_sealing_with_code,
    "points-framing.json": check_points_framing_with_code,
    "shuffle.json": check_shuffle_with_code,
    "result-digit.json": check_result_with_code,
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


def test_independent_implementation_reproduces_the_failure_tags() -> None:
    for case in load("failure-tags.json")["cases"]:
        company_key, coordinator_key = h(case["company_private_key"]), h(case["coordinator_private_key"])
        assert ind.x25519_public(company_key).hex() == case["company_public_key"]
        assert ind.x25519_public(coordinator_key).hex() == case["coordinator_public_key"]
        shared = ind.x25519_shared(coordinator_key, h(case["company_public_key"]))
        assert shared.hex() == case["shared_secret"]
        round_id, name = case["round_id"], case["company"]
        assert ind.tag_key_info(round_id, name).hex() == case["hkdf_info"]
        key, aad = ind.tag_key(shared, round_id, name), ind.tag_aad(round_id, name)
        assert (key.hex(), aad.hex()) == (case["tag_key"], case["aad"])
        for tag in case["tags"] + case.get("open_only", []):
            assert ind.seal_tag(key, aad, tag["position"], bytes((tag["bit"],))).hex() == tag["tag"]
            assert ind.open_tag(key, aad, h(tag["tag"])) == bytes((tag["bit"],))
        for tag in case["tags"]:
            assert tag["nonce"] == ind.nonce(tag["position"]).hex() == tag["tag"][:24]
        if "sealed_list" in case:
            assert "".join(t["tag"] for t in case["tags"]) == case["sealed_list"]
        for reject in case.get("must_reject", []):
            with contextlib.suppress(InvalidTag):  # refused, or it opens to a byte that is no bit
                assert ind.open_tag(key, aad, h(reject["tag"])) not in (b"\x00", b"\x01"), reject["why"]


def test_independent_implementation_reproduces_the_grouped_failure_tags() -> None:
    for case in load("failure-tags.json")["grouped_cases"]:
        labels, round_id, name = case["group_labels"], case["round_id"], case["company"]
        assert ind.group_labels_digest(labels).hex() == case["group_labels_digest"]
        assert ind.x25519_public(h(case["company_private_key"])).hex() == case["company_public_key"]
        shared = ind.x25519_shared(h(case["coordinator_private_key"]), h(case["company_public_key"]))
        assert shared.hex() == case["shared_secret"]
        key, aad = ind.tag_key(shared, round_id, name), ind.group_tag_aad(round_id, name, labels)
        assert (key.hex(), aad.hex()) == (case["tag_key"], case["aad"])
        for tag in case["tags"]:
            plaintext = ind.group_tag_plaintext(tag["bit"], tag["code"])
            assert plaintext.hex() == tag["plaintext"] and tag["code"] < len(labels)
            assert ind.seal_tag(key, aad, tag["position"], plaintext).hex() == tag["tag"]
            assert len(h(tag["tag"])) == 29  # as every one-bit tag: the length shows nothing
            with pytest.raises(InvalidTag):  # not a one-bit tag of this company
                ind.open_tag(key, ind.tag_aad(round_id, name), h(tag["tag"]))
        for reject in case.get("must_reject", []):
            with contextlib.suppress(InvalidTag):  # refused, or it opens to a code beyond the labels
                opened = ind.open_tag(key, aad, h(reject["tag"]))
                assert len(opened) != 1 or opened[0] >> 1 >= len(labels), reject["why"]


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
    schema = load("result-schema.json")
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
    ],
)
def test_schema_refuses_a_result_with_a_missing_key_or_a_wrong_type(
    change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    result = _published(DIGIT, ReleasePolicy())
    change(result)
    errors = ind.schema_errors(result, load("result-schema.json"))
    assert errors and expected in errors[0], errors


def test_schema_lets_new_top_level_keys_through() -> None:
    result = _published(DIGIT, ReleasePolicy())
    result["homogenization_bootstrap_ci95"] = [4.2, 5.1]
    assert ind.schema_errors(result, load("result-schema.json")) == []


# ================================================================== the vectors catch a change


def _relabelled_tag_aad(round_id: str, company_name: str) -> bytes:
    return f"monoculture/v2 tag|{round_id}|{company_name}".encode()


def _relabelled_group_tag_aad(round_id: str, company_name: str, labels: Any) -> bytes:
    return f"monoculture/v1 group tag|{round_id}|{company_name}|{','.join(labels)}".encode()


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
        lambda mp: mp.setattr(psi_crypto, "_TAG_KEY_INFO", b"monoculture/v1 failure-tag key"),
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
