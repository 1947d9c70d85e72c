"""Protected relays: a list passing company -> coordinator -> company is
encrypted to the receiving company and authenticated by the sender.

Each company draws a fresh X25519 relay key pair per round and signs its
public key with its certificate's key; the coordinator relays the signed key
and the certificate, and the peer checks both against the deployment's CA.
Chunk keys are HKDF-SHA256 of the X25519 secret, bound to (round, sender,
receiver, list owner, hop); the nonce is the chunk index and the additional
data every header field. So a flipped byte, a dropped, reordered or replayed
chunk, a cut-short list, or a list moved to another place fails to open.

The signed key statement also names the round's roster in ring order, so two companies
shown different rosters never accept each other's keys. Every chunk also carries its
sender's ECDSA signature over the header and the digest of what it carries: a receiver
tells a chunk altered after it was signed (the coordinator, which checks every signature
on arrival) from one its sender sealed wrong (core/blame.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError

from monoculture.core.errors import ConfigError, ProtocolError
from monoculture.core.identity import (
    Identity,
    Role,
    certificate_key,
    public_key_fingerprint,
    sign,
    verify_certificate,
    verify_signature,
)
from monoculture.core.psi_crypto import NONCE_SIZE, check_x25519_public_key, x25519_key
from monoculture.v1 import monoculture_pb2 as pb

_KEY_INFO = b"monoculture/v1 relay chunk key"
_STATEMENT = b"monoculture/v1 relay public key"
_CHUNK_STATEMENT = b"monoculture/v1 chunk signature"
GCM_TAG_SIZE = 16


def _field(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


def key_statement(
    round_id: str, company: str, relay_public_key: bytes, tag_public_key: bytes, roster: Sequence[str]
) -> bytes:
    """What a company signs: its per-round public keys, bound to the round, its name and the
    roster in ring order (as JoinRound gave it)."""
    fields: list[str | bytes] = [round_id, company, relay_public_key, tag_public_key, str(len(roster))]
    fields += roster
    return _STATEMENT + b"".join(_field(v) for v in fields)


@dataclass(frozen=True)
class RelayPeer:
    """A company's signed relay key, as the coordinator passes it on."""

    company: str
    relay_public_key: bytes
    tag_public_key: bytes
    certificate_pem: bytes
    signature: bytes

    @classmethod
    def from_message(cls, peer: pb.Peer) -> RelayPeer:
        return cls(
            peer.company, peer.relay_public_key, peer.tag_public_key, peer.certificate_pem, peer.signature
        )

    def to_message(self) -> pb.Peer:
        return pb.Peer(
            company=self.company,
            relay_public_key=self.relay_public_key,
            tag_public_key=self.tag_public_key,
            certificate_pem=self.certificate_pem,
            signature=self.signature,
        )

    def verify(
        self,
        round_id: str,
        expected_company: str,
        ca_pem: bytes | None,
        roster: Sequence[str],
        pinned: str | None = None,
    ) -> None:
        """Check the keys are `expected_company`'s for this round and roster: well-formed, signed
        by a certificate of the CA naming that company and, when `pinned` (its `sha256:HEX` in
        the daemon's [peers]), holding that very key. The CA and the signature are skipped without
        a CA (--insecure)."""
        if self.company != expected_company:
            raise ProtocolError(f"relay key of {self.company!r} given where {expected_company}'s was due")
        check_x25519_public_key(self.relay_public_key, "relay public key", expected_company)
        check_x25519_public_key(self.tag_public_key, "tag public key", expected_company)
        if ca_pem is None:
            return
        identity = verify_certificate(self.certificate_pem, ca_pem)
        if identity != Identity(Role.COMPANY, expected_company):
            raise ProtocolError(f"relay key certified for {identity}, not company {expected_company}")
        if pinned is not None and public_key_fingerprint(self.certificate_pem) != pinned:
            raise ProtocolError(
                f"the certificate of {expected_company} holds a key other than the one pinned for it "
                f"({pinned}): the CA certified another key under that name",
                where=expected_company,
                hint="compare fingerprints with that company out of band (`monoculture certs fingerprint`)",
            )
        statement = key_statement(round_id, self.company, self.relay_public_key, self.tag_public_key, roster)
        try:
            verify_signature(self.certificate_pem, statement, self.signature)
        except ProtocolError:
            raise ProtocolError(
                f"the keys of {expected_company} are not signed for this round and roster "
                f"({', '.join(roster)}): it was shown another roster, or the keys were replaced",
                where=expected_company,
            ) from None


class RelayKeys:
    """A company's relay key pair for one round."""

    def __init__(self, private_key: bytes | None = None) -> None:
        self._private = x25519_key(private_key)
        self.public_key = self._private.public_key().public_bytes_raw()

    def private_bytes(self) -> bytes:
        """For the company's sealed state only (restarts)."""
        return self._private.private_bytes_raw()

    def signed(
        self,
        round_id: str,
        company: str,
        tag_public_key: bytes,
        certificate_pem: bytes,
        private_key_pem: bytes | None,
        roster: Sequence[str],
    ) -> RelayPeer:
        statement = key_statement(round_id, company, self.public_key, tag_public_key, roster)
        signature = sign(private_key_pem, statement) if private_key_pem else b""
        return RelayPeer(company, self.public_key, tag_public_key, certificate_pem, signature)

    def _aead(
        self, peer_public_key: bytes, round_id: str, sender: str, receiver: str, owner: str, hop: int
    ) -> AESGCM:
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer_public_key))
        info = _KEY_INFO + b"".join(_field(v) for v in (round_id, sender, receiver, owner, str(hop)))
        return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared))

    def sealer(self, receiver: RelayPeer, round_id: str, sender: str, owner: str, hop: int) -> ChunkSealer:
        aead = self._aead(receiver.relay_public_key, round_id, sender, receiver.company, owner, hop)
        return ChunkSealer(aead, receiver.company)

    def opener(self, sender: RelayPeer, round_id: str, receiver: str, owner: str, hop: int) -> ChunkOpener:
        aead = self._aead(sender.relay_public_key, round_id, sender.company, receiver, owner, hop)
        return ChunkOpener(aead)


def _header_aad(chunk: pb.ListChunk) -> bytes:
    fields = (
        chunk.round_id, chunk.sender, chunk.receiver, chunk.list_owner, str(chunk.hop),
        str(chunk.chunk_index), str(chunk.chunk_count), str(chunk.list_size), str(chunk.chunk_elements),
    )  # fmt: skip
    return b"monoculture/v1 relay chunk" + b"".join(_field(v) for v in fields)


def chunk_statement(chunk: pb.ListChunk) -> bytes:
    """What a sender signs for each chunk: every header field, and the SHA-256 of what it
    carries (`sealed`, or points and tags at the last hop)."""
    body = hashlib.sha256()
    for part in (chunk.sealed, chunk.points, chunk.tags):
        body.update(_field(part))
    return _CHUNK_STATEMENT + _header_aad(chunk) + body.digest()


class ChunkSigner:
    """Signs a company's chunks with its certificate key (loaded once)."""

    def __init__(self, private_key_pem: bytes) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError("the certificate's private key is not an EC key")
        self._key = key

    def sign(self, chunk: pb.ListChunk) -> pb.ListChunk:
        # RFC 6979 deterministic ECDSA: a re-sent chunk (a retry, a restart) is the same bytes, so
        # the coordinator stores it once; and no signing nonce can repeat.
        chunk.signature = self._key.sign(
            chunk_statement(chunk), ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        )
        return chunk


class ChunkVerifier:
    """Checks chunks carry their sender's signature (the sender's certificate, loaded once)."""

    def __init__(self, certificate_pem: bytes, sender: str) -> None:
        self._key = certificate_key(certificate_pem)
        self.sender = sender

    def signed_by_sender(self, chunk: pb.ListChunk) -> bool:
        try:
            self._key.verify(chunk.signature, chunk_statement(chunk), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def _nonce(chunk: pb.ListChunk) -> bytes:
    return chunk.chunk_index.to_bytes(NONCE_SIZE, "big")


class ChunkSealer:
    def __init__(self, aead: AESGCM, receiver: str) -> None:
        self._aead = aead
        self.receiver = receiver

    def seal(self, chunk: pb.ListChunk) -> pb.ListChunk:
        """Move points and tags into `sealed`, encrypted to the receiver (header stays readable)."""
        chunk.receiver = self.receiver
        body = pb.ListChunkBody(points=chunk.points, tags=chunk.tags).SerializeToString()
        chunk.sealed = self._aead.encrypt(_nonce(chunk), body, _header_aad(chunk))
        chunk.points = b""
        chunk.tags = b""
        return chunk


class ChunkOpener:
    def __init__(self, aead: AESGCM) -> None:
        self._aead = aead

    def open(self, chunk: pb.ListChunk) -> pb.ListChunk:
        """The chunk with its points and tags restored; ProtocolError when it was tampered with."""
        try:
            body = pb.ListChunkBody.FromString(
                self._aead.decrypt(_nonce(chunk), chunk.sealed, _header_aad(chunk))
            )
        except (InvalidTag, DecodeError):
            raise ProtocolError(
                f"chunk {chunk.chunk_index} fails authentication: altered, dropped, reordered, "
                "replayed or moved between lists in relay"
            ) from None
        opened = pb.ListChunk()
        opened.CopyFrom(chunk)
        opened.sealed = b""
        opened.signature = b""
        opened.points = body.points
        opened.tags = body.tags
        return opened
