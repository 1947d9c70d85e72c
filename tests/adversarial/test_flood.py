"""Issue 11, item 4 ("Bounded service"): a certified company floods the coordinator.

The cheat holds a valid certificate from the auditor's CA (it is on no round, so
its long polls find no work and wait as long as it asks). Over real gRPC
and mTLS, against a real coordinator process, it opens many long polls and
makes many fast calls from many threads, and holds upload streams open without
sending anything. Before this defence, 32 long polls took every worker thread
of the coordinator, so the honest company's and the auditor's calls waited
behind them (for as long as the polls lasted), and an upload stream was read
before anyone checked who was sending. Now:

- every call passes a per-company admission gate (coordinator/admission.py):
  calls in flight, long polls in flight and a token bucket of calls a second;
  the cheat is refused RESOURCE_EXHAUSTED naming it and the [limits] key;
- the honest company and the auditor are answered promptly while it floods;
- an UploadList is authorised from the certificate before a message of its
  stream is read: the auditor's certificate is refused PERMISSION_DENIED with
  the stream never consumed;
- the server refuses calls beyond `maximum_concurrent_rpcs` (= max_workers)
  at once instead of queueing them, and max_workers must leave room for a
  flooding company, an honest one and the auditor.

The gate itself is tested below with a fake clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from pki_helpers import LocalPki

from monoculture.coordinator.admission import AdmissionGate, Quota
from monoculture.coordinator.config import Limits
from monoculture.coordinator.rounds import RoundBook
from monoculture.coordinator.server import concurrent_calls
from monoculture.coordinator.service import AuditorServicer, Authenticator, CompanyServicer
from monoculture.core.errors import ConfigError, LimitExceeded
from monoculture.core.identity import CertifiedKey, Identity, Role, create_ca, issue, read_certified_key
from monoculture.core.protocol import RETRY_AFTER_METADATA
from monoculture.research.simulate import start_coordinator
from monoculture.transport import TlsFiles
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

PROMPT_SECONDS = 3.0  # an honest call answered within this while the flood runs
DEFAULTS = Limits()


# ------------------------------------------------------------ the gate, unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gate(
    calls: int = 4, polls: int = 2, rate: float = 10.0, burst: int = 5
) -> tuple[AdmissionGate, FakeClock]:
    clock = FakeClock()
    return AdmissionGate(Quota(calls, polls, rate, burst), clock=clock), clock


def _refusal(enter: Callable[[], None]) -> str:
    with pytest.raises(LimitExceeded) as caught:
        enter()
    error = caught.value
    return f"{error}; what to do: {error.hint}; where: {error.where}"


def test_gate_bounds_calls_in_flight_per_company() -> None:
    gate, _ = _gate(calls=2, burst=100)
    gate.enter("cheat")
    gate.enter("cheat")
    refusal = _refusal(lambda: gate.enter("cheat"))
    assert "company cheat" in refusal and "max_calls_per_company = 2" in refusal
    assert "what to do" in refusal and "where: cheat" in refusal
    gate.enter("honest")  # another company is not affected
    gate.leave("cheat")
    gate.enter("cheat")  # a slot given back is free again
    assert gate.in_flight("cheat") == (2, 0)


def test_gate_bounds_long_polls_apart_from_other_calls() -> None:
    gate, _ = _gate(calls=4, polls=2, burst=100)
    gate.enter("cheat", long_poll=True)
    gate.enter("cheat", long_poll=True)
    refusal = _refusal(lambda: gate.enter("cheat", long_poll=True))
    assert "company cheat" in refusal and "max_polls_per_company = 2" in refusal
    gate.enter("cheat")  # an ordinary call still has room
    assert gate.in_flight("cheat") == (3, 2)
    gate.leave("cheat", long_poll=True)
    gate.enter("cheat", long_poll=True)
    assert gate.in_flight("cheat") == (3, 2)


def test_gate_rate_limit_is_a_token_bucket() -> None:
    gate, clock = _gate(calls=100, rate=10.0, burst=5)
    for _ in range(5):  # the burst
        with gate.admit("cheat"):
            pass
    refusal = _refusal(lambda: gate.enter("cheat"))
    assert "company cheat" in refusal and "calls_per_second_per_company = 10" in refusal
    assert "retry in 0.10 s" in refusal
    assert gate.in_flight("cheat") == (0, 0)  # a refused call takes nothing
    with gate.admit("honest"):  # every company has its own bucket
        pass
    clock.now += 0.1  # one token back
    with gate.admit("cheat"):
        pass
    _refusal(lambda: gate.enter("cheat"))
    clock.now += 60  # the bucket refills to the burst, never above
    for _ in range(5):
        with gate.admit("cheat"):
            pass
    _refusal(lambda: gate.enter("cheat"))


def test_gate_releases_a_slot_when_the_call_fails() -> None:
    gate, _ = _gate(calls=1, burst=100)
    with pytest.raises(RuntimeError), gate.admit("cheat", long_poll=True):
        raise RuntimeError("the call failed")
    assert gate.in_flight("cheat") == (0, 0)


def test_gate_forgets_idle_parties(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monoculture.coordinator.admission.PRUNE_ABOVE", 3)
    gate, clock = _gate(rate=1.0, burst=2)
    gate.enter("busy")
    for name in ("a", "b"):
        with gate.admit(name):
            pass
    clock.now += 10  # a and b idle, their buckets full again
    gate.enter("c")
    assert set(gate._usage) == {"busy", "c"}


def test_server_capacity_leaves_room_and_bounds_the_queue() -> None:
    assert concurrent_calls(32, DEFAULTS) == 128  # default: max_workers running, 3 x as many queued
    assert concurrent_calls(32, Limits(max_concurrent_calls=40)) == 40
    with pytest.raises(ConfigError, match="at least 12"):
        concurrent_calls(8, DEFAULTS)
    with pytest.raises(ConfigError, match="workers would stay idle"):
        concurrent_calls(32, Limits(max_concurrent_calls=20))


@pytest.mark.parametrize(
    "limits",
    [
        Limits(max_polls_per_company=5, max_calls_per_company=4),
        Limits(max_polls_per_company=0),
        Limits(calls_per_second_per_company=0),
        Limits(calls_per_second_per_company=float("inf")),
        Limits(burst_calls_per_company=0),
        Limits(max_concurrent_calls=-1),
    ],
)
def test_limits_check_refuses_gates_that_admit_nothing(limits: Limits) -> None:
    with pytest.raises(ConfigError):
        limits.check()


class _SecureContext:
    """The part of grpc.ServicerContext the servicers use, with a client certificate."""

    def __init__(self, certificate_pem: bytes) -> None:
        self._certificate = certificate_pem
        self.trailing: tuple[tuple[str, str], ...] = ()

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._certificate]}

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = tuple(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details)


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


def _unread_stream(read: list[int]) -> Iterator[pb.ListChunk]:
    read.append(1)
    yield pb.ListChunk(sender="bank")


def test_upload_is_authorised_before_its_stream_is_read() -> None:
    ca = create_ca()
    auditor = _SecureContext(issue(ca, Identity(Role.AUDITOR, "auditor")).certificate_pem)
    servicer = CompanyServicer(cast(RoundBook, None), Authenticator(secure=True))
    read: list[int] = []
    with pytest.raises(_Aborted) as caught:
        servicer.UploadList(_unread_stream(read), auditor)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "auditor auditor may not act as a company" in str(caught.value)
    assert read == []  # not one message of the stream was read

    company = _SecureContext(issue(ca, Identity(Role.COMPANY, "cheat")).certificate_pem)
    gate = AdmissionGate(Quota(1, 1, 10.0, 10))
    servicer = CompanyServicer(cast(RoundBook, None), Authenticator(secure=True), gate)
    gate.enter("cheat")  # the cheat's one slot is taken
    with pytest.raises(_Aborted) as caught:
        servicer.UploadList(_unread_stream(read), company)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "company cheat" in str(caught.value) and read == []


def test_auditor_calls_pass_their_own_gate() -> None:
    ca = create_ca()
    auditor = _SecureContext(issue(ca, Identity(Role.AUDITOR, "auditor")).certificate_pem)
    gate = AdmissionGate(Quota(4, 1, 1.0, 1), kind="auditor")
    book = cast(RoundBook, type("Book", (), {"budget": lambda self, companies: pb.PrivacyBudget()})())
    servicer = AuditorServicer(book, Authenticator(secure=True), gate)
    servicer.GetPrivacyBudget(pb.PrivacyBudgetRequest(companies=["a", "b"]), auditor)
    with pytest.raises(_Aborted) as caught:
        servicer.GetPrivacyBudget(pb.PrivacyBudgetRequest(companies=["a", "b"]), auditor)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "auditor auditor calls faster than" in str(caught.value)
    ((key, seconds),) = auditor.trailing  # the refusal names when the call would be admitted
    assert key == RETRY_AFTER_METADATA and 0 < float(seconds) <= 1.0


# ------------------------------------------------- the flood, real processes


def _load(files: TlsFiles) -> CertifiedKey:
    return read_certified_key(files.cert_file, files.key_file)


def _channel(address: str, ca: bytes, cert: CertifiedKey) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(ca, cert.private_key_pem, cert.certificate_pem)
    return grpc.secure_channel(address, credentials)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder: Path = tmp_path_factory.mktemp("flood")
    pki = LocalPki(folder / "certs", ["honest", "cheat", "hoarder"])
    ca = read_certified_key(folder / "certs" / "ca.pem", folder / "certs" / "ca.key").certificate_pem
    with ExitStack() as stack:
        address = start_coordinator(folder, stack, tls=pki.coordinator())  # default limits, 32 workers

        def channel(files: TlsFiles) -> grpc.Channel:
            made = _channel(address, ca, _load(files))
            stack.callback(made.close)
            return made

        auditor = pb_grpc.AuditorServiceStub(channel(pki.auditor()))
        opened = auditor.OpenRound(pb.OpenRoundRequest(companies=["honest", "hoarder"]), timeout=30)
        round_id = opened.round_id
        yield {
            "address": address,
            "ca": ca,
            "round_id": round_id,
            "auditor": auditor,
            "auditor_as_company": pb_grpc.CompanyServiceStub(channel(pki.auditor())),
            "honest": pb_grpc.CompanyServiceStub(channel(pki.company("honest"))),
            "cheat": _load(pki.company("cheat")),
            "hoarder": [pb_grpc.CompanyServiceStub(channel(pki.company("hoarder"))) for _ in range(2)],
        }


class Flood:
    """Threads of the cheat calling as fast as they can, each refusal kept."""

    def __init__(self, deployment: dict[str, Any], channels: int = 4) -> None:
        self._channels = [
            _channel(deployment["address"], deployment["ca"], deployment["cheat"]) for _ in range(channels)
        ]
        self._stubs = [pb_grpc.CompanyServiceStub(channel) for channel in self._channels]
        self._round_id = deployment["round_id"]
        self.stop = threading.Event()
        self.refusals: list[tuple[grpc.StatusCode, str]] = []
        self.answered = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _run(self, call: Callable[[pb_grpc.CompanyServiceStub], object], index: int) -> None:
        stub = self._stubs[index % len(self._stubs)]
        while not self.stop.is_set():
            try:
                call(stub)
                with self._lock:
                    self.answered += 1
            except grpc.RpcError as exc:
                with self._lock:
                    self.refusals.append((exc.code(), exc.details() or ""))

    def start(self, long_polls: int, fast: int) -> None:
        def poll(stub: pb_grpc.CompanyServiceStub) -> object:
            return stub.PollWork(pb.PollWorkRequest(company="cheat", wait_seconds=30), timeout=20)

        def status(stub: pb_grpc.CompanyServiceStub) -> object:
            request = pb.CompanyStatusRequest(round_id=self._round_id, company="cheat")
            return stub.GetStatus(request, timeout=20)

        for index in range(long_polls + fast):
            call = poll if index < long_polls else status
            thread = threading.Thread(target=self._run, args=(call, index), daemon=True)
            thread.start()
            self._threads.append(thread)

    def saw(self, *words: str) -> bool:
        with self._lock:
            return any(
                code == grpc.StatusCode.RESOURCE_EXHAUSTED and all(word in details for word in words)
                for code, details in self.refusals
            )

    def close(self) -> None:
        self.stop.set()
        for channel in self._channels:
            channel.close()  # cancels the polls still waiting
        for thread in self._threads:
            thread.join(timeout=10)


def _timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


@pytest.mark.e2e
def test_a_flooding_company_is_refused_and_the_others_are_served(deployment: dict[str, Any]) -> None:
    round_id = deployment["round_id"]
    honest: pb_grpc.CompanyServiceStub = deployment["honest"]
    auditor: pb_grpc.AuditorServiceStub = deployment["auditor"]
    flood = Flood(deployment, channels=12)
    try:
        flood.start(long_polls=48, fast=8)  # more long polls than the server has threads
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            flood.saw("company cheat", "max_polls_per_company")
            and flood.saw("company cheat", "calls_per_second_per_company")
        ):
            time.sleep(0.1)
        probes = {
            "honest GetStatus": lambda: honest.GetStatus(
                pb.CompanyStatusRequest(round_id=round_id, company="honest"), timeout=10
            ),
            "honest PollWork": lambda: honest.PollWork(
                pb.PollWorkRequest(company="honest", wait_seconds=0), timeout=10
            ),
            "auditor GetRoundStatus": lambda: auditor.GetRoundStatus(
                pb.RoundRef(round_id=round_id), timeout=10
            ),
            "auditor OpenRound": lambda: auditor.OpenRound(
                pb.OpenRoundRequest(companies=["honest", "hoarder"]), timeout=10
            ),
        }
        latencies = {name: _timed(call) for name, call in probes.items()}
        latencies |= {f"{name} again": _timed(call) for name, call in probes.items() if "Open" not in name}
        flooding = not flood.stop.is_set()
    finally:
        flood.close()
    assert flooding
    assert flood.saw("company cheat", "max_polls_per_company = 2", "what to do"), flood.refusals[:5]
    assert flood.saw("company cheat", "calls_per_second_per_company = 20"), flood.refusals[:5]
    # (max_calls_per_company is met for certain by the held uploads below)
    slow = {name: round(seconds, 2) for name, seconds in latencies.items() if seconds > PROMPT_SECONDS}
    assert not slow, f"honest calls waited behind the flood: {slow}"

    # The cheat's polls, cancelled with its channels, give their slots back within a poll
    # slice: the same company, calling at an honest pace, is served again.
    cheat = Flood(deployment, channels=1)
    stub = pb_grpc.CompanyServiceStub(cheat._channels[0])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                stub.PollWork(pb.PollWorkRequest(company="cheat", wait_seconds=0), timeout=10)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, f"the cheat's slots never came back: {exc.details()}"
                time.sleep(0.5)
    finally:
        cheat.close()


@pytest.mark.e2e
def test_upload_from_the_auditors_certificate_is_refused_before_the_stream_is_read(
    deployment: dict[str, Any],
) -> None:
    stub: pb_grpc.CompanyServiceStub = deployment["auditor_as_company"]
    release = threading.Event()
    sent: list[int] = []

    def stream() -> Iterator[pb.ListChunk]:
        release.wait(30)  # nothing is sent until the call has been answered
        sent.append(1)
        yield pb.ListChunk(sender="honest")

    started = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.UploadList(stream(), timeout=8)
    finally:
        release.set()
    took = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, caught.value.details()
    assert "auditor auditor may not act as a company" in (caught.value.details() or "")
    assert took < PROMPT_SECONDS and sent == []


@pytest.mark.e2e
def test_upload_streams_held_open_are_bounded_per_company(deployment: dict[str, Any]) -> None:
    """A company that opens upload streams and never sends holds at most its calls in
    flight; the next stream is refused at once, naming it and the limit. (On one connection
    the next stream would wait in the client: the server allows a connection no more
    concurrent streams than a company may have calls in flight. So it comes on another.)"""
    stub, other = deployment["hoarder"]
    release = threading.Event()

    def silent() -> Iterator[pb.ListChunk]:
        release.wait(30)
        return
        yield  # a generator that sends nothing

    held = [stub.UploadList.future(silent(), timeout=30) for _ in range(DEFAULTS.max_calls_per_company)]
    try:
        time.sleep(0.5)  # the held streams reach the coordinator
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            other.UploadList(silent(), timeout=8)
        took = time.monotonic() - started
    finally:
        release.set()
        for future in held:
            future.cancel()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    details = caught.value.details() or ""
    assert "company hoarder" in details and "max_calls_per_company = 4" in details
    assert took < PROMPT_SECONDS
