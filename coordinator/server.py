"""`monoculture coordinator serve`: the long-running coordinator daemon."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from monoculture.coordinator.config import CoordinatorConfig
from monoculture.coordinator.rounds import RoundBook, StoreRecorder
from monoculture.coordinator.service import AuditorServicer, Authenticator, CompanyServicer
from monoculture.coordinator.store import RoundStore
from monoculture.core.errors import ConfigError
from monoculture.transport import (
    MESSAGE_OPTIONS,
    quiet_undecodable_messages,
    require_loopback,
    server_credentials,
    warn_insecure,
)
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.coordinator")

SERVICE_NAMES = ("monoculture.v1.CompanyService", "monoculture.v1.AuditorService")


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
        ca_pem=config.tls.ca_pem() if config.tls else None,
        recorder=recorder,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.max_workers), options=MESSAGE_OPTIONS)
    auth = Authenticator(secure=config.tls is not None)
    pb_grpc.add_CompanyServiceServicer_to_server(CompanyServicer(book, auth), server)
    pb_grpc.add_AuditorServiceServicer_to_server(AuditorServicer(book, auth), server)
    health_servicer = health.HealthServicer()
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
