"""The coordinator's rounds: state machines, relayed chunks and results, behind one lock.

Lists are held only while a hop still needs them: when hop h of a list is
uploaded, hop h-1 is dropped; after counting, the fully blinded lists are
dropped and only the pattern table remains.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.config import Limits
from monoculture.core.errors import LimitExceeded, ProtocolError, UnknownRound
from monoculture.core.protocol import (
    TERMINAL_PHASES,
    FinalList,
    Ring,
    RoundPhase,
    RoundState,
    Work,
    count_patterns,
    new_round_id,
)
from monoculture.core.psi_crypto import CompanyTags, TagOpener, decode_points, split_tags
from monoculture.core.relay import RelayPeer
from monoculture.core.release import ReleasePolicy, release
from monoculture.core.wire import ChunkSequence, ListAddress
from monoculture.v1 import monoculture_pb2 as pb

log = logging.getLogger("monoculture.coordinator")


@dataclass
class RoundRecord:
    state: RoundState
    tag_opener: TagOpener = field(default_factory=TagOpener)
    company_tags: dict[str, CompanyTags] = field(default_factory=dict)
    peers: dict[str, RelayPeer] = field(default_factory=dict)
    lists: dict[tuple[str, int], list[pb.ListChunk]] = field(default_factory=dict)
    told_ended: set[str] = field(default_factory=set)
    result_json: str = ""
    opened_at: float = field(default_factory=time.time)


class StoreRecorder:
    """Test aid: appends a copy of everything the coordinator stores to files in a folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / "stored.bin"
        self._lock = threading.Lock()

    def record(self, kind: str, payload: bytes) -> None:
        with self._lock, self._path.open("ab") as handle:
            header = kind.encode()
            handle.write(len(header).to_bytes(2, "big") + header)
            handle.write(len(payload).to_bytes(8, "big") + payload)


class RoundBook:
    """Every round this coordinator runs. Thread-safe; no network I/O."""

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        release_policy: ReleasePolicy | None = None,
        ca_pem: bytes | None = None,
        recorder: StoreRecorder | None = None,
    ) -> None:
        self._rounds: dict[str, RoundRecord] = {}
        self._changed = threading.Condition()
        self._limits = limits or Limits()
        self._release = release_policy or ReleasePolicy()
        self._ca_pem = ca_pem  # None with --insecure: relay keys are then not checked
        self._recorder = recorder

    # ------------------------------------------------------------ auditor

    def open_round(self, companies: list[str], min_list_size: int) -> RoundState:
        ring = Ring(tuple(companies))
        state = RoundState(new_round_id(), ring, min_list_size=max(self._limits.min_list_size, min_list_size))
        with self._changed:
            in_flight = sum(r.state.phase not in TERMINAL_PHASES for r in self._rounds.values())
            if in_flight >= self._limits.max_rounds_in_flight:
                raise LimitExceeded(
                    f"{in_flight} rounds are in flight, the limit is {self._limits.max_rounds_in_flight}",
                    hint="wait for a round to end or raise [limits] max_rounds_in_flight",
                )
            self._rounds[state.round_id] = RoundRecord(state)
            self._changed.notify_all()
        log.info("round %s opened for %s", state.round_id, ", ".join(companies))
        return state

    def status(self, round_id: str, company: str | None = None) -> RoundState:
        """A round's state; a company sees only rounds it is on."""
        with self._changed:
            return self._record(round_id, company).state

    def result(self, round_id: str) -> tuple[RoundState, str]:
        with self._changed:
            record = self._record(round_id)
            return record.state, record.result_json

    # ---------------------------------------------------------- companies

    def poll_work(self, company: str, wait_seconds: float) -> pb.PollWorkResponse:
        deadline = time.monotonic() + max(0.0, min(wait_seconds, 60.0))
        with self._changed:
            while True:
                response = self._next_work(company)
                if response is not None:
                    return response
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return pb.PollWorkResponse()
                self._changed.wait(remaining)

    def _next_work(self, company: str) -> pb.PollWorkResponse | None:
        for record in self._rounds.values():
            state = record.state
            if company not in state.ring.roster:
                continue
            if state.phase in TERMINAL_PHASES:
                if company in record.told_ended or not self._was_involved(record, company):
                    continue
                record.told_ended.add(company)
                return pb.PollWorkResponse(
                    round_ended=pb.RoundEnded(
                        round_id=state.round_id, phase=state.phase, reason=state.failure_reason
                    )
                )
            work = state.next_work(company)
            if work is not None:
                return self._work_message(record, work)
        return None

    @staticmethod
    def _was_involved(record: RoundRecord, company: str) -> bool:
        state = record.state
        return company in state.joined or any(
            state.ring.blinder(o, h) == company for o, h in state.dispatched
        )

    @staticmethod
    def _work_message(record: RoundRecord, work: Work) -> pb.PollWorkResponse:
        state = record.state
        if work.join:
            return pb.PollWorkResponse(
                join_round=pb.JoinRound(
                    round_id=work.round_id,
                    roster=list(state.ring.roster),
                    coordinator_public_key=record.tag_opener.public_key,
                    min_list_size=state.min_list_size,
                )
            )
        blind = pb.BlindList(round_id=work.round_id, list_owner=work.list_owner, hop=work.hop)
        if work.hop > 0:
            blind.sender.CopyFrom(
                record.peers[state.ring.blinder(work.list_owner, work.hop - 1)].to_message()
            )
        if work.hop < state.ring.final_hop:
            blind.receiver.CopyFrom(
                record.peers[state.ring.blinder(work.list_owner, work.hop + 1)].to_message()
            )
        return pb.PollWorkResponse(blind_list=blind)

    def enroll(self, company: str, request: pb.EnrollRequest) -> None:
        peer = RelayPeer(
            company,
            request.relay_public_key,
            request.tag_public_key,
            request.certificate_pem,
            request.signature,
        )
        with self._changed:
            record = self._record(request.round_id, company)
            try:
                peer.verify(request.round_id, company, self._ca_pem)
                if request.list_size > self._limits.max_list_size:
                    limit = self._limits.max_list_size
                    raise LimitExceeded(f"list of {request.list_size} records is above the limit of {limit}")
                record.state.enroll(company, request.list_size)
            except ProtocolError as exc:
                if record.state.phase == RoundPhase.OPEN:
                    self._fail(record, f"enrolment of {company} refused: {exc.message}", company)
                raise
            record.company_tags[company] = record.tag_opener.opener_for(
                request.round_id, company, request.tag_public_key
            )
            record.peers[company] = peer
            self._changed.notify_all()
        log.info("round %s: %s enrolled with a list of %d", request.round_id, company, request.list_size)

    def withdraw(self, round_id: str, company: str, reason: str, blamed: str = "") -> None:
        with self._changed:
            record = self._record(round_id, company)
            party = blamed if blamed in (*record.state.ring.roster, "coordinator") else company
            self._fail(record, f"{company} withdrew: {reason}", party)

    def receive_list(self, company: str, chunks: Iterator[pb.ListChunk]) -> int:
        """Validate and store one uploaded list; count patterns once every list is final."""
        sequence = ChunkSequence(sender=company)
        address: ListAddress | None = None
        receiver = ""
        for chunk in chunks:
            if address is None:
                address = ListAddress(chunk.round_id, chunk.list_owner, chunk.hop)
                receiver = self._check_upload(company, chunk)
            try:
                self._check_chunk(chunk, receiver)
                sequence.add(chunk)
            except ProtocolError as exc:
                self._fail_round(address.round_id, f"{address.describe()}: {exc.message}", company)
                raise
        if address is None:
            raise ProtocolError("the upload held no chunks", where=company)
        try:
            sequence.finish()
        except ProtocolError as exc:
            self._fail_round(address.round_id, exc.message, company)
            raise
        self._store(company, address, sequence.chunks)
        return sequence.elements

    def _check_upload(self, company: str, chunk: pb.ListChunk) -> str:
        """Is this upload expected now? Returns the company it must be sealed to ("" = none)."""
        with self._changed:
            state = self._record(chunk.round_id, company).state
            state.check_upload(company, chunk.list_owner, chunk.hop, chunk.list_size)
            if chunk.chunk_count > self._limits.max_chunks_per_list:
                raise LimitExceeded(
                    f"{chunk.chunk_count} chunks per list, the limit is {self._limits.max_chunks_per_list}",
                    where=company,
                )
            if chunk.hop == state.ring.final_hop:
                return ""
            return state.ring.blinder(chunk.list_owner, chunk.hop + 1)

    @staticmethod
    def _check_chunk(chunk: pb.ListChunk, receiver: str) -> None:
        """Intermediate lists must be sealed to the next company; the final one must not be."""
        if receiver and (not chunk.sealed or chunk.receiver != receiver):
            raise ProtocolError(f"chunk {chunk.chunk_index} is not sealed to {receiver}", where=chunk.sender)
        if not receiver and chunk.sealed:
            raise ProtocolError(
                "the fully blinded list must come open to the coordinator", where=chunk.sender
            )

    def _store(self, company: str, address: ListAddress, chunks: list[pb.ListChunk]) -> None:
        with self._changed:
            record = self._record(address.round_id, company)
            state = record.state
            state.check_upload(company, address.list_owner, address.hop, chunks[0].list_size)
            record.lists[(address.list_owner, address.hop)] = chunks
            record.lists.pop((address.list_owner, address.hop - 1), None)
            if self._recorder is not None:
                for chunk in chunks:
                    self._recorder.record("list-chunk", chunk.SerializeToString())
            state.record_upload(address.list_owner, address.hop)
            log.info("%s: uploaded by %s", address.describe(), company)
            counting = state.phase == RoundPhase.COUNTING
            self._changed.notify_all()
        if counting:
            self._count(address.round_id)

    def download_list(self, company: str, address: ListAddress) -> list[pb.ListChunk]:
        with self._changed:
            record = self._record(address.round_id, company)
            record.state.check_download(company, address.list_owner, address.hop)
            return list(record.lists[(address.list_owner, address.hop)])

    # ----------------------------------------------------------- counting

    def _count(self, round_id: str) -> None:
        with self._changed:
            record = self._record(round_id)
            state = record.state
            finals = [record.lists.pop((owner, state.ring.final_hop)) for owner in state.ring.roster]
            record.lists.clear()
        try:
            table = count_patterns(
                state.ring.roster,
                [_final_list(owner, chunks) for owner, chunks in zip(state.ring.roster, finals, strict=True)],
                record.company_tags,
            )
        except ProtocolError as exc:
            self._fail_round(round_id, f"counting failed: {exc}", exc.where)
            return
        del finals
        # Only the released form is kept; the exact table ends with this call.
        result = release(table, self._release)
        result["round_id"] = round_id
        if self._release.mechanism == "none":
            result["list_sizes"] = dict(state.list_sizes)
        result_json = json.dumps(result, indent=2)
        with self._changed:
            record.result_json = result_json
            if self._recorder is not None:
                self._recorder.record("result", result_json.encode())
            state.advance(RoundPhase.COMPLETE)
            self._changed.notify_all()
        log.info("round %s complete", round_id)

    # ------------------------------------------------------------ helpers

    def _record(self, round_id: str, company: str | None = None) -> RoundRecord:
        """The round; for a company, only one it is on (else it looks unknown)."""
        record = self._rounds.get(round_id)
        if record is None or (company is not None and company not in record.state.ring.roster):
            raise UnknownRound(f"unknown round {round_id!r}")
        return record

    def _fail_round(self, round_id: str, reason: str, party: str) -> None:
        with self._changed:
            self._fail(self._record(round_id), reason, party)

    def _fail(self, record: RoundRecord, reason: str, party: str) -> None:
        if record.state.phase in TERMINAL_PHASES:
            return
        record.state.fail(reason, party)
        record.lists.clear()
        log.warning("round %s failed: %s", record.state.round_id, reason)
        self._changed.notify_all()


def _final_list(owner: str, chunks: list[pb.ListChunk]) -> FinalList:
    tokens = b"".join(p for chunk in chunks for p in decode_points(chunk.points))
    tags = [t for chunk in chunks for t in split_tags(chunk.tags)]
    return FinalList(owner, tokens, tags)
