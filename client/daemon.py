"""`monoculture client run`: the company daemon's main loop.

Long-polls the coordinator for work and does it: join (blind and upload the
own list), relay (download, re-blind, re-shuffle, upload), forget a round's key
when the round ends. The input file is read and checked before anything is
sent for a round; if it is refused, the daemon withdraws from the round with a
reason that holds no id, no file name and no line.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field

import grpc

from client.config import ClientConfig
from monoculture.core.company import OperationCounts, blind_own_list, relay_list
from monoculture.core.dataset import CompanyRecords, load_records
from monoculture.core.errors import InputError, MonocultureError
from monoculture.core.psi_crypto import BlindingKey, InvalidPoint, TagSealer
from monoculture.core.wire import MAX_MESSAGE_BYTES, ChunkSequence, ListAddress, list_chunks
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.client")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class CompanyRound:
    """What a company holds for one round: its key (memory only) and its work counts."""

    round_id: str
    key: BlindingKey
    counts: OperationCounts = field(default_factory=OperationCounts)
    blind_seconds: float = 0.0


class ProgressLog:
    """Logs progress of a long phase about every tenth of the way (and at the end)."""

    def __init__(self, what: str, minimum: int = 50_000) -> None:
        self._what = what
        self._minimum = minimum
        self._next = 0.1

    def __call__(self, done: int, total: int) -> None:
        if total < self._minimum:
            return
        if done >= total or done / total >= self._next:
            log.info("%s: %d / %d (%.0f%%)", self._what, done, total, 100 * done / total)
            self._next = done / total + 0.1


class CompanyDaemon:
    def __init__(self, config: ClientConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self._stop = stop or threading.Event()
        self._channel = grpc.insecure_channel(config.coordinator, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.CompanyServiceStub(self._channel)
        self._rounds: dict[str, CompanyRound] = {}
        self._rounds_ended = 0

    @property
    def company(self) -> str:
        return self.config.company

    def run(self) -> int:
        log.info("%s: serving, coordinator at %s", self.company, self.config.coordinator)
        failures = 0
        while not self._stop.is_set():
            try:
                response = self._stub.PollWork(
                    pb.PollWorkRequest(company=self.company, wait_seconds=self.config.poll_seconds),
                    timeout=self.config.poll_seconds + 10,
                )
                failures = 0
            except grpc.RpcError as exc:
                if exc.code() not in _RETRYABLE:
                    raise
                failures += 1
                delay = min(30.0, 0.2 * 2 ** min(failures, 8)) * (0.5 + random.random())
                log.warning(
                    "%s: coordinator unreachable (%s); retry in %.1f s",
                    self.company,
                    exc.code().name,
                    delay,
                )
                self._stop.wait(delay)
                continue
            self._handle(response)
            if self.config.exit_after_rounds and self._rounds_ended >= self.config.exit_after_rounds:
                break
        self._channel.close()
        return 0

    def _handle(self, response: pb.PollWorkResponse) -> None:
        kind = response.WhichOneof("work")
        try:
            if kind == "join_round":
                self._join(response.join_round)
            elif kind == "relay_list":
                self._relay(response.relay_list)
            elif kind == "round_ended":
                self._end(response.round_ended)
        except grpc.RpcError as exc:
            log.error("%s: the coordinator refused a step: %s", self.company, exc.details())

    # ------------------------------------------------------------------ join

    def _join(self, join: pb.JoinRound) -> None:
        round_id = join.round_id
        log.info("%s: joining round %s (ring %s)", self.company, round_id, ", ".join(join.roster))
        records = self._load_for_round(round_id, join.min_list_size)
        if records is None:
            return
        company_round = CompanyRound(round_id, BlindingKey.fresh())
        self._rounds[round_id] = company_round
        sealer = TagSealer(round_id, self.company, join.coordinator_public_key)
        self._stub.Enroll(
            pb.EnrollRequest(
                round_id=round_id,
                company=self.company,
                tag_public_key=sealer.public_key,
                list_size=len(records),
            )
        )
        started = time.perf_counter()
        points, tags = blind_own_list(
            records,
            company_round.key,
            sealer,
            company_round.counts,
            ProgressLog(f"{self.company}: round {round_id}: blinding own list"),
        )
        company_round.blind_seconds += time.perf_counter() - started
        self._upload(ListAddress(round_id, self.company, 0), points, tags)

    def _load_for_round(self, round_id: str, min_list_size: int) -> CompanyRecords | None:
        try:
            records = load_records(self.config.data)
            if len(records) < min_list_size:
                raise InputError(
                    f"holds {len(records)} records, below this round's minimum of {min_list_size}",
                    where=str(self.config.data.path),
                )
        except MonocultureError as exc:
            log.error("%s: round %s: input refused\n%s", self.company, round_id, exc.diagnostics())
            # The reason sent holds no id, path or line: those stay in the company's own log.
            reason = f"its input was refused by its daemon ({type(exc).__name__}); see {self.company}'s log"
            self._stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company=self.company, reason=reason))
            return None
        if records.rows_merged or records.ids_dropped:
            log.warning(
                "%s: duplicate policy %s merged %d repeated rows and dropped %d ids",
                self.company,
                self.config.data.duplicates.value,
                records.rows_merged,
                records.ids_dropped,
            )
        return records

    # ----------------------------------------------------------------- relay

    def _relay(self, relay: pb.RelayList) -> None:
        company_round = self._rounds.get(relay.round_id)
        if company_round is None:
            reason = "asked to relay a list of a round it holds no key for (restarted?)"
            self._withdraw(relay.round_id, reason)
            return
        source = ListAddress(relay.round_id, relay.list_owner, relay.hop - 1)
        points, tags, sender = self._download(source)
        started = time.perf_counter()
        try:
            blinded, shuffled_tags = relay_list(
                points,
                tags,
                company_round.key,
                company_round.counts,
                ProgressLog(f"{self.company}: {source.describe()}: re-blinding"),
            )
        except InvalidPoint:
            self._withdraw(
                relay.round_id,
                f"{source.describe()}, produced by {sender}, holds an invalid curve point",
            )
            return
        company_round.blind_seconds += time.perf_counter() - started
        self._upload(ListAddress(relay.round_id, relay.list_owner, relay.hop), blinded, shuffled_tags)

    def _download(self, source: ListAddress) -> tuple[list[bytes], bytes, str]:
        request = pb.DownloadListRequest(
            round_id=source.round_id,
            company=self.company,
            list_owner=source.list_owner,
            hop=source.hop,
        )
        sequence = ChunkSequence(expected=source)
        points: list[bytes] = []
        sender = ""
        for chunk in self._stub.DownloadList(request):
            sender = chunk.sender
            points += sequence.add(chunk)
        sequence.finish()
        return points, sequence.tags(), sender

    def _upload(self, address: ListAddress, points: list[bytes], tags: bytes) -> None:
        receipt = self._stub.UploadList(list_chunks(address, self.company, points, tags))
        log.info("%s: uploaded %s (%d elements)", self.company, address.describe(), receipt.elements)

    # ------------------------------------------------------------------- end

    def _end(self, ended: pb.RoundEnded) -> None:
        company_round = self._rounds.pop(ended.round_id, None)
        self._rounds_ended += 1
        detail = f": {ended.reason}" if ended.reason else ""
        log.info("%s: round %s ended %s%s", self.company, ended.round_id, ended.phase, detail)
        if company_round is not None and self.config.stats_file is not None:
            line = {
                "round_id": ended.round_id,
                "company": self.company,
                "phase": ended.phase,
                **asdict(company_round.counts),
                "blind_seconds": round(company_round.blind_seconds, 4),
            }
            with self.config.stats_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")

    def _withdraw(self, round_id: str, reason: str) -> None:
        log.error("%s: withdrawing from round %s: %s", self.company, round_id, reason)
        self._stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company=self.company, reason=reason))
