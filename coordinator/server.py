"""`monoculture coordinator serve`: the long-running coordinator daemon."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from types import FrameType
from typing import Any, NamedTuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from monoculture.coordinator.admission import AdmissionGate, Quota
from monoculture.coordinator.config import CoordinatorConfig, Limits
from monoculture.coordinator.rounds import RoundBook, StoreRecorder
from monoculture.coordinator.service import (
    AuditorServicer,
    Authenticator,
    CompanyServicer,
    answers_errors,
    status_code,
)
from monoculture.coordinator.store import RoundStore
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.core.identity import Role
from monoculture.transport import (
    MESSAGE_OPTIONS,
    quiet_undecodable_messages,
    require_loopback,
    revocation_watch,
    server_credentials,
    warn_insecure,
)
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.coordinator")

SERVICE_NAMES = ("monoculture.v1.CompanyService", "monoculture.v1.AuditorService")
# max_workers >= 3 x max_calls_per_company: room for a flooding company, an honest one and the auditor
WORKERS_PER_CALL_SLOT = 3
QUEUED_PER_WORKER = 3  # default maximum_concurrent_rpcs: max_workers running, 3 x as many waiting


def concurrent_calls(max_workers: int, limits: Limits) -> int:
    """The server's maximum_concurrent_rpcs: calls beyond it are refused at once (RESOURCE_EXHAUSTED).

    A sync gRPC server learns who calls only in a worker thread, so a call the gate refuses
    still takes a worker for a moment. The calls that hold a worker for long are bounded per
    party by the gate (max_calls_per_company), so beyond the workers a bounded queue waits
    mostly behind such quick refusals (a flood from one company does not turn every
    honest call away), and a call beyond the queue is refused at once instead of waiting.
    Refuses a max_workers that one company at its limits could fill with the auditor and another."""
    needed = WORKERS_PER_CALL_SLOT * limits.max_calls_per_company
    if max_workers < needed:
        raise ConfigError(
            f"[coordinator] max_workers = {max_workers} leaves no room: each company may hold "
            f"[limits] max_calls_per_company = {limits.max_calls_per_company} worker threads, "
            f"so at least {needed} are needed",
            hint="raise max_workers or lower max_calls_per_company",
        )
    if 0 < limits.max_concurrent_calls < max_workers:
        raise ConfigError(
            f"[limits] max_concurrent_calls = {limits.max_concurrent_calls} is below [coordinator] "
            f"max_workers = {max_workers}: workers would stay idle while calls are refused",
            hint=f"set it to 0 (= {1 + QUEUED_PER_WORKER} x max_workers) or at least max_workers",
        )
    return limits.max_concurrent_calls or (1 + QUEUED_PER_WORKER) * max_workers


def server_options(limits: Limits) -> list[tuple[str, int]]:
    """MESSAGE_OPTIONS, and no more concurrent calls (HTTP/2 streams) on one connection than
    a party may have in flight: further calls wait in the client, costing the server nothing."""
    return [*MESSAGE_OPTIONS, ("grpc.max_concurrent_streams", limits.max_calls_per_company)]


class Gates(NamedTuple):
    """The admission gates: companies, the auditor, anyone else (health checks)."""

    companies: AdmissionGate
    auditor: AdmissionGate
    others: AdmissionGate


def admission_gates(limits: Limits) -> Gates:
    """The gates of the companies, of the auditor and of everything else (health checks by
    any other certificate), each with [limits]' allowance per party."""
    quota = Quota(
        max_calls=limits.max_calls_per_company,
        max_polls=limits.max_polls_per_company,
        rate=limits.calls_per_second_per_company,
        burst=limits.burst_calls_per_company,
    )
    return Gates(
        AdmissionGate(quota), AdmissionGate(quota, kind="auditor"), AdmissionGate(quota, kind="caller")
    )


class BoundedHealth(health.HealthServicer):  # type: ignore[misc]
    """The standard health service, its calls admitted like any other: by the caller's
    certificate, into its role's gate. A Watch holds no thread (it answers by callback) but
    counts as a call in flight, so it holds a long-poll slot until it ends."""

    def __init__(self, auth: Authenticator, gates: Gates) -> None:
        super().__init__()
        self._auth = auth
        self._gates = gates

    def _gate(self, context: Any) -> tuple[AdmissionGate, str]:
        identity = self._auth.peer(context)
        if identity is None:
            return self._gates.others, "anonymous"
        if identity.role == Role.COMPANY:
            return self._gates.companies, identity.name
        if identity.role == Role.AUDITOR:
            return self._gates.auditor, identity.name
        return self._gates.others, str(identity)

    @answers_errors()
    def Check(self, request: Any, context: Any) -> Any:
        gate, party = self._gate(context)
        with gate.admit(party):
            return super().Check(request, context)

    def Watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:
        try:
            gate, party = self._gate(context)
            gate.enter(party, long_poll=True)
        except MonocultureError as exc:
            context.abort(status_code(exc, grpc.StatusCode.PERMISSION_DENIED), str(exc))

        def leave() -> None:
            gate.leave(party, long_poll=True)

        if not context.add_callback(leave):  # the call has already ended
            leave()
        return super().Watch(request, context, send_response_callback)


def start_server(
    config: CoordinatorConfig, book_class: type[RoundBook] = RoundBook
) -> tuple[grpc.Server, int, RoundBook]:
    if config.tls is None:
        require_loopback(config.listen)
        warn_insecure()
    quiet_undecodable_messages()
    recorder = StoreRecorder(config.record_dir) if config.record_dir else None
    book = book_class(
        RoundStore(config.database),
        limits=config.limits,
        release_policy=config.release,
        max_epsilon_per_roster=config.max_epsilon_per_roster,
        dummies=(config.dummy_epsilon, config.dummy_delta),
        ca_pem=config.tls.ca_pem() if config.tls else None,
        recorder=recorder,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers),
        options=server_options(config.limits),
        maximum_concurrent_rpcs=concurrent_calls(config.max_workers, config.limits),
    )
    auth = Authenticator(secure=config.tls is not None, revocations=revocation_watch(config.tls))
    gates = admission_gates(config.limits)
    pb_grpc.add_CompanyServiceServicer_to_server(CompanyServicer(book, auth, gates.companies), server)
    pb_grpc.add_AuditorServiceServicer_to_server(AuditorServicer(book, auth, gates.auditor), server)
    health_servicer = BoundedHealth(auth, gates)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if config.tls is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, server_credentials(config.tls))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen!r} (address in use or invalid)")
    server.start()
    if config.metrics_port:
        bound = book.metrics.serve(config.metrics_address, config.metrics_port)
        log.info("metrics on http://%s:%d/metrics", config.metrics_address, bound)
    threading.Thread(target=_watch_deadlines, args=(book,), daemon=True).start()
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, book


def _watch_deadlines(book: RoundBook, interval: float = 0.5) -> None:
    while True:
        time.sleep(interval)
        try:
            book.fail_overdue()
        except Exception:  # keep watching; the error is logged, the daemon serves on
            log.exception("deadline check failed")


def serve(config: CoordinatorConfig, book_class: type[RoundBook] = RoundBook) -> int:
    """Run until SIGTERM/SIGINT. `book_class` lets tests run a misbehaving coordinator."""
    server, port, _ = start_server(config, book_class)
    host = config.listen.rsplit(":", 1)[0]
    log.info("coordinator listening on %s:%d (%s)", host, port, "mTLS" if config.tls else "PLAINTEXT")
    if config.port_file is not None:
        tmp = config.port_file.with_suffix(".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(config.port_file)  # atomic: readers never see a half-written port
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stop.wait()
    log.info("coordinator stopping")
    server.stop(grace=2).wait()
    return 0
