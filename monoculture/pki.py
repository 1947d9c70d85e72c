"""`monoculture certs`: the auditor's small PKI, kept in one folder.

ca.pem / ca.key                        the deployment's CA (keep ca.key offline)
coordinator.pem / coordinator.key      the coordinator, for HOST
auditor.pem / auditor.key              round administration
company-NAME.pem / company-NAME.key    one per company (`issue`: one-machine runs and tests)

In a deployment a company's key never leaves it: `request_certificate` writes
company-NAME.key and company-NAME.csr in the company's own folder, the auditor
answers the .csr with `sign_request` (company-NAME.pem), and the parties pin
each other by `fingerprint`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.core.identity import (
    DEFAULT_DAYS,
    CertifiedKey,
    Identity,
    Role,
    certify,
    create_ca,
    create_request,
    issue,
    private_key_fingerprint,
    public_key_fingerprint,
    read_certified_key,
    read_pem,
    refuse_symlinks,
    requested_identity,
    write_certified_key,
    write_key_file,
    write_public_file,
)
from monoculture.transport import TlsFiles


def _stem(identity: Identity) -> str:
    return identity.role.value if identity.role != Role.COMPANY else f"company-{identity.name}"


def init_ca(folder: Path, days: int = DEFAULT_DAYS, force: bool = False) -> Path:
    if (folder / "ca.key").exists() and not force:
        raise ConfigError(
            "a CA already exists here", where=str(folder / "ca.key"),
            hint="keep it (re-issuing every certificate otherwise), or pass --force to replace it",
        )  # fmt: skip
    cert_path, _ = write_certified_key(folder, "ca", create_ca(days=days))
    return cert_path


def _read_ca(folder: Path) -> CertifiedKey:
    if not (folder / "ca.key").exists():
        raise ConfigError("no CA here", where=str(folder), hint="run `monoculture certs init` first")
    return read_certified_key(folder / "ca.pem", folder / "ca.key")


def issue_certificate(
    folder: Path,
    identity: Identity,
    host: str | None = None,
    days: int = DEFAULT_DAYS,
    more_hosts: Sequence[str] = (),
) -> TlsFiles:
    """A key and certificate for `identity` (`host` and `more_hosts`: the DNS or IP names a
    coordinator is dialled by)."""
    ca = _read_ca(folder)
    cert_path, key_path = write_certified_key(
        folder, _stem(identity), issue(ca, identity, host=host, days=days, more_hosts=more_hosts)
    )
    return TlsFiles(folder / "ca.pem", cert_path, key_path)


@dataclass(frozen=True)
class RequestFiles:
    key_file: Path
    request_file: Path
    fingerprint: str  # of the key: the certificate the auditor returns must show the same


def request_certificate(folder: Path, company: str, force: bool = False) -> RequestFiles:
    """The company's side: a new key (mode 0600) and a CSR for it in `folder`."""
    identity = Identity(Role.COMPANY, company)
    stem = _stem(identity)
    key_path, request_path = folder / f"{stem}.key", folder / f"{stem}.csr"
    material = create_request(identity)  # checks the name first
    if (key_path.exists() or key_path.is_symlink()) and not force:
        raise ConfigError(
            "a key already exists here", where=str(key_path),
            hint="keep it (its certificate stays valid), or pass --force to make a new key and request",
        )  # fmt: skip
    refuse_symlinks(key_path, request_path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_key_file(key_path, material.private_key_pem)
    write_public_file(request_path, material.request_pem)
    return RequestFiles(key_path, request_path, private_key_fingerprint(material.private_key_pem))


@dataclass(frozen=True)
class SignedRequest:
    cert_file: Path
    identity: Identity
    fingerprint: str


ISSUED_FILE = "issued.json"  # the CA's record of the certificates `certs sign` issued


def _issued(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / ISSUED_FILE
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): {"fingerprint": str(v["fingerprint"]), "not_after": str(v["not_after"])}
                for k, v in record.items()}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"the CA's record of issued certificates cannot be read ({exc})", where=str(path),
            hint="restore it from a backup: it is what stops a second key under a name",
        ) from None  # fmt: skip


def _record_issued(folder: Path, name: str, fingerprint_: str, not_after: dt.datetime) -> None:
    record = _issued(folder)
    record[name] = {"fingerprint": fingerprint_, "not_after": not_after.isoformat()}
    tmp = folder / (ISSUED_FILE + ".tmp")
    write_public_file(tmp, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    tmp.replace(folder / ISSUED_FILE)


def _refuse_second_key(folder: Path, identity: Identity, fingerprint_: str, rotate: bool) -> None:
    """A name that already holds a valid certificate from this CA gets no second key, unless the
    auditor rotates it on purpose (peers pin fingerprints, so a rotation also needs new pins)."""
    held = _issued(folder).get(str(identity))
    if held is None or held["fingerprint"] == fingerprint_ or rotate:
        return
    until = dt.datetime.fromisoformat(held["not_after"])
    if until <= dt.datetime.now(dt.UTC):
        return
    raise ConfigError(
        f"{identity} already holds a valid certificate from this CA (key {held['fingerprint']}, valid "
        f"until {until:%Y-%m-%d}); a second key under one name is what pinning exists to stop",
        hint="if the company lost its key or rotates it on purpose, pass --rotate; its peers must then "
        "pin the new fingerprint",
    )


def sign_certificate(
    folder: Path, request_path: Path, out: Path | None = None, days: int = DEFAULT_DAYS, rotate: bool = False
) -> SignedRequest:
    """The auditor's side: the CA in `folder` signs a company's CSR; the key stays with
    the company. The certificate goes to `out`, by default company-NAME.pem beside the CSR.
    A name that already holds a valid certificate with another key is refused unless `rotate`."""
    ca = _read_ca(folder)
    try:
        identity, public_key = requested_identity(read_pem(request_path))
    except MonocultureError as exc:
        exc.where = str(request_path)
        exc.hint = (
            exc.hint or "give the path of the .csr the company sent (`monoculture certs request` made it)"
        )
        raise
    certificate_pem = certify(ca, identity, public_key, days=days)
    fingerprint_ = public_key_fingerprint(certificate_pem)
    _refuse_second_key(folder, identity, fingerprint_, rotate)
    cert_path = out if out is not None else request_path.parent / f"{_stem(identity)}.pem"
    write_public_file(cert_path, certificate_pem)
    not_after = x509.load_pem_x509_certificate(certificate_pem).not_valid_after_utc
    _record_issued(folder, str(identity), fingerprint_, not_after)
    return SignedRequest(cert_path, identity, fingerprint_)


def fingerprint(cert_path: Path) -> str:
    """`sha256:HEX` of the public key in a certificate file (what daemons pin in `[peers]`)."""
    try:
        return public_key_fingerprint(read_pem(cert_path))
    except MonocultureError as exc:
        exc.where = exc.where or str(cert_path)
        exc.hint = exc.hint or "give the path of a certificate (PEM), such as company-NAME.pem"
        raise


def tls_files(folder: Path, identity: Identity) -> TlsFiles:
    stem = _stem(identity)
    return TlsFiles(folder / "ca.pem", folder / f"{stem}.pem", folder / f"{stem}.key")


def local_deployment(folder: Path, companies: list[str]) -> None:
    """Everything a one-machine run needs: CA, coordinator on 127.0.0.1, auditor, companies."""
    init_ca(folder, force=True)
    issue_certificate(folder, Identity(Role.COORDINATOR, "127.0.0.1"), host="127.0.0.1")
    issue_certificate(folder, Identity(Role.AUDITOR, "auditor"))
    for name in companies:
        issue_certificate(folder, Identity(Role.COMPANY, name))
