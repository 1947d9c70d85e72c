"""`monoculture certs`: the auditor's CA and the identities it issues."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monoculture.core.errors import ProtocolError
from monoculture.core.identity import (
    Identity,
    Role,
    create_ca,
    identity_of,
    issue,
    sign,
    verify_certificate,
    verify_signature,
)


def certs(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "monoculture", "certs", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_init_and_issue_every_role(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    assert certs("init", "--dir", str(folder)).returncode == 0
    for who in (["--company", "google"], ["--coordinator", "127.0.0.1"], ["--auditor"]):
        done = certs("issue", "--dir", str(folder), *who)
        assert done.returncode == 0, done.stderr
    ca = (folder / "ca.pem").read_bytes()
    assert verify_certificate((folder / "company-google.pem").read_bytes(), ca) == Identity(
        Role.COMPANY, "google"
    )
    assert identity_of((folder / "coordinator.pem").read_bytes()) == Identity(Role.COORDINATOR, "127.0.0.1")
    assert identity_of((folder / "auditor.pem").read_bytes()) == Identity(Role.AUDITOR, "auditor")
    for key in folder.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600


def test_init_refuses_to_replace_a_ca(tmp_path: Path) -> None:
    assert certs("init", "--dir", str(tmp_path)).returncode == 0
    done = certs("init", "--dir", str(tmp_path))
    assert done.returncode == 2 and "a CA already exists" in done.stderr and "--force" in done.stderr
    assert certs("init", "--dir", str(tmp_path), "--force").returncode == 0


def test_issue_needs_a_ca_and_a_valid_name(tmp_path: Path) -> None:
    done = certs("issue", "--dir", str(tmp_path), "--company", "google")
    assert done.returncode == 2 and "no CA here" in done.stderr
    certs("init", "--dir", str(tmp_path))
    done = certs("issue", "--dir", str(tmp_path), "--company", "Not Valid")
    assert done.returncode == 2 and "company name" in done.stderr and "Traceback" not in done.stderr


def test_certificates_from_another_ca_or_tampered_are_refused() -> None:
    ours, theirs = create_ca(), create_ca("other")
    foreign = issue(theirs, Identity(Role.COMPANY, "google"))
    with pytest.raises(ProtocolError, match="not issued by this deployment's CA"):
        verify_certificate(foreign.certificate_pem, ours.certificate_pem)


def test_signatures_bind_to_the_certificate() -> None:
    ca = create_ca()
    google, other = issue(ca, Identity(Role.COMPANY, "google")), issue(ca, Identity(Role.COMPANY, "other"))
    signature = sign(google.private_key_pem, b"statement")
    verify_signature(google.certificate_pem, b"statement", signature)
    with pytest.raises(ProtocolError):
        verify_signature(other.certificate_pem, b"statement", signature)
    with pytest.raises(ProtocolError):
        verify_signature(google.certificate_pem, b"statemenT", signature)
