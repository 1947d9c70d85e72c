"""Builds the known-answer vectors in this folder with the independent implementation.

    .venv/bin/python tests/vectors/generate.py          # rewrite the JSON files
    .venv/bin/python tests/vectors/generate.py --check  # exit 1 if a file differs
    .venv/bin/python tests/vectors/generate.py masks.json  # only the files named

Every output comes from independent.py (RFC 5869 HKDF over hmac, AES-GCM / AES-ECB /
X25519 / P-256 from `cryptography`, protobuf encoded by hand, exact rationals); nothing
from monoculture is imported. Every input is fixed below, so the output is the same on
every run. See PROVENANCE.md.
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
