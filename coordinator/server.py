"""`monoculture coordinator serve`: the long-running coordinator daemon."""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coordinator.config import CoordinatorConfig
from coordinator.rounds import RoundBook, StoreRecorder
from coordinator.service import AuditorServicer, CompanyServicer
from monoculture.core.errors import ConfigError
from monoculture.core.wire import MAX_MESSAGE_BYTES
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.coordinator")

SERVICE_NAMES = ("monoculture.v1.CompanyService", "monoculture.v1.AuditorService")


def check_loopback(listen: str) -> None:
    """Plaintext transport is for loopback only (TLS is not built yet)."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"listen address {listen!r} is not loopback",
            hint="this release speaks plaintext gRPC and only listens on 127.0.0.1 / ::1",
        )


def start_server(config: CoordinatorConfig) -> tuple[grpc.Server, int, RoundBook]:
    check_loopback(config.listen)
    recorder = StoreRecorder(config.record_dir) if config.record_dir else None
    book = RoundBook(recorder)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    pb_grpc.add_CompanyServiceServicer_to_server(CompanyServicer(book), server)
    pb_grpc.add_AuditorServiceServicer_to_server(AuditorServicer(book), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(config.listen)
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen!r} (address in use or invalid)")
    server.start()
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, book


def serve(config: CoordinatorConfig) -> int:
    server, port, _ = start_server(config)
    host = config.listen.rsplit(":", 1)[0]
    log.info("coordinator listening on %s:%d", host, port)
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
