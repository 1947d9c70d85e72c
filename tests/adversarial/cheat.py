"""A cheating company: a real gRPC client with a valid certificate from the auditor's CA,
speaking the protocol by hand so it can send what no honest daemon sends."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc

from monoculture.client.daemon import round_settings
from monoculture.core.identity import read_certified_key
from monoculture.core.masks import key_confirmation, pair_keys, transcript_digest
from monoculture.core.protocol import PROTOCOL_VERSION
from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE, TagSealer, encode_points
from monoculture.core.relay import ChunkSigner, RelayKeys, RelayPeer
from monoculture.core.wire import ListAddress, list_chunks, sealed_size
from monoculture.transport import TlsFiles
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc


class Cheat:
    def __init__(self, address: str, name: str, tls: TlsFiles) -> None:
        self.name = name
        self.material = read_certified_key(tls.cert_file, tls.key_file)
        credentials = grpc.ssl_channel_credentials(
            tls.ca_pem(), self.material.private_key_pem, self.material.certificate_pem
        )
        self.channel = grpc.secure_channel(address, credentials)
        self.stub = pb_grpc.CompanyServiceStub(self.channel)
        self.signer = ChunkSigner(self.material.private_key_pem)
        self.relay = RelayKeys()
        self.roster: tuple[str, ...] = ()
        self.tag_private_key = b""
        self.settings = b""

    def close(self) -> None:
        self.channel.close()

    def next_work(self, kind: str, round_id: str, timeout: float = 60) -> pb.PollWorkResponse:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.stub.PollWork(pb.PollWorkRequest(company=self.name, wait_seconds=1))
            work = response.WhichOneof("work")
            if work == kind and getattr(response, work).round_id == round_id:
                return response
        raise AssertionError(f"{self.name}: no {kind} for round {round_id}")

    def enrollment(self, join: pb.JoinRound, list_size: int) -> pb.EnrollRequest:
        """A valid, signed enrolment (tests alter it)."""
        tags = TagSealer(join.round_id, self.name, join.coordinator_public_key)
        self.tag_private_key = tags.private_key
        self.settings = round_settings(join)
        peer = self.relay.signed(
            join.round_id, self.name, tags.public_key, self.material.certificate_pem,
            self.material.private_key_pem, tuple(join.roster),
        )  # fmt: skip
        self.roster = tuple(join.roster)
        return pb.EnrollRequest(
            round_id=join.round_id, company=self.name, tag_public_key=tags.public_key, list_size=list_size,
            relay_public_key=peer.relay_public_key, signature=peer.signature,
            certificate_pem=peer.certificate_pem, protocol_version=PROTOCOL_VERSION,
        )  # fmt: skip

    def confirmations(self, work: pb.PairKeys) -> pb.KeyConfirmations:
        """Honest key confirmations for every peer (a cheat that wants its round to go on)."""
        peers = [RelayPeer.from_message(peer) for peer in work.peers]
        transcript = transcript_digest(work.round_id, self.roster, peers, self.settings)
        others = {p.company: p.tag_public_key for p in peers if p.company != self.name}
        keys = pair_keys(self.tag_private_key, self.name, others, transcript, work.round_id, self.roster)
        return pb.KeyConfirmations(
            round_id=work.round_id, company=self.name,
            confirmations=[
                pb.KeyConfirmation(
                    sender=self.name, receiver=self.roster[at],
                    mac=key_confirmation(key, transcript, self.name, self.roster[at]),
                )
                for at, key in sorted(keys.items())
            ],
        )  # fmt: skip

    def join(self, round_id: str, list_size: int) -> None:
        """Enrol validly and confirm the pair keys: the round goes on to RELAYING with the cheat."""
        self.stub.Enroll(self.enrollment(self.next_work("join_round", round_id).join_round, list_size))
        self.stub.ConfirmKeys(self.confirmations(self.next_work("pair_keys", round_id).pair_keys))

    def garbage_upload(self, work: pb.BlindList, list_size: int) -> Iterator[pb.ListChunk]:
        """Random bytes of exactly the right size as a sealed chunk, signed by the cheat: what
        a sender that seals garbage sends (the receiver cannot open it)."""
        chunk = pb.ListChunk(
            round_id=work.round_id, sender=self.name, list_owner=work.list_owner, hop=work.hop,
            chunk_index=0, chunk_count=1, list_size=list_size, chunk_elements=list_size,
            receiver=work.receiver.company, sealed=os.urandom(sealed_size(list_size)),
        )  # fmt: skip
        yield self.signer.sign(chunk)

    def sealed_upload(self, work: pb.BlindList, points: list[bytes]) -> Iterator[pb.ListChunk]:
        """`points` as one chunk, properly sealed to the receiver and signed."""
        chunk = pb.ListChunk(
            round_id=work.round_id, sender=self.name, list_owner=work.list_owner, hop=work.hop,
            chunk_index=0, chunk_count=1, list_size=len(points), chunk_elements=len(points),
            points=encode_points(points), tags=b"\x00" * TAG_SIZE * len(points),
        )  # fmt: skip
        receiver = RelayPeer.from_message(work.receiver)
        sealer = self.relay.sealer(receiver, work.round_id, self.name, work.list_owner, work.hop)
        yield self.signer.sign(sealer.seal(chunk))

    def sealed_chunks(self, work: pb.BlindList, points: list[bytes], per_chunk: int) -> list[pb.ListChunk]:
        """`points` in chunks of `per_chunk`, each sealed to the receiver and signed: valid."""
        address = ListAddress(work.round_id, work.list_owner, work.hop)
        tags = b"\x00" * TAG_SIZE * len(points)
        receiver = RelayPeer.from_message(work.receiver)
        sealer = self.relay.sealer(receiver, work.round_id, self.name, work.list_owner, work.hop)
        return [
            self.signer.sign(sealer.seal(chunk))
            for chunk in list_chunks(address, self.name, b"".join(points), tags, per_chunk)
        ]


def valid_points(count: int) -> list[bytes]:
    """`count` distinct valid compressed P-256 points (multiples of the generator)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = []
    for scalar in range(1, count + 1):
        public = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
        out.append(
            public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        )
    assert all(len(p) == POINT_SIZE for p in out)
    return out
