"""Transport security shared by both roles: mTLS credentials, or explicit plaintext on loopback."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from monoculture.core.errors import ConfigError
from monoculture.core.identity import read_pem
from monoculture.core.protocol import RETRY_AFTER_METADATA
from monoculture.core.wire import MAX_MESSAGE_BYTES

log = logging.getLogger("monoculture.transport")

MESSAGE_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Parties blind at full CPU for minutes. Seen here at a million records: a BDP ping
    # not acknowledged in time made the coordinator send GOAWAY (ping_timeout) in the middle
    # of an upload, and the client's gRPC then aborted. No BDP probing, patient ping timeouts.
    ("grpc.http2.bdp_probe", 0),
    ("grpc.keepalive_timeout_ms", 300_000),
]
INSECURE_WARNING = (
    "WARNING: --insecure: plaintext gRPC without authentication. Anyone on this host can read the "
    "traffic and act as any company or as the auditor. For local experiments only."
)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one party: the deployment's CA, its certificate and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def ca_pem(self) -> bytes:
        return read_pem(self.ca_file)

    def cert_pem(self) -> bytes:
        return read_pem(self.cert_file)

    def key_pem(self) -> bytes:
        return read_pem(self.key_file)


class UndecodableMessageFilter(logging.Filter):
    """gRPC logs a traceback when a message does not parse; it is bad input, not a bug: one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DecodeError):
            record.msg = "refused a message that does not parse as its declared type (%s)"
            record.args = (record.exc_info[1],)
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_undecodable_messages() -> None:
    grpc_common = logging.getLogger("grpc._common")
    if not any(isinstance(f, UndecodableMessageFilter) for f in grpc_common.filters):
        grpc_common.addFilter(UndecodableMessageFilter())


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(address: str) -> None:
    if not is_loopback(address):
        raise ConfigError(
            f"--insecure is allowed on loopback only, not {address!r}",
            hint="give certificates (monoculture certs init / issue) to use other addresses",
        )


def warn_insecure() -> None:
    log.warning(INSECURE_WARNING)


def channel(address: str, tls: TlsFiles | None) -> grpc.Channel:
    """A channel to the coordinator: mTLS with `tls`, else plaintext (loopback only)."""
    if tls is None:
        require_loopback(address)
        return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem(), private_key=tls.key_pem(), certificate_chain=tls.cert_pem()
    )
    return grpc.secure_channel(address, credentials, options=MESSAGE_OPTIONS)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server side of mTLS: only clients with a certificate from our CA get through."""
    return grpc.ssl_server_credentials(
        [(tls.key_pem(), tls.cert_pem())], root_certificates=tls.ca_pem(), require_client_auth=True
    )


def named_retry_delay(error: Exception) -> float | None:
    """The seconds a RESOURCE_EXHAUSTED refusal names before the same call is admitted (a rate
    limit: coordinator/admission.py), or None."""
    if not isinstance(error, grpc.RpcError) or error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_AFTER_METADATA:
            try:
                delay = float(value)
            except ValueError:
                return None
            return delay if 0 <= delay <= 60 else None
    return None
