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

from monoculture.core.errors import ProtocolError
from monoculture.core.metrics import result_dict
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
from monoculture.core.wire import ChunkSequence, ListAddress
from monoculture.v1 import monoculture_pb2 as pb

log = logging.getLogger("monoculture.coordinator")


@dataclass
class RoundRecord:
    state: RoundState
    tag_opener: TagOpener = field(default_factory=TagOpener)
    company_tags: dict[str, CompanyTags] = field(default_factory=dict)
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

    def __init__(self, recorder: StoreRecorder | None = None) -> None:
        self._rounds: dict[str, RoundRecord] = {}
        self._changed = threading.Condition()
        self._recorder = recorder

    # ------------------------------------------------------------ auditor

    def open_round(self, companies: list[str], min_list_size: int) -> RoundState:
        ring = Ring(tuple(companies))
        state = RoundState(new_round_id(), ring, min_list_size=max(1, min_list_size))
        with self._changed:
            self._rounds[state.round_id] = RoundRecord(state)
            self._changed.notify_all()
        log.info("round %s opened for %s", state.round_id, ", ".join(companies))
        return state

    def status(self, round_id: str) -> RoundState:
        with self._changed:
            return self._record(round_id).state

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
        return any(record.state.ring.blinder(o, h) == company for o, h in record.state.dispatched)

    @staticmethod
    def _work_message(record: RoundRecord, work: Work) -> pb.PollWorkResponse:
        state = record.state
        if work.hop == 0:
            return pb.PollWorkResponse(
                join_round=pb.JoinRound(
                    round_id=work.round_id,
                    roster=list(state.ring.roster),
                    coordinator_public_key=record.tag_opener.public_key,
                    min_list_size=state.min_list_size,
                )
            )
        return pb.PollWorkResponse(
            relay_list=pb.RelayList(round_id=work.round_id, list_owner=work.list_owner, hop=work.hop)
        )

    def enroll(self, round_id: str, company: str, tag_public_key: bytes, list_size: int) -> None:
        with self._changed:
            record = self._record(round_id)
            record.state.enroll(company, list_size)
            record.company_tags[company] = record.tag_opener.opener_for(round_id, company, tag_public_key)
            self._changed.notify_all()
        log.info("round %s: %s enrolled with a list of %d", round_id, company, list_size)

    def withdraw(self, round_id: str, company: str, reason: str) -> None:
        with self._changed:
            record = self._record(round_id)
            record.state.ring.position(company)
            self._fail(record, f"{company} withdrew: {reason}", company)

    def receive_list(self, company: str, chunks: Iterator[pb.ListChunk]) -> int:
        """Validate and store one uploaded list; count patterns once every list is final."""
        sequence = ChunkSequence(sender=company)
        stored: list[pb.ListChunk] = []
        address: ListAddress | None = None
        for chunk in chunks:
            if address is None:
                address = ListAddress(chunk.round_id, chunk.list_owner, chunk.hop)
                self._check_upload(company, chunk)
            try:
                sequence.add(chunk)
            except ProtocolError as exc:
                self._fail_round(address.round_id, f"{address.describe()}: {exc.message}", company)
                raise
            stored.append(chunk)
        sequence.finish()
        assert address is not None
        self._store(company, address, stored)
        return sequence.elements

    def _check_upload(self, company: str, chunk: pb.ListChunk) -> None:
        with self._changed:
            state = self._record(chunk.round_id).state
            state.check_upload(company, chunk.list_owner, chunk.hop, chunk.list_size)

    def _store(self, company: str, address: ListAddress, chunks: list[pb.ListChunk]) -> None:
        with self._changed:
            record = self._record(address.round_id)
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
            record = self._record(address.round_id)
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
        result = result_dict(table)
        result["round_id"] = round_id
        result["list_sizes"] = dict(state.list_sizes)
        result_json = json.dumps(result, indent=2)
        with self._changed:
            record.result_json = result_json
            if self._recorder is not None:
                self._recorder.record("result", result_json.encode())
            state.advance(RoundPhase.COMPLETE)
            self._changed.notify_all()
        log.info("round %s complete: %d shared individuals", round_id, table.shared_individuals)

    # ------------------------------------------------------------ helpers

    def _record(self, round_id: str) -> RoundRecord:
        try:
            return self._rounds[round_id]
        except KeyError:
            raise ProtocolError(f"unknown round {round_id!r}") from None

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
