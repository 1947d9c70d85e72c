"""Transport security shared by both roles: mTLS credentials, or explicit plaintext on loopback."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.core.identity import (
    Identity,
    Role,
    private_key_fingerprint,
    public_key_fingerprint,
    read_pem,
    verify_certificate,
)
from monoculture.core.protocol import RETRY_AFTER_METADATA
from monoculture.core.revocation import RevocationList, RevocationListUnusable, read_crl
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
    """PEM files of one party: the deployment's CA, its certificate and its key; and the CA's
    certificate revocation list, when the party checks one."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path | None = None

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


def channel(address: str, tls: TlsFiles | None, server_name: str | None = None) -> grpc.Channel:
    """A channel to the coordinator: mTLS with `tls`, else plaintext (loopback only).
    `server_name`: the name its certificate must hold, when it is dialled by another."""
    if tls is None:
        require_loopback(address)
        return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem(), private_key=tls.key_pem(), certificate_chain=tls.cert_pem()
    )
    options = [*MESSAGE_OPTIONS, *([("grpc.ssl_target_name_override", server_name)] if server_name else [])]
    return grpc.secure_channel(address, credentials, options=options)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server side of mTLS: only clients with a certificate from our CA get through. The files
    are re-read when they change (ServerCertificates): a renewal needs no restart."""
    return ServerCertificates(tls).credentials()


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


# ------------------------------------------------ revocation and renewal, while running


def file_stamp(*paths: Path) -> tuple[bytes | None, ...]:
    """What changes when any of `paths` is written or replaced: a digest of each one's bytes
    (None if it cannot be read). Not the modification time: two writes within one tick of the
    file system's clock, of the same size, would look alike."""
    stamps: list[bytes | None] = []
    for path in paths:
        try:
            stamps.append(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            stamps.append(None)
    return tuple(stamps)


class RevocationWatch:
    """The CA's certificate revocation list in `crl_file`, re-read whenever the file changes on
    disk (a revocation takes effect without a restart), checked against the CA at each read
    and for its next update at each use. Built at start: an unusable file is a ConfigError
    then; later, `current()` raises RevocationListUnusable until a good file is copied in."""

    def __init__(self, crl_file: Path, ca_pem: bytes) -> None:
        self.crl_file = crl_file
        self._ca_pem = ca_pem
        self._lock = threading.Lock()
        self._stamp: object = ()
        self._crl: RevocationList | None = None
        self._problem: RevocationListUnusable | None = None
        self._told_stale = False
        self.version = 0  # goes up at every re-read: what was checked before may be checked again
        self.current()

    def current(self) -> RevocationList:
        """The list as the file holds it now (RevocationListUnusable, naming the file, if it cannot
        be used: unreadable, not signed by the CA, past its next update)."""
        with self._lock:
            stamp = file_stamp(self.crl_file)
            if stamp != self._stamp:
                self._stamp, self._told_stale = stamp, False
                self.version += 1
                self._reload()
            if self._problem is not None:
                raise self._problem
            assert self._crl is not None
            try:
                self._crl.check_current()
            except RevocationListUnusable as exc:
                exc.where = str(self.crl_file)
                if not self._told_stale:
                    log.error("%s", exc.diagnostics())
                    self._told_stale = True
                raise
            return self._crl

    def _reload(self) -> None:
        try:
            self._crl, self._problem = read_crl(read_pem(self.crl_file), self._ca_pem), None
        except MonocultureError as exc:
            problem = RevocationListUnusable(exc.message, where=str(self.crl_file), hint=exc.hint)
            self._crl, self._problem = None, problem
            if self.version > 1:  # at start the caller reports it
                log.error("%s", problem.diagnostics())
            return
        revoked = len(self._crl.revoked)
        log.info(
            "%s: certificate revocation list number %d, %d revoked, next update %s UTC",
            self.crl_file, self._crl.number, revoked, f"{self._crl.next_update:%Y-%m-%d %H:%M}",
        )  # fmt: skip

    def check(self, certificate_pem: bytes, who: str = "") -> None:
        """CertificateRevoked if the list revokes `certificate_pem`; RevocationListUnusable if the
        list cannot be used now."""
        self.current().check(certificate_pem, who)


def revocation_watch(tls: TlsFiles | None) -> RevocationWatch | None:
    """The watch over `tls.crl_file`, or None when no CRL is configured (or no TLS at all)."""
    if tls is None or tls.crl_file is None:
        return None
    return RevocationWatch(tls.crl_file, tls.ca_pem())


def matching_pair(tls: TlsFiles, role: Role, name: str = "") -> tuple[bytes, bytes]:
    """This party's certificate and key as the files hold them now, checked: the key is the
    certificate's, the CA issued the certificate, it is valid now, for `role` (and `name`).
    ConfigError otherwise (e.g. a renewal copied in halfway)."""
    cert_pem, key_pem = tls.cert_pem(), tls.key_pem()
    if private_key_fingerprint(key_pem) != public_key_fingerprint(cert_pem):
        raise ConfigError(
            "the certificate and the key files do not match", where=str(tls.cert_file),
            hint="install the certificate issued for this key (`certs request --renew` keeps the key)",
        )  # fmt: skip
    try:
        identity = verify_certificate(cert_pem, tls.ca_pem())
    except MonocultureError as exc:
        raise ConfigError(exc.message, where=str(tls.cert_file)) from None
    if identity.role != role or (name and identity.name != name):
        raise ConfigError(f"the certificate names {identity}, not {role} {name}", where=str(tls.cert_file))
    return cert_pem, key_pem


class ServerCertificates:
    """The coordinator's certificate, key and CA, re-read when their files change. gRPC asks
    `fetch` before every new connection's handshake (grpc.dynamic_ssl_server_credentials), so
    a renewed certificate is served to new connections at once; open connections keep theirs.
    A pair that does not match yet (a renewal half copied) is skipped until it does (the daemons'
    RenewalWatch, below, watches the files)."""

    def __init__(self, tls: TlsFiles) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._renewed: grpc.ServerCertificateConfiguration | None = None
        self._watch = RenewalWatch(tls, Identity(Role.COORDINATOR, ""), self._take_up)
        self._configuration = self._configured(*matching_pair(tls, Role.COORDINATOR))

    def _configured(self, cert_pem: bytes, key_pem: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], self._tls.ca_pem())

    def _take_up(self, cert_pem: bytes, key_pem: bytes) -> None:
        self._renewed = self._configured(cert_pem, key_pem)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration, self.fetch, require_client_authentication=True
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and hold a good pair; None: keep serving."""
        with self._lock:
            if not self._watch.poll():
                return None
            renewed, self._renewed = self._renewed, None
        log.info("serving the renewed certificate %s to new connections", self._tls.cert_file)
        return renewed


def address_host_port(address: str) -> tuple[str, int]:
    """(host, port) of a gRPC target such as `host:port`, `[::1]:port` or `dns:///host:port`."""
    target = address.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host, _, port = target.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"cannot tell host and port in the coordinator address {address!r}") from None


def presented_certificate(address: str, tls: TlsFiles, timeout: float = 10.0) -> bytes:
    """The certificate (PEM) the coordinator at `address` presents, by a TLS handshake of our own:
    Python gRPC shows a client no peer certificate, so this is how a daemon learns which one
    to check against the CRL. Verified here against the CA (issued by it, valid, a coordinator's);
    gRPC verifies its own handshake as before. OSError (ssl.SSLError) when it is unreachable."""
    host, port = address_host_port(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # checked below with the project's own CA check
    context.load_cert_chain(tls.cert_file, tls.key_file)  # the coordinator requires a client certificate
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host or None) as connection,
    ):
        der = connection.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the coordinator presented no certificate")
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    identity = verify_certificate(pem, tls.ca_pem())
    if identity.role != Role.COORDINATOR:
        raise ConfigError(f"the server at {address} presents the certificate of {identity}")
    return pem


Renewed = Callable[[bytes, bytes], None]


class RenewalWatch:
    """A party's own certificate and key files: `poll()` calls `on_renewal(cert_pem, key_pem)`
    once they changed on disk and hold a good pair for `identity` (a half-copied renewal is
    waited for). The daemon then signs with the pair and reconnects: no restart."""

    def __init__(self, tls: TlsFiles, identity: Identity, on_renewal: Renewed) -> None:
        self._tls, self._identity, self._on_renewal = tls, identity, on_renewal
        self._stamp = self._files_stamp()
        self._told: object = None

    def _files_stamp(self) -> object:
        return file_stamp(self._tls.ca_file, self._tls.cert_file, self._tls.key_file)

    def poll(self) -> bool:
        """True when a renewal was taken up now (a coordinator's identity names no one: any
        coordinator certificate of the CA is its own)."""
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return False
        try:
            cert_pem, key_pem = matching_pair(self._tls, self._identity.role, self._identity.name)
        except (MonocultureError, ValueError, TypeError) as exc:  # e.g. a key file half written
            if self._told != stamp:  # once per state of the files
                log.warning("%s: not using the changed certificate files yet: %s", self._identity, exc)
                self._told = stamp
            return False
        self._stamp = stamp
        self._on_renewal(cert_pem, key_pem)
        return True
