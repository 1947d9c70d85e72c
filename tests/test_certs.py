"""`monoculture certs`: the auditor's CA and the identities it issues."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from monoculture.core.errors import ProtocolError
from monoculture.core.identity import (
    Identity,
    Role,
    create_ca,
    identity_of,
    issue,
    private_key_fingerprint,
    public_key_fingerprint,
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


# ------------------------------------------------ request / sign / fingerprint


def test_the_coordinator_is_certified_under_every_host_name_it_is_dialled_by(tmp_path: Path) -> None:
    assert certs("init", "--dir", str(tmp_path)).returncode == 0
    hosts = ["--host", "coordinator", "--host", "10.0.0.7", "--host", "coordinator.example.org"]
    done = certs("issue", "--dir", str(tmp_path), "--coordinator", "Coordinator.Example.org", *hosts)
    assert done.returncode == 0, done.stderr
    certificate = x509.load_pem_x509_certificate((tmp_path / "coordinator.pem").read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["coordinator.example.org", "coordinator"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert identity_of((tmp_path / "coordinator.pem").read_bytes()) == Identity(
        Role.COORDINATOR, "Coordinator.Example.org"
    )
    refused(certs("issue", "--dir", str(tmp_path), "--company", "google", "--host", "x.org"), "--coordinator")
    for bad in ("not a host", "under_score.org", "-lead.org", "x" * 64 + ".org", "é.org"):
        refused(certs("issue", "--dir", str(tmp_path), "--coordinator", "c.org", f"--host={bad}"),
                repr(bad), "not a host name or an IP address")  # fmt: skip


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with a plain error (no traceback) that says each of `words`."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: "), done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def enrol(tmp_path: Path, company: str = "bank-a") -> tuple[Path, Path, Path]:
    """A CA folder, a company's folder with key and CSR, and the auditor's inbox holding a copy
    of the CSR (the auditor never sees the company's folder)."""
    ca_dir, own, inbox = tmp_path / "ca", tmp_path / company, tmp_path / "inbox"
    assert certs("init", "--dir", str(ca_dir)).returncode == 0
    done = certs("request", "--company", company, "--dir", str(own))
    assert done.returncode == 0, done.stderr
    inbox.mkdir()
    csr = inbox / f"company-{company}.csr"
    csr.write_bytes((own / f"company-{company}.csr").read_bytes())
    return ca_dir, own, csr


def request_for(uris: list[str]) -> bytes:
    """A CSR, validly self-signed, naming these URIs (for requests `certs request` never makes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")])
    )
    if uris:
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_request_then_sign_keeps_the_key_with_the_company(tmp_path: Path) -> None:
    ca_dir, own, csr = enrol(tmp_path)
    key = own / "company-bank-a.key"
    assert key.stat().st_mode & 0o777 == 0o600
    request = x509.load_pem_x509_csr(csr.read_bytes())
    assert request.is_signature_valid
    san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["monoculture:company:bank-a"]

    done = certs("sign", "--dir", str(ca_dir), str(csr), "--days", "30")
    assert done.returncode == 0, done.stderr
    cert = csr.parent / "company-bank-a.pem"  # beside the CSR
    pem = cert.read_bytes()
    assert verify_certificate(pem, (ca_dir / "ca.pem").read_bytes()) == Identity(Role.COMPANY, "bank-a")
    certificate = x509.load_pem_x509_certificate(pem)
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days == 30
    # The auditor never held the key: nothing secret but its own CA key in its folder (and the
    # public record of what it issued: names, key fingerprints, expiry).
    assert sorted(path.name for path in ca_dir.iterdir()) == ["ca.key", "ca.pem", "issued.json"]
    assert not list(csr.parent.glob("*.key"))

    fingerprint = public_key_fingerprint(pem)
    assert fingerprint == private_key_fingerprint(key.read_bytes())
    assert f"fingerprint: {fingerprint}" in done.stdout and str(cert) in done.stdout
    assert "company bank-a" in done.stdout
    request_output = certs("request", "--company", "bank-a", "--dir", str(own), "--force").stdout
    assert "fingerprint: sha256:" in request_output and "certs sign" in request_output
    printed = certs("fingerprint", str(cert))
    assert printed.returncode == 0 and printed.stdout == f"{fingerprint}\n" and not printed.stderr


def test_sign_refuses_a_second_key_under_a_certified_name_unless_rotated(tmp_path: Path) -> None:
    """Before: the CA signed a second certificate for a company already certified, under another
    key; nothing said so. Renewing the same key stays allowed."""
    ca_dir, own, csr = enrol(tmp_path)
    assert certs("sign", "--dir", str(ca_dir), str(csr)).returncode == 0
    assert certs("sign", "--dir", str(ca_dir), str(csr)).returncode == 0  # the same key: a renewal
    assert certs("request", "--company", "bank-a", "--dir", str(own), "--force").returncode == 0
    csr.write_bytes((own / "company-bank-a.csr").read_bytes())  # a new key's request
    refused(certs("sign", "--dir", str(ca_dir), str(csr)), "already holds a valid certificate", "--rotate")
    rotated = certs("sign", "--dir", str(ca_dir), str(csr), "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    record = json.loads((ca_dir / "issued.json").read_text())
    new_key = private_key_fingerprint((own / "company-bank-a.key").read_bytes())
    assert record["company bank-a"]["fingerprint"] == new_key


def test_sign_writes_where_asked_and_needs_a_ca(tmp_path: Path) -> None:
    ca_dir, _, csr = enrol(tmp_path)
    out = tmp_path / "issued" / "bank-a.pem"
    out.parent.mkdir()
    done = certs("sign", "--dir", str(ca_dir), str(csr), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert identity_of(out.read_bytes()) == Identity(Role.COMPANY, "bank-a")
    refused(certs("sign", "--dir", str(tmp_path / "no-ca"), str(csr)), "no CA here", "certs init")


def test_the_company_key_signs_what_its_signed_certificate_verifies(tmp_path: Path) -> None:
    ca_dir, own, csr = enrol(tmp_path)
    assert certs("sign", "--dir", str(ca_dir), str(csr)).returncode == 0
    signature = sign((own / "company-bank-a.key").read_bytes(), b"statement")
    verify_signature((csr.parent / "company-bank-a.pem").read_bytes(), b"statement", signature)


def test_request_refuses_to_replace_a_key_or_a_bad_name(tmp_path: Path) -> None:
    own = tmp_path / "own"
    assert certs("request", "--company", "bank-a", "--dir", str(own)).returncode == 0
    before = (own / "company-bank-a.key").read_bytes()
    refused(certs("request", "--company", "bank-a", "--dir", str(own)), "a key already exists", "--force")
    assert (own / "company-bank-a.key").read_bytes() == before
    assert certs("request", "--company", "bank-a", "--dir", str(own), "--force").returncode == 0
    assert (own / "company-bank-a.key").read_bytes() != before
    refused(certs("request", "--company", "Not Valid", "--dir", str(own)), "company name")


def test_a_tampered_request_is_refused(tmp_path: Path) -> None:
    ca_dir, _, csr = enrol(tmp_path)
    der = x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert der.count(b"company:bank-a") == 1
    forged = x509.load_der_x509_csr(der.replace(b"company:bank-a", b"company:bank-b"))
    csr.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    refused(certs("sign", "--dir", str(ca_dir), str(csr)), str(csr), "signature does not verify", "again")
    assert not list(csr.parent.glob("*.pem"))


@pytest.mark.parametrize(
    ("uris", "says"),
    [
        (["monoculture:coordinator:127.0.0.1"], "company requests only"),
        (["monoculture:auditor:auditor"], "company requests only"),
        (["monoculture:company:Not Valid"], "company name"),
        (["monoculture:company:a", "monoculture:company:b"], "names 2 monoculture identities"),
        ([], "names 0 monoculture identities"),
        (["https://example.com/"], "names 0 monoculture identities"),
    ],
)
def test_sign_refuses_requests_for_anything_but_one_valid_company(
    tmp_path: Path, uris: list[str], says: str
) -> None:
    certs("init", "--dir", str(tmp_path / "ca"))
    csr = tmp_path / "odd.csr"
    csr.write_bytes(request_for(uris))
    refused(certs("sign", "--dir", str(tmp_path / "ca"), str(csr)), str(csr), says, "what to do")
    assert not list(tmp_path.glob("*.pem"))


def test_missing_or_unreadable_files_are_named(tmp_path: Path) -> None:
    certs("init", "--dir", str(tmp_path / "ca"))
    missing = tmp_path / "missing.csr"
    refused(certs("sign", "--dir", str(tmp_path / "ca"), str(missing)), str(missing), "cannot read")
    refused(certs("fingerprint", str(tmp_path / "missing.pem")), "missing.pem", "cannot read")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    refused(certs("fingerprint", str(junk)), str(junk), "PEM")
    refused(certs("sign", "--dir", str(tmp_path / "ca"), str(junk)), str(junk), "PEM")
    key_instead = tmp_path / "ca" / "ca.key"
    refused(certs("fingerprint", str(key_instead)), str(key_instead), "unreadable certificate")


def test_fingerprint_matches_issue_and_pins_the_key_not_the_name(tmp_path: Path) -> None:
    certs("init", "--dir", str(tmp_path))
    certs("issue", "--dir", str(tmp_path), "--company", "google")
    first = certs("fingerprint", str(tmp_path / "company-google.pem")).stdout.strip()
    assert first == private_key_fingerprint((tmp_path / "company-google.key").read_bytes())
    certs("issue", "--dir", str(tmp_path), "--company", "google")  # same name, new key
    second = certs("fingerprint", str(tmp_path / "company-google.pem")).stdout.strip()
    assert second.startswith("sha256:") and len(second) == len("sha256:") + 64 and second != first


# ------------------------------------------------ files at rest


def test_keys_are_never_written_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "elsewhere.key"
    victim.write_bytes(b"someone else's file\n")
    own = tmp_path / "own"
    own.mkdir()
    (own / "company-bank-a.key").symlink_to(victim)
    done = certs("request", "--company", "bank-a", "--dir", str(own), "--force")
    refused(done, "company-bank-a.key", "symbolic link")
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / "company-bank-a.key").symlink_to(tmp_path / "not-yet.key")
    refused(certs("request", "--company", "bank-a", "--dir", str(dangling), "--force"), "symbolic link")
    assert not (tmp_path / "not-yet.key").exists()

    certs("init", "--dir", str(tmp_path / "ca"))
    (tmp_path / "ca" / "company-google.key").symlink_to(victim)
    refused(certs("issue", "--dir", str(tmp_path / "ca"), "--company", "google"), "symbolic link")
    assert victim.read_bytes() == b"someone else's file\n"


def test_certificates_and_requests_are_never_written_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "elsewhere.txt"
    victim.write_bytes(b"untouched\n")
    own = tmp_path / "own"
    own.mkdir()
    (own / "company-bank-a.csr").symlink_to(victim)
    refused(certs("request", "--company", "bank-a", "--dir", str(own)), "company-bank-a.csr", "symbolic link")
    assert not (own / "company-bank-a.key").exists()  # refused before writing anything

    ca_dir, _, csr = enrol(tmp_path / "deployment")
    (csr.parent / "company-bank-a.pem").symlink_to(victim)
    refused(certs("sign", "--dir", str(ca_dir), str(csr)), "company-bank-a.pem", "symbolic link")
    link = tmp_path / "out.pem"
    link.symlink_to(victim)
    refused(certs("sign", "--dir", str(ca_dir), str(csr), "--out", str(link)), "symbolic link")
    (ca_dir / "company-google.pem").symlink_to(victim)
    refused(certs("issue", "--dir", str(ca_dir), "--company", "google"), "symbolic link")
    assert victim.read_bytes() == b"untouched\n"


def test_reissue_leaves_a_once_readable_key_0600(tmp_path: Path) -> None:
    certs("init", "--dir", str(tmp_path))
    key = tmp_path / "company-google.key"
    key.write_bytes(b"old\n")
    key.chmod(0o644)
    done = certs("issue", "--dir", str(tmp_path), "--company", "google")
    assert done.returncode == 0, done.stderr
    assert key.stat().st_mode & 0o777 == 0o600 and key.read_bytes().startswith(b"-----BEGIN")
    own = tmp_path / "own"
    own.mkdir()
    (own / "company-bank-a.key").write_bytes(b"old\n")
    (own / "company-bank-a.key").chmod(0o644)
    assert certs("request", "--company", "bank-a", "--dir", str(own), "--force").returncode == 0
    assert (own / "company-bank-a.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    assert not [path for path in tmp_path.rglob(".*.tmp")]  # no temporary file left behind


def test_a_certificate_close_to_expiry_is_warned_about_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Expiry is warned about ahead of time: a daemon starting with a certificate that has less
    than 30 days left says so, naming the file and how to renew."""
    import datetime as dt

    from monoculture.core.identity import EXPIRY_WARNING_DAYS, expiry_warning

    ca = create_ca()
    fresh = issue(ca, Identity(Role.COMPANY, "bank-a"), days=365).certificate_pem
    short = issue(ca, Identity(Role.COMPANY, "bank-a"), days=10).certificate_pem
    assert expiry_warning(fresh) is None
    warning = expiry_warning(short)
    assert warning is not None and "expires in" in warning and "certs request" in warning
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=11)
    assert "has expired" in (expiry_warning(short, later) or "")
    assert EXPIRY_WARNING_DAYS == 30
    from monoculture.cli.daemons import _warn_expiry
    from monoculture.pki import issue_certificate, local_deployment

    local_deployment(tmp_path / "certs", ["bank-a"])
    files = issue_certificate(tmp_path / "certs", Identity(Role.COMPANY, "bank-a"), days=5)
    with caplog.at_level("WARNING"):
        _warn_expiry(files)  # what `client run` and `coordinator serve` do at start
    assert any("expires in 4 days" in r.message or "expires in 5 days" in r.message for r in caplog.records)
    assert str(files.cert_file) in caplog.text
