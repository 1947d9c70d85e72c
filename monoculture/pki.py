"""`monoculture certs`: the auditor's small PKI, kept in one folder.

ca.pem / ca.key                        the deployment's CA (keep ca.key offline)
coordinator.pem / coordinator.key      the coordinator, for HOST
auditor.pem / auditor.key              round administration
company-NAME.pem / company-NAME.key    one per company (`issue`: one-machine runs and tests)

issued.json                            the CA's record: every certificate issued (serial, key, expiry)
revoked.json / crl.pem                 what `revoke` revoked, and the signed CRL it publishes

In a deployment a company's key never leaves it: `request_certificate` writes
company-NAME.key and company-NAME.csr in the company's own folder, the auditor
answers the .csr with `sign_request` (company-NAME.pem), and the parties pin
each other by `fingerprint`. A renewal keeps the key (`request_certificate(renew=True)`),
so pins survive it; a lost key is revoked (`revoke`) and the CRL copied to every party.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    verify_certificate,
    write_certified_key,
    write_key_file,
    write_public_file,
)
from monoculture.core.revocation import DEFAULT_CRL_DAYS, REASONS, Revocation, build_crl
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
    for record in (ISSUED_FILE, REVOKED_FILE, CRL_FILE):  # the old CA's records mean nothing now
        (folder / record).unlink(missing_ok=True)
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
    material = issue(ca, identity, host=host, days=days, more_hosts=more_hosts)
    cert_path, key_path = write_certified_key(folder, _stem(identity), material)
    _record_issued(folder, identity, material.certificate_pem)
    return TlsFiles(folder / "ca.pem", cert_path, key_path)


@dataclass(frozen=True)
class RequestFiles:
    key_file: Path
    request_file: Path
    fingerprint: str  # of the key: the certificate the auditor returns must show the same


def request_certificate(folder: Path, company: str, force: bool = False, renew: bool = False) -> RequestFiles:
    """The company's side: a new key (mode 0600) and a CSR for it in `folder`; with `renew`, a
    CSR for the key already there (a renewal: the fingerprint its peers pin stays)."""
    identity = Identity(Role.COMPANY, company)
    stem = _stem(identity)
    key_path, request_path = folder / f"{stem}.key", folder / f"{stem}.csr"
    if renew:
        refuse_symlinks(request_path)
        key_pem = read_pem(key_path)
        write_public_file(request_path, create_request(identity, key_pem).request_pem)
        return RequestFiles(key_path, request_path, private_key_fingerprint(key_pem))
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


# The CA's record of the certificates it issued: per identity ("company NAME"), the key it holds
# now (fingerprint, not_after: what stops a second key) and every certificate (serial, key,
# expiry: what `revoke` revokes by name or fingerprint).
ISSUED_FILE = "issued.json"
REVOKED_FILE = "revoked.json"  # the CA's revocations and the number of the last CRL published
CRL_FILE = "crl.pem"  # the signed CRL, which the operator copies to every party


@dataclass(frozen=True)
class IssuedCertificate:
    identity: str  # "company NAME", "coordinator HOST", "auditor NAME"
    serial: int
    fingerprint: str
    not_after: dt.datetime


def _read_record(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the CA's record of {what} cannot be read ({exc})", where=str(path),
            hint="restore it from a backup",
        ) from None  # fmt: skip


def _write_record(folder: Path, name: str, record: object) -> None:
    tmp = folder / (name + ".tmp")
    write_public_file(tmp, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    tmp.replace(folder / name)


def _issued(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / ISSUED_FILE
    record = _read_record(path, "issued certificates") or {}
    try:
        return {
            str(name): {
                "fingerprint": str(entry["fingerprint"]),
                "not_after": str(entry["not_after"]),
                "certificates": [
                    {key: str(cert[key]) for key in ("serial", "fingerprint", "not_after")}
                    for cert in entry.get("certificates", [])
                ],
            }
            for name, entry in record.items()
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"the CA's record of issued certificates cannot be read ({exc!r} missing or malformed)",
            where=str(path), hint="restore it from a backup: it is what stops a second key under a name",
        ) from None  # fmt: skip


def issued_certificates(folder: Path) -> list[IssuedCertificate]:
    """Every certificate the CA in `folder` recorded issuing."""
    try:
        return [
            IssuedCertificate(
                name,
                int(cert["serial"], 16),
                cert["fingerprint"],
                dt.datetime.fromisoformat(cert["not_after"]),
            )
            for name, entry in _issued(folder).items()
            for cert in entry["certificates"]
        ]
    except ValueError as exc:
        raise ConfigError(
            f"the CA's record of issued certificates holds a malformed value ({exc})",
            where=str(folder / ISSUED_FILE), hint="restore it from a backup",
        ) from None  # fmt: skip


def _record_issued(folder: Path, identity: Identity, certificate_pem: bytes) -> None:
    """Record a certificate: the key its identity holds now, and one more certificate of it."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    fingerprint_ = public_key_fingerprint(certificate_pem)
    not_after = certificate.not_valid_after_utc.isoformat()
    record = _issued(folder)
    entry = record.setdefault(str(identity), {"certificates": []})
    entry.update(fingerprint=fingerprint_, not_after=not_after)
    entry["certificates"].append(
        {"serial": f"{certificate.serial_number:x}", "fingerprint": fingerprint_, "not_after": not_after}
    )
    _write_record(folder, ISSUED_FILE, record)


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
    _refuse_revoked_key(folder, identity, fingerprint_)
    _refuse_second_key(folder, identity, fingerprint_, rotate)
    cert_path = out if out is not None else request_path.parent / f"{_stem(identity)}.pem"
    write_public_file(cert_path, certificate_pem)
    _record_issued(folder, identity, certificate_pem)
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


# ------------------------------------------------------------ revocation


@dataclass(frozen=True)
class PublishedCrl:
    path: Path
    number: int
    revoked: int  # certificates it lists
    next_update: dt.datetime


@dataclass(frozen=True)
class Revoked:
    newly: list[IssuedCertificate]  # revoked by this call
    already: list[IssuedCertificate]  # revoked before
    crl: PublishedCrl


def _revocation_record(folder: Path) -> dict[str, Any]:
    path = folder / REVOKED_FILE
    record = _read_record(path, "revocations") or {"crl_number": 0, "revoked": []}
    try:
        return {
            "crl_number": int(record["crl_number"]),
            "revoked": [
                {
                    key: str(entry[key])
                    for key in ("serial", "identity", "fingerprint", "revoked_at", "reason")
                }
                for entry in record["revoked"]
            ],
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"the CA's record of revocations cannot be read ({exc!r} missing or malformed)", where=str(path),
            hint="restore it from a backup: a CRL published without it would un-revoke certificates",
        ) from None  # fmt: skip


def publish_crl(folder: Path, days: int = DEFAULT_CRL_DAYS, out: Path | None = None) -> PublishedCrl:
    """Sign and write the CA's CRL (default `folder`/crl.pem) from its record of revocations,
    with the next CRL number; valid for `days`: publish again before then."""
    ca = _read_ca(folder)
    record = _revocation_record(folder)
    record["crl_number"] += 1
    entries = [
        Revocation(int(e["serial"], 16), dt.datetime.fromisoformat(e["revoked_at"]), e["reason"])
        for e in record["revoked"]
    ]
    now = dt.datetime.now(dt.UTC)
    crl_pem = build_crl(ca, entries, record["crl_number"], days, now)
    _write_record(folder, REVOKED_FILE, record)  # the number is never used twice
    path = out if out is not None else folder / CRL_FILE
    refuse_symlinks(path)
    tmp = path.with_name(path.name + ".tmp")
    write_public_file(tmp, crl_pem)
    tmp.replace(path)  # atomic: a party re-reading it never sees half a list
    return PublishedCrl(path, record["crl_number"], len(entries), now + dt.timedelta(days=days))


def _unexpired(certificates: Iterable[IssuedCertificate]) -> list[IssuedCertificate]:
    now = dt.datetime.now(dt.UTC)
    return [cert for cert in certificates if cert.not_after > now]


_BY_FILE = "revoke it by its file (--certificate FILE) or its serial (--serial HEX)"


def _certificate_target(folder: Path, certificate: Path) -> IssuedCertificate:
    pem = read_pem(certificate)
    try:
        identity = verify_certificate(pem, read_pem(folder / "ca.pem"))
    except MonocultureError as exc:
        raise ConfigError(
            exc.message, where=str(certificate), hint="give a certificate this CA issued"
        ) from None
    parsed = x509.load_pem_x509_certificate(pem)
    return IssuedCertificate(str(identity), parsed.serial_number, public_key_fingerprint(pem),
                             parsed.not_valid_after_utc)  # fmt: skip


def revocation_targets(
    folder: Path,
    *,
    identity: Identity | None = None,
    serial: int | None = None,
    fingerprint_: str | None = None,
    certificate: Path | None = None,
) -> list[IssuedCertificate]:
    """The certificates one `revoke` names: every unexpired one of `identity` or of the key
    `fingerprint_` in the CA's record, the one with `serial`, or the one in `certificate`."""
    _read_ca(folder)
    if certificate is not None:
        return [_certificate_target(folder, certificate)]
    recorded = issued_certificates(folder)
    if serial is not None:
        found = [cert for cert in recorded if cert.serial == serial]
        return found or [IssuedCertificate("(not in the CA's record)", serial, "", dt.datetime.now(dt.UTC))]
    if identity is not None:
        found, named = _unexpired(c for c in recorded if c.identity == str(identity)), str(identity)
    elif fingerprint_ is not None:
        found, named = _unexpired(c for c in recorded if c.fingerprint == fingerprint_), f"key {fingerprint_}"
    else:
        raise ConfigError(
            "name what to revoke", hint="a company NAME, --serial, --fingerprint or --certificate"
        )
    if not found:
        raise ConfigError(f"the CA's record ({ISSUED_FILE}) holds no unexpired certificate of {named}",
                          where=str(folder), hint=_BY_FILE)  # fmt: skip
    return found


def revoke(
    folder: Path,
    targets: list[IssuedCertificate],
    reason: str = "key-compromise",
    days: int = DEFAULT_CRL_DAYS,
    out: Path | None = None,
) -> Revoked:
    """Record `targets` as revoked (`reason`: a key of core.revocation.REASONS), forget the key
    they hold as their name's current one (a new key needs no --rotate; the revoked key is
    never certified again), and publish the CRL."""
    if reason not in REASONS:
        raise ConfigError(f"unknown reason {reason!r}", hint=f"one of {', '.join(REASONS)}")
    _read_ca(folder)
    record = _revocation_record(folder)
    known = {entry["serial"] for entry in record["revoked"]}
    newly = [cert for cert in targets if f"{cert.serial:x}" not in known]
    now = dt.datetime.now(dt.UTC).isoformat()
    for cert in newly:
        record["revoked"].append(
            {"serial": f"{cert.serial:x}", "identity": cert.identity, "fingerprint": cert.fingerprint,
             "revoked_at": now, "reason": reason}
        )  # fmt: skip
    _write_record(folder, REVOKED_FILE, record)
    _forget_keys(folder, {cert.fingerprint for cert in newly if cert.fingerprint})
    already = [cert for cert in targets if cert not in newly]
    return Revoked(newly, already, publish_crl(folder, days, out))


def _forget_keys(folder: Path, fingerprints: set[str]) -> None:
    record = _issued(folder)
    now = dt.datetime.now(dt.UTC).isoformat()
    changed = False
    for entry in record.values():
        if entry["fingerprint"] in fingerprints:
            entry.update(fingerprint="revoked", not_after=now)
            changed = True
    if changed:
        _write_record(folder, ISSUED_FILE, record)


def _refuse_revoked_key(folder: Path, identity: Identity, fingerprint_: str) -> None:
    """A key whose certificate was revoked is never certified again (its holder may not be the
    company any more)."""
    for entry in _revocation_record(folder)["revoked"]:
        if entry["fingerprint"] == fingerprint_:
            raise ConfigError(
                f"the key of this request ({fingerprint_}) was revoked on {entry['revoked_at'][:10]} "
                f"({entry['identity']}, {entry['reason']}): it is never certified again",
                hint=f"{identity.name} makes a new key (`monoculture certs request --force`) and "
                "sends that request",
            )
