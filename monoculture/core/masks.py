"""Masked failure tags (protocol v2, issue 12): the pure arithmetic and key derivation.

Company i of a round of k (its position i in the ring, 0-based) seals, in the tag of each
of its elements x, the 128-bit value

    v_i(x) = b_i(x) * 4^(k-1-i)  [+ g(x) * 4^k for the company the round takes groups from]
             + m_i(x)  mod 2^128,
    m_i(x) = sum over j != i of sgn(j - i) * AES-256_{s_ij}(u(x))  mod 2^128,

where b_i(x) is its failure bit, g(x) the group code (0..126), u(x) the first 16 bytes of
SHA-256(len(x) as 8 bytes big-endian || x) over the UTF-8 id exactly as it goes to
hash-to-curve, and s_ij the pairwise key of companies i and j:

    transcript = SHA-256("monoculture/v2 transcript" | round | k | roster in ring order
                         | per company in roster order: name, relay key, tag key, signature
                         | settings)
    s_ij = HKDF-SHA256(X25519(e_i, e_j), salt = transcript,
                       info = "monoculture/v2 mask" | round | the two names in ring order)

(`|` is concatenation of fields, each behind its 4-byte big-endian length; e_i are the
per-round X25519 tag key pairs each company signs, which it never discloses; the relay keys
are not used, since a receiver discloses its relay key as blame evidence, core/blame.py.)
The masks of one id sum to 0 mod 2^128 over the k
companies, so the coordinator that adds the k values of a token held by every company gets
the lanes: 2 bits per company, company 0 the most significant, and the group code above
them. `decode_sums` accepts a sum only if every lane is 0 or 1, the group code is below the
number of declared labels (0 without groups) and every higher bit is 0; the pattern is then
sum of lane_i * 2^(k-1-i), company 0 the most significant bit, as in
`analysis.table.pattern_indices` (v1's pattern order). Before any list moves, each company
posts `key_confirmation(s_ij, transcript, i, j)` for every peer j; a coordinator that handed
two companies different keys or transcripts is caught there (`confirmation_matches`).

What this gives (AES-256 as a PRF, X25519 + HKDF as a key exchange):

- A single value, or a sum over any proper subset S of the companies, is uniform mod 2^128
  to anyone missing the key of one pair (i in S, j not in S): the coordinator alone can open
  every tag and learns nothing from the tags of a token not held by every company.
- A tag swapped between elements, moved to another list or replayed from another round gives
  a sum that fails `decode_sums` except with probability 2^k * G / 2^128 (G = labels, >= 1).

What it does not give:

- A bad sum names no one: s_ij is known to both i and j, and the relays are shared. The
  caller fails the round as tampered with; blame needs the signed chunks (core/blame.py).
- A company shifting another company's lane (adding +-4^(k-1-j) to its own value) is caught
  only when the lane overflows: +4^(k-1-j) exactly when b_j(x) = 1, -4^(k-1-j) exactly when
  b_j(x) = 0. So per element the catch probability is P(b_j = 1) or P(b_j = 0): at least 1/2
  only if the shifter cannot predict b_j better than a fair coin (a low failure rate, or its
  own correlated bit, lets it pick the direction that passes more often). Shifting n
  elements passes with the product of the per-element chances. A shift of 2 or 3 in one
  lane always overflows it, but +3 carries into the next lane, as any value may; in general
  a change d passes exactly when lanes + d is again a valid encoding. Likewise the group
  code can be shifted by any company, caught only when it reaches G.
- Collusion: the coordinator with company c knows s_cj for every j, never s_jl. For a token
  held by the companies S, removing c's known terms from the sum over S leaves a term under
  a key they lack unless S and c cover all k companies. So for k >= 3 they unmask no other
  company's value of a token held by c (or by anyone but c and one more company missing).
  But for a token held by every company except c, the sum over the other k - 1 values is
  -m_c(x): guessing the id x, they subtract it, confirm x (a valid decode) and read the other
  k - 1 bits of x. At k = 2 the one pairwise key is c's: they unmask the other company's
  value of any id they can guess.
- Nothing here hides list sizes, the Venn regions, or a dropped element (a token missing
  from one list is simply not counted).
- s_ij keys both the AES PRF and the confirmation HMAC, as the design note gives; no
  attack on that reuse is known, though two HKDF outputs would separate them.

Values are numpy arrays of shape (n, 2) uint64: column 0 the high 64 bits, column 1 the low
64 bits; on the wire each is 16 bytes big-endian (`values_to_bytes` / `values_from_bytes`).
Everything is vectorised: AES-ECB over the whole u buffer once per peer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from monoculture.core.errors import ProtocolError
from monoculture.core.protocol import MAX_GROUP_LABELS, MAX_PARTIES

Values = npt.NDArray[np.uint64]  # shape (n, 2): [high 64 bits, low 64 bits]
Digests = npt.NDArray[np.uint8]  # shape (n, 16): u(x) per id

VALUE_SIZE = 16  # bytes of one value on the wire (big-endian)
DIGEST_SIZE = 16  # bytes of u(x): one AES block
KEY_SIZE = 32  # s_ij: an AES-256 key
TRANSCRIPT_SIZE = 32
CONFIRMATION_SIZE = 32

_TRANSCRIPT_LABEL = b"monoculture/v2 transcript"
_MASK_INFO = b"monoculture/v2 mask"
_CONFIRM_LABEL = b"monoculture/v2 confirm"


class SignedKeys(Protocol):
    """One company's signed per-round keys as relayed (core.relay.RelayPeer has this shape)."""

    @property
    def company(self) -> str: ...
    @property
    def relay_public_key(self) -> bytes: ...
    @property
    def tag_public_key(self) -> bytes: ...
    @property
    def signature(self) -> bytes: ...


def _field(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


def _check_roster(roster: Sequence[str]) -> None:
    if not 2 <= len(roster) <= MAX_PARTIES:
        raise ValueError(f"a round has 2 to {MAX_PARTIES} companies, not {len(roster)}")
    if len(set(roster)) != len(roster):
        raise ValueError("the roster names a company twice")


# ------------------------------------------------------------------ keys


def transcript_digest(
    round_id: str, roster: Sequence[str], signed_keys: Iterable[SignedKeys], settings: bytes = b""
) -> bytes:
    """SHA-256 of the round id, the roster in ring order, every company's signed keys (name,
    relay public key, tag public key, signature, as relayed) in roster order, and `settings`
    (anything else every company must agree on, e.g. the groups company and its labels
    digest; empty by default). Every field is behind its 4-byte big-endian length.
    ValueError unless `signed_keys` holds exactly one entry per roster name."""
    _check_roster(roster)
    by_name: dict[str, SignedKeys] = {}
    for keys in signed_keys:
        if keys.company in by_name:
            raise ValueError(f"two sets of keys for {keys.company!r}")
        by_name[keys.company] = keys
    if set(by_name) != set(roster):
        raise ValueError(f"keys given for {sorted(by_name)}, the roster is {list(roster)}")
    fields: list[str | bytes] = [round_id, str(len(roster)), *roster]
    for name in roster:
        keys = by_name[name]
        fields += [name, keys.relay_public_key, keys.tag_public_key, keys.signature]
    fields.append(settings)
    return hashlib.sha256(_TRANSCRIPT_LABEL + b"".join(_field(f) for f in fields)).digest()


def mask_key_info(round_id: str, name_i: str, name_j: str, roster: Sequence[str]) -> bytes:
    """The HKDF info of s_ij: the label, the round, and the two names in ring order."""
    if name_i == name_j or name_i not in roster or name_j not in roster:
        raise ValueError(f"{name_i!r} and {name_j!r} are not two companies of {list(roster)}")
    first, second = sorted((name_i, name_j), key=list(roster).index)
    return _MASK_INFO + _field(round_id) + _field(first) + _field(second)


def pairwise_key(
    own_private_key: bytes,
    peer_public_key: bytes,
    transcript: bytes,
    round_id: str,
    name_i: str,
    name_j: str,
    roster: Sequence[str],
) -> bytes:
    """s_ij = HKDF-SHA256(X25519(e_i, e_j), salt = transcript, info = mask_key_info), 32 bytes:
    the same for i and j (own_private_key is the caller's raw tag private key, name_i its
    name). ProtocolError naming name_j if the peer key is not a usable X25519 public key
    (wrong length, or of low order: the exchange gives the all-zero secret)."""
    if len(transcript) != TRANSCRIPT_SIZE:
        raise ValueError(f"the transcript digest is {len(transcript)} bytes, not {TRANSCRIPT_SIZE}")
    info = mask_key_info(round_id, name_i, name_j, roster)
    own = X25519PrivateKey.from_private_bytes(own_private_key)
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public_key))
    except ValueError:
        raise ProtocolError(
            f"the tag public key of {name_j} is not a usable X25519 key (wrong length or low order)",
            where=name_j,
        ) from None
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=transcript, info=info).derive(shared)


def pair_keys(
    own_private_key: bytes,
    own_name: str,
    peer_public_keys: Mapping[str, bytes],
    transcript: bytes,
    round_id: str,
    roster: Sequence[str],
) -> dict[int, bytes]:
    """`pairwise_key` with every peer, by the peer's ring position: what `masks` takes.
    `peer_public_keys` maps every other roster name to its (checked, signed) tag public key."""
    _check_roster(roster)
    if set(peer_public_keys) != set(roster) - {own_name} or own_name not in roster:
        raise ValueError(f"need the relay keys of every company of {list(roster)} but {own_name!r}")
    return {
        position: pairwise_key(
            own_private_key, peer_public_keys[name], transcript, round_id, own_name, name, roster
        )
        for position, name in enumerate(roster)
        if name != own_name
    }


def key_confirmation(pair_key: bytes, transcript: bytes, sender: str, receiver: str) -> bytes:
    """HMAC-SHA256(s_ij, "monoculture/v2 confirm" | transcript | sender | receiver): what
    `sender` posts for `receiver` before hop 0. Directional: i -> j differs from j -> i."""
    message = _CONFIRM_LABEL + _field(transcript) + _field(sender) + _field(receiver)
    return hmac.new(pair_key, message, hashlib.sha256).digest()


def confirmation_matches(
    pair_key: bytes, transcript: bytes, sender: str, receiver: str, received: bytes
) -> bool:
    """Whether `received` (sender's confirmation for receiver) is what the receiver's own key
    and transcript give, compared in constant time. False means the two companies do not hold
    the same key or transcript: a coordinator that handed out different keys, or a broken
    peer; it does not tell which."""
    return hmac.compare_digest(key_confirmation(pair_key, transcript, sender, receiver), received)


# ------------------------------------------------------------------ per-id digests


def id_digests(ids: Iterable[str]) -> Digests:
    """u(x) = SHA-256(len(x) as 8 bytes big-endian || x)[:16] for every id, over its UTF-8
    bytes: the strings exactly as they go to `BlindingKey.hash_and_blind` (openmined-psi
    hashes their UTF-8). Shape (n, 16) uint8."""
    out = bytearray()
    sha256 = hashlib.sha256
    for record_id in ids:
        raw = record_id.encode()
        out += sha256(len(raw).to_bytes(8, "big") + raw).digest()[:DIGEST_SIZE]
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, DIGEST_SIZE)


# ------------------------------------------------------------------ 128-bit values


def values_from_bytes(blob: bytes | bytearray | memoryview) -> Values:
    """16 bytes big-endian per value to an (n, 2) uint64 array."""
    if len(blob) % VALUE_SIZE:
        raise ValueError(f"{len(blob)} bytes is not a whole number of {VALUE_SIZE}-byte values")
    return np.frombuffer(blob, dtype=">u8").reshape(-1, 2).astype(np.uint64)


def values_to_bytes(values: Values) -> bytes:
    """An (n, 2) uint64 array to 16 bytes big-endian per value."""
    return _checked(values).astype(">u8").tobytes()


def values_from_ints(numbers: Iterable[int]) -> Values:
    """Python integers (taken mod 2^128) as values (for tests and small inputs)."""
    return values_from_bytes(b"".join((n % 2**128).to_bytes(VALUE_SIZE, "big") for n in numbers))


def values_to_ints(values: Values) -> list[int]:
    """Values as Python integers in [0, 2^128)."""
    return [int(hi) << 64 | int(lo) for hi, lo in _checked(values).tolist()]


def _checked(values: Values) -> Values:
    if values.dtype != np.uint64 or values.ndim != 2 or values.shape[1] != 2:
        raise ValueError(f"values are (n, 2) uint64, not {values.shape} {values.dtype}")
    return values


def _add_into(acc: Values, other: Values) -> None:
    lo = acc[:, 1]
    lo += other[:, 1]  # wraps mod 2^64
    hi = acc[:, 0]
    hi += other[:, 0]
    hi += lo < other[:, 1]  # carry


def _sub_into(acc: Values, other: Values) -> None:
    lo = acc[:, 1]
    borrow = lo < other[:, 1]
    lo -= other[:, 1]
    hi = acc[:, 0]
    hi -= other[:, 0]
    hi -= borrow


def add_values(a: Values, b: Values) -> Values:
    """a + b mod 2^128, element by element."""
    if _checked(a).shape != _checked(b).shape:
        raise ValueError(f"cannot add {a.shape} values to {b.shape}")
    out = a.copy()
    _add_into(out, b)
    return out


def sub_values(a: Values, b: Values) -> Values:
    """a - b mod 2^128, element by element."""
    if _checked(a).shape != _checked(b).shape:
        raise ValueError(f"cannot subtract {b.shape} values from {a.shape}")
    out = a.copy()
    _sub_into(out, b)
    return out


# ------------------------------------------------------------------ masks and lanes


def check_pair_keys(position: int, pair_keys: Mapping[int, bytes]) -> int:
    """k, when `pair_keys` holds one KEY_SIZE key for every position but `position` (ValueError else)."""
    k = len(pair_keys) + 1
    if not 2 <= k <= MAX_PARTIES or set(pair_keys) != set(range(k)) - {position} or position not in range(k):
        raise ValueError(
            f"position {position} needs one key for every other position of the round, "
            f"got keys for {sorted(pair_keys)}"
        )
    if any(len(key) != KEY_SIZE for key in pair_keys.values()):
        raise ValueError(f"pairwise keys are {KEY_SIZE} bytes")
    return k


def _digest_bytes(u: Digests) -> bytes:
    if u.dtype != np.uint8 or u.ndim != 2 or u.shape[1] != DIGEST_SIZE:
        raise ValueError(f"id digests are (n, {DIGEST_SIZE}) uint8, not {u.shape} {u.dtype}")
    return np.ascontiguousarray(u).tobytes()


def prf(pair_key: bytes, u: Digests) -> Values:
    """AES-256_{s_ij}(u(x)) for every id: one ECB block each, read as a big-endian integer."""
    # ECB is AES applied block by block: a PRF on distinct 16-byte inputs, not encryption of a message.
    encryptor = Cipher(algorithms.AES(pair_key), modes.ECB()).encryptor()  # noqa: S305
    blocks = encryptor.update(_digest_bytes(u)) + encryptor.finalize()
    return np.frombuffer(blocks, dtype=">u8").reshape(-1, 2).astype(np.uint64)


def masks(position: int, pair_keys: Mapping[int, bytes], u: Digests) -> Values:
    """m_i(x) = sum over j != i of sgn(j - i) * AES-256_{s_ij}(u(x)) mod 2^128, for company i at
    ring `position`, with `pair_keys` its key with every other position j (`pair_keys`). The k
    masks of one id sum to 0 mod 2^128."""
    check_pair_keys(position, pair_keys)
    total = np.zeros((len(u), 2), dtype=np.uint64)
    for peer, key in sorted(pair_keys.items()):
        (_add_into if peer > position else _sub_into)(total, prf(key, u))
    return total


def lane_values(
    position: int,
    k: int,
    bits: npt.ArrayLike,
    group_codes: npt.ArrayLike | None = None,
) -> Values:
    """b_i(x) * 4^(k-1-i), plus g(x) * 4^k when `group_codes` is given (only for the company the
    round takes its groups from), as values. Bits must be 0 or 1, codes 0..126."""
    if not 2 <= k <= MAX_PARTIES or position not in range(k):
        raise ValueError(f"position {position} is not in a round of {k} companies (2 to {MAX_PARTIES})")
    b = np.asarray(bits)
    if b.ndim != 1 or (b.size and not np.isin(b, (0, 1)).all()):
        raise ValueError("failure bits are a vector of 0s and 1s")
    low = b.astype(np.uint64) << np.uint64(2 * (k - 1 - position))
    if group_codes is not None:
        g = np.asarray(group_codes)
        if g.shape != b.shape or (g.size and (g.min() < 0 or g.max() >= MAX_GROUP_LABELS)):
            raise ValueError(f"group codes are one per bit, 0 to {MAX_GROUP_LABELS - 1}")
        low |= g.astype(np.uint64) << np.uint64(2 * k)
    out = np.zeros((len(b), 2), dtype=np.uint64)
    out[:, 1] = low
    return out


def masked_values(
    position: int,
    pair_keys: Mapping[int, bytes],
    u: Digests,
    bits: npt.ArrayLike,
    group_codes: npt.ArrayLike | None = None,
) -> bytes:
    """v_i(x) = lane + mask mod 2^128 for every element, 16 bytes big-endian each, in the order
    of `u` and `bits`: what company i's v2 failure tags seal. k is len(pair_keys) + 1."""
    k = check_pair_keys(position, pair_keys)
    values = lane_values(position, k, bits, group_codes)
    if len(values) != len(u):
        raise ValueError(f"{len(values)} bits for {len(u)} ids")
    _add_into(values, masks(position, pair_keys, u))
    return values_to_bytes(values)


def decode_sums(
    total: Values, k: int, group_count: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The sums of the k values of tokens held by every company, decoded: (patterns, codes, ok).

    ok only where every 2-bit lane is 0 or 1, the group code is below `group_count` (0 when
    the round has no groups) and every higher bit is 0. pattern = sum of lane_i * 2^(k-1-i)
    (company 0 the most significant bit, as `analysis.table.pattern_indices`). Where not ok,
    pattern and code are -1 (so a bincount over them fails rather than miscounts).
    """
    if not 2 <= k <= MAX_PARTIES or not 0 <= group_count <= MAX_GROUP_LABELS:
        raise ValueError(f"k = {k}, {group_count} groups: out of range")
    hi, lo = _checked(total)[:, 0], total[:, 1]
    lane_overflow = np.uint64(sum(2 << (2 * lane) for lane in range(k)))
    codes = lo >> np.uint64(2 * k)
    ok = (hi == 0) & ((lo & lane_overflow) == 0) & (codes < max(group_count, 1))
    patterns = np.zeros(len(total), dtype=np.int64)
    for lane in range(k):
        patterns |= ((lo >> np.uint64(2 * lane)) & np.uint64(1)).astype(np.int64) << lane
    patterns[~ok] = -1
    out_codes = codes.astype(np.int64)
    out_codes[~ok] = -1
    return patterns, out_codes, ok
