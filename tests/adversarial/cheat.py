"""A cheating company: a real gRPC client with a valid certificate from the auditor's CA,
speaking the protocol by hand so it can send what no honest daemon sends."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc

from monoculture.core.identity import read_certified_key
from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE, TagSealer, encode_points
from monoculture.core.relay import ChunkSigner, RelayKeys, RelayPeer
from monoculture.core.wire import sealed_size
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
        peer = self.relay.signed(
            join.round_id, self.name, tags.public_key, self.material.certificate_pem,
            self.material.private_key_pem, tuple(join.roster),
        )  # fmt: skip
        return pb.EnrollRequest(
            round_id=join.round_id, company=self.name, tag_public_key=tags.public_key, list_size=list_size,
            relay_public_key=peer.relay_public_key, signature=peer.signature,
            certificate_pem=peer.certificate_pem,
        )  # fmt: skip

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
