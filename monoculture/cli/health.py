"""`monoculture health --config PATH [--timeout S]`: a probe for containers, systemd and Kubernetes.

It reads a coordinator's or a company daemon's config (which one, by its `[coordinator]` or
`[client]` section) and asks the standard gRPC health service (grpc.health.v1) of the
coordinator, over the same mTLS the parties use:

- a coordinator config: the coordinator's own service, at its `listen` address (a wildcard
  address such as 0.0.0.0 is dialled on loopback), with the coordinator's own certificate
  and key; the coordinator admits it as any certificate from its CA that is neither a
  company's nor the auditor's (coordinator/server.py, `BoundedHealth`).
- a company config: the daemon serves nothing (it only dials out), so the check is whether
  it can work: the coordinator named in `[client] coordinator` answers SERVING to a check
  made with this company's own certificate and key. That proves the config loads, the
  company's key and certificate are readable and accepted by the coordinator (from its CA,
  not expired), and the coordinator is reachable. It says nothing about the daemon process
  itself, which its supervisor (the container runtime, systemd, the kubelet) watches; it is
  a readiness check, failing while the coordinator is down.

Exit 0 and one line on stdout when SERVING; exit 1 and one line on stderr saying why not
(unreachable, refused, not serving, timed out); exit 2 for a config that does not load.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monoculture.cli.common import Commands, add_insecure
from monoculture.core.errors import ConfigError

if TYPE_CHECKING:
    from monoculture.transport import TlsFiles

EXIT_UNHEALTHY = 1
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")  # noqa: S104 (names a wildcard, binds nothing)


def add_parser(commands: Commands) -> None:
    health = commands.add_parser(
        "health", help="probe a coordinator or company config's gRPC health (exit 0 when SERVING)"
    )
    health.add_argument(
        "--config", type=Path, required=True,
        help="a coordinator's or a company daemon's TOML file (deploy/coordinator.toml, client-*.toml)",
    )  # fmt: skip
    health.add_argument(
        "--timeout", type=_positive_seconds, default=5.0, help="seconds to wait for the answer (default 5)"
    )
    add_insecure(health)
    health.set_defaults(handler=check_health)


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], got {value!r}")
    return seconds


@dataclass(frozen=True)
class Probe:
    """Whom to ask (`what` names it in the answer), where, and with which credentials."""

    what: str
    address: str
    tls: TlsFiles | None
    server_name: str | None = None  # the name the coordinator's certificate holds, when dialled by IP


def probe_of(path: Path, insecure: bool) -> Probe:
    """The probe a config asks for; ConfigError for a file that is neither role's or does not load."""
    from monoculture.core.config import read_toml

    document = read_toml(path)
    if "coordinator" in document:
        from monoculture.coordinator.config import load_coordinator_config

        coordinator = load_coordinator_config(path, insecure=insecure)
        address = loopback_address(coordinator.listen)
        name = certificate_host(coordinator.tls) if coordinator.tls else None
        return Probe(f"coordinator at {address}", address, coordinator.tls, name)
    if "client" in document:
        from monoculture.client.config import load_client_config

        client = load_client_config(path, insecure=insecure)
        return Probe(f"coordinator at {client.coordinator} for company {client.company}", client.coordinator,
                     client.tls)  # fmt: skip
    raise ConfigError(
        "neither a coordinator's config (no [coordinator] section) nor a company's (no [client] section)",
        where=str(path),
        hint="give the file `monoculture coordinator serve` or `monoculture client run` reads",
    )


def loopback_address(listen: str) -> str:
    """The address to dial a server listening on `listen`: a wildcard host becomes loopback."""
    host, _, port = listen.rpartition(":")
    if host in WILDCARD_HOSTS:
        return f"127.0.0.1:{port}"
    return listen


def certificate_host(tls: TlsFiles) -> str | None:
    """The first DNS or IP name in the coordinator's certificate (`certs issue --coordinator HOST`),
    which the check dials it as; refuses a certificate that may not act as a TLS client."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    certificate = x509.load_pem_x509_certificate(tls.cert_pem())
    extensions = certificate.extensions
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise ConfigError(
            f"the coordinator's certificate {tls.cert_file} serves only (no clientAuth key usage), "
            "so it cannot call its own health service",
            hint="issue it again with `monoculture certs issue --coordinator HOST` (certificates issued "
            "since the health check have both usages)",
        )
    try:
        names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    dns = names.get_values_for_type(x509.DNSName)
    ips = names.get_values_for_type(x509.IPAddress)
    return dns[0] if dns else (str(ips[0]) if ips else None)


def ask(probe: Probe, timeout: float) -> str | None:
    """None when the coordinator answers SERVING, else why not (one line)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from monoculture.transport import channel as open_channel

    with open_channel(probe.address, probe.tls, probe.server_name) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as error:
            return _why(error, timeout)
    if answer.status == health_pb2.HealthCheckResponse.SERVING:
        return None
    return f"answers {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}"


def _why(error: Any, timeout: float) -> str:
    import grpc

    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {timeout:g} s (down, unreachable, or the TLS handshake refused)"
    details = " ".join(str(error.details() or "").split())
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"unreachable or the TLS handshake refused ({details})"
    return f"refused the check: {code.name} ({details})"


def check_health(args: argparse.Namespace) -> int:
    import os

    # gRPC's core would log a refused handshake on stderr (several lines): the answer is one line.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    probe = probe_of(args.config, args.insecure)
    why = ask(probe, args.timeout)
    if why is None:
        print(f"SERVING: {probe.what}")
        return 0
    print(f"NOT SERVING: {probe.what}: {why}", file=sys.stderr)
    return EXIT_UNHEALTHY
