"""Builds the known-answer vectors in this folder with the independent implementation.

    .venv/bin/python tests/vectors/generate.py          # rewrite the JSON files
    .venv/bin/python tests/vectors/generate.py --check  # exit 1 if a file differs
    .venv/bin/python tests/vectors/generate.py masks.json  # only the files named

Every output comes from independent.py (RFC 5869 HKDF over hmac, AES-GCM / AES-ECB /
X25519 / P-256 from `cryptography`, protobuf encoded by hand, exact rationals, edwards25519
in pure Python); nothing from monoculture (nor libsodium / PyNaCl) is imported. Every input
is fixed below, so the output is the same on every run. See PROVENANCE.md.
"""

from __future__ import annotations

import hashlib
import json
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

if __package__:
    from . import independent as ind
else:  # run as a script
    import independent as ind

HERE = Path(__file__).resolve().parent
GENERATED_ON = "2026-11-30"

# RFC 7748 section 6.1: Alice's and Bob's X25519 private keys (their shared secret is in the RFC).
RFC7748_ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
RFC7748_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

ROUND = "r-0123456789abcdef"  # the coordinator's form: "r-" + 16 hex digits
LONG_ROUND = "r-" + "0123456789abcdef" * 4
LONG_NAME = "a-very-long-company-name.with_every-allowed-char.0123456789-abcd"  # 64: the longest allowed
assert len(LONG_NAME) == 64


def fixed_bytes(label: str) -> bytes:
    """32 fixed bytes for a key or seed that has no published value: SHA-256 of a label."""
    return hashlib.sha256(f"monoculture/v1 vectors|{label}".encode()).digest()


def point(scalar: int) -> bytes:
    """scalar * G on P-256, compressed (33 bytes): a valid point for the wire framing."""
    public = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
    return public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def provenance(pins: str) -> dict[str, str]:
    return {
        "pins": pins,
        "generated_by": "tests/vectors/generate.py with tests/vectors/independent.py (no monoculture code)",
        "generated_on": GENERATED_ON,
        "details": "tests/vectors/PROVENANCE.md",
    }


# ------------------------------------------------------------------ failure tags (v2)

ZERO_VALUE = bytes(16)
ONES_VALUE = b"\xff" * 16


def tag_value(label: str) -> bytes:
    """A fixed 16-byte masked value (uniform-looking, as a real one is): the first 16 bytes of
    fixed_bytes('tag value|<label>')."""
    return fixed_bytes(f"tag value|{label}")[:16]


def _tag_entry(key: bytes, aad: bytes, position: int, value: bytes) -> dict[str, Any]:
    assert len(value) == ind.TAG_VALUE_SIZE
    tag = ind.seal_tag(key, aad, position, value)
    assert len(tag) == ind.TAG_SIZE and ind.open_value(key, aad, tag) == value
    return {"position": position, "value": value.hex(), "nonce": ind.nonce(position).hex(), "tag": tag.hex()}


def _tag_case(
    name: str,
    round_id: str,
    company: str,
    company_key: bytes,
    coordinator_key: bytes,
    values: dict[int, bytes],
    list_length: int,
    open_only: dict[int, bytes] | None = None,
    group_labels: list[str] | None = None,
) -> dict[str, Any]:
    """values: position -> the 16-byte value sealed there (every other position of the list holds
    the all-zero value); group_labels: the groups company's case (its AAD names them)."""
    company_public = ind.x25519_public(company_key)
    coordinator_public = ind.x25519_public(coordinator_key)
    shared = ind.x25519_shared(company_key, coordinator_public)
    assert shared == ind.x25519_shared(coordinator_key, company_public)
    key = ind.tag_key(shared, round_id, company)
    aad = (
        ind.tag_aad(round_id, company)
        if group_labels is None
        else ind.group_tag_aad(round_id, company, group_labels)
    )
    tags = [_tag_entry(key, aad, p, v) for p, v in sorted(values.items())]
    case: dict[str, Any] = {"name": name, "round_id": round_id, "company": company}
    if group_labels is not None:
        case["group_labels"] = group_labels
        case["group_labels_digest"] = ind.group_labels_digest(group_labels).hex()
    case |= {
        "company_private_key": company_key.hex(),
        "company_public_key": company_public.hex(),
        "coordinator_private_key": coordinator_key.hex(),
        "coordinator_public_key": coordinator_public.hex(),
        "shared_secret": shared.hex(),
        "hkdf_info": ind.tag_key_info(round_id, company).hex(),
        "tag_key": key.hex(),
        "aad": aad.hex(),
        "list_length": list_length,
        "tags": tags,
    }
    if list_length == len(values):
        case["sealed_list"] = "".join(t["tag"] for t in tags)
    if open_only:
        case["open_only"] = [_tag_entry(key, aad, p, v) for p, v in sorted(open_only.items())]
    return case


def _v1_tag(shared: bytes, round_id: str, company: str, position: int, bit: int) -> bytes:
    """A tag of protocol v1 (one bit byte, 'monoculture/v1' HKDF info and AAD): what a v2
    coordinator must refuse. Written out here; nothing else in the vectors is v1's tag format."""
    key = ind.hkdf_sha256(shared, f"monoculture/v1 failure tag key|{round_id}|{company}".encode())
    return ind.seal_tag(key, f"monoculture/v1 tag|{round_id}|{company}".encode(), position, bytes((bit,)))


def grouped_failure_tags() -> list[dict[str, Any]]:
    speakers = ["jackson", "nicolas", "theo", "yweweler"]
    speakers_values = [ZERO_VALUE, ONES_VALUE, *(tag_value(f"google grouped|{p}") for p in range(2, 8))]
    speakers_case = _tag_case(
        "google defines 4 groups (the digit speakers): positions 0-7, all-zero and all-0xff values first "
        "(RFC 7748 keys: company = Alice, coordinator = Bob)",
        ROUND, "google", RFC7748_ALICE, RFC7748_BOB, dict(enumerate(speakers_values)), 8,
        group_labels=speakers,
    )  # fmt: skip
    most = [f"g{i:03d}" for i in range(127)]
    most_case = _tag_case(
        "127 labels, the most a round declares: a list of 4",
        ROUND, "ibm", fixed_bytes("tag key|ibm"), fixed_bytes("coordinator tag key"),
        {p: tag_value(f"ibm grouped|{p}") for p in range(4)}, 4, group_labels=most,
    )  # fmt: skip
    wide = ["Île-de-France", "東京", "a b", "x" * 64]
    wide_case = _tag_case(
        "labels in UTF-8 beyond ASCII, with an inner space, and of 64 characters (the longest allowed); "
        "longest company name, long round id",
        LONG_ROUND, LONG_NAME, fixed_bytes(f"tag key|{LONG_NAME}"), fixed_bytes("coordinator tag key"),
        {0: tag_value(f"{LONG_NAME} grouped|0"), 1: ONES_VALUE}, 2, group_labels=wide,
    )  # fmt: skip
    key = bytes.fromhex(speakers_case["tag_key"])
    aad = bytes.fromhex(speakers_case["aad"])
    reordered = ind.group_tag_aad(ROUND, "google", list(reversed(speakers)))
    fewer = ind.group_tag_aad(ROUND, "google", speakers[:3])
    value = tag_value("google grouped|2")
    speakers_case["must_reject"] = [
        {
            "why": "sealed for the same labels in another order (another labels digest)",
            "tag": ind.seal_tag(key, reordered, 2, value).hex(),
        },
        {
            "why": "sealed for the first 3 of the 4 labels (another labels digest)",
            "tag": ind.seal_tag(key, fewer, 2, value).hex(),
        },
        {
            "why": "sealed under the AAD of a company without groups (same round, company and key)",
            "tag": ind.seal_tag(key, ind.tag_aad(ROUND, "google"), 2, value).hex(),
        },
        {"why": "authenticates but holds 17 bytes", "tag": ind.seal_tag(key, aad, 8, value + b"\x00").hex()},
        {"why": "authenticates but holds 15 bytes", "tag": ind.seal_tag(key, aad, 8, value[:15]).hex()},
    ]
    return [speakers_case, most_case, wide_case]


def failure_tags() -> dict[str, Any]:
    short_values = [
        ZERO_VALUE,
        ONES_VALUE,
        (1).to_bytes(16, "big"),  # the value 1: its only set bit in the last byte
        (2**127).to_bytes(16, "big"),  # the value 2^127: its only set bit in the first byte
        *(tag_value(f"google|{p}") for p in range(4, 8)),
    ]
    short = _tag_case(
        "eight values at positions 0-7: all-zero, all-0xff, 1, 2^127, then four fixed values "
        "(RFC 7748 keys: company = Alice, coordinator = Bob)",
        ROUND, "google", RFC7748_ALICE, RFC7748_BOB, dict(enumerate(short_values)), 8,
    )  # fmt: skip
    long_names = _tag_case(
        "longest company name, long round id",
        LONG_ROUND, LONG_NAME, fixed_bytes(f"tag key|{LONG_NAME}"), fixed_bytes("coordinator tag key"),
        {0: tag_value(f"{LONG_NAME}|0"), 1: ONES_VALUE}, 2,
    )  # fmt: skip
    positions = _tag_case(
        "a list of 1000 (the all-zero value except where pinned): positions 0, 255 (all-zero), 256, 999; "
        "open_only: positions beyond any list sealed here, 2^32 and 2^96 - 1",
        ROUND, "ibm", fixed_bytes("tag key|ibm"), fixed_bytes("coordinator tag key"),
        {0: tag_value("ibm|0"), 255: ZERO_VALUE, 256: tag_value("ibm|256"), 999: ONES_VALUE}, 1000,
        open_only={2**32: tag_value("ibm|2^32"), 2**96 - 1: ONES_VALUE},
    )  # fmt: skip
    key = bytes.fromhex(short["tag_key"])
    aad = bytes.fromhex(short["aad"])
    shared = bytes.fromhex(short["shared_secret"])
    other_round_key = ind.tag_key(shared, "r-fedcba9876543210", "google")
    value = short_values[3]
    moved = bytearray(ind.seal_tag(key, aad, 3, value))
    moved[11] ^= 0x01  # the nonce now says position 2
    short["must_reject"] = [
        {"why": "authenticates but holds 15 bytes", "tag": ind.seal_tag(key, aad, 8, value[:15]).hex()},
        {"why": "authenticates but holds 17 bytes", "tag": ind.seal_tag(key, aad, 8, value + b"\x00").hex()},
        {
            "why": "authenticates but holds one byte (a v1 bit byte under the v2 key and AAD)",
            "tag": ind.seal_tag(key, aad, 8, b"\x01").hex(),
        },
        {"why": "nonce changed after sealing (position 3 relabelled 2)", "tag": moved.hex()},
        {
            "why": "sealed for another round (r-fedcba9876543210)",
            "tag": ind.seal_tag(
                other_round_key, ind.tag_aad("r-fedcba9876543210", "google"), 0, short_values[0]
            ).hex(),
        },
        {"why": "sealed for another company (ibm's tag key and AAD)", "tag": positions["tags"][0]["tag"]},
        {
            "why": "a v1 tag of the same round and company (one bit byte, v1 HKDF info and AAD)",
            "tag": _v1_tag(shared, ROUND, "google", 0, 1).hex(),
        },
    ]
    pins = provenance(
        "failure tags (protocol v2): key = HKDF-SHA256(X25519(company, coordinator), salt none, "
        "info 'monoculture/v2 failure tag key|<round>|<company>'), "
        "AAD 'monoculture/v2 tag|<round>|<company>', "
        "nonce = position as 12 bytes big-endian, "
        "tag = nonce || AES-256-GCM(16-byte masked value) = 12 + 16 + 16 = 44 bytes; "
        "a sealed list is its tags concatenated; an opened value of any other length than 16 is refused"
    )
    pins["grouped_pins"] = (
        "grouped_cases: the tags of the company a round takes its groups from: the same key, nonce, "
        "value size and 44 bytes as every other tag; only the AAD differs: "
        "'monoculture/v2 group tag|<round>|<company>|' + hex SHA-256 of the declared labels in order, "
        "each UTF-8 behind its 4-byte big-endian length. The group code is a lane of the masked value "
        "(masks.json), not part of the tag format"
    )
    return {
        "provenance": pins,
        "cases": [short, long_names, positions],
        "grouped_cases": grouped_failure_tags(),
    }


# ------------------------------------------------------------------ relays


def _party(name: str, relay_key: bytes) -> dict[str, str]:
    return {
        "company": name,
        "relay_private_key": relay_key.hex(),
        "relay_public_key": ind.x25519_public(relay_key).hex(),
        "tag_public_key": ind.x25519_public(fixed_bytes(f"tag key|{name}")).hex(),
    }


def _relay_case(
    name: str,
    round_id: str,
    owner: str,
    hop: int,
    sender: dict[str, str],
    receiver: dict[str, str],
    chunks: list[tuple[int, int, int, list[int]]],
    roster: list[str],
) -> dict[str, Any]:
    """chunks: (chunk_index, chunk_count, list_size, scalars of the chunk's points); roster: the
    ring the sender's key statement names."""
    shared = ind.x25519_shared(
        bytes.fromhex(sender["relay_private_key"]), bytes.fromhex(receiver["relay_public_key"])
    )
    key = ind.relay_key(shared, round_id, sender["company"], receiver["company"], owner, hop)
    # The tags are real (v2) failure tags of the owner's list, sealed to the coordinator's fixed key;
    # the element with point s * G sits at position s and holds tag_value('relay|<owner>|<s>').
    owner_tag_key, coordinator_tag_key = fixed_bytes(f"tag key|{owner}"), fixed_bytes("coordinator tag key")
    owner_shared = ind.x25519_shared(owner_tag_key, ind.x25519_public(coordinator_tag_key))
    tag_key, tag_aad = ind.tag_key(owner_shared, round_id, owner), ind.tag_aad(round_id, owner)
    out = []
    for index, count, size, scalars in chunks:
        header = {
            "round_id": round_id, "list_owner": owner, "hop": hop, "chunk_index": index,
            "chunk_count": count, "list_size": size, "chunk_elements": len(scalars),
        }  # fmt: skip
        points = [point(s) for s in scalars]
        values = [tag_value(f"relay|{owner}|{s}") for s in scalars]
        tags = b"".join(ind.seal_tag(tag_key, tag_aad, s, v) for s, v in zip(scalars, values, strict=True))
        points_field = ind.psi_request(points)
        body = ind.list_chunk_body(points_field, tags)
        aad = ind.chunk_aad(header, sender["company"], receiver["company"])
        sealed = ind.seal_chunk(key, index, body, aad)
        out.append(
            {
                "header": header,
                "points": [p.hex() for p in points],
                "tags": tags.hex(),
                "tag_values": [v.hex() for v in values],
                "points_field": points_field.hex(),
                "body": body.hex(),
                "aad": aad.hex(),
                "nonce": ind.nonce(index).hex(),
                "sealed": sealed.hex(),
                "wire_chunk": ind.list_chunk(header, sender["company"], receiver["company"], sealed).hex(),
                "chunk_statement": ind.chunk_statement(
                    header, sender["company"], receiver["company"], sealed
                ).hex(),
            }
        )
    return {
        "name": name,
        "round_id": round_id,
        "list_owner": owner,
        "hop": hop,
        "sender": sender,
        "receiver": receiver,
        "roster": roster,
        "sender_key_statement": ind.key_statement(
            round_id,
            sender["company"],
            bytes.fromhex(sender["relay_public_key"]),
            bytes.fromhex(sender["tag_public_key"]),
            roster,
        ).hex(),
        "shared_secret": shared.hex(),
        "hkdf_info": ind.relay_key_info(round_id, sender["company"], receiver["company"], owner, hop).hex(),
        "chunk_key": key.hex(),
        "owner_tag_private_key": owner_tag_key.hex(),
        "coordinator_tag_private_key": coordinator_tag_key.hex(),
        "chunks": out,
    }


RING3 = ["google", "microsoft", "ibm"]
RING12 = [LONG_NAME, *(f"company-{i}" for i in range(10)), "z" * 64]


def relay_sealing() -> dict[str, Any]:
    google, microsoft = _party("google", RFC7748_ALICE), _party("microsoft", RFC7748_BOB)
    ibm = _party("ibm", fixed_bytes("relay key|ibm"))
    long_sender = _party(LONG_NAME, fixed_bytes(f"relay key|{LONG_NAME}"))
    long_receiver = _party("z" * 64, fixed_bytes("relay key|" + "z" * 64))
    cases = [
        _relay_case(
            "k = 3, hop 0: google's own list to microsoft, 3 points in chunks of 2 "
            "(RFC 7748 keys: sender = Alice, receiver = Bob)",
            ROUND, "google", 0, google, microsoft, [(0, 2, 3, [1, 2]), (1, 2, 3, [3])], RING3,
        ),
        _relay_case(
            "k = 3, hop 1 = k - 2 (the last sealed hop; hop k - 1 goes to the coordinator open): "
            "google's list, microsoft to ibm",
            ROUND, "google", 1, microsoft, ibm, [(0, 1, 1, [4])], RING3,
        ),
        _relay_case(
            "k = 12, hop 10 (two digits), longest names, long round id, chunk index 300 "
            "(a two-byte nonce) of a list of 601 in chunks of 2",
            LONG_ROUND, LONG_NAME, 10, long_sender, long_receiver, [(300, 301, 601, [5])], RING12,
        ),
        _relay_case(
            "an empty list: one chunk, no points, no tags", ROUND, "ibm", 0, ibm, google, [(0, 1, 0, [])],
            RING3,
        ),
    ]  # fmt: skip
    cases[0]["must_reject"] = [
        {"why": "chunk 1 presented as chunk 0 (reordered)", "chunk": 1, "header_changes": {"chunk_index": 0}},
        {
            "why": "header claims another list size (cut short)",
            "chunk": 0,
            "header_changes": {"list_size": 2},
        },
        {
            "why": "header names another list owner (moved)",
            "chunk": 0,
            "header_changes": {"list_owner": "ibm"},
        },
        {"why": "header names another hop (replayed)", "chunk": 0, "header_changes": {"hop": 1}},
    ]
    return {
        "provenance": provenance(
            "relay sealing: key statement; chunk key = HKDF-SHA256(X25519(sender, receiver), salt none, "
            "info 'monoculture/v1 relay chunk key' + 4-byte-length-prefixed round, sender, receiver, "
            "owner, hop); "
            "AAD 'monoculture/v1 relay chunk' + length-prefixed header fields; nonce = chunk index, 12 bytes "
            "big-endian; sealed = AES-256-GCM(ListChunkBody{points, tags}); the sealed ListChunk on the "
            "wire. The tags are real v2 failure tags of the owner's list (44 bytes each, see "
            "failure-tags.json): the owner's and the coordinator's tag keys are given, and tag_values are "
            "the values they open to"
        ),
        "cases": cases,
    }


# ------------------------------------------------------------------ points framing


def points_framing() -> dict[str, Any]:
    cases = []
    for name, scalars in (("no points", []), ("one point", [1]), ("three points", [1, 2, 3])):
        points = [point(s) for s in scalars]
        cases.append(
            {"name": name, "points": [p.hex() for p in points], "encoded": ind.psi_request(points).hex()}
        )
    return {
        "provenance": provenance(
            "points on the wire: a serialized openmined-psi psi_proto.Request with "
            "reveal_intersection = true (field 1) and one encrypted_elements entry (field 2) "
            "per 33-byte compressed P-256 point, in order"
        ),
        "cases": cases,
        "must_reject": [
            {"why": "a 32-byte element", "encoded": ind.psi_request([point(1)[:32]]).hex()},
            {"why": "not a protobuf message (truncated length)", "encoded": "1221"},
        ],
    }


# ------------------------------------------------------------------ shuffles


def _shuffle_case(name: str, seed: bytes, owner: str | None, hop: int | None, size: int) -> dict[str, Any]:
    label = b"" if owner is None or hop is None else ind.shuffle_label(owner, hop)
    perm = ind.permutation(seed, label, size)
    case: dict[str, Any] = {
        "name": name,
        "seed": seed.hex(),
        "owner": owner,
        "hop": hop,
        "label": label.hex(),
        "hkdf_info": (b"monoculture/v1 shuffle|" + label).hex(),
        "aes_key": ind.shuffle_key(seed, label).hex(),
        "size": size,
        "first_sort_keys": [str(k) for k in ind.shuffle_sort_keys(seed, label, min(size, 4))],
    }
    if size <= 64:
        case["permutation"] = perm
    else:
        case["permutation_head"] = perm[:16]
        case["permutation_sha256"] = hashlib.sha256(
            b"".join(i.to_bytes(8, "little") for i in perm)
        ).hexdigest()
    return case


def shuffle() -> dict[str, Any]:
    seed, other = fixed_bytes("shuffle seed|a"), fixed_bytes("shuffle seed|b")
    cases = [
        _shuffle_case("empty label (relay_list's default)", seed, None, None, 10),
        _shuffle_case("k = 3, owner google, hop 0", seed, "google", 0, 10),
        _shuffle_case("k = 3, owner google, hop 2 = k - 1", seed, "google", 2, 10),
        _shuffle_case(
            "owner ibm, hop 1, 17 elements (136 keystream bytes: 8.5 AES blocks)", seed, "ibm", 1, 17
        ),
        _shuffle_case("k = 16, longest owner name, hop 15 = k - 1", seed, LONG_NAME, 15, 40),
        _shuffle_case("another seed, same label as 'owner google, hop 0'", other, "google", 0, 10),
        _shuffle_case("no elements", seed, "google", 0, 0),
        _shuffle_case("one element", seed, "google", 0, 1),
        _shuffle_case("4096 elements (pinned by a digest)", seed, "microsoft", 1, 4096),
    ]
    return {
        "provenance": provenance(
            "seeded shuffles: label = '<owner>|<hop>' (empty by default); key = HKDF-SHA256(seed, salt none, "
            "info 'monoculture/v1 shuffle|' + label); AES-256-CTR keystream from a zero counter block; "
            "8 bytes per element read as a little-endian uint64 sort key; permutation = indices in stable "
            "ascending key order (element perm[p] is sent at position p). "
            "first_sort_keys are decimal strings; "
            "permutation_sha256 is over the permutation as little-endian 8-byte integers"
        ),
        "cases": cases,
    }


# ------------------------------------------------------------------ masked tags (v2)


def _mask_party(name: str, relay_key: bytes) -> dict[str, str]:
    """A company's signed per-round keys. The signature is 70 fixed bytes (the length of a DER
    ECDSA P-256 signature): the transcript hashes the bytes as relayed; checking them is
    core/relay.py's business, not this vector's."""
    signature = (fixed_bytes(f"signature|{name}") + fixed_bytes(f"signature 2|{name}") + bytes(6))[:70]
    return {
        "company": name,
        "relay_private_key": relay_key.hex(),
        "relay_public_key": ind.x25519_public(relay_key).hex(),
        "tag_public_key": ind.x25519_public(fixed_bytes(f"tag key|{name}")).hex(),
        "signature": signature.hex(),
    }


def _mask_keys(
    round_id: str, roster: list[str], parties: list[dict[str, str]], transcript: bytes
) -> dict[tuple[int, int], bytes]:
    keys = {}
    for i, j in combinations(range(len(roster)), 2):
        shared = ind.x25519_shared(
            bytes.fromhex(parties[i]["relay_private_key"]), bytes.fromhex(parties[j]["relay_public_key"])
        )
        keys[i, j] = ind.mask_key(shared, transcript, round_id, roster[i], roster[j])
    return keys


def _masks_case(
    name: str,
    round_id: str,
    parties: list[dict[str, str]],
    rows: list[tuple[str, list[int], int | None]],
    groups_from: int | None = None,
    group_labels: list[str] | None = None,
) -> dict[str, Any]:
    """rows: (id, the k failure bits, group code or None). Every id is in every list."""
    roster = [p["company"] for p in parties]
    k = len(roster)
    labels = group_labels or []
    settings = b""
    if groups_from is not None:  # opaque to the masks: here the groups company and its labels digest
        settings = ind.length_prefixed(roster[groups_from]) + ind.group_labels_digest(labels)
    transcript = ind.mask_transcript(round_id, roster, parties, settings)
    keys = _mask_keys(round_id, roster, parties, transcript)
    pairs = []
    for (i, j), key in keys.items():
        shared = ind.x25519_shared(
            bytes.fromhex(parties[i]["relay_private_key"]), bytes.fromhex(parties[j]["relay_public_key"])
        )
        assert shared == ind.x25519_shared(
            bytes.fromhex(parties[j]["relay_private_key"]), bytes.fromhex(parties[i]["relay_public_key"])
        )
        pairs.append(
            {
                "first": roster[i],
                "second": roster[j],
                "shared_secret": shared.hex(),
                "hkdf_info": ind.mask_key_info(round_id, roster[i], roster[j]).hex(),
                "pair_key": key.hex(),
                "confirm_first_to_second": ind.mask_confirmation(key, transcript, roster[i], roster[j]).hex(),
                "confirm_second_to_first": ind.mask_confirmation(key, transcript, roster[j], roster[i]).hex(),
            }
        )

    def own_keys(i: int) -> dict[int, bytes]:
        return {j: keys[min(i, j), max(i, j)] for j in range(k) if j != i}

    out_rows, values = [], []
    for record_id, bits, code in rows:
        u = ind.id_digest(record_id)
        row_masks = [ind.mask(i, own_keys(i), u) for i in range(k)]
        assert sum(row_masks) % ind.MOD128 == 0
        lanes = [ind.lane(i, k, bits[i], code if i == groups_from else None) for i in range(k)]
        masked = [(lane + m) % ind.MOD128 for lane, m in zip(lanes, row_masks, strict=True)]
        total = sum(masked) % ind.MOD128
        pattern, decoded_code, ok = ind.decode_sum(total, k, len(labels))
        assert ok and decoded_code == (code or 0) and pattern == int("".join(map(str, bits)), 2)
        values.append(masked)
        out_rows.append(
            {
                "id": record_id,
                "id_utf8": record_id.encode().hex(),
                "u": u.hex(),
                "bits": bits,
                "group_code": code,
                "masks": [f"{m:032x}" for m in row_masks],
                "lanes": [f"{x:032x}" for x in lanes],
                "masked_values": [f"{v:032x}" for v in masked],
                "sum": f"{total:032x}",
                "pattern": pattern,
                "decoded_code": decoded_code,
            }
        )
    # Sums the coordinator must refuse, each made from the values above.
    other_round = "r-fedcba9876543210"
    other_transcript = ind.mask_transcript(other_round, roster, parties, settings)
    other_keys = _mask_keys(other_round, roster, parties, other_transcript)
    first_id, first_bits, first_code = rows[0]
    replayed = (
        ind.lane(1, k, first_bits[1], first_code if groups_from == 1 else None)
        + ind.mask(
            1, {j: other_keys[min(1, j), max(1, j)] for j in range(k) if j != 1}, ind.id_digest(first_id)
        )
    ) % ind.MOD128
    shifted_lane = next(j for j in range(k) if rows[0][1][j] == 1 and j != 0)  # company 0 shifts j's lane

    def with_value(row: int, company: int, value: int) -> int:
        return (sum(values[row]) - values[row][company] + value) % ind.MOD128

    rejects = [
        (
            "swap: company 1's values of rows 0 and 1 exchanged (the sum of row 0)",
            with_value(0, 1, values[1][1]),
        ),
        (
            "move: company 0's value of row 0 in company 2's list, in place of company 2's",
            with_value(0, 2, values[0][0]),
        ),
        (f"replay: company 1's value of row 0 from round {other_round}", with_value(0, 1, replayed)),
        (
            f"lane shift: company 0 adds 4^(k-1-{shifted_lane}) to its value "
            f"(company {shifted_lane}'s bit being 1, the lane overflows)",
            with_value(0, 0, values[0][0] + 4 ** (k - 1 - shifted_lane)),
        ),
        ("a value missing: the sum of k - 1 values of row 0", with_value(0, k - 1, 0)),
    ]
    if groups_from is not None:
        rejects.append(
            (
                f"group code shifted to {len(labels)} (one past the last label) by company 0",
                with_value(0, 0, values[0][0] + (len(labels) - (first_code or 0)) * 4**k),
            )
        )
    for why, total in rejects:
        assert not ind.decode_sum(total, k, len(labels))[2], why
    return {
        "name": name,
        "round_id": round_id,
        "roster": roster,
        "parties": parties,
        "groups_from": None if groups_from is None else roster[groups_from],
        "group_count": len(labels),
        "settings": settings.hex(),
        "transcript_digest": transcript.hex(),
        "pairs": pairs,
        "rows": out_rows,
        "must_reject": [{"why": why, "sum": f"{total:032x}"} for why, total in rejects],
    }


RING16 = [LONG_NAME, *(f"company-{i:02d}" for i in range(14)), "z" * 64]


def masks() -> dict[str, Any]:
    ring3 = [
        _mask_party("google", RFC7748_ALICE),
        _mask_party("microsoft", RFC7748_BOB),
        _mask_party("ibm", fixed_bytes("relay key|ibm")),
    ]
    ids = [
        "DIGIT_0_jackson_0.wav",
        "Île-de-France 東京 😀",  # 2-, 3- and 4-byte UTF-8
        "0",  # one character: the shortest id a company file allows (empty ids are refused)
        "a b",  # an inner space (ids are stripped at the ends only)
        "x" * 1024,  # the longest id allowed by default (max_id_length)
        "WAIMAI_10.txt",
        "ffff",
        "DIGIT_9_yweweler_49.wav",
    ]
    patterns = [[int(c) for c in format(p, "03b")] for p in (5, 0, 7, 1, 2, 3, 4, 6)]  # row 0: 101
    no_groups = _masks_case(
        "k = 3, no groups: all 8 patterns (RFC 7748 keys: google = Alice, microsoft = Bob)",
        ROUND, ring3, [(x, bits, None) for x, bits in zip(ids, patterns, strict=True)],
    )  # fmt: skip
    speakers = ["jackson", "nicolas", "theo", "yweweler"]
    grouped = _masks_case(
        "k = 3, groups from microsoft (4 labels, the digit speakers): codes 0-3",
        ROUND, ring3,
        [("DIGIT_0_jackson_0.wav", [1, 1, 0], 0), ("DIGIT_3_nicolas_7.wav", [0, 1, 1], 1),
         ("DIGIT_5_theo_12.wav", [1, 0, 0], 2), ("DIGIT_9_yweweler_49.wav", [1, 1, 1], 3)],
        groups_from=1, group_labels=speakers,
    )  # fmt: skip
    ring16 = [_mask_party(name, fixed_bytes(f"relay key|{name}")) for name in RING16]
    wide = _masks_case(
        "k = 16, groups from company-06 (127 labels, the most a round declares): codes 126 and 0; "
        "longest names, long round id",
        LONG_ROUND, ring16,
        [("Île-de-France 東京 😀", [1, 0] * 8, 126), ("0", [0] * 16, 0), ("x" * 1024, [1] * 16, 126),
         ("DIGIT_0_jackson_0.wav", [0, 1, 1, 0] * 4, 5)],
        groups_from=7, group_labels=[f"g{i:03d}" for i in range(127)],
    )  # fmt: skip
    return {
        "provenance": provenance(
            "masked tags (v2): transcript = SHA-256('monoculture/v2 transcript' + 4-byte-length-prefixed "
            "round, k (decimal), roster in ring order, then per company in roster order name, relay public "
            "key, tag public key, signature, then settings); s_ij = HKDF-SHA256(X25519(relay keys of i, j), "
            "salt = transcript, info 'monoculture/v2 mask' + length-prefixed round, the two names in ring "
            "order), 32 bytes; confirmation = HMAC-SHA256(s_ij, 'monoculture/v2 confirm' + length-prefixed "
            "transcript, sender, receiver); u(x) = SHA-256(8-byte big-endian byte length || UTF-8 id)[:16]; "
            "m_i = sum over j != i of sgn(j - i) * AES-256-ECB_{s_ij}(u) read big-endian, mod 2^128; "
            "lane_i = b_i * 4^(k-1-i) (+ code * 4^k for the groups company); value = lane + mask mod 2^128, "
            "16 bytes big-endian (hex, 32 digits); sum of the k values decodes when every 2-bit lane is 0 "
            "or 1 and sum >> 2k < max(group_count, 1); pattern bit k-1-i = company i's lane"
        ),
        "cases": [no_groups, grouped, wide],
    }


# ------------------------------------------------------------------ re-randomised tags (v2)


def _hex_scalars(values: list[int]) -> list[str]:
    """Scalars mod L as 64 hex digits: the 32 bytes little-endian a tag batch carries."""
    return [ind.scalar_bytes(v).hex() for v in values]


def _rr_pair_keys(tag: str, k: int) -> dict[tuple[int, int], bytes]:
    """Fixed pair keys s_ij (i < j) for the mask vectors: in a round they come from masks.json's
    pairwise key; any 32 bytes serve here."""
    return {(i, j): fixed_bytes(f"rerandomise pair key|{tag}|{i}|{j}") for i, j in combinations(range(k), 2)}


def _own(keys: dict[tuple[int, int], bytes], k: int, i: int) -> dict[int, bytes]:
    return {j: keys[min(i, j), max(i, j)] for j in range(k) if j != i}


def _rr_prf_case(label: bytes, pair_key: bytes, block: bytes, source: dict[str, str]) -> dict[str, Any]:
    raw = ind.prf_bytes(pair_key, label, block)
    value = ind.prf_mod_l(pair_key, label, block)
    assert value == int.from_bytes(raw, "big") % ind.ED_L
    return {
        "label": label.decode(),
        "pair_key": pair_key.hex(),
        **source,
        "block": block.hex(),
        "block_keys": [key.hex() for key in ind.prf_block_keys(pair_key, label)],
        "prf_bytes": raw.hex(),
        "value": ind.scalar_bytes(value).hex(),
    }


def _rr_prf_cases() -> list[dict[str, Any]]:
    key, other = fixed_bytes("rerandomise pair key|prf"), fixed_bytes("rerandomise pair key|prf 2")
    record_id = "DIGIT_0_jackson_0.wav"
    u = ind.id_digest(record_id)
    token = point(1)
    id_label, token_label = ind.RERANDOMISE_ID_LABEL, ind.RERANDOMISE_TOKEN_LABEL
    return [
        _rr_prf_case(id_label, key, u, {"id": record_id}),
        _rr_prf_case(id_label, other, u, {"id": record_id}),
        _rr_prf_case(id_label, key, bytes(16), {}),
        _rr_prf_case(id_label, key, b"\xff" * 16, {}),
        _rr_prf_case(token_label, key, ind.token_block(token), {"token": token.hex()}),
        _rr_prf_case(token_label, key, u, {}),  # the same block under the other label
        _rr_prf_case(token_label, key, bytes(16), {}),
    ]


def _rr_masks_case(
    name: str,
    tag: str,
    k: int,
    rows: list[tuple[str, list[int], int | None]],
    tokens: list[bytes],
    groups_from: int | None = None,
    group_count: int = 0,
) -> dict[str, Any]:
    """rows: (id, the k bits, group code or None); tokens: final tokens (33 bytes each)."""
    keys = _rr_pair_keys(tag, k)
    out_rows = []
    for record_id, bits, code in rows:
        u = ind.id_digest(record_id)
        id_masks = [ind.id_mask_mod_l(i, _own(keys, k, i), u) for i in range(k)]
        assert sum(id_masks) % ind.ED_L == 0
        lanes = [ind.lane(i, k, bits[i], code if i == groups_from else None) for i in range(k)]
        exponents = [
            ind.exponent(i, k, _own(keys, k, i), u, bits[i], code if i == groups_from else None)
            for i in range(k)
        ]
        assert exponents == [(x + m) % ind.ED_L for x, m in zip(lanes, id_masks, strict=True)]
        pattern = int("".join(map(str, bits)), 2)
        assert sum(exponents) % ind.ED_L == ind.sum_lanes(pattern, k, code or 0) == sum(lanes)
        out_rows.append(
            {
                "id": record_id,
                "u": u.hex(),
                "bits": bits,
                "group_code": code,
                "id_masks": _hex_scalars(id_masks),
                "lanes": lanes,
                "exponents": _hex_scalars(exponents),
            }
        )
    out_tokens = []
    for token in tokens:
        token_masks = [ind.token_mask_mod_l(i, _own(keys, k, i), token) for i in range(k)]
        assert sum(token_masks) % ind.ED_L == 0
        out_tokens.append(
            {
                "token": token.hex(),
                "block": ind.token_block(token).hex(),
                "token_masks": _hex_scalars(token_masks),
            }
        )
    return {
        "name": name,
        "k": k,
        "groups_from": groups_from,
        "group_count": group_count,
        "pair_keys": [{"first": i, "second": j, "pair_key": key.hex()} for (i, j), key in keys.items()],
        "rows": out_rows,
        "tokens": out_tokens,
    }


def _rr_randomisers_case(name: str, seed: bytes, label: bytes, count: int) -> dict[str, Any]:
    key = ind.randomiser_key(seed, label)
    stream = ind.aes_ctr_keystream(key, 64 * count)
    values = ind.randomisers(seed, label, count)
    assert values == [int.from_bytes(stream[64 * n : 64 * n + 64], "big") % ind.ED_L for n in range(count)]
    return {
        "name": name,
        "seed": seed.hex(),
        "label": label.decode(),
        "hkdf_info": (ind.RERANDOMISE_RANDOM_LABEL + label).hex(),
        "aes_key": key.hex(),
        "count": count,
        "keystream": stream.hex(),
        "values": _hex_scalars(values),
    }


def _order_8_point() -> ind.EdPoint:
    """A point of order 8: L * P for the curve point P of the smallest y >= 2 whose L * P has order 8."""
    y = 2
    while True:
        x = ind.ed_recover_x(y, 0)
        if x is not None:
            torsion = ind.ed_mul(ind.ED_L, (x, y, 1, x * y % ind.ED_P))
            if not ind.ed_equal(ind.ed_mul(4, torsion), ind.ED_IDENTITY):
                return torsion
        y += 1


def _not_on_curve() -> bytes:
    """The encoding (sign 0) of the smallest y >= 2 that no curve point has."""
    y = 2
    while ind.ed_recover_x(y, 0) is not None:
        y += 1
    return y.to_bytes(32, "little")


def _rr_bad_points() -> list[dict[str, str]]:
    order_2 = (0, ind.ED_P - 1, 1, 0)  # (0, -1)
    order_8 = _order_8_point()
    points = [
        (
            "the base point plus the point (0, -1) of order 2: a torsion component",
            ind.ed_add(ind.ED_B, order_2),
        ),
        ("the base point plus a point of order 8: a torsion component", ind.ed_add(ind.ED_B, order_8)),
        ("a point of order 8 (small order)", order_8),
        ("the identity (small order)", ind.ED_IDENTITY),
    ]
    out = [{"why": why, "point": ind.ed_encode(p).hex()} for why, p in points]
    out += [
        {"why": "not on the curve (no x for this y)", "point": _not_on_curve().hex()},
        {
            "why": "not canonical: y = p + 1 (the identity's y plus p)",
            "point": (ind.ED_P + 1).to_bytes(32, "little").hex(),
        },
    ]
    for entry in out:
        assert not ind.ed_valid_point(bytes.fromhex(entry["point"])), entry["why"]
    return out


def _rr_encrypt_cases(public_key: bytes) -> list[dict[str, str]]:
    """(value, randomness) at the edges: 0 (C2 = r*Y), 1 with r = L - 1 (C1 = -B), L - 1, a lane."""
    seed = fixed_bytes("rerandomise seed|encrypt")
    r2, r3 = ind.randomisers(seed, b"encrypt", 2)
    cases = [(0, 1), (1, ind.ED_L - 1), (ind.ED_L - 1, r2), (4**2 + 4**0, r3)]
    return [
        {
            "value": ind.scalar_bytes(e).hex(),
            "randomness": ind.scalar_bytes(r).hex(),
            "tag": ind.elgamal_encrypt(public_key, e, r).hex(),
        }
        for e, r in cases
    ]


def _rr_round(masks_case: dict[str, Any], roster: list[str], coordinator_key: bytes) -> dict[str, Any]:
    """Every list of a round of k = len(roster) through the ring, hop by hop, for the ids and
    tokens of masks_case (id n has final token n, in every list): the owner encrypts at hop 0,
    company (owner + hop) mod k re-randomises at hop 1..k-1, the last one adding its token masks."""
    k = len(roster)
    assert masks_case["k"] == k and masks_case["groups_from"] is None
    keys = {(p["first"], p["second"]): bytes.fromhex(p["pair_key"]) for p in masks_case["pair_keys"]}
    rows, tokens = masks_case["rows"], [bytes.fromhex(t["token"]) for t in masks_case["tokens"]]
    assert len(rows) == len(tokens)
    secret = ind.coordinator_secret(coordinator_key)
    public_key = ind.ed_base_times(secret)
    seeds = {name: fixed_bytes(f"rerandomise seed|{name}") for name in roster}
    lists: list[dict[str, Any]] = []
    finals: list[list[bytes]] = []
    for owner in range(k):
        hops = []
        values = [
            ind.exponent(owner, k, _own(keys, k, owner), ind.id_digest(r["id"]), r["bits"][owner])
            for r in rows
        ]
        label = f"{roster[owner]}|0|0".encode()  # '<owner>|<hop>|<first index of the batch>'
        randomness = ind.randomisers(seeds[roster[owner]], label, len(rows))
        tags = [ind.elgamal_encrypt(public_key, e, r) for e, r in zip(values, randomness, strict=True)]
        hops.append(
            {
                "hop": 0,
                "company": roster[owner],
                "randomiser_label": label.decode(),
                "values": _hex_scalars(values),
                "randomness": _hex_scalars(randomness),
                "tags": b"".join(tags).hex(),
            }
        )
        for hop in range(1, k):
            relay = (owner + hop) % k
            label = f"{roster[owner]}|{hop}|0".encode()
            randomness = ind.randomisers(seeds[roster[relay]], label, len(rows))
            shifts = (
                [ind.token_mask_mod_l(relay, _own(keys, k, relay), t) for t in tokens] if hop == k - 1 else []
            )
            tags = [
                ind.elgamal_rerandomise(public_key, tag, s, shifts[n] if shifts else 0)
                for n, (tag, s) in enumerate(zip(tags, randomness, strict=True))
            ]
            hops.append(
                {
                    "hop": hop,
                    "company": roster[relay],
                    "randomiser_label": label.decode(),
                    "randomness": _hex_scalars(randomness),
                    "shifts": _hex_scalars(shifts),
                    "tags": b"".join(tags).hex(),
                }
            )
        lists.append({"owner": roster[owner], "hops": hops})
        finals.append(tags)
    valid = {ind.ed_base_times(ind.sum_lanes(p, k)): p for p in range(1 << k)}
    sums = []
    for n, row in enumerate(rows):
        total = ind.elgamal_add([final[n] for final in finals])
        decrypted = ind.elgamal_decrypt(secret, total)
        pattern = int("".join(map(str, row["bits"])), 2)
        assert decrypted == ind.ed_base_times(ind.sum_lanes(pattern, k)) and valid[decrypted] == pattern
        sums.append(
            {
                "id": row["id"],
                "c1": total[:32].hex(),
                "c2": total[32:].hex(),
                "decrypted": decrypted.hex(),
                "lanes": ind.sum_lanes(pattern, k),
                "pattern": pattern,
            }
        )
    # Final lists the coordinator must find wrong (sums not among the valid ones).
    swapped = [list(f) for f in finals]
    swapped[1][0], swapped[1][1] = finals[1][1], finals[1][0]
    last = k - 1  # the list of company k - 1, without its last relay's token masks
    before_last = bytes.fromhex(lists[last]["hops"][k - 2]["tags"])
    last_randomness = bytes.fromhex("".join(lists[last]["hops"][k - 1]["randomness"]))
    unshifted = [list(f) for f in finals]
    unshifted[last] = [
        ind.elgamal_rerandomise(
            public_key,
            before_last[64 * n : 64 * n + 64],
            int.from_bytes(last_randomness[32 * n : 32 * n + 32], "little"),
        )
        for n in range(len(rows))
    ]
    rejects = []
    for why, columns in (
        (f"{roster[1]}'s final tags of rows 0 and 1 exchanged", swapped),
        (f"{roster[last]}'s list re-randomised at its last hop without the token masks", unshifted),
    ):
        bad = [
            n
            for n in range(len(rows))
            if ind.elgamal_decrypt(secret, ind.elgamal_add([c[n] for c in columns])) not in valid
        ]
        rejects.append({"why": why, "columns": [b"".join(c).hex() for c in columns], "bad_rows": bad})
    return {
        "roster": roster,
        "masks_case": masks_case["name"],
        "seeds": {name: seed.hex() for name, seed in seeds.items()},
        "lists": lists,
        "sums": sums,
        "must_reject": rejects,
    }


def _rr_sum_table(k: int, group_count: int) -> dict[str, Any]:
    entries = []
    for code in range(max(group_count, 1)):
        for pattern in range(1 << k):
            lanes = ind.sum_lanes(pattern, k, code)
            entries.append(
                {"pattern": pattern, "code": code, "lanes": lanes, "point": ind.ed_base_times(lanes).hex()}
            )
    return {"k": k, "group_count": group_count, "entries": entries}


def rerandomise() -> dict[str, Any]:
    roster = ["google", "microsoft", "ibm"]
    tokens = [point(s) for s in (11, 12, 13)]  # final tokens: 33-byte (compressed P-256) points
    k3 = _rr_masks_case(
        "k = 3, no groups: patterns 101, 000 and 111, one final token per id",
        "k3", 3,
        [("DIGIT_0_jackson_0.wav", [1, 0, 1], None), ("Île-de-France 東京 😀", [0, 0, 0], None),
         ("0", [1, 1, 1], None)],
        tokens,
    )  # fmt: skip
    k4 = _rr_masks_case(
        "k = 4, groups from position 1 (4 labels): codes 1, 3 and 0",
        "k4", 4,
        [("DIGIT_3_nicolas_7.wav", [0, 1, 1, 0], 1), ("DIGIT_5_theo_12.wav", [1, 0, 0, 1], 3),
         ("x" * 1024, [1, 1, 1, 1], 0)],
        [point(21), point(22)],
        groups_from=1, group_count=4,
    )  # fmt: skip
    seed = fixed_bytes("rerandomise seed|google")
    randomisers = [
        _rr_randomisers_case("owner google, hop 0, batch from 0: three scalars", seed, b"google|0|0", 3),
        _rr_randomisers_case("the same, one scalar (the first of the three)", seed, b"google|0|0", 1),
        _rr_randomisers_case("owner ibm, hop 2, batch from 4096", seed, b"ibm|2|4096", 2),
        _rr_randomisers_case(
            "another seed, owner google, hop 0, batch from 0",
            fixed_bytes("rerandomise seed|ibm"),
            b"google|0|0",
            2,
        ),
    ]
    coordinator_key = fixed_bytes("coordinator tag key")
    secret = ind.coordinator_secret(coordinator_key)
    public_key = ind.ed_base_times(secret)
    assert ind.ed_valid_point(public_key)
    return {
        "provenance": provenance(
            "re-randomised failure tags (v2): edwards25519 (RFC 8032 5.1), points 32 bytes (y little-endian, "
            "the sign of x in the top bit), scalars mod L as 32 bytes little-endian (64 hex digits); "
            "F_s(label, block) = AES-256 of the 16-byte block under HMAC-SHA256(s, label || c) for the byte "
            "c = 0..3, the four outputs concatenated (prf_bytes), read big-endian, mod L; labels "
            "'monoculture/v2 rerandomise id' and 'monoculture/v2 rerandomise token'; "
            "M_i(x) = sum over j != i of sgn(j - i) * F_{s_ij}(id, u(x)), u(x) as in masks.json; "
            "t_j(T) = the same over F_{s_jl}(token, SHA-256(T)[:16]); the k masks of one id or token sum "
            "to 0 mod L; e_i(x) = b_i * 4^(k-1-i) (+ code * 4^k for the groups company) + M_i(x) mod L; "
            "randomisers(seed, label, n): key = HKDF-SHA256(seed, salt none, info 'monoculture/v2 "
            "rerandomise randomness|' + label), AES-256-CTR keystream from a zero counter block, 64 bytes "
            "per scalar read big-endian, mod L; coordinator key y = SHA-512('monoculture/v2 rerandomise key' "
            "|| its 32-byte tag private key) read big-endian, mod L, Y = y*B; tag = (r*B, e*B + r*Y), 64 "
            "bytes; a relay adds (s*B, s*Y), the last relay of a list also t_j(T)*B to C2; the sum of the "
            "k final tags of one token decrypts (C2 - y*C1) to lanes*B, looked up among the 2^k * "
            "max(G, 1) valid sums"
        ),
        "curve": {
            "group_order": str(ind.ED_L),
            "base_point": ind.ed_encode(ind.ED_B).hex(),
            "identity": ind.ed_encode(ind.ED_IDENTITY).hex(),
        },
        "prf": _rr_prf_cases(),
        "masks": [k3, k4],
        "randomisers": randomisers,
        "elgamal": {
            "coordinator_tag_private_key": coordinator_key.hex(),
            "key_digest": ind.coordinator_key_digest(coordinator_key).hex(),
            "secret": ind.scalar_bytes(secret).hex(),
            "public_key": public_key.hex(),
            "encrypt": _rr_encrypt_cases(public_key),
            "round": _rr_round(k3, roster, coordinator_key),
            "must_reject_points": _rr_bad_points(),
        },
        "sum_tables": [_rr_sum_table(2, 0), _rr_sum_table(2, 2)],
    }


# ------------------------------------------------------------------ result JSON


def result_digit() -> dict[str, Any]:
    companies = ["google", "microsoft", "ibm"]
    counts = [576, 20, 5, 1, 858, 199, 54, 287]
    figures = ind.result_figures(companies, counts)
    return {
        "provenance": provenance(
            "the result of the digit example's pattern table (README, 'Result JSON'): integer keys exactly; "
            "figures defined as ratios of counts as exact rationals 'p/q' (compare within a relative 1e-12); "
            "what release() adds under the default policy, exactly. Statistics that are not ratios "
            "(confidence interval, p-values) are not pinned here; the schema pins their types"
        ),
        "input": {"companies": companies, "pattern_counts": counts},
        "expected": {
            **figures,
            "relative_tolerance": 1e-12,
            "release_default_policy": {
                "suppressed": False,
                "noisy": False,
                "release_policy": {
                    "min_shared_individuals": 0,
                    "min_cell_count": 0,
                    "differential_privacy": None,
                },
            },
        },
    }


BUILDERS = {
    "failure-tags.json": failure_tags,
    "relay-sealing.json": relay_sealing,
    "points-framing.json": points_framing,
    "shuffle.json": shuffle,
    "result-digit.json": result_digit,
    "masks.json": masks,
    "rerandomise.json": rerandomise,
}


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("--")] or list(BUILDERS)
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        print(f"no such vector file: {', '.join(unknown)} (known: {', '.join(BUILDERS)})", file=sys.stderr)
        return 2
    stale = []
    for name in names:
        build = BUILDERS[name]
        text = render(build())
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"differ from the generator: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
