"""A second implementation of monoculture's byte formats, for the known-answer vectors.

Written from the format descriptions (docs/PROTOCOL.md, README "Result JSON", the
.proto file), not from monoculture's code, and importing nothing from monoculture:

- HKDF-SHA256 is RFC 5869 written out with `hmac` (checked against the RFC's own
  test cases by tests/test_vectors.py);
- AES-CTR is written out as AES-ECB over big-endian counter blocks;
- protobuf messages are encoded by hand (tag, varint, length-delimited fields);
- the result figures are exact rationals (`fractions.Fraction`);
- the JSON-schema check is a small validator for the subset the schema uses.

- the failure tags are protocol v2's: each seals one 16-byte masked value under
  'monoculture/v2' labels (the relays, points framing and shuffles are still v1's);
- the masked tags of v2 (transcript, pairwise mask keys, confirmations, u(x), masks,
  lanes, sums) use Python's big integers for the arithmetic mod 2^128;
- the re-randomised tags of v2 (the 512-bit PRF mod L, masks mod L, randomisers, ElGamal)
  use edwards25519 written out in pure Python from RFC 8032 section 5.1 (checked against
  the RFC's base point and test keys by tests/test_vectors.py), not libsodium / PyNaCl.

Only X25519, AES-256-GCM and the AES block cipher come from `cryptography`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from fractions import Fraction
from itertools import combinations
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# ------------------------------------------------------------------ primitives


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """RFC 5869, section 2: extract (salt absent = HashLen zero bytes), then expand."""
    prk = hmac.new(salt if salt else bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, math.ceil(length / 32) + 1):
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def x25519_public(private_key: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


def x25519_shared(private_key: bytes, peer_public_key: bytes) -> bytes:
    private = X25519PrivateKey.from_private_bytes(private_key)
    return private.exchange(X25519PublicKey.from_public_bytes(peer_public_key))


def aes_ctr_keystream(key: bytes, length: int) -> bytes:
    """AES-CTR keystream from a zero 16-byte initial counter block, counter = the whole
    block as a 128-bit big-endian integer (written out from AES-ECB)."""
    blocks = b"".join(i.to_bytes(16, "big") for i in range(math.ceil(length / 16)))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (ecb.update(blocks) + ecb.finalize())[:length]


def nonce(index: int) -> bytes:
    """12-byte big-endian position / chunk index."""
    return index.to_bytes(12, "big")


def length_prefixed(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


# ------------------------------------------------------------------ protobuf by hand


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pb_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2); proto3 leaves out empty scalars."""
    return varint(number << 3 | 2) + varint(len(data)) + data if data else b""


def pb_uint(number: int, value: int) -> bytes:
    """A varint field (wire type 0); proto3 leaves out zero."""
    return varint(number << 3) + varint(value) if value else b""


def psi_request(points: list[bytes]) -> bytes:
    """openmined-psi `psi_proto.Request{reveal_intersection = true (1), encrypted_elements (2)}`."""
    return pb_uint(1, 1) + b"".join(varint(2 << 3 | 2) + varint(len(p)) + p for p in points)


def _read_varint(blob: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(blob) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = blob[at]
        value, at, shift = value | (byte & 0x7F) << shift, at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def parse_psi_request(blob: bytes) -> list[bytes]:
    """The encrypted_elements of a serialized psi_proto.Request (ValueError if it does not parse)."""
    elements, at = [], 0
    while at < len(blob):
        key, at = _read_varint(blob, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, at = _read_varint(blob, at)
        elif wire_type == 2:
            length, at = _read_varint(blob, at)
            if at + length > len(blob):
                raise ValueError("length-delimited field runs past the end")
            if number == 2:
                elements.append(blob[at : at + length])
            at += length
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return elements


def list_chunk_body(points: bytes, tags: bytes) -> bytes:
    """monoculture.v1.ListChunkBody{points = 1, tags = 2}."""
    return pb_bytes(1, points) + pb_bytes(2, tags)


def list_chunk(header: dict[str, Any], sender: str, receiver: str, sealed: bytes) -> bytes:
    """monoculture.v1.ListChunk as sent sealed (points and tags empty), fields in number order."""
    return b"".join(
        (
            pb_bytes(1, header["round_id"].encode()),
            pb_bytes(2, sender.encode()),
            pb_bytes(3, header["list_owner"].encode()),
            pb_uint(4, header["hop"]),
            pb_uint(5, header["chunk_index"]),
            pb_uint(6, header["chunk_count"]),
            pb_uint(7, header["list_size"]),
            pb_uint(10, header["chunk_elements"]),
            pb_bytes(11, receiver.encode()),
            pb_bytes(12, sealed),
        )
    )


# ------------------------------------------------------------------ failure tags (v2)
#
# A tag seals one masked value (16 bytes, the 128-bit value big-endian; see the masked
# tags below): nonce (the position, 12 bytes big-endian) || AES-256-GCM ciphertext (16
# bytes) || GCM tag (16 bytes) = 44 bytes. Which value it is does not matter to the tag:
# the failure bit, and for the groups company the group code, are lanes of the value.

TAG_VALUE_SIZE = 16
TAG_SIZE = 12 + TAG_VALUE_SIZE + 16


def tag_key_info(round_id: str, company: str) -> bytes:
    return f"monoculture/v2 failure tag key|{round_id}|{company}".encode()


def tag_aad(round_id: str, company: str) -> bytes:
    """Every company's tags but the groups company's (and every tag of a round without groups)."""
    return f"monoculture/v2 tag|{round_id}|{company}".encode()


def tag_key(shared_secret: bytes, round_id: str, company: str) -> bytes:
    """HKDF-SHA256(X25519(company, coordinator), salt none, the info above), 32 bytes."""
    return hkdf_sha256(shared_secret, tag_key_info(round_id, company))


def seal_tag(key: bytes, aad: bytes, position: int, plaintext: bytes) -> bytes:
    """nonce || AES-256-GCM(nonce, plaintext, aad): 12 + 16 + 16 = 44 bytes for a masked value.
    Any plaintext length seals (the vectors make wrong-length tags with it)."""
    return nonce(position) + AESGCM(key).encrypt(nonce(position), plaintext, aad)


def open_tag(key: bytes, aad: bytes, tag: bytes) -> bytes:
    """The plaintext (InvalidTag if it does not authenticate); its length is the caller's check."""
    return AESGCM(key).decrypt(tag[:12], tag[12:], aad)


def open_value(key: bytes, aad: bytes, tag: bytes) -> bytes:
    """The masked value of a tag: ValueError unless it authenticates and holds exactly 16 bytes."""
    try:
        value = open_tag(key, aad, tag)
    except InvalidTag as exc:
        raise ValueError("the tag does not authenticate") from exc
    if len(value) != TAG_VALUE_SIZE:
        raise ValueError(f"the tag holds {len(value)} bytes, not {TAG_VALUE_SIZE}")
    return value


def group_labels_digest(labels: list[str]) -> bytes:
    """SHA-256 of the declared labels in order, each as UTF-8 behind its 4-byte big-endian length."""
    return hashlib.sha256(b"".join(length_prefixed(label) for label in labels)).digest()


def group_tag_aad(round_id: str, company: str, labels: list[str]) -> bytes:
    """The groups company's tags: 'monoculture/v2 group tag|<round>|<company>|<labels digest, hex>'.
    The group code itself is in the value (lane_values below), not in the tag's format."""
    return f"monoculture/v2 group tag|{round_id}|{company}|{group_labels_digest(labels).hex()}".encode()


# ------------------------------------------------------------------ relays


def key_statement(
    round_id: str, company: str, relay_public_key: bytes, tag_public_key: bytes, roster: list[str]
) -> bytes:
    """The signed enrolment: keys bound to round, name, and the roster in ring order (its length first)."""
    fields = (round_id, company, relay_public_key, tag_public_key, str(len(roster)), *roster)
    return b"monoculture/v1 relay public key" + b"".join(length_prefixed(f) for f in fields)


def chunk_statement(header: dict[str, Any], sender: str, receiver: str, sealed: bytes) -> bytes:
    """What a sender signs for a sealed chunk: the relay AAD of its header, then SHA-256 over the
    length-prefixed sealed bytes, points and tags (the last two empty once sealed)."""
    digest = hashlib.sha256(length_prefixed(sealed) + length_prefixed(b"") + length_prefixed(b"")).digest()
    return b"monoculture/v1 chunk signature" + chunk_aad(header, sender, receiver) + digest


def relay_key_info(round_id: str, sender: str, receiver: str, owner: str, hop: int) -> bytes:
    fields = (round_id, sender, receiver, owner, str(hop))
    return b"monoculture/v1 relay chunk key" + b"".join(length_prefixed(f) for f in fields)


def relay_key(shared_secret: bytes, round_id: str, sender: str, receiver: str, owner: str, hop: int) -> bytes:
    return hkdf_sha256(shared_secret, relay_key_info(round_id, sender, receiver, owner, hop))


def chunk_aad(header: dict[str, Any], sender: str, receiver: str) -> bytes:
    fields = (
        header["round_id"], sender, receiver, header["list_owner"], str(header["hop"]),
        str(header["chunk_index"]), str(header["chunk_count"]), str(header["list_size"]),
        str(header["chunk_elements"]),
    )  # fmt: skip
    return b"monoculture/v1 relay chunk" + b"".join(length_prefixed(f) for f in fields)


def seal_chunk(key: bytes, chunk_index: int, body: bytes, aad: bytes) -> bytes:
    """AES-256-GCM of the serialized ListChunkBody (ciphertext || 16-byte tag; the nonce is not sent)."""
    return AESGCM(key).encrypt(nonce(chunk_index), body, aad)


def open_chunk(key: bytes, chunk_index: int, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(nonce(chunk_index), sealed, aad)


# ------------------------------------------------------------------ shuffles


def shuffle_label(owner: str, hop: int) -> bytes:
    return f"{owner}|{hop}".encode()


def shuffle_key(seed: bytes, label: bytes) -> bytes:
    return hkdf_sha256(seed, b"monoculture/v1 shuffle|" + label)


def shuffle_sort_keys(seed: bytes, label: bytes, size: int) -> list[int]:
    """One 64-bit sort key per element: 8 keystream bytes each, read little-endian."""
    stream = aes_ctr_keystream(shuffle_key(seed, label), 8 * size)
    return [int.from_bytes(stream[8 * i : 8 * i + 8], "little") for i in range(size)]


def permutation(seed: bytes, label: bytes, size: int) -> list[int]:
    """Indices ordered by their sort key (ties by index: a stable sort)."""
    keys = shuffle_sort_keys(seed, label, size)
    return sorted(range(size), key=lambda i: (keys[i], i))


# ------------------------------------------------------------------ masked tags (v2)
#
# Written from the design (../shared/notes/output-only.md, "Masked tags") with Python's
# big integers for the 128-bit arithmetic; only X25519 and the AES block cipher (one ECB
# block per id) come from `cryptography`, HKDF and HMAC from the functions above / `hmac`.

MOD128 = 2**128


def mask_transcript(
    round_id: str, roster: list[str], parties: list[dict[str, str]], settings: bytes = b""
) -> bytes:
    """SHA-256('monoculture/v2 transcript' + length-prefixed round, k (decimal), the roster in
    ring order, then per company in roster order its name, relay public key, tag public key
    and signature, then the settings)."""
    by_name = {p["company"]: p for p in parties}
    fields: list[str | bytes] = [round_id, str(len(roster)), *roster]
    for name in roster:
        p = by_name[name]
        fields += [
            name,
            bytes.fromhex(p["relay_public_key"]),
            bytes.fromhex(p["tag_public_key"]),
            bytes.fromhex(p["signature"]),
        ]
    fields.append(settings)
    return hashlib.sha256(
        b"monoculture/v2 transcript" + b"".join(length_prefixed(f) for f in fields)
    ).digest()


def mask_key_info(round_id: str, first: str, second: str) -> bytes:
    """'monoculture/v2 mask' + length-prefixed round and the two names, the earlier in the ring first."""
    return (
        b"monoculture/v2 mask" + length_prefixed(round_id) + length_prefixed(first) + length_prefixed(second)
    )


def mask_key(shared_secret: bytes, transcript: bytes, round_id: str, first: str, second: str) -> bytes:
    """s_ij: HKDF-SHA256 with the transcript digest as salt."""
    return hkdf_sha256(shared_secret, mask_key_info(round_id, first, second), salt=transcript)


def mask_confirmation(key: bytes, transcript: bytes, sender: str, receiver: str) -> bytes:
    message = (
        b"monoculture/v2 confirm"
        + length_prefixed(transcript)
        + length_prefixed(sender)
        + length_prefixed(receiver)
    )
    return hmac.new(key, message, hashlib.sha256).digest()


def id_digest(record_id: str) -> bytes:
    """u(x): the first 16 bytes of SHA-256(8-byte big-endian byte length || UTF-8 id)."""
    raw = record_id.encode("utf-8")
    return hashlib.sha256(len(raw).to_bytes(8, "big") + raw).digest()[:16]


def mask_prf(key: bytes, u: bytes) -> int:
    """AES-256 of the one block u under the pairwise key, read as a big-endian integer."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes(ecb.update(u) + ecb.finalize(), "big")


def mask(position: int, keys: dict[int, bytes], u: bytes) -> int:
    """m_i = sum over j != i of sgn(j - i) * PRF_{s_ij}(u) mod 2^128."""
    return sum(mask_prf(key, u) * (1 if j > position else -1) for j, key in keys.items()) % MOD128


def lane(position: int, k: int, bit: int, code: int | None = None) -> int:
    """b * 4^(k-1-i), plus code * 4^k for the company the round takes its groups from."""
    return bit * 4 ** (k - 1 - position) + (0 if code is None else code * 4**k)


def decode_sum(total: int, k: int, group_count: int) -> tuple[int, int, bool]:
    """(pattern, code, ok): ok iff every 2-bit lane is 0 or 1 and total // 4^k < max(G, 1);
    pattern bit k-1-i is company i's lane (company 0 the most significant)."""
    lanes = [(total >> (2 * (k - 1 - i))) & 3 for i in range(k)]
    code = total >> (2 * k)
    ok = all(x in (0, 1) for x in lanes) and code < max(group_count, 1)
    pattern = sum(x << (k - 1 - i) for i, x in enumerate(lanes))
    return (pattern, code, True) if ok else (-1, -1, False)


# ------------------------------------------------------------------ result figures


def ratio(value: Fraction | None) -> str | None:
    """An exact rational as "p/q" (JSON has no rationals)."""
    return None if value is None else f"{value.numerator}/{value.denominator}"


def result_figures(companies: list[str], counts: list[int]) -> dict[str, Any]:
    """The result's integer keys (exact) and its rational keys (as "p/q" strings)
    from the 2^k pattern counts; character i of a pattern is company i's bit."""
    k = len(companies)
    patterns = [format(index, f"0{k}b") for index in range(2**k)]
    n = sum(counts)
    fails = [sum(c for p, c in zip(patterns, counts, strict=True) if p[i] == "1") for i in range(k)]
    histogram = [
        sum(c for p, c in zip(patterns, counts, strict=True) if p.count("1") == j) for j in range(k + 1)
    ]
    systemic = counts[patterns.index("1" * k)]
    rates = [Fraction(f, n) for f in fails]
    expected = math.prod(rates, start=Fraction(1))
    pairwise = {}
    for a, b in combinations(range(k), 2):
        joint = sum(c for p, c in zip(patterns, counts, strict=True) if p[a] == p[b] == "1")
        pairwise[f"{companies[a]},{companies[b]}"] = ratio(Fraction(joint * n, fails[a] * fails[b]))
    poisson = [Fraction(1)]
    for rate in rates:  # Poisson-binomial: failures if companies failed independently
        poisson = [
            (poisson[j] if j < len(poisson) else 0) * (1 - rate) + (poisson[j - 1] * rate if j else 0)
            for j in range(len(poisson) + 1)
        ]
    return {
        "integer": {
            "companies": list(companies),
            "shared_individuals": n,
            "failures": dict(zip(companies, fails, strict=True)),
            "systemic_failures": systemic,
            "failure_count_histogram": histogram,
            "pattern_counts": dict(zip(patterns, counts, strict=True)),
        },
        "rational": {
            "failure_rates": {name: ratio(r) for name, r in zip(companies, rates, strict=True)},
            "systemic_failure_rate": ratio(Fraction(systemic, n)),
            "expected_systemic_failure_rate": ratio(expected),
            "homogenization": ratio(Fraction(systemic, n) / expected),
            "pairwise_homogenization": pairwise,
            "expected_failure_count_histogram": [ratio(n * p) for p in poisson],
        },
    }


# ------------------------------------------------------------------ JSON schema (a subset)

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description"})
_KEYWORDS = frozenset(
    {
        "type", "const", "enum", "required", "properties", "patternProperties", "additionalProperties",
        "items", "minItems", "maxItems", "minimum", "anyOf",
    }
)  # fmt: skip


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"unknown JSON type {name!r}")


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Why `value` fails `schema` (empty: it validates). JSON-Schema 2020-12 semantics for
    the keywords in _KEYWORDS; any other keyword is refused rather than ignored."""
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} at {where} are not implemented")
    errors: list[str] = []
    if "anyOf" in schema:
        branches = [schema_errors(value, branch, where) for branch in schema["anyOf"]]
        if all(branches):
            errors.append(f"{where}: matches no branch of anyOf ({'; '.join(b[0] for b in branches)})")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [*errors, f"{where}: {type(value).__name__} {value!r:.60} is not of type {types}"]
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.append(f"{where}: {value!r:.60} is not {schema['const']!r}")
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        errors.append(f"{where}: {value!r:.60} is not one of {schema['enum']}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} is below {schema['minimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        errors += [
            f"{where}: required key {key!r} is missing"
            for key in schema.get("required", ())
            if key not in value
        ]
        for key, item in value.items():
            matched = False
            if key in schema.get("properties", {}):
                matched = True
                errors += schema_errors(item, schema["properties"][key], f"{where}.{key}")
            for pattern, sub in schema.get("patternProperties", {}).items():
                if re.search(pattern, key):
                    matched = True
                    errors += schema_errors(item, sub, f"{where}.{key}")
            extra = schema.get("additionalProperties", True)
            if not matched and extra is False:
                errors.append(f"{where}: key {key!r} is not allowed")
            elif not matched and isinstance(extra, dict):
                errors += schema_errors(item, extra, f"{where}.{key}")
    return errors


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: true/1 and false/0 differ (Python's == makes them equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


# ------------------------------------------------------------------ edwards25519 (pure Python)
#
# RFC 8032, section 5.1, written out with Python's big integers: extended coordinates
# (X : Y : Z : T) with x = X/Z, y = Y/Z, x*y = T/Z; the addition of 5.1.4 (complete on this
# curve, so it doubles too); scalar multiplication by double-and-add; the encoding of 5.1.2
# (y little-endian, the sign of x in the top bit) and the decoding of 5.1.3. Slow (a scalar
# multiplication takes milliseconds) and not constant time: for the vectors only.

ED_P = 2**255 - 19
ED_L = 2**252 + 27742317777372353535851937790883648493  # the order of B
ED_D = -121665 * pow(121666, -1, ED_P) % ED_P
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)

EdPoint = tuple[int, int, int, int]
ED_IDENTITY: EdPoint = (0, 1, 1, 0)


def ed_recover_x(y: int, sign: int) -> int | None:
    """x with x^2 = (y^2 - 1) / (d y^2 + 1) and x mod 2 = sign (RFC 8032 5.1.3, steps 2-4),
    or None if there is none (y >= p, not on the curve, or x = 0 with sign 1)."""
    if y >= ED_P:
        return None
    u, v = (y * y - 1) % ED_P, (ED_D * y * y + 1) % ED_P
    x = u * pow(v, 3, ED_P) * pow(u * pow(v, 7, ED_P), (ED_P - 5) // 8, ED_P) % ED_P
    if (v * x * x - u) % ED_P != 0:
        if (v * x * x + u) % ED_P != 0:
            return None
        x = x * ED_SQRT_M1 % ED_P
    if x == 0 and sign:
        return None
    return ED_P - x if x & 1 != sign else x


def _ed_affine(x: int, y: int) -> EdPoint:
    return (x, y, 1, x * y % ED_P)


_ED_BASE_Y = 4 * pow(5, -1, ED_P) % ED_P
ED_B: EdPoint = _ed_affine(ed_recover_x(_ED_BASE_Y, 0) or 0, _ED_BASE_Y)  # x "positive" (even)


def ed_add(p: EdPoint, q: EdPoint) -> EdPoint:
    """RFC 8032 5.1.4 (add-2008-hwcd-3)."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % ED_P
    b = (y1 + x1) * (y2 + x2) % ED_P
    c = t1 * 2 * ED_D * t2 % ED_P
    d = z1 * 2 * z2 % ED_P
    e, f, g, hh = b - a, d - c, d + c, b + a
    return (e * f % ED_P, g * hh % ED_P, f * g % ED_P, e * hh % ED_P)


def ed_neg(p: EdPoint) -> EdPoint:
    x, y, z, t = p
    return (-x % ED_P, y, z, -t % ED_P)


def ed_mul(scalar: int, p: EdPoint) -> EdPoint:
    """scalar * p by double-and-add from the most significant bit (scalar >= 0)."""
    q = ED_IDENTITY
    for bit in bin(scalar)[2:] if scalar else "":
        q = ed_add(q, q)
        if bit == "1":
            q = ed_add(q, p)
    return q


def ed_equal(p: EdPoint, q: EdPoint) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % ED_P == 0 and (p[1] * q[2] - q[1] * p[2]) % ED_P == 0


def ed_encode(p: EdPoint) -> bytes:
    """RFC 8032 5.1.2: y as 32 bytes little-endian, the top bit the low bit of x."""
    zi = pow(p[2], -1, ED_P)
    x, y = p[0] * zi % ED_P, p[1] * zi % ED_P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def ed_decode(encoded: bytes) -> EdPoint | None:
    """RFC 8032 5.1.3; None if the 32 bytes are not a canonical encoding of a curve point."""
    if len(encoded) != 32:
        return None
    number = int.from_bytes(encoded, "little")
    y, sign = number & ((1 << 255) - 1), number >> 255
    x = ed_recover_x(y, sign)
    return None if x is None else _ed_affine(x, y)


def ed_base_times(scalar: int) -> bytes:
    """scalar * B, encoded."""
    return ed_encode(ed_mul(scalar % ED_L, ED_B))


def ed_valid_point(encoded: bytes) -> bool:
    """What a relay accepts (docs/PROTOCOL.md, "Checked points"): a canonical encoding of a
    point of the prime-order subgroup (L * P = O) that is not of small order (8 * P != O)."""
    p = ed_decode(encoded)
    return (
        p is not None and ed_equal(ed_mul(ED_L, p), ED_IDENTITY) and not ed_equal(ed_mul(8, p), ED_IDENTITY)
    )


# ------------------------------------------------------------------ re-randomised tags (v2)
#
# Written from docs/PROTOCOL.md ("Re-randomised tags") and the formulas of the design: the
# masks of the masked tags re-derived mod L with a 512-bit PRF, exponential ElGamal on the
# edwards25519 above. Scalars travel as 32 bytes little-endian (libsodium's encoding).

RERANDOMISE_ID_LABEL = b"monoculture/v2 rerandomise id"
RERANDOMISE_TOKEN_LABEL = b"monoculture/v2 rerandomise token"
RERANDOMISE_KEY_LABEL = b"monoculture/v2 rerandomise key"
RERANDOMISE_RANDOM_LABEL = b"monoculture/v2 rerandomise randomness|"


def scalar_bytes(value: int) -> bytes:
    """A scalar mod L as 32 bytes little-endian."""
    return (value % ED_L).to_bytes(32, "little")


def prf_block_keys(pair_key: bytes, label: bytes) -> list[bytes]:
    """The four AES-256 keys of F_s(label, .): HMAC-SHA256(s, label || c) for the byte c = 0..3."""
    return [hmac.new(pair_key, label + bytes((c,)), hashlib.sha256).digest() for c in range(4)]


def prf_bytes(pair_key: bytes, label: bytes, block: bytes) -> bytes:
    """The 64 bytes of F_s(label, block): the 16-byte block under each of the four keys, concatenated."""
    assert len(block) == 16
    out = b""
    for key in prf_block_keys(pair_key, label):
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        out += ecb.update(block) + ecb.finalize()
    return out


def prf_mod_l(pair_key: bytes, label: bytes, block: bytes) -> int:
    """F_s(label, block): the 512 bits read as a big-endian integer, mod L."""
    return int.from_bytes(prf_bytes(pair_key, label, block), "big") % ED_L


def pairwise_mod_l(position: int, keys: dict[int, bytes], label: bytes, block: bytes) -> int:
    """sum over j != position of sgn(j - position) * F_{s_ij}(label, block) mod L."""
    return sum(prf_mod_l(key, label, block) * (1 if j > position else -1) for j, key in keys.items()) % ED_L


def token_block(token: bytes) -> bytes:
    """The PRF input of a final token T: the first 16 bytes of SHA-256(T)."""
    return hashlib.sha256(token).digest()[:16]


def id_mask_mod_l(position: int, keys: dict[int, bytes], u: bytes) -> int:
    """M_i(x), with u = u(x) of the masked tags (id_digest)."""
    return pairwise_mod_l(position, keys, RERANDOMISE_ID_LABEL, u)


def token_mask_mod_l(position: int, keys: dict[int, bytes], token: bytes) -> int:
    """t_j(T)."""
    return pairwise_mod_l(position, keys, RERANDOMISE_TOKEN_LABEL, token_block(token))


def exponent(
    position: int, k: int, keys: dict[int, bytes], u: bytes, bit: int, code: int | None = None
) -> int:
    """e_i(x) = b_i * 4^(k-1-i) (+ code * 4^k) + M_i(x) mod L."""
    return (lane(position, k, bit, code) + id_mask_mod_l(position, keys, u)) % ED_L


def randomiser_key(seed: bytes, label: bytes) -> bytes:
    return hkdf_sha256(seed, RERANDOMISE_RANDOM_LABEL + label)


def randomisers(seed: bytes, label: bytes, count: int) -> list[int]:
    """count scalars: 64 bytes each of the AES-256-CTR keystream (zero IV) under the HKDF key,
    read big-endian, mod L."""
    stream = aes_ctr_keystream(randomiser_key(seed, label), 64 * count)
    return [int.from_bytes(stream[64 * n : 64 * n + 64], "big") % ED_L for n in range(count)]


def coordinator_key_digest(tag_private_key: bytes) -> bytes:
    return hashlib.sha512(RERANDOMISE_KEY_LABEL + tag_private_key).digest()


def coordinator_secret(tag_private_key: bytes) -> int:
    """y: SHA-512(label || the coordinator's tag private key) read big-endian, mod L."""
    return int.from_bytes(coordinator_key_digest(tag_private_key), "big") % ED_L


def elgamal_encrypt(public_key: bytes, value: int, randomness: int) -> bytes:
    """(r*B, e*B + r*Y), 64 bytes."""
    y = ed_decode(public_key)
    assert y is not None
    c1 = ed_mul(randomness % ED_L, ED_B)
    c2 = ed_add(ed_mul(value % ED_L, ED_B), ed_mul(randomness % ED_L, y))
    return ed_encode(c1) + ed_encode(c2)


def elgamal_rerandomise(public_key: bytes, tag: bytes, randomness: int, shift: int = 0) -> bytes:
    """(C1 + s*B, C2 + s*Y + t*B)."""
    y, c1, c2 = ed_decode(public_key), ed_decode(tag[:32]), ed_decode(tag[32:])
    assert y is not None and c1 is not None and c2 is not None and len(tag) == 64
    c1 = ed_add(c1, ed_mul(randomness % ED_L, ED_B))
    c2 = ed_add(c2, ed_add(ed_mul(randomness % ED_L, y), ed_mul(shift % ED_L, ED_B)))
    return ed_encode(c1) + ed_encode(c2)


def elgamal_add(tags: list[bytes]) -> bytes:
    """The componentwise sum of 64-byte tags."""
    c1, c2 = ED_IDENTITY, ED_IDENTITY
    for tag in tags:
        p1, p2 = ed_decode(tag[:32]), ed_decode(tag[32:])
        assert p1 is not None and p2 is not None
        c1, c2 = ed_add(c1, p1), ed_add(c2, p2)
    return ed_encode(c1) + ed_encode(c2)


def elgamal_decrypt(secret: int, tag: bytes) -> bytes:
    """C2 - y*C1: the point e*B, encoded."""
    c1, c2 = ed_decode(tag[:32]), ed_decode(tag[32:])
    assert c1 is not None and c2 is not None
    return ed_encode(ed_add(c2, ed_neg(ed_mul(secret, c1))))


def sum_lanes(pattern: int, k: int, code: int = 0) -> int:
    """The exponent of a valid sum: company i's bit (pattern bit k-1-i) at 4^(k-1-i), code at 4^k."""
    return sum(((pattern >> (k - 1 - i)) & 1) << (2 * (k - 1 - i)) for i in range(k)) + (code << (2 * k))
