"""`monoculture health --config PATH`: the probe that containers, systemd and Kubernetes call.

A real coordinator (in this process, real gRPC over mTLS on loopback) answers the standard
health service; the command reads a coordinator's or a company's config and exits 0 when it
says SERVING, 1 with one line saying why otherwise, 2 for a config it cannot use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pki_helpers import LocalPki

from monoculture.cli import main
from monoculture.cli.health import loopback_address
from monoculture.client.config import ClientConfig, client_sections
from monoculture.coordinator.config import CoordinatorConfig, coordinator_sections
from monoculture.coordinator.server import start_server
from monoculture.core.config import render_toml
from monoculture.core.dataset import InputSpec
from monoculture.core.identity import Identity, Role, create_ca, issue
from monoculture.transport import TlsFiles


def _coordinator_config(folder: Path, listen: str, tls: TlsFiles | None) -> Path:
    config = CoordinatorConfig(listen=listen, database=folder / "coordinator.sqlite", tls=tls)
    path = folder / "coordinator.toml"
    path.write_text(render_toml(coordinator_sections(config), comments=False), encoding="utf-8")
    return path


def _company_config(folder: Path, company: str, coordinator: str, tls: TlsFiles | None) -> Path:
    config = ClientConfig(
        company=company,
        coordinator=coordinator,
        data=InputSpec(path=folder / f"{company}.csv"),
        tls=tls,
        state_dir=folder / f"state-{company}",
        peers={"google": "sha256:" + "0" * 64},
    )
    path = folder / f"client-{company}.toml"
    path.write_text(render_toml(client_sections(config), comments=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A coordinator serving on a wildcard address (as in a container), dialled on loopback."""
    folder = tmp_path_factory.mktemp("health")
    pki = LocalPki(folder / "certs", ["google"])
    config = CoordinatorConfig(
        listen="0.0.0.0:0", database=folder / "coordinator.sqlite", tls=pki.coordinator()
    )
    server, port, _ = start_server(config)
    try:
        yield {
            "folder": folder,
            "pki": pki,
            "port": port,
            "coordinator": _coordinator_config(folder, f"0.0.0.0:{port}", pki.coordinator()),
            "google": _company_config(folder, "google", f"127.0.0.1:{port}", pki.company("google")),
        }
    finally:
        server.stop(grace=None).wait()


def _health(capsys: pytest.CaptureFixture[str], config: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["health", "--config", str(config), "--timeout", "5", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_serving_coordinator_is_healthy_by_its_own_certificate(deployment: dict, capsys) -> None:
    code, out, err = _health(capsys, deployment["coordinator"])
    assert code == 0, err
    assert out == f"SERVING: coordinator at 127.0.0.1:{deployment['port']}\n"


def test_a_company_config_checks_the_coordinator_with_the_companys_own_key(deployment: dict, capsys) -> None:
    code, out, err = _health(capsys, deployment["google"])
    assert code == 0, err
    assert out == f"SERVING: coordinator at 127.0.0.1:{deployment['port']} for company google\n"


def test_a_company_whose_certificate_the_coordinator_refuses_is_not_healthy(deployment: dict, capsys) -> None:
    """Certified by another CA: the handshake is refused, which the check reports in one line."""
    folder = deployment["folder"] / "foreign"
    folder.mkdir()
    foreign = issue(create_ca("another CA"), Identity(Role.COMPANY, "google"))
    (folder / "google.pem").write_bytes(foreign.certificate_pem)
    (folder / "google.key").write_bytes(foreign.private_key_pem)
    tls = TlsFiles(deployment["pki"].company("google").ca_file, folder / "google.pem", folder / "google.key")
    config = _company_config(folder, "google", f"127.0.0.1:{deployment['port']}", tls)
    code, out, err = _health(capsys, config)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"NOT SERVING: coordinator at 127.0.0.1:{deployment['port']} for company google: ")


def test_a_coordinator_that_is_down_is_not_healthy(tmp_path: Path, deployment: dict, capsys) -> None:
    tls = deployment["pki"].coordinator()
    config = CoordinatorConfig(listen="127.0.0.1:0", database=tmp_path / "c.sqlite", tls=tls)
    server, port, _ = start_server(config)
    server.stop(grace=None).wait()
    path = _coordinator_config(tmp_path, f"127.0.0.1:{port}", tls)
    code, out, err = _health(capsys, path, "--timeout", "2")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"NOT SERVING: coordinator at 127.0.0.1:{port}: ")


def test_a_service_answering_not_serving_is_not_healthy(tmp_path: Path, capsys) -> None:
    """A health service that answers, but not SERVING (here a bare one, plaintext on loopback)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        path = _coordinator_config(tmp_path, f"127.0.0.1:{port}", None)
        code, out, err = _health(capsys, path, "--insecure")
    finally:
        server.stop(grace=None).wait()
    assert (code, out) == (1, "")
    assert err == f"NOT SERVING: coordinator at 127.0.0.1:{port}: answers NOT_SERVING\n"


def test_a_coordinator_certificate_that_cannot_act_as_a_client_is_named(deployment: dict, capsys) -> None:
    """Coordinator certificates issued before the health check carried serverAuth alone: the
    check says which file, and how to reissue it, instead of a failed handshake."""
    folder = deployment["folder"] / "old"
    folder.mkdir()
    files = deployment["pki"].coordinator()
    ca = deployment["folder"] / "certs"
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    old = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (folder / "old.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (folder / "old.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    tls = replace(files, cert_file=folder / "old.pem", key_file=folder / "old.key")
    code, _, err = _health(capsys, _coordinator_config(folder, f"0.0.0.0:{deployment['port']}", tls))
    assert code == 2
    assert "old.pem" in err and "clientAuth" in err and "certs issue --coordinator" in err
    assert "Traceback" not in err


def test_a_file_of_neither_role_is_refused_by_name(tmp_path: Path, capsys) -> None:
    path = tmp_path / "other.toml"
    path.write_text('[data]\npath = "x.csv"\n', encoding="utf-8")
    code, _, err = _health(capsys, path)
    assert code == 2
    assert str(path) in err and "[coordinator]" in err and "[client]" in err


def test_a_bad_timeout_is_refused() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["health", "--config", "x.toml", "--timeout", "0"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("listen", "dialled"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        ("[::]:50051", "127.0.0.1:50051"),
        (":50051", "127.0.0.1:50051"),
        ("127.0.0.1:7", "127.0.0.1:7"),
        ("coordinator.example:443", "coordinator.example:443"),
    ],
)
def test_a_wildcard_listen_address_is_dialled_on_loopback(listen: str, dialled: str) -> None:
    assert loopback_address(listen) == dialled
