"""Blame with evidence (docs/PROTOCOL.md, "Blame").

A company that cannot use a relayed chunk withdraws and may name another party. The
coordinator records that as a *verdict* only when evidence it can check itself backs it:

- "the sender sealed garbage" or "the sender sent invalid points": the receiver hands in the
  chunk as it got it, which carries the sender's signature, and its own relay private key for
  the round. The coordinator checks the signature against the sender's enrolled certificate
  and the key against the receiver's signed public key, then opens the chunk itself.
- "altered after it was signed" (the coordinator): the chunk as delivered does not carry its
  sender's signature, although the coordinator checked that signature when it arrived. The
  accused cannot judge a claim against itself, so this is recorded as the receiver's claim,
  with the evidence checked as far as it goes.

Anything else, including every blame without evidence and every blame in an --insecure
round (no signatures), is recorded as the claimant's claim; the party at fault is then the
claimant, who ended the round. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monoculture.core.errors import ProtocolError
from monoculture.core.protocol import Ring
from monoculture.core.psi_crypto import check_points
from monoculture.core.relay import ChunkVerifier, RelayKeys, RelayPeer
from monoculture.core.rerandomise import tags_decode
from monoculture.core.wire import chunk_content, round_tag_size
from monoculture.v1 import monoculture_pb2 as pb

COORDINATOR = "coordinator"


class RelayFault(ProtocolError):
    """A relayed chunk a receiver cannot use; `where` is the party it blames and `evidence`
    what backs that (None: nothing does)."""

    def __init__(self, message: str, *, where: str, evidence: pb.BlameEvidence | None = None) -> None:
        super().__init__(message, where=where)
        self.evidence = evidence


@dataclass(frozen=True)
class Verdict:
    """Who a round's failure is put on, and on what grounds."""

    party: str
    finding: str
    proven: bool  # backed by evidence the coordinator checked


def judge(
    claimant: str,
    blamed: str,
    evidence: pb.BlameEvidence | None,
    *,
    round_id: str,
    ring: Ring,
    peers: Mapping[str, RelayPeer],
    secure: bool,
    rerandomise: bool = False,
) -> Verdict:
    """The verdict on `claimant` withdrawing and blaming `blamed` ("" or itself: no blame).
    `rerandomise`: the round's tags are ElGamal ciphertexts, whose points must decode too."""
    if not blamed or blamed == claimant:
        return Verdict(claimant, f"{claimant} ended the round", proven=True)
    if blamed == COORDINATOR:
        return _against_coordinator(claimant, evidence, peers, secure)
    if blamed not in ring.roster:
        return _claim(claimant, blamed, "it names no party of this round")
    if evidence is None or not evidence.HasField("chunk"):
        return _claim(claimant, blamed, "no evidence was given")
    if not secure:
        return _claim(claimant, blamed, "an --insecure round carries no signatures to check evidence by")
    chunk = evidence.chunk
    chunk.DiscardUnknownFields()
    misplaced = _misplaced(chunk, claimant, round_id, ring)
    if misplaced:
        return _refuted(claimant, blamed, misplaced)
    sender = peers.get(chunk.sender)
    if sender is None:
        return _refuted(claimant, blamed, f"{chunk.sender[:64]} never enrolled")
    what = _describe(chunk)
    if blamed != chunk.sender:
        return _refuted(claimant, blamed, f"the evidence is a chunk from {chunk.sender}, not from {blamed}")
    if not ChunkVerifier(sender.certificate_pem, chunk.sender).signed_by_sender(chunk):
        return _refuted(claimant, blamed, f"{what} does not carry {blamed}'s signature")
    return _open_as_receiver(claimant, blamed, evidence, peers, what, rerandomise)


def _against_coordinator(
    claimant: str, evidence: pb.BlameEvidence | None, peers: Mapping[str, RelayPeer], secure: bool
) -> Verdict:
    """A company says the coordinator altered, dropped or reordered what it relayed. The accused
    cannot clear itself, so the failure is put on the coordinator as the claimant's claim (the
    auditor, who runs the coordinator, reads it), unless the evidence given contradicts it: a
    chunk that does carry its sender's valid signature was not altered."""
    shown = ""
    if secure and evidence is not None and evidence.HasField("chunk"):
        chunk = evidence.chunk
        sender = peers.get(chunk.sender)
        chunk.DiscardUnknownFields()
        if sender is not None and ChunkVerifier(sender.certificate_pem, chunk.sender).signed_by_sender(chunk):
            return _refuted(
                claimant, COORDINATOR, f"{_describe(chunk)} carries {chunk.sender}'s valid signature"
            )
        shown = (
            f"; its evidence: {_describe(chunk)} as delivered does not carry {chunk.sender}'s signature, "
            "which the coordinator checked on arrival"
        )
    return Verdict(
        COORDINATOR,
        f"{claimant} blames the coordinator{shown}; recorded as a claim (the coordinator cannot judge a "
        "claim against itself: the auditor should look into it)",
        proven=False,
    )


def _describe(chunk: pb.ListChunk) -> str:
    return f"chunk {chunk.chunk_index} of the list of {chunk.list_owner[:64]} at hop {chunk.hop}"


def _open_as_receiver(
    claimant: str,
    blamed: str,
    evidence: pb.BlameEvidence,
    peers: Mapping[str, RelayPeer],
    what: str,
    rerandomise: bool = False,
) -> Verdict:
    """Open the chunk with the receiver's disclosed key, as the receiver would have."""
    chunk = evidence.chunk
    receiver = peers.get(claimant)
    try:
        keys = RelayKeys(evidence.receiver_relay_private_key)
    except ValueError:
        return _refuted(claimant, blamed, "the disclosed relay key is not an X25519 key")
    if receiver is None or keys.public_key != receiver.relay_public_key:
        return _refuted(claimant, blamed, f"the disclosed relay key is not the one {claimant} enrolled")
    opener = keys.opener(peers[blamed], chunk.round_id, claimant, chunk.list_owner, chunk.hop)
    try:
        opened = opener.open(chunk)
    except ProtocolError:
        return Verdict(blamed, f"{blamed} signed {what} but sealed it so that it does not open", proven=True)
    try:
        points = chunk_content(opened, round_tag_size(rerandomise))
    except ProtocolError as exc:
        return Verdict(blamed, f"{blamed} signed {what}, which holds malformed points ({exc.message})", True)
    try:
        check_points(points)
    except ProtocolError as exc:
        return Verdict(blamed, f"{blamed} signed {what}, which holds invalid points ({exc.message})", True)
    if rerandomise and not tags_decode(opened.tags):
        return Verdict(
            blamed, f"{blamed} signed {what}, which holds failure tags that are not curve points", True
        )
    return _refuted(claimant, blamed, f"{what} opens and holds valid points")


def _misplaced(chunk: pb.ListChunk, claimant: str, round_id: str, ring: Ring) -> str:
    """Why the evidence chunk is not one the claimant could have been sent ("" if it is)."""
    if chunk.round_id != round_id or chunk.receiver != claimant:
        return f"the evidence is not a chunk of this round sealed to {claimant}"
    if chunk.list_owner not in ring.roster or chunk.hop >= ring.final_hop:
        return "the evidence names no relayed list of this round"
    if ring.blinder(chunk.list_owner, chunk.hop) != chunk.sender:
        return f"{chunk.sender} does not send the list of {chunk.list_owner} at hop {chunk.hop}"
    if ring.blinder(chunk.list_owner, chunk.hop + 1) != claimant:
        return f"{claimant} does not receive the list of {chunk.list_owner} at hop {chunk.hop}"
    return ""


def _claim(claimant: str, blamed: str, why: str) -> Verdict:
    return Verdict(claimant, f"{claimant} blames {blamed}; recorded as a claim, not a verdict: {why}", False)


def _refuted(claimant: str, blamed: str, why: str) -> Verdict:
    return Verdict(claimant, f"{claimant} blames {blamed}, but its evidence does not hold: {why}", True)
