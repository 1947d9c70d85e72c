"""An in-process round: the coordinator's real `RoundBook` (state machine, SQLite
store, counting, release) behind its real servicers, and k real `CompanyDaemon`s
(real openmined-psi blinding, tags, sealed relays, sealed state on disk), joined
by an in-process link instead of gRPC, on a clock the test moves.

What it replaces is only the network: every request goes through the servicer
methods (and their error mapping) as it would over gRPC, and errors come back
as `grpc.RpcError`s with a status code, as a real stub raises them. So every
phase transition, deadline, retry, crash and resumption of docs/PROTOCOL.md is
a unit test of milliseconds; tests/test_faults.py proves the same against real
processes and sockets.

Faults the link can inject: the coordinator unreachable for the next N calls
(`Network.unreachable_calls`), an upload stream cut after N chunks
(`Network.cut_upload_after`), and a hook that sees (and may alter) every chunk
the coordinator hands out (`Network.tamper`). Crashes are restarts: a new
`RoundBook` on the same database, or a new daemon on the same state folder.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import grpc

from monoculture.analysis.budget import DEFAULT_MAX_EPSILON_PER_ROSTER, ReleaseFloor
from monoculture.analysis.release import ReleasePolicy
from monoculture.client.config import ClientConfig
from monoculture.client.daemon import CompanyDaemon
from monoculture.coordinator.config import Limits
from monoculture.coordinator.counting import FinalList, whole
from monoculture.coordinator.rounds import RoundBook
from monoculture.coordinator.service import AuditorServicer, Authenticator, CompanyServicer
from monoculture.coordinator.store import RoundStore
from monoculture.core.dataset import InputSpec
from monoculture.core.messages import Status
from monoculture.core.protocol import TERMINAL_PHASES, RoundPhase
from monoculture.v1 import monoculture_pb2 as pb

START = 1_800_000_000.0  # the fake clock's epoch


class FakeClock:
    """A clock that moves only when told to, or when someone sleeps on it."""

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
        return stop is not None and stop.is_set()


class LinkError(grpc.RpcError):
    """What a gRPC stub raises: a status code and its details."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._trailing = trailing

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _Context:
    """The part of grpc.ServicerContext the servicers use (insecure mode: no certificates)."""

    def __init__(self) -> None:
        self._trailing: tuple[tuple[str, str], ...] = ()

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._trailing = tuple(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise LinkError(code, details, self._trailing)

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


@dataclass
class Network:
    """Faults of the link between the companies and the coordinator."""

    unreachable_calls: int = 0  # the next N calls fail UNAVAILABLE
    unreachable_methods: frozenset[str] | None = None  # ... of these methods only (None: any)
    cut_upload_after: int | None = None  # the next upload breaks off after N chunks
    tamper: Callable[[pb.ListChunk], pb.ListChunk] | None = None  # sees every chunk handed out
    calls: list[str] = field(default_factory=list)

    def enter(self, method: str) -> None:
        self.calls.append(method)
        affected = self.unreachable_methods is None or method in self.unreachable_methods
        if self.unreachable_calls > 0 and affected:
            self.unreachable_calls -= 1
            raise LinkError(grpc.StatusCode.UNAVAILABLE, "connection refused (injected)")


class _Stub:
    """A CompanyService stub that calls the current coordinator's servicer in this process."""

    def __init__(self, harness: Harness) -> None:
        self._harness = harness

    def _servicer(self, method: str) -> CompanyServicer:
        self._harness.network.enter(method)
        return self._harness.company_servicer

    def PollWork(self, request: pb.PollWorkRequest, timeout: float | None = None) -> pb.PollWorkResponse:
        response: pb.PollWorkResponse = self._servicer("PollWork").PollWork(request, _Context())
        return response

    def Enroll(self, request: pb.EnrollRequest, timeout: float | None = None) -> pb.EnrollResponse:
        response: pb.EnrollResponse = self._servicer("Enroll").Enroll(request, _Context())
        return response

    def Withdraw(self, request: pb.WithdrawRequest, timeout: float | None = None) -> pb.WithdrawResponse:
        response: pb.WithdrawResponse = self._servicer("Withdraw").Withdraw(request, _Context())
        return response

    def ConfirmKeys(
        self, request: pb.KeyConfirmations, timeout: float | None = None
    ) -> pb.ConfirmKeysResponse:
        response: pb.ConfirmKeysResponse = self._servicer("ConfirmKeys").ConfirmKeys(request, _Context())
        return response

    def UploadList(self, chunks: Iterator[pb.ListChunk], timeout: float | None = None) -> pb.UploadReceipt:
        servicer = self._servicer("UploadList")
        network = self._harness.network
        if network.cut_upload_after is not None:
            limit, network.cut_upload_after = network.cut_upload_after, None
            chunks = _cut(chunks, limit)
        receipt: pb.UploadReceipt = servicer.UploadList(chunks, _Context())
        return receipt

    def DownloadList(
        self, request: pb.DownloadListRequest, timeout: float | None = None
    ) -> Iterator[pb.ListChunk]:
        servicer = self._servicer("DownloadList")
        tamper = self._harness.network.tamper
        for chunk in servicer.DownloadList(request, _Context()):
            yield tamper(chunk) if tamper is not None else chunk


def _cut(chunks: Iterator[pb.ListChunk], limit: int) -> Iterator[pb.ListChunk]:
    """The stream as the coordinator sees a connection that drops after `limit` chunks."""
    yield from itertools.islice(chunks, limit)
    raise LinkError(grpc.StatusCode.UNAVAILABLE, "connection reset mid-stream (injected)")


class _Link:
    def __init__(self, harness: Harness) -> None:
        self.stub = _Stub(harness)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Harness:
    """One coordinator and k companies in this process; see the module docstring."""

    def __init__(
        self,
        folder: Path,
        companies: dict[str, Iterable[tuple[str, int]]],
        *,
        limits: Limits | None = None,
        release_policy: ReleasePolicy | None = None,
        retry_seconds: float = 60.0,
        chunk_elements: int = 16,
        floors: dict[str, ReleaseFloor] | None = None,
        max_epsilon_per_roster: float = DEFAULT_MAX_EPSILON_PER_ROSTER,
        group_labels: dict[str, dict[str, str]] | None = None,
        dummies: tuple[float, float] = (0.0, 1e-6),
        counting_memory: int | None = None,
    ) -> None:
        """`counting_memory`: the coordinator's counting budget in bytes (None: its default);
        `floors`: a company's [release_floor] (default: accepts anything);
        `max_epsilon_per_roster`: the coordinator's [release] cap;
        `group_labels`: per company, {id: group label}, written as its file's column "group"
        ([data] group_column = "group"; an id without a label gets none)."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.clock = FakeClock()
        self.network = Network()
        self._limits = limits or Limits()
        self._release = release_policy or ReleasePolicy()
        self._max_epsilon_per_roster = max_epsilon_per_roster
        self._dummies = dummies  # the coordinator's [release] dummy_epsilon, dummy_delta
        self._counting_memory = counting_memory
        self.configs = {
            name: self._client_config(
                name, rows, retry_seconds, chunk_elements, (group_labels or {}).get(name)
            )
            for name, rows in companies.items()
        }
        for name, floor in (floors or {}).items():
            self.configs[name] = replace(self.configs[name], release_floor=floor)
        self.coordinator_restarts = 0
        self._start_coordinator()
        self.daemons = {name: self._daemon(name) for name in self.configs}

    # ------------------------------------------------------------ parties

    def _client_config(
        self,
        name: str,
        rows: Iterable[tuple[str, int]],
        retry_seconds: float,
        chunk_elements: int,
        labels: dict[str, str] | None = None,
    ) -> ClientConfig:
        data = self.folder / f"{name}.csv"
        if labels is None:
            data.write_text("id,failed\n" + "".join(f"{i},{f}\n" for i, f in rows), encoding="utf-8")
        else:
            lines = "".join(f"{i},{f},{labels.get(i, '')}\n" for i, f in rows)
            data.write_text("id,failed,group\n" + lines, encoding="utf-8")
        spec = InputSpec(data, group_column=None if labels is None else "group")
        return ClientConfig(
            company=name, coordinator="in-process", data=spec, tls=None, poll_seconds=0.0,
            state_dir=self.folder / f"state-{name}", retry_seconds=retry_seconds, workers=1,
            chunk_elements=chunk_elements,
        )  # fmt: skip

    def _daemon(self, name: str) -> CompanyDaemon:
        return CompanyDaemon(self.configs[name], clock=self.clock, connect=lambda _config: _Link(self))

    def _start_coordinator(self) -> None:
        self.store = RoundStore(self.folder / "coordinator.sqlite", clock=self.clock)
        self.book = RoundBook(
            self.store, limits=self._limits, release_policy=self._release, clock=self.clock,
            in_background=lambda work: work(), max_epsilon_per_roster=self._max_epsilon_per_roster,
            dummies=self._dummies,
            **({} if self._counting_memory is None else {"counting_memory": self._counting_memory}),
        )  # fmt: skip
        auth = Authenticator(secure=False)
        self.company_servicer = CompanyServicer(self.book, auth)
        self.auditor_servicer = AuditorServicer(self.book, auth)

    def restart_coordinator(self, release_policy: ReleasePolicy | None = None) -> None:
        """The coordinator crashes (everything in memory is lost) and starts again on its database
        (with `release_policy`, as if its [release] had been edited meanwhile)."""
        self.store.close()
        if release_policy is not None:
            self._release = release_policy
        self.coordinator_restarts += 1
        self._start_coordinator()

    def reconfigure(self, name: str, **changes: Any) -> None:
        """Change a company's config ([client] keys) and restart its daemon on it."""
        self.configs[name] = replace(self.configs[name], **changes)
        self.restart_company(name)

    def restart_company(self, name: str) -> None:
        """A company's daemon crashes and starts again on its state folder."""
        self.daemons[name] = self._daemon(name)

    # ------------------------------------------------------------ auditor

    def open_round(
        self,
        companies: list[str] | None = None,
        deadline_seconds: float = 0,
        groups_from: str = "",
        group_labels: Iterable[str] = (),
        min_list_size: int = 0,
        rerandomise: bool = False,
    ) -> str:
        request = pb.OpenRoundRequest(
            companies=companies or list(self.configs), deadline_seconds=deadline_seconds,
            groups_from=groups_from, group_labels=list(group_labels), min_list_size=min_list_size,
            rerandomise_tags=rerandomise,
        )  # fmt: skip
        status: pb.RoundStatus = self.auditor_servicer.OpenRound(request, _Context())
        return status.round_id

    def status(self, round_id: str) -> Status:
        return Status.of(self.status_message(round_id))

    def status_message(self, round_id: str) -> pb.RoundStatus:
        """The auditor's GetRoundStatus answer as it travels (every field of the message)."""
        status: pb.RoundStatus = self.auditor_servicer.GetRoundStatus(
            pb.RoundRef(round_id=round_id), _Context()
        )
        return status

    def phase(self, round_id: str) -> RoundPhase:
        return self.status(round_id).phase

    def result(self, round_id: str) -> dict[str, Any]:
        import json

        result: dict[str, Any] = json.loads(self.result_reply(round_id).result_json)
        return result

    def result_reply(self, round_id: str) -> pb.GetRoundResultResponse:
        """The auditor's whole GetRoundResult answer: the result JSON and the typed result."""
        reply: pb.GetRoundResultResponse = self.auditor_servicer.GetRoundResult(
            pb.RoundRef(round_id=round_id), _Context()
        )
        return reply

    def budget(self, companies: list[str] | None = None) -> pb.PrivacyBudget:
        """The auditor's view of a roster's privacy ledger (default: every company)."""
        request = pb.PrivacyBudgetRequest(companies=companies or list(self.configs))
        budget: pb.PrivacyBudget = self.auditor_servicer.GetPrivacyBudget(request, _Context())
        return budget

    def audit_actions(self, round_id: str) -> list[tuple[str, str, str]]:
        rows = self.store._db.execute(
            "SELECT actor, action, detail FROM audit WHERE round_id = ? ORDER BY seq", (round_id,)
        ).fetchall()
        return [tuple(row) for row in rows]

    # ------------------------------------------------------------ driving

    def step(self, name: str) -> bool:
        """Company `name` asks for work once and does it."""
        return self.daemons[name].step()

    def start_relaying(self) -> None:
        """Two sweeps: every company joins (enrols), then confirms its pair keys; a round with
        every company well is then RELAYING."""
        self.step_all()
        self.step_all()

    def step_all(self) -> None:
        for name in list(self.daemons):
            self.step(name)

    def run(
        self, round_id: str, max_sweeps: int = 200, between: Callable[[], None] | None = None
    ) -> RoundPhase:
        """Let every company work (in roster order, a step each per sweep) until the round ends,
        and then once more so each hears the end. `between` runs after every sweep."""
        for _ in range(max_sweeps):
            phase = self.phase(round_id)
            if phase in TERMINAL_PHASES:
                self.step_all()  # each company hears the end and forgets the round's keys
                return phase
            self.step_all()
            if between is not None:
                between()
        raise AssertionError(f"round {round_id} still {self.phase(round_id)} after {max_sweeps} sweeps")

    def close(self) -> None:
        for daemon in self.daemons.values():
            daemon.close()
        self.store.close()


def keep_final_lists(monkeypatch: Any) -> dict[str, FinalList]:
    """Test aid: the final lists as the coordinator receives them, by owner, filled in as the
    coordinator counts (what it could look at besides the result)."""
    finals: dict[str, FinalList] = {}
    original = RoundBook._final_list

    def keep(self: RoundBook, round_id: str, owner: str, hop: int) -> FinalList:
        finals[owner] = whole(original(self, round_id, owner, hop))  # the store's chunks, in one piece
        return finals[owner]

    monkeypatch.setattr(RoundBook, "_final_list", keep)
    return finals
