"""Builds the known-answer vectors in this folder with the independent implementation.

    .venv/bin/python tests/vectors/generate.py          # rewrite the JSON files
    .venv/bin/python tests/vectors/generate.py --check  # exit 1 if a file differs

Every output comes from independent.py (RFC 5869 HKDF over hmac, AES-GCM / AES-ECB /
X25519 / P-256 from `cryptography`, protobuf encoded by hand, exact rationals); nothing
from monoculture is imported. Every input is fixed below, so the output is the same on
every run. See PROVENANCE.md.
"""

from __future__ import annotations

import hashlib
import json
import sys
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


# ------------------------------------------------------------------ failure tags


def _tag_case(
    name: str,
    round_id: str,
    company: str,
    company_key: bytes,
    coordinator_key: bytes,
    bits: dict[int, int],
    list_length: int,
    open_only: dict[int, int] | None = None,
) -> dict[str, Any]:
    company_public = ind.x25519_public(company_key)
    coordinator_public = ind.x25519_public(coordinator_key)
    shared = ind.x25519_shared(company_key, coordinator_public)
    assert shared == ind.x25519_shared(coordinator_key, company_public)
    key = ind.tag_key(shared, round_id, company)
    aad = ind.tag_aad(round_id, company)
    tags = [
        {
            "position": p,
            "bit": b,
            "nonce": ind.nonce(p).hex(),
            "tag": ind.seal_tag(key, aad, p, bytes((b,))).hex(),
        }
        for p, b in sorted(bits.items())
    ]
    case: dict[str, Any] = {
        "name": name,
        "round_id": round_id,
        "company": company,
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
    if list_length == len(bits):
        case["sealed_list"] = "".join(t["tag"] for t in tags)
    if open_only:
        case["open_only"] = [
            {"position": p, "bit": b, "tag": ind.seal_tag(key, aad, p, bytes((b,))).hex()}
            for p, b in sorted(open_only.items())
        ]
    return case


def _group_tag_case(
    name: str,
    round_id: str,
    company: str,
    company_key: bytes,
    coordinator_key: bytes,
    labels: list[str],
    elements: dict[int, tuple[int, int]],
    list_length: int,
) -> dict[str, Any]:
    """The groups company's tags: elements are position -> (bit, group code)."""
    company_public = ind.x25519_public(company_key)
    coordinator_public = ind.x25519_public(coordinator_key)
    shared = ind.x25519_shared(company_key, coordinator_public)
    key = ind.tag_key(shared, round_id, company)
    aad = ind.group_tag_aad(round_id, company, labels)
    tags = []
    for p, (b, code) in sorted(elements.items()):
        plaintext = ind.group_tag_plaintext(b, code)
        tag = ind.seal_tag(key, aad, p, plaintext)
        tags.append({"position": p, "bit": b, "code": code, "plaintext": plaintext.hex(), "tag": tag.hex()})
    case: dict[str, Any] = {
        "name": name,
        "round_id": round_id,
        "company": company,
        "group_labels": labels,
        "group_labels_digest": ind.group_labels_digest(labels).hex(),
        "company_private_key": company_key.hex(),
        "company_public_key": company_public.hex(),
        "coordinator_private_key": coordinator_key.hex(),
        "coordinator_public_key": coordinator_public.hex(),
        "shared_secret": shared.hex(),
        "tag_key": key.hex(),
        "aad": aad.hex(),
        "list_length": list_length,
        "tags": tags,
    }
    if list_length == len(elements):
        case["sealed_list"] = "".join(t["tag"] for t in tags)
    return case


def grouped_failure_tags() -> list[dict[str, Any]]:
    speakers = ["jackson", "nicolas", "theo", "yweweler"]
    pairs = [(1, 3), (0, 0), (1, 1), (0, 2), (1, 0), (0, 3), (1, 2), (0, 1)]
    speakers_case = _group_tag_case(
        "google defines 4 groups (the digit speakers): every code with both bits at positions 0-7 "
        "(RFC 7748 keys: company = Alice, coordinator = Bob)",
        ROUND, "google", RFC7748_ALICE, RFC7748_BOB, speakers, dict(enumerate(pairs)), 8,
    )  # fmt: skip
    most = [f"g{i:03d}" for i in range(127)]
    most_case = _group_tag_case(
        "127 labels, the most a round declares: codes 126 and 0 with both bits, list of 4",
        ROUND, "ibm", fixed_bytes("tag key|ibm"), fixed_bytes("coordinator tag key"), most,
        {0: (1, 126), 1: (0, 126), 2: (1, 0), 3: (0, 1)}, 4,
    )  # fmt: skip
    wide = ["Île-de-France", "東京", "a b", "x" * 64]
    wide_case = _group_tag_case(
        "labels in UTF-8 beyond ASCII, with an inner space, and of 64 characters (the longest allowed); "
        "longest company name, long round id",
        LONG_ROUND, LONG_NAME, fixed_bytes(f"tag key|{LONG_NAME}"), fixed_bytes("coordinator tag key"), wide,
        {0: (0, 1), 1: (1, 3)}, 2,
    )  # fmt: skip
    key = bytes.fromhex(speakers_case["tag_key"])
    aad = bytes.fromhex(speakers_case["aad"])
    reordered = ind.group_tag_aad(ROUND, "google", list(reversed(speakers)))
    speakers_case["must_reject"] = [
        {
            "why": "authenticates but holds code 4: only 4 labels (codes 0-3) are declared",
            "tag": ind.seal_tag(key, aad, 8, ind.group_tag_plaintext(1, 4)).hex(),
        },
        {
            "why": "sealed for the same labels in another order (another labels digest)",
            "tag": ind.seal_tag(key, reordered, 0, ind.group_tag_plaintext(1, 3)).hex(),
        },
        {
            "why": "a one-bit tag of the same round and company (the AAD of a company without groups)",
            "tag": ind.seal_tag(key, ind.tag_aad(ROUND, "google"), 0, b"\x01").hex(),
        },
        {
            "why": "holds two bytes",
            "tag": ind.seal_tag(key, aad, 9, b"\x01\x00").hex(),
        },
    ]
    return [speakers_case, most_case, wide_case]


def failure_tags() -> dict[str, Any]:
    short = _tag_case(
        "eight bits at positions 0-7 (RFC 7748 keys: company = Alice, coordinator = Bob)",
        ROUND, "google", RFC7748_ALICE, RFC7748_BOB,
        dict(enumerate([0, 1, 1, 0, 1, 0, 0, 1])), 8,
    )  # fmt: skip
    long_names = _tag_case(
        "longest company name, long round id",
        LONG_ROUND, LONG_NAME, fixed_bytes(f"tag key|{LONG_NAME}"), fixed_bytes("coordinator tag key"),
        {0: 1, 1: 0}, 2,
    )  # fmt: skip
    positions = _tag_case(
        "a list of 1000 (bits 0 except where pinned): positions 0, 255, 256, 999; "
        "open_only: positions beyond any list sealed here, 2^32 and 2^96 - 1",
        ROUND, "ibm", fixed_bytes("tag key|ibm"), fixed_bytes("coordinator tag key"),
        {0: 1, 255: 0, 256: 1, 999: 1}, 1000, open_only={2**32: 1, 2**96 - 1: 0},
    )  # fmt: skip
    key = bytes.fromhex(short["tag_key"])
    aad = bytes.fromhex(short["aad"])
    other_round_key = ind.tag_key(bytes.fromhex(short["shared_secret"]), "r-fedcba9876543210", "google")
    moved = bytearray(ind.seal_tag(key, aad, 3, b"\x00"))
    moved[11] ^= 0x01  # the nonce now says position 2
    rejects = [
        {
            "why": "authenticates but holds the byte 0x02, not a bit",
            "tag": ind.seal_tag(key, aad, 8, b"\x02").hex(),
        },
        {"why": "nonce changed after sealing (position 3 relabelled 2)", "tag": moved.hex()},
        {
            "why": "sealed for another round (r-fedcba9876543210)",
            "tag": ind.seal_tag(
                other_round_key, ind.tag_aad("r-fedcba9876543210", "google"), 0, b"\x01"
            ).hex(),
        },
        {"why": "sealed for another company (ibm's tag key and AAD)", "tag": positions["tags"][0]["tag"]},
    ]
    short["must_reject"] = rejects
    pins = provenance(
        "failure tags: key = HKDF-SHA256(X25519(company, coordinator), salt none, "
        "info 'monoculture/v1 failure tag key|<round>|<company>'), "
        "AAD 'monoculture/v1 tag|<round>|<company>', "
        "nonce = position as 12 bytes big-endian, tag = nonce || AES-256-GCM(bit byte) = 29 bytes"
    )
    pins["grouped_pins"] = (
        "grouped_cases: the tags of the company a round takes its groups from: the same key and nonce; "
        "AAD 'monoculture/v1 group tag|<round>|<company>|' + hex SHA-256 of the declared labels in "
        "order, each UTF-8 behind its 4-byte big-endian length; plaintext one byte = bit | code << 1 "
        "(code = index of the label, 0-126); 29 bytes, as every other tag. Every other company's tags, "
        "and every tag of a round without groups, are the 'cases' format"
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
    # The tags are real failure tags of the owner's list (sealed to the coordinator's fixed key).
    owner_shared = ind.x25519_shared(
        fixed_bytes(f"tag key|{owner}"), ind.x25519_public(fixed_bytes("coordinator tag key"))
    )
    tag_key, tag_aad = ind.tag_key(owner_shared, round_id, owner), ind.tag_aad(round_id, owner)
    out = []
    for index, count, size, scalars in chunks:
        header = {
            "round_id": round_id, "list_owner": owner, "hop": hop, "chunk_index": index,
            "chunk_count": count, "list_size": size, "chunk_elements": len(scalars),
        }  # fmt: skip
        points = [point(s) for s in scalars]
        tags = b"".join(ind.seal_tag(tag_key, tag_aad, s, bytes((s % 2,))) for s in scalars)
        points_field = ind.psi_request(points)
        body = ind.list_chunk_body(points_field, tags)
        aad = ind.chunk_aad(header, sender["company"], receiver["company"])
        sealed = ind.seal_chunk(key, index, body, aad)
        out.append(
            {
                "header": header,
                "points": [p.hex() for p in points],
                "tags": tags.hex(),
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
            "big-endian; sealed = AES-256-GCM(ListChunkBody{points, tags}); the sealed ListChunk on the wire"
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
}


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in BUILDERS.items():
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
