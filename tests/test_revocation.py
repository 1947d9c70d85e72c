"""Revocation and renewal without processes: the CA's CRL (made, verified, stale, forged), its
file re-read when it changes, `certs revoke` / `certs crl` / `certs request --renew`, and the
renewed certificate files a running party takes up."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest

from monoculture.cli import certs as certs_cli
from monoculture.cli import main
from monoculture.coordinator.service import status_code
from monoculture.core.errors import ConfigError
from monoculture.core.identity import (
    Identity,
    Role,
    create_ca,
    create_request,
    issue,
    private_key_fingerprint,
    public_key_fingerprint,
    read_certified_key,
)
from monoculture.core.revocation import (
    DEFAULT_CRL_DAYS,
    REASONS,
    CertificateRevoked,
    Revocation,
    RevocationListUnusable,
    build_crl,
    certificate_serial,
    read_crl,
)
from monoculture.pki import local_deployment, tls_files
from monoculture.transport import RenewalWatch, RevocationWatch, ServerCertificates

NOW = dt.datetime.now(dt.UTC)
GOOGLE = Identity(Role.COMPANY, "google")


def revoking(*certificates: bytes) -> list[Revocation]:
    return [Revocation(certificate_serial(pem), NOW) for pem in certificates]


# ------------------------------------------------------------------ the CRL itself


def test_a_crl_revokes_exactly_the_serials_it_lists() -> None:
    ca = create_ca()
    lost, kept = issue(ca, GOOGLE), issue(ca, Identity(Role.COMPANY, "ibm"))
    crl = read_crl(build_crl(ca, revoking(lost.certificate_pem), number=7), ca.certificate_pem)
    assert crl.number == 7 and crl.next_update - crl.last_update == dt.timedelta(days=DEFAULT_CRL_DAYS)
    crl.check(kept.certificate_pem)
    with pytest.raises(CertificateRevoked, match=r"company google \(serial [0-9a-f]+\) is revoked since"):
        crl.check(lost.certificate_pem)


def test_a_crl_signed_by_another_ca_of_the_same_name_is_refused() -> None:
    ours, impostor = create_ca(), create_ca()  # the same subject name, another key
    forged = build_crl(impostor, [], number=99)
    with pytest.raises(RevocationListUnusable, match="not signed by this deployment's CA"):
        read_crl(forged, ours.certificate_pem)


def test_an_altered_or_unreadable_crl_is_refused() -> None:
    ca = create_ca()
    pem = build_crl(ca, revoking(issue(ca, GOOGLE).certificate_pem), number=1)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = bytearray(x509.load_pem_x509_crl(pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 1  # one bit of the signature
    altered = x509.load_der_x509_crl(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(RevocationListUnusable, match="not signed by this deployment's CA"):
        read_crl(altered, ca.certificate_pem)
    with pytest.raises(RevocationListUnusable, match="is not a certificate revocation list"):
        read_crl(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n", ca.certificate_pem)


def test_a_crl_past_its_next_update_is_refused_when_read_and_when_used() -> None:
    ca = create_ca()
    stale = build_crl(ca, [], number=1, days=30, now=NOW - dt.timedelta(days=31))
    with pytest.raises(RevocationListUnusable, match="past its next update") as caught:
        read_crl(stale, ca.certificate_pem)
    assert "certs crl" in caught.value.hint
    current = read_crl(build_crl(ca, [], number=2, days=1), ca.certificate_pem)
    current.check(issue(ca, GOOGLE).certificate_pem)
    with pytest.raises(RevocationListUnusable, match="past its next update"):
        current.check(issue(ca, GOOGLE).certificate_pem, now=NOW + dt.timedelta(days=2))


def test_the_coordinator_answers_a_revocation_and_an_unusable_list_with_their_own_codes() -> None:
    default = grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(CertificateRevoked("revoked"), default) == grpc.StatusCode.PERMISSION_DENIED
    assert status_code(RevocationListUnusable("stale"), default) == grpc.StatusCode.UNAVAILABLE


def test_the_cli_offers_the_reasons_and_default_the_crl_knows() -> None:
    assert tuple(REASONS) == certs_cli.REASONS and certs_cli.DEFAULT_CRL_DAYS == DEFAULT_CRL_DAYS


# ------------------------------------------------------------------ the file, re-read


def test_the_crl_file_is_re_read_when_it_changes(tmp_path: Path) -> None:
    ca = create_ca()
    google = issue(ca, GOOGLE)
    path = tmp_path / "crl.pem"
    path.write_bytes(build_crl(ca, [], number=1))
    watch = RevocationWatch(path, ca.certificate_pem)
    watch.check(google.certificate_pem)
    first = watch.version

    replacement = tmp_path / "crl.pem.new"  # replaced in one step, as docs/USAGE.md says
    replacement.write_bytes(build_crl(ca, revoking(google.certificate_pem), number=2))
    os.replace(replacement, path)
    with pytest.raises(CertificateRevoked):
        watch.check(google.certificate_pem, "company google")
    assert watch.version == first + 1 and watch.current().number == 2

    path.write_bytes(build_crl(create_ca(), [], number=3))  # forged: nothing is checked with it
    with pytest.raises(RevocationListUnusable, match="not signed") as caught:
        watch.check(issue(ca, Identity(Role.COMPANY, "ibm")).certificate_pem)
    assert caught.value.where == str(path)
    path.write_bytes(build_crl(ca, [], number=4))  # a good list again: served again
    assert watch.current().number == 4


def test_a_crl_file_that_cannot_be_used_at_start_is_a_config_error(tmp_path: Path) -> None:
    ca = create_ca()
    with pytest.raises(ConfigError, match="cannot read") as caught:
        RevocationWatch(tmp_path / "missing.pem", ca.certificate_pem)
    assert caught.value.where == str(tmp_path / "missing.pem")
    stale = tmp_path / "stale.pem"
    stale.write_bytes(build_crl(ca, [], number=1, now=NOW - dt.timedelta(days=40)))
    with pytest.raises(ConfigError, match="past its next update"):
        RevocationWatch(stale, ca.certificate_pem)


# ------------------------------------------------------------------ renewed files


def _renew_in_place(folder: Path, identity: Identity, host: str | None = None) -> bytes:
    """A new certificate for the key already in `folder` (a same-key renewal), written in place."""
    from monoculture.core.identity import certificate_key, certify

    stem = "coordinator" if identity.role == Role.COORDINATOR else f"company-{identity.name}"
    ca = read_certified_key(folder / "ca.pem", folder / "ca.key")
    old = (folder / f"{stem}.pem").read_bytes()
    renewed = certify(ca, identity, certificate_key(old), host=host, days=90)
    (folder / f"{stem}.pem").write_bytes(renewed)
    return renewed


def test_the_coordinator_serves_renewed_files_and_waits_for_a_matching_pair(tmp_path: Path) -> None:
    local_deployment(tmp_path, ["google"])
    tls = tls_files(tmp_path, Identity(Role.COORDINATOR, ""))
    certificates = ServerCertificates(tls)
    assert certificates.fetch() is None  # nothing changed
    _renew_in_place(tmp_path, Identity(Role.COORDINATOR, "127.0.0.1"), host="127.0.0.1")
    assert certificates.fetch() is not None
    assert certificates.fetch() is None
    other = issue(read_certified_key(tmp_path / "ca.pem", tmp_path / "ca.key"),
                  Identity(Role.COORDINATOR, "127.0.0.1"), host="127.0.0.1")  # fmt: skip
    (tmp_path / "coordinator.key").write_bytes(other.private_key_pem)  # a rotation, half copied
    assert certificates.fetch() is None
    (tmp_path / "coordinator.pem").write_bytes(other.certificate_pem)  # the other half
    assert certificates.fetch() is not None


def test_a_daemon_takes_up_a_renewal_of_its_own_certificate_once(tmp_path: Path) -> None:
    local_deployment(tmp_path, ["google", "ibm"])
    taken: list[bytes] = []
    watch = RenewalWatch(tls_files(tmp_path, GOOGLE), GOOGLE, lambda cert, key: taken.append(cert))
    assert not watch.poll()
    google = tmp_path / "company-google.pem"
    original = google.read_bytes()
    google.write_bytes((tmp_path / "company-ibm.pem").read_bytes())  # another party's: never taken up
    assert not watch.poll() and taken == []
    google.write_bytes(original)
    renewed = _renew_in_place(tmp_path, GOOGLE)
    assert watch.poll() and taken == [renewed]
    assert not watch.poll()


# ------------------------------------------------------------------ the CLI


def certs(*args: str) -> subprocess.CompletedProcess[str]:
    """`monoculture certs ARGS`, run in this process (as the console script runs it: its exit
    status and output), which spares a Python start per call; tests/test_certs.py runs the CLI
    as processes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["certs", *args])
        except SystemExit as exit_:  # argparse refusing the arguments
            status = int(exit_.code or 0)
    return subprocess.CompletedProcess(
        ["monoculture", "certs", *args], status, out.getvalue(), err.getvalue()
    )


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: "), done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def _crl(ca_dir: Path) -> object:
    return read_crl((ca_dir / "crl.pem").read_bytes(), (ca_dir / "ca.pem").read_bytes())


def test_revoke_by_name_revokes_the_renewal_too_and_the_key_for_good(tmp_path: Path) -> None:
    ca_dir, own, inbox = tmp_path / "ca", tmp_path / "bank-a", tmp_path / "inbox"
    assert certs("init", "--dir", str(ca_dir)).returncode == 0
    assert certs("request", "--company", "bank-a", "--dir", str(own)).returncode == 0
    key_fingerprint = private_key_fingerprint((own / "company-bank-a.key").read_bytes())
    inbox.mkdir()
    pems = []
    for attempt in ("first", "renewal"):
        if attempt == "renewal":
            renewed = certs("request", "--company", "bank-a", "--dir", str(own), "--renew")
            assert renewed.returncode == 0 and key_fingerprint in renewed.stdout  # the key stays
        csr = inbox / "company-bank-a.csr"
        csr.write_bytes((own / "company-bank-a.csr").read_bytes())
        assert certs("sign", "--dir", str(ca_dir), str(csr)).returncode == 0
        pems.append((inbox / "company-bank-a.pem").read_bytes())
    assert {public_key_fingerprint(pem) for pem in pems} == {key_fingerprint}

    done = certs("revoke", "--dir", str(ca_dir), "bank-a")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("revoked:     company bank-a, serial") == 2
    assert "crl_file" in done.stdout and "certs crl" in done.stdout
    crl = _crl(ca_dir)
    for pem in pems:
        with pytest.raises(CertificateRevoked):
            crl.check(pem)  # type: ignore[attr-defined]

    refused(certs("sign", "--dir", str(ca_dir), str(csr)), "was revoked", "never certified again")
    assert certs("request", "--company", "bank-a", "--dir", str(own), "--force").returncode == 0
    csr.write_bytes((own / "company-bank-a.csr").read_bytes())
    fresh = certs("sign", "--dir", str(ca_dir), str(csr))  # a new key: no --rotate needed
    assert fresh.returncode == 0, fresh.stderr
    crl.check((inbox / "company-bank-a.pem").read_bytes())  # type: ignore[attr-defined]

    again = certs("revoke", "--dir", str(ca_dir), "--certificate", str(inbox / "company-bank-a.pem"))
    assert again.returncode == 0 and "number 2, 3 revoked" in again.stdout
    repeated = certs("revoke", "--dir", str(ca_dir), "--certificate", str(inbox / "company-bank-a.pem"))
    assert "already:" in repeated.stdout and "number 3, 3 revoked" in repeated.stdout


def test_revoke_by_serial_fingerprint_and_role_and_republish(tmp_path: Path) -> None:
    local_deployment(tmp_path, ["google", "ibm"])
    google = (tmp_path / "company-google.pem").read_bytes()
    serial = f"{certificate_serial(google):x}"
    assert (
        certs("revoke", "--dir", str(tmp_path), "--serial", serial, "--reason", "superseded").returncode == 0
    )
    fingerprint = public_key_fingerprint((tmp_path / "company-ibm.pem").read_bytes())
    assert certs("revoke", "--dir", str(tmp_path), "--fingerprint", fingerprint).returncode == 0
    assert certs("revoke", "--dir", str(tmp_path), "--coordinator", "127.0.0.1").returncode == 0
    record = json.loads((tmp_path / "revoked.json").read_text())
    assert record["crl_number"] == 3
    assert [e["identity"] for e in record["revoked"]] == [
        "company google",
        "company ibm",
        "coordinator 127.0.0.1",
    ]
    assert record["revoked"][0]["reason"] == "superseded"

    out = tmp_path / "published" / "crl.pem"
    out.parent.mkdir()
    done = certs("crl", "--dir", str(tmp_path), "--days", "7", "--out", str(out))
    assert done.returncode == 0, done.stderr
    crl = read_crl(out.read_bytes(), (tmp_path / "ca.pem").read_bytes())
    assert crl.number == 4 and len(crl.revoked) == 3
    assert crl.next_update - crl.last_update == dt.timedelta(days=7)


def test_revoke_refuses_what_it_cannot_name(tmp_path: Path) -> None:
    refused(certs("revoke", "--dir", str(tmp_path), "google"), "no CA here")
    local_deployment(tmp_path, ["google"])
    refused(certs("revoke", "--dir", str(tmp_path), "nobody"), "no unexpired certificate of company nobody")
    refused(certs("revoke", "--dir", str(tmp_path), "--serial", "xyz"), "not a hexadecimal serial")
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(issue(create_ca("elsewhere"), GOOGLE).certificate_pem)
    refused(certs("revoke", "--dir", str(tmp_path), "--certificate", str(foreign)), "not issued by this")
    assert not (tmp_path / "crl.pem").exists()
    assert certs("revoke", "--dir", str(tmp_path)).returncode == 2  # argparse: one target is required


def test_renew_needs_the_key_it_renews(tmp_path: Path) -> None:
    refused(certs("request", "--company", "bank-a", "--dir", str(tmp_path), "--renew"), "company-bank-a.key")
    key = create_request(GOOGLE).private_key_pem
    assert private_key_fingerprint(create_request(GOOGLE, key).private_key_pem) == private_key_fingerprint(
        key
    )
