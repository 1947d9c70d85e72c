"""Re-randomised failure tags (protocol v2, round option `rerandomise`, issue 12).

A masked tag (core/masks.py) keeps its bytes all the way round the ring. The coordinator,
with the list's owner, then links each of the owner's ids to its final token: the owner
knows which tag it sealed for which id, and the coordinator sees the same tag next to the
final token. In a round with re-randomised tags, the tag is an exponential ElGamal
ciphertext on edwards25519 (its prime-order subgroup, generator B, order L) to the
coordinator's round key Y = y*B, and every company that relays it re-randomises it:

    hop 0, company i:   (C1, C2) = (r*B, e_i(x)*B + r*Y)
    hops 1..k-1:        (C1, C2) + (s*B, s*Y)            fresh s per tag and hop
    last hop, company j also adds  t_j(T)*B  to C2       T: the final token it produced

    e_i(x) = b_i(x)*4^(k-1-i) [+ g(x)*4^k] + M_i(x)            mod L
    M_i(x) = sum over j != i of sgn(j-i) * F_{s_ij}("id", u(x))  mod L
    t_j(T) = sum over l != j of sgn(l-j) * F_{s_jl}("token", T)  mod L

F_s(label, input) is 512 bits of AES-256 under four keys HMAC-SHA256(s, label || c), c the
single byte 0..3 right after the label, each applied to one 16-byte block (u(x), or the first
16 bytes of SHA-256(T)), the four blocks read as one big-endian integer reduced mod L. u(x)
and s_ij are those of core/masks.py. The coordinator's y is SHA-512("monoculture/v2
rerandomise key" || its round tag key) read big-endian mod L; randomness r, s comes 64
bytes per scalar, read big-endian mod L, from os.urandom or an AES-256-CTR stream (zero IV)
under HKDF-SHA256(seed, info = "monoculture/v2 rerandomise randomness|" || label).
tests/vectors/rerandomise.json pins all of it, from an independent pure-Python curve.

Every company is the last hop of exactly one list, so the k token masks of one final token
sum to 0 mod L, as do the k id masks of one id: for a token in every list the coordinator
adds the k ciphertexts and decrypts (sum of e_i)*B = (lanes + group code)*B, which it looks
up in the table of the 2^k * G valid sums (`SumTable`; G = labels, at least 1). Any other
sum fails the round as tampered with, as in core/masks.py.

What this adds to masked tags: the coordinator with the owner of a list cannot follow a tag
round the ring. Its bytes change at every hop under randomness only the relay knows, and its
plaintext changes at the last hop by t_j(T), which needs a pair key of j with a third
company. Every relay checks every point it receives (`_checked`: canonical, in the
prime-order subgroup, not of small order), so an owner cannot hide a mark in the torsion of
its tags for the coordinator to read. So for k >= 3 the coordinator together with ONE
company that follows the protocol links none of that company's ids to their final tokens by
the tags (tests/test_rerandomise.py). What it does not give (review of 31cb398):

- At k = 2 the owner holds the only pair key: no claim.
- Larger coalitions: the coordinator with the owner o and o's ring predecessor (the last
  relay of o's list) removes t_(o-1) and links every id of o; with o and any other company c
  it links the ids held by both o and c (t of the two honest last relays sums to minus the
  colluders' on those tokens).
- An owner that cheats with the coordinator: adding idx(x) * 4^k to its own e_o(x) (or
  setting its failure bit for one chosen id) survives every check, since the masks still
  cancel; the coordinator then reads each shared individual's id index from the decrypted
  sum and publishes an exact table. Only proofs that every value is well formed would stop
  it. The tags then link the owner's shared ids; the non-shared stay unlinked.
- The pattern of a shared individual includes the owner's own bit, which the owner knows:
  the anonymity of a linked-by-output guess is the owner's shared ids with the same bit.

What it costs: per tag, hop 0 one variable-base and two fixed-base multiplications, every
relay one of each plus two point checks, the last relay one more fixed-base multiplication;
the coordinator one variable-base multiplication per shared individual. On this machine
(libsodium via PyNaCl) a variable-base multiplication is about 61 us, a fixed-base one
12 us, an addition 10 us (point decompression) and a point check 30-38 us, against about
60 us for the P-256 blinding step: `monoculture bench --rerandomise` prints the measured
figures. The tag grows from 44 to 64 bytes.

Limits: the sum table holds 2^k * G points; rounds above MAX_SUM_TABLE are refused.
A point that is not in the prime-order group is the sender's fault (InvalidPoint, as for the
blinded points; in a final list the coordinator names the last relay); a ciphertext altered
into a valid but wrong one is caught only by the sum, naming no one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import nacl.bindings as sodium
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nacl.exceptions import RuntimeError as SodiumError

from monoculture.core.errors import ProtocolError
from monoculture.core.keystream import random_bytes
from monoculture.core.masks import Digests, check_pair_keys, lane_values, values_to_ints
from monoculture.core.protocol import MAX_GROUP_LABELS, MAX_PARTIES
from monoculture.core.psi_crypto import InvalidPoint

T = TypeVar("T")

GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493  # L, of edwards25519's subgroup
POINT_BYTES = 32
SCALAR_BYTES = 32
ELGAMAL_TAG_SIZE = 2 * POINT_BYTES  # C1 || C2
IDENTITY = b"\x01" + bytes(31)  # the neutral element, encoded
MAX_SUM_TABLE = 1 << 20  # 2^k * G valid sums at most (k = 16 with 16 labels; k = 13 with 127)

TagBatch = tuple[bytes, bytes, bytes]  # a relay's batch: tags, randomness, shifts (or b"")

_ID_LABEL = b"monoculture/v2 rerandomise id"
_TOKEN_LABEL = b"monoculture/v2 rerandomise token"
_KEY_LABEL = b"monoculture/v2 rerandomise key"
_RANDOM_LABEL = b"monoculture/v2 rerandomise randomness|"


class InvalidTagPoint(InvalidPoint):
    """A tag holds bytes that are not a point of edwards25519."""


def scalar(value: int) -> bytes:
    """A scalar mod L, 32 bytes little-endian (libsodium's encoding)."""
    return (value % GROUP_ORDER).to_bytes(SCALAR_BYTES, "little")


def scalars(values: Iterable[int]) -> bytes:
    return b"".join(scalar(v) for v in values)


def times_base(value: int) -> bytes:
    """value * B (the identity for value = 0 mod L, which libsodium will not return)."""
    encoded = scalar(value)
    return sodium.crypto_scalarmult_ed25519_base_noclamp(encoded) if any(encoded) else IDENTITY


def _add(p: bytes, q: bytes) -> bytes:
    try:
        return sodium.crypto_core_ed25519_add(p, q)
    except SodiumError:
        raise InvalidTagPoint("a failure tag is not a curve point") from None


def _checked(point: bytes) -> bytes:
    """A received tag point, if it is a canonical point of the prime-order subgroup (not of
    small order). libsodium's addition accepts points with a torsion component, and an owner
    could hide such a mark (8 x 8 classes per tag) that honest relays would carry unchanged to
    the coordinator: every relay checks every point it receives (review of 31cb398)."""
    if not sodium.crypto_core_ed25519_is_valid_point(point):
        raise InvalidTagPoint("a failure tag is not a point of the prime-order group")
    return point


def _times(value: bytes, point: bytes) -> bytes:
    try:
        return sodium.crypto_scalarmult_ed25519_noclamp(value, point)
    except SodiumError:
        raise InvalidTagPoint("a failure tag is not a point of the prime-order group") from None


def check_public_key(public_key: bytes, owner: str = "the coordinator") -> None:
    """The coordinator's round key must be a canonical point of the prime-order subgroup,
    not of small order (so no multiple of it leaks or cancels)."""
    if len(public_key) != POINT_BYTES or not sodium.crypto_core_ed25519_is_valid_point(public_key):
        raise ProtocolError("the re-randomisation key is not a valid edwards25519 point", where=owner)


# ------------------------------------------------------------------ masks mod L


def _block_keys(pair_key: bytes, label: bytes) -> list[bytes]:
    return [hmac.new(pair_key, label + bytes([c]), hashlib.sha256).digest() for c in range(4)]


def _prf(pair_key: bytes, label: bytes, blocks: bytes) -> list[int]:
    """F_s(label, block) mod L for every 16-byte block of `blocks`."""
    parts = []
    for key in _block_keys(pair_key, label):
        # ECB is AES applied block by block: a PRF on distinct 16-byte inputs.
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
        parts.append(np.frombuffer(encryptor.update(blocks) + encryptor.finalize(), dtype=np.uint8))
    rows = np.stack([p.reshape(-1, 16) for p in parts], axis=1).reshape(-1, 64)
    return [int.from_bytes(row.tobytes(), "big") % GROUP_ORDER for row in rows]


def _pairwise(position: int, pair_keys: Mapping[int, bytes], label: bytes, blocks: bytes) -> list[int]:
    check_pair_keys(position, pair_keys)
    total = [0] * (len(blocks) // 16)
    for peer, key in sorted(pair_keys.items()):
        sign = 1 if peer > position else -1
        total = [(t + sign * f) % GROUP_ORDER for t, f in zip(total, _prf(key, label, blocks), strict=True)]
    return total


def id_masks(position: int, pair_keys: Mapping[int, bytes], u: Digests) -> list[int]:
    """M_i(x) for every id digest u(x) (core/masks.id_digests); the k of one id sum to 0 mod L."""
    return _pairwise(position, pair_keys, _ID_LABEL, np.ascontiguousarray(u, dtype=np.uint8).tobytes())


def token_blocks(tokens: bytes | bytearray, point_size: int) -> bytes:
    """The first 16 bytes of SHA-256 of every final token (concatenated `point_size` bytes each)."""
    return b"".join(
        hashlib.sha256(tokens[at : at + point_size]).digest()[:16] for at in range(0, len(tokens), point_size)
    )


def token_masks(
    position: int, pair_keys: Mapping[int, bytes], tokens: bytes | bytearray, point_size: int
) -> list[int]:
    """t_j(T) for every final token T; the k of one token sum to 0 mod L."""
    return _pairwise(position, pair_keys, _TOKEN_LABEL, token_blocks(tokens, point_size))


def exponent_values(
    position: int,
    pair_keys: Mapping[int, bytes],
    u: Digests,
    bits: Sequence[int] | np.ndarray,
    group_codes: Sequence[int] | np.ndarray | None = None,
) -> list[int]:
    """e_i(x) = lanes (+ group code) + M_i(x) mod L, in the order of `u`."""
    lanes = values_to_ints(lane_values(position, len(pair_keys) + 1, bits, group_codes))
    if len(lanes) != len(u):
        raise ValueError(f"{len(lanes)} bits for {len(u)} ids")
    return [
        (lane + mask) % GROUP_ORDER
        for lane, mask in zip(lanes, id_masks(position, pair_keys, u), strict=True)
    ]


def randomisers(seed: bytes | None, label: bytes, count: int) -> list[int]:
    """`count` scalars uniform mod L: from os.urandom, or, with the round's secret `seed`, the
    same every time (a restarted company sends the same bytes), under HKDF(seed, label)."""
    raw = random_bytes(seed, _RANDOM_LABEL + label, 64 * count)
    return [int.from_bytes(raw[at : at + 64], "big") % GROUP_ORDER for at in range(0, len(raw), 64)]


# ------------------------------------------------------------------ ciphertexts


def encrypt(public_key: bytes, values: bytes, randomness: bytes) -> bytes:
    """One 64-byte tag per 32-byte scalar of `values`, with the scalar of `randomness` at the
    same place: (r*B, e*B + r*Y)."""
    if len(values) != len(randomness) or len(values) % SCALAR_BYTES:
        raise ValueError("one 32-byte randomness scalar per 32-byte value")
    out = bytearray()
    for at in range(0, len(values), SCALAR_BYTES):
        e, r = values[at : at + SCALAR_BYTES], randomness[at : at + SCALAR_BYTES]
        c1 = sodium.crypto_scalarmult_ed25519_base_noclamp(r)
        mask = _times(r, public_key)
        c2 = _add(sodium.crypto_scalarmult_ed25519_base_noclamp(e), mask) if any(e) else mask
        out += c1 + c2
    return bytes(out)


def rerandomise(public_key: bytes, tags: bytes, randomness: bytes, shifts: bytes = b"") -> bytes:
    """Every 64-byte tag plus (s*B, s*Y [+ t*B]): `randomness` one scalar s per tag, `shifts`
    (the last hop's token masks) one scalar t per tag, or empty. A tag that does not decode is
    an InvalidTagPoint (its sender's fault)."""
    count = len(tags) // ELGAMAL_TAG_SIZE
    if len(tags) % ELGAMAL_TAG_SIZE or len(randomness) != count * SCALAR_BYTES:
        raise ValueError("one 32-byte randomness scalar per 64-byte tag")
    if shifts and len(shifts) != len(randomness):
        raise ValueError("one 32-byte shift per tag, or none")
    out = bytearray()
    for n in range(count):
        tag = tags[n * ELGAMAL_TAG_SIZE : (n + 1) * ELGAMAL_TAG_SIZE]
        s = randomness[n * SCALAR_BYTES : (n + 1) * SCALAR_BYTES]
        c1 = _add(_checked(tag[:POINT_BYTES]), sodium.crypto_scalarmult_ed25519_base_noclamp(s))
        c2 = _add(_checked(tag[POINT_BYTES:]), _times(s, public_key))
        t = shifts[n * SCALAR_BYTES : (n + 1) * SCALAR_BYTES] if shifts else b""
        if any(t):
            c2 = _add(c2, sodium.crypto_scalarmult_ed25519_base_noclamp(t))
        out += c1 + c2
    return bytes(out)


def tags_decode(tags: bytes) -> bool:
    """Whether every point of these tags is one a relay accepts (`_checked`): the evidence check."""
    try:
        for at in range(0, len(tags), POINT_BYTES):
            _checked(tags[at : at + POINT_BYTES])
    except InvalidTagPoint:
        return False
    return len(tags) % ELGAMAL_TAG_SIZE == 0


def _per_thread(columns: Sequence[bytes], threads: int) -> list[list[bytes]]:
    """Tag buffers of equal count cut, at whole tags, into one part per thread (0: one per core):
    a single part when one thread (or one part) will do."""
    count = len(columns[0]) // ELGAMAL_TAG_SIZE
    threads = threads or os.cpu_count() or 1
    step = max(1, -(-count // threads))
    if threads == 1 or count <= step:
        return [list(columns)]
    width = ELGAMAL_TAG_SIZE
    return [[c[at * width : (at + step) * width] for c in columns] for at in range(0, count, step)]


def _over_threads(work: Callable[[list[bytes]], T], parts: list[list[bytes]]) -> list[T]:
    """`work` on every part, one thread a part (libsodium runs without Python's lock)."""
    if len(parts) == 1:
        return [work(parts[0])]
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(work, parts))


def invalid_tag_points(tags: bytes, threads: int = 0) -> bool:
    """Whether any point of these tags is one a relay refuses (`tags_decode`), checked over
    `threads` threads (0: one per core). The coordinator checks every tag of a final list with
    it: about 36 us per point on one core of this project's test machine."""
    if len(tags) % ELGAMAL_TAG_SIZE:
        return True
    return not all(_over_threads(lambda part: tags_decode(part[0]), _per_thread([tags], threads)))


def check_sum_table(k: int, group_count: int) -> None:
    """A round with re-randomised tags needs a table of 2^k x max(labels, 1) valid sums."""
    if not 2 <= k <= MAX_PARTIES or not 0 <= group_count <= MAX_GROUP_LABELS:
        raise ValueError(f"k = {k}, {group_count} groups: out of range")
    size = (1 << k) * max(group_count, 1)
    if size > MAX_SUM_TABLE:
        raise ProtocolError(
            f"re-randomised tags need a table of 2^k x labels = {size} valid sums for {k} companies "
            f"and {group_count} group labels, above the {MAX_SUM_TABLE} this coordinator builds",
            hint="declare fewer group labels or companies, or open the round without re-randomised tags",
        )


class SumTable:
    """The valid sums of one round: (lanes + group code)*B -> (pattern, code), 2^k * G of them."""

    def __init__(self, k: int, group_count: int = 0) -> None:
        check_sum_table(k, group_count)
        self.k = k
        self._points: dict[bytes, tuple[int, int]] = {}
        for code in range(max(group_count, 1)):
            for pattern in range(1 << k):
                lanes = sum(((pattern >> (k - 1 - i)) & 1) << (2 * (k - 1 - i)) for i in range(k))
                self._points[times_base(lanes + (code << (2 * k)))] = (pattern, code)

    def __len__(self) -> int:
        return len(self._points)

    def lookup(self, point: bytes) -> tuple[int, int] | None:
        return self._points.get(point)


class CoordinatorKey:
    """The coordinator's round key y, derived from its round tag key (sealed in its store, erased
    with it when the round ends), and Y = y*B, announced in JoinRound."""

    def __init__(self, tag_private_key: bytes) -> None:
        digest = hashlib.sha512(_KEY_LABEL + tag_private_key).digest()
        self._secret = scalar(int.from_bytes(digest, "big"))
        self.public_key = sodium.crypto_scalarmult_ed25519_base_noclamp(self._secret)

    def decrypt_sums(
        self, columns: Sequence[bytes], table: SumTable, threads: int = 0
    ) -> tuple[list[int], list[int], int]:
        """Add the k tags of every shared individual (`columns`: one buffer per list, the tags of
        the shared individuals in the same order) and decrypt the sums: (patterns, codes, bad),
        bad counting the sums that are not in the table (pattern and code -1 there).

        Spread over `threads` threads (0: one per core); libsodium runs without Python's lock,
        so they run at once (1.7 times one thread on 2 cores, measured)."""
        count = len(columns[0]) // ELGAMAL_TAG_SIZE
        if any(len(c) != count * ELGAMAL_TAG_SIZE for c in columns):
            raise ValueError("every list gives one tag per shared individual")
        patterns, codes, bad = [], [], 0
        for part in _over_threads(lambda part: self._decrypt(part, table), _per_thread(columns, threads)):
            patterns += part[0]
            codes += part[1]
            bad += part[2]
        return patterns, codes, bad

    def _decrypt(self, columns: Sequence[bytes], table: SumTable) -> tuple[list[int], list[int], int]:
        count = len(columns[0]) // ELGAMAL_TAG_SIZE
        patterns, codes, bad = [-1] * count, [-1] * count, 0
        for n in range(count):
            at = n * ELGAMAL_TAG_SIZE
            try:
                c1, c2 = (
                    columns[0][at : at + POINT_BYTES],
                    columns[0][at + POINT_BYTES : at + ELGAMAL_TAG_SIZE],
                )
                for column in columns[1:]:
                    c1 = _add(c1, column[at : at + POINT_BYTES])
                    c2 = _add(c2, column[at + POINT_BYTES : at + ELGAMAL_TAG_SIZE])
                found = table.lookup(sodium.crypto_core_ed25519_sub(c2, _times(self._secret, c1)))
            except (InvalidTagPoint, SodiumError):
                found = None
            if found is None:
                bad += 1
            else:
                patterns[n], codes[n] = found
        return patterns, codes, bad
