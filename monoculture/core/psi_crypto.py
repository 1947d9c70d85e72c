"""The crypto wrapper: the only module that imports openmined-psi.

- `BlindingKey`: one company's fresh per-round P-256 scalar. openmined-psi does
  every hash-to-curve (`client.CreateRequest`) and every scalar multiplication
  (`server.ProcessRequest`); both objects are built from the same key bytes, so
  they act as one scalar. With reveal_intersection = True, ProcessRequest keeps
  the order of its input (with False it sorts, which would separate points
  from their failure tags).
- Failure tags: AES-256-GCM under a key the list's owner agrees with the
  coordinator by X25519 + HKDF-SHA256. A relaying company sees 29 opaque bytes
  per element; only the coordinator can open them. In a round with groups, the
  groups company's tags carry the group code beside the bit (plaintext byte =
  bit | code << 1, under an AAD naming the round's labels); every other tag, and
  every tag of a round without groups, is the one-bit format.
- `random_permutation`: shuffles from the operating system's CSPRNG.

openmined-psi objects are not thread-safe: a `BlindingKey` must stay on the
thread (or process) that uses it; build another from `key_bytes` elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import private_set_intersection.python as psi
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError

from monoculture.core.errors import MalformedRequest, ProtocolError
from monoculture.core.keystream import random_bytes
from monoculture.core.protocol import MAX_GROUP_LABELS

POINT_SIZE = 33  # compressed P-256 point
NONCE_SIZE = 12
VALUE_SIZE = 16  # a masked 128-bit value (core/masks.py), big-endian
TAG_SIZE = NONCE_SIZE + VALUE_SIZE + 16  # nonce, the encrypted masked value, GCM tag
PUBLIC_KEY_SIZE = 32
_TAG_KEY_INFO = b"monoculture/v2 failure tag key"


# A throwaway key to test public keys with: its secret is never used for anything else.
_KEY_CHECKER = X25519PrivateKey.generate()


def x25519_key(private_key: bytes | None = None) -> X25519PrivateKey:
    """A fresh X25519 key, or the one whose raw private bytes are given (restarts)."""
    return X25519PrivateKey.from_private_bytes(private_key) if private_key else X25519PrivateKey.generate()


def check_x25519_public_key(public_key: bytes, what: str, owner: str) -> None:
    """Refuse an X25519 public key that is not 32 bytes or has low order (an exchange with it
    gives the all-zero secret, which cryptography refuses): `what` of `owner` is named."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise MalformedRequest(
            f"{what} of {owner} is {len(public_key)} bytes, not {PUBLIC_KEY_SIZE}", where=owner
        )
    try:
        _KEY_CHECKER.exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError:
        raise MalformedRequest(f"{what} of {owner} is a low-order point", where=owner) from None


class InvalidPoint(ProtocolError):
    """A list held bytes that do not decode to a curve point."""


class BlindingKey:
    """A company's secret scalar for one round. Never logged, never stored in the clear."""

    def __init__(self, key_bytes: bytes) -> None:
        self._key_bytes = key_bytes
        try:
            self._hasher = psi.client.CreateFromKey(key_bytes, True)
            self._multiplier = psi.server.CreateFromKey(key_bytes, True)
        except RuntimeError as exc:  # out of range
            raise ValueError("blinding key must be a P-256 scalar in [1, order)") from exc

    @classmethod
    def fresh(cls) -> BlindingKey:
        """A new random scalar from openmined-psi's CSPRNG."""
        return cls(psi.client.CreateWithNewKey(True).GetPrivateKeyBytes())

    @property
    def key_bytes(self) -> bytes:
        return self._key_bytes

    def __repr__(self) -> str:
        return "BlindingKey(<secret>)"

    def hash_and_blind(self, ids: Sequence[str]) -> list[bytes]:
        """H(id)^k for every id, in input order: one hash-to-curve + one multiplication each."""
        request = self._hasher.CreateRequest(list(ids))
        return list(request.encrypted_elements)

    def reblind(self, points: Sequence[bytes]) -> list[bytes]:
        """P^k for every point, in input order: one multiplication each."""
        request = psi.Request(reveal_intersection=True, encrypted_elements=points)
        try:
            response = self._multiplier.ProcessRequest(request)
        except RuntimeError as exc:
            raise InvalidPoint(f"a list element is not a valid curve point ({exc})") from exc
        return list(response.encrypted_elements)


def check_points(points: Sequence[bytes]) -> None:
    """InvalidPoint unless every element decodes to a P-256 point (re-blinded under a
    throwaway key, as the receiver of a relayed list would)."""
    if points:
        BlindingKey.fresh().reblind(points)


def psi_two_party_cardinality(client_ids: Sequence[str], server_ids: Sequence[str]) -> int:
    """openmined-psi's own two-party cardinality protocol, both sides in one process
    (the benchmark's reference point; not part of monoculture's protocol)."""
    client = psi.client.CreateWithNewKey(False)
    server = psi.server.CreateWithNewKey(False)
    setup = server.CreateSetupMessage(1e-9, len(client_ids), list(server_ids), psi.DataStructure.GCS)
    response = server.ProcessRequest(client.CreateRequest(list(client_ids)))
    return int(client.GetIntersectionSize(setup, response))


class PsiServerSide:
    """openmined-psi's server in its own two-party cardinality protocol, with messages as bytes
    (the benchmark runs it as its own process; not part of monoculture's protocol)."""

    def __init__(self) -> None:
        self._server = psi.server.CreateWithNewKey(False)

    def setup(self, ids: Sequence[str], client_size: int) -> bytes:
        """The server's set, hashed, blinded and packed in a Golomb-coded set: len(ids) hash-to-curve
        + multiply."""
        message = self._server.CreateSetupMessage(1e-9, client_size, list(ids), psi.DataStructure.GCS)
        return bytes(message.SerializeToString())

    def process(self, request: bytes) -> bytes:
        """The client's blinded points blinded once more: one multiplication each."""
        parsed = psi.Request()
        parsed.ParseFromString(request)
        return bytes(self._server.ProcessRequest(parsed).SerializeToString())


class PsiClientSide:
    """openmined-psi's client in the same protocol (see `PsiServerSide`)."""

    def __init__(self) -> None:
        self._client = psi.client.CreateWithNewKey(False)

    def request(self, ids: Sequence[str]) -> bytes:
        """The client's set hashed and blinded: len(ids) hash-to-curve + multiply."""
        return bytes(self._client.CreateRequest(list(ids)).SerializeToString())

    def size(self, setup: bytes, response: bytes) -> int:
        """The intersection's size: the client's key taken off each point (one multiplication by
        its inverse each), then each looked up in the server's set."""
        parsed_setup, parsed_response = psi.ServerSetup(), psi.Response()
        parsed_setup.ParseFromString(setup)
        parsed_response.ParseFromString(response)
        return int(self._client.GetIntersectionSize(parsed_setup, parsed_response))


def split_points(blob: bytes) -> list[bytes]:
    """Concatenated POINT_SIZE points to a list (lists are held as one blob: 33 bytes a point)."""
    return [blob[i : i + POINT_SIZE] for i in range(0, len(blob), POINT_SIZE)]


def encode_points(points: Sequence[bytes]) -> bytes:
    """Points as an opaque bytes field: a serialized psi.Request."""
    return bytes(psi.Request(reveal_intersection=True, encrypted_elements=points).SerializeToString())


def decode_points(blob: bytes) -> list[bytes]:
    """Inverse of `encode_points`; every element must be POINT_SIZE bytes."""
    try:
        request = psi.Request.FromString(blob)
    except DecodeError as exc:
        raise ProtocolError(f"points field is not a serialized psi.Request ({exc})") from exc
    points = list(request.encrypted_elements)
    if any(len(p) != POINT_SIZE for p in points):
        raise ProtocolError(f"every point must be {POINT_SIZE} bytes")
    return points


def random_permutation(size: int, seed: bytes | None = None, label: bytes = b"") -> npt.NDArray[np.int64]:
    """A uniformly random permutation of range(size): sorting 64-bit random keys
    (ties have probability below size^2 / 2^64).

    Without `seed` the keys come from os.urandom. With a 32-byte secret `seed`
    (itself from os.urandom) they are an AES-256-CTR keystream under
    HKDF(seed, label): a company that restarts mid-round shuffles the same way
    again, so a re-sent list is byte for byte the list first sent.
    """
    raw = random_bytes(seed, b"monoculture/v1 shuffle|" + label, 8 * size)
    keys = np.frombuffer(raw, dtype="<u8")  # little-endian on every machine: the same shuffle
    return np.argsort(keys, kind="stable").astype(np.int64, copy=False)


def _tag_key(shared_secret: bytes, round_id: str, company: str) -> AESGCM:
    info = b"|".join([_TAG_KEY_INFO, round_id.encode(), company.encode()])
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared_secret)
    return AESGCM(key)


def _tag_aad(round_id: str, company: str) -> bytes:
    return f"monoculture/v2 tag|{round_id}|{company}".encode()


def group_labels_digest(labels: Sequence[str]) -> bytes:
    """SHA-256 of the declared labels in order, each UTF-8 with a 4-byte big-endian length prefix."""
    framed = b"".join(len(raw).to_bytes(4, "big") + raw for raw in (label.encode() for label in labels))
    return hashlib.sha256(framed).digest()


def _group_tag_aad(round_id: str, company: str, labels: Sequence[str]) -> bytes:
    """The groups company's tags: another AAD, so a grouped tag never opens as a bit and the
    codes mean the labels the round declared (a tag sealed for other labels fails)."""
    return f"monoculture/v2 group tag|{round_id}|{company}|{group_labels_digest(labels).hex()}".encode()


def _check_label_count(labels: Sequence[str]) -> None:
    if len(labels) > MAX_GROUP_LABELS:
        raise ProtocolError(f"at most {MAX_GROUP_LABELS} group labels fit a failure tag, got {len(labels)}")


class TagSealer:
    """A company's side of the failure tags for one round.

    `group_labels`: only for the company a round takes its groups from — the labels the
    round declared; its tags then carry each element's group code (see `seal`).
    """

    def __init__(
        self,
        round_id: str,
        company: str,
        coordinator_public_key: bytes,
        private_key: bytes | None = None,
        group_labels: Sequence[str] = (),
    ) -> None:
        if len(coordinator_public_key) != PUBLIC_KEY_SIZE:
            raise ProtocolError("coordinator public key must be 32 bytes (X25519)")
        _check_label_count(group_labels)
        private = x25519_key(private_key)
        self.private_key = private.private_bytes_raw()
        self.public_key = private.public_key().public_bytes_raw()
        self.group_labels = tuple(group_labels)
        shared = private.exchange(X25519PublicKey.from_public_bytes(coordinator_public_key))
        self._aead = _tag_key(shared, round_id, company)
        self._aad = (
            _group_tag_aad(round_id, company, group_labels) if group_labels else _tag_aad(round_id, company)
        )

    def seal(self, values: bytes | npt.NDArray[np.uint8]) -> bytearray:
        """One TAG_SIZE tag per masked value (rows of VALUE_SIZE bytes, core/masks.py); the nonce
        is the element's position in this list. A value alone is uniform: it opens to nothing
        without the other companies' values of the same individual."""
        raw = np.frombuffer(values, dtype=np.uint8) if isinstance(values, bytes) else values
        rows = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, VALUE_SIZE)
        tags = bytearray(len(rows) * TAG_SIZE)  # allocated once
        for position, value in enumerate(rows):
            nonce = position.to_bytes(NONCE_SIZE, "big")
            at = position * TAG_SIZE
            tags[at : at + NONCE_SIZE] = nonce
            tags[at + NONCE_SIZE : at + TAG_SIZE] = self._aead.encrypt(nonce, value.tobytes(), self._aad)
        return tags


class TagOpener:
    """The coordinator's side of the failure tags for one round."""

    def __init__(self, private_key: bytes | None = None) -> None:
        self._private = x25519_key(private_key)
        self.public_key = self._private.public_key().public_bytes_raw()

    def private_bytes(self) -> bytes:
        """For sealed storage only (coordinator restarts)."""
        return self._private.private_bytes_raw()

    def opener_for(
        self, round_id: str, company: str, company_public_key: bytes, group_labels: Sequence[str] = ()
    ) -> CompanyTags:
        """`group_labels`: only for the company the round takes its groups from."""
        if len(company_public_key) != PUBLIC_KEY_SIZE:
            raise ProtocolError("tag public key must be 32 bytes (X25519)", where=company)
        _check_label_count(group_labels)
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(company_public_key))
        aad = _group_tag_aad(round_id, company, group_labels) if group_labels else _tag_aad(round_id, company)
        return CompanyTags(_tag_key(shared, round_id, company), aad, company, len(group_labels))


class CompanyTags:
    """Opens one company's tags to their masked values; `group_count` > 0 for the groups
    company's (that many labels)."""

    def __init__(self, aead: AESGCM, aad: bytes, company: str, group_count: int = 0) -> None:
        self._aead = aead
        self._aad = aad
        self._company = company
        self.group_count = group_count

    def open(self, tags: Sequence[bytes]) -> npt.NDArray[np.uint8]:
        """The masked values of the given tags, one VALUE_SIZE row each; a forged or altered tag,
        or one of another round or company, fails the round. (A tag carries its own nonce, so
        a tag moved to another position still opens: shuffles move tags by design; the masked
        sum is what catches a tag moved to another element.)"""
        values = np.empty((len(tags), VALUE_SIZE), dtype=np.uint8)
        for i, tag in enumerate(tags):
            try:
                opened = self._aead.decrypt(tag[:NONCE_SIZE], tag[NONCE_SIZE:], self._aad)
            except InvalidTag as exc:
                raise ProtocolError(
                    f"a failure tag of the list of {self._company} does not authenticate (altered by its "
                    "owner or a company that relayed it; no one is named)"
                ) from exc
            if len(opened) != VALUE_SIZE:
                raise ProtocolError(
                    f"a failure tag of the list of {self._company} holds {len(opened)} bytes, not a "
                    f"{VALUE_SIZE}-byte masked value (no one is named)"
                )
            values[i] = np.frombuffer(opened, dtype=np.uint8)
        return values


def split_tags(blob: bytes | bytearray) -> list[bytes]:
    """Concatenated tags to a list; the blob must be a whole number of tags."""
    if len(blob) % TAG_SIZE:
        raise ProtocolError(f"tags field must be a multiple of {TAG_SIZE} bytes")
    return [bytes(blob[i : i + TAG_SIZE]) for i in range(0, len(blob), TAG_SIZE)]
