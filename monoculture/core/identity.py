"""Identities: the auditor's CA, certificates for companies, the coordinator and
the auditor, and what a certificate says about its holder.

A certificate names its holder's role and name in a URI subject alternative
name, `monoculture:<role>:<name>` (role: company, coordinator or auditor).
Keys are ECDSA P-256; private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from monoculture.core.errors import ConfigError, ProtocolError
from monoculture.core.protocol import check_company_name
from monoculture.core.sealing import link_refused, open_no_follow, write_secret_file

URI_PREFIX = "monoculture:"
DEFAULT_DAYS = 365


class Role(StrEnum):
    COMPANY = "company"
    COORDINATOR = "coordinator"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Identity:
    role: Role
    name: str

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key, as PEM."""

    certificate_pem: bytes
    private_key_pem: bytes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _read_key(private_key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the private key is not an EC key")
    return key


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create_ca(common_name: str = "monoculture auditor CA", days: int = DEFAULT_DAYS) -> CertifiedKey:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(certificate.public_bytes(serialization.Encoding.PEM), _private_pem(key))


def issue(
    ca: CertifiedKey,
    identity: Identity,
    *,
    host: str | None = None,
    days: int = DEFAULT_DAYS,
    not_before: dt.datetime | None = None,
    more_hosts: Sequence[str] = (),
) -> CertifiedKey:
    """A new key and a certificate for `identity` signed by the CA; `host` and `more_hosts` add
    DNS/IP names (coordinator). One-machine runs and tests: the CA's holder makes the key too
    (in a deployment a company makes its key with `create_request`, and the CA `certify`s it)."""
    key = _key()
    certificate_pem = certify(
        ca, identity, key.public_key(), host=host, days=days, not_before=not_before, more_hosts=more_hosts
    )
    return CertifiedKey(certificate_pem, _private_pem(key))


def certify(
    ca: CertifiedKey,
    identity: Identity,
    public_key: ec.EllipticCurvePublicKey,
    *,
    host: str | None = None,
    days: int = DEFAULT_DAYS,
    not_before: dt.datetime | None = None,
    more_hosts: Sequence[str] = (),
) -> bytes:
    """The certificate (PEM), signed by the CA, that gives `public_key` to `identity`:
    BasicConstraints ca=False, the `monoculture:<role>:<name>` URI SAN (plus `host` and
    `more_hosts`, each a DNS or IP name), EKU serverAuth and clientAuth for the coordinator,
    clientAuth otherwise."""
    if identity.role == Role.COMPANY:
        check_company_name(identity.name)
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem)
    ca_key = serialization.load_pem_private_key(ca.private_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the CA key is not an EC key")
    start = not_before or (_now() - dt.timedelta(minutes=5))
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"{URI_PREFIX}{identity.role}:{identity.name}")
    ]
    hosts = ([host] if host is not None else []) + list(more_hosts)
    names += dict.fromkeys(host_name(h) for h in hosts)  # each name once, in order
    # The coordinator serves, and calls its own health service as a client (`monoculture health`).
    usage = (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        if identity.role == Role.COORDINATOR
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def host_name(host: str) -> x509.GeneralName:
    """`host` as a subject alternative name: an IP address, or a DNS name (letters, digits and
    hyphens in dot-separated labels, as TLS clients match them); anything else is refused."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.lower().removesuffix(".").split(".")
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(
            f"{host!r} is not a host name or an IP address",
            hint="give the name the parties dial, such as coordinator.example.org, or its IP address",
        )
    return x509.DNSName(".".join(labels))


# ------------------------------------------------------------ requests (CSRs)


@dataclass(frozen=True)
class CertificateRequest:
    """A PKCS#10 request (PEM) and the private key (PEM) that signed it."""

    request_pem: bytes
    private_key_pem: bytes


def create_request(identity: Identity, private_key_pem: bytes | None = None) -> CertificateRequest:
    """A new key (or the key in `private_key_pem`: a renewal) and a request, signed by it, for a
    certificate naming `identity` (the company's side: the key never leaves it; the CA checks
    the request with `requested_identity` and answers with `certify`)."""
    if identity.role == Role.COMPANY:
        check_company_name(identity.name)
    key = _key() if private_key_pem is None else _read_key(private_key_pem)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"{URI_PREFIX}{identity.role}:{identity.name}")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return CertificateRequest(request.public_bytes(serialization.Encoding.PEM), _private_pem(key))


_REDO_REQUEST = "ask the company to run `monoculture certs request` again and send the .csr unchanged"


def requested_identity(request_pem: bytes) -> tuple[Identity, ec.EllipticCurvePublicKey]:
    """The company a request names and its key, once the request is checked: it is signed
    by the key it carries (P-256), and names exactly one monoculture identity, a company
    with a valid name. Anything else is a ConfigError saying what is wrong."""
    try:
        request = x509.load_pem_x509_csr(request_pem)
    except ValueError as exc:
        raise ConfigError(
            f"is not a certificate signing request ({exc})",
            hint="sign the .csr file that `monoculture certs request` wrote",
        ) from None
    public_key = request.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp256r1":
        raise ConfigError("the request's key is not an ECDSA P-256 key", hint=_REDO_REQUEST)
    if not request.is_signature_valid:
        raise ConfigError(
            "the request's signature does not verify: it was altered after it was made",
            hint=_REDO_REQUEST,
        )
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except (ValueError, x509.ExtensionNotFound, x509.DuplicateExtension):
        uris = []
    claimed = [uri for uri in uris if uri.startswith(URI_PREFIX)]
    if len(claimed) != 1:
        raise ConfigError(
            f"the request names {len(claimed)} monoculture identities; it must name exactly one",
            hint=_REDO_REQUEST,
        )
    role, _, name = claimed[0][len(URI_PREFIX) :].partition(":")
    if role != Role.COMPANY:
        raise ConfigError(
            f"the request asks for {claimed[0]!r}; `certs sign` signs company requests only",
            hint="the auditor issues the coordinator's and its own certificates with "
            "`monoculture certs issue --coordinator HOST` / `--auditor`",
        )
    try:
        check_company_name(name)
    except ProtocolError as exc:
        raise ConfigError(f"the request's {exc.message}", hint=exc.hint) from None
    return Identity(Role.COMPANY, name), public_key


def identity_of(certificate_pem: bytes) -> Identity:
    """The role and name a certificate gives its holder."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise ProtocolError(f"certificate names no monoculture identity ({exc})") from None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(URI_PREFIX):
            role, _, name = uri[len(URI_PREFIX) :].partition(":")
            try:
                return Identity(Role(role), name)
            except ValueError:
                break
    raise ProtocolError("certificate names no monoculture identity")


def verify_certificate(certificate_pem: bytes, ca_pem: bytes) -> Identity:
    """Check a peer's certificate was issued by our CA and is valid now; return its identity.

    Used for certificates relayed by the coordinator (the TLS layer checks the
    ones presented directly).
    """
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise ProtocolError(f"unreadable certificate ({exc})") from None
    ca_key = ca_cert.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey) or certificate.issuer != ca_cert.subject:
        raise ProtocolError("certificate was not issued by this deployment's CA")
    try:
        ca_key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ProtocolError("certificate was not issued by this deployment's CA") from None
    now = _now()
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ProtocolError("certificate is expired or not yet valid")
    return identity_of(certificate_pem)


EXPIRY_WARNING_DAYS = 30  # a daemon starting with less validity left than this says so


def expiry_warning(certificate_pem: bytes, now: dt.datetime | None = None) -> str | None:
    """What to say when a certificate expires within EXPIRY_WARNING_DAYS (or has expired), or
    None. Renew before then: a party whose certificate expires mid-round is refused by the TLS
    handshake and the round fails on its deadline."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    left = certificate.not_valid_after_utc - (now or _now())
    if left.total_seconds() <= 0:
        ended = certificate.not_valid_after_utc
        return f"the certificate {identity_of(certificate_pem)} has expired ({ended:%Y-%m-%d})"
    if left.days < EXPIRY_WARNING_DAYS:
        return (
            f"the certificate {identity_of(certificate_pem)} expires in {left.days} days "
            f"({certificate.not_valid_after_utc:%Y-%m-%d}): renew it (`monoculture certs request`, "
            "then the auditor's `certs sign`) before it does"
        )
    return None


FINGERPRINT_PREFIX = "sha256:"


def public_key_fingerprint(certificate_pem: bytes) -> str:
    """`sha256:HEX` of the certificate's public key (DER SubjectPublicKeyInfo).

    A company pins its peers by this (daemon `[peers]`): it names the key, so a
    certificate the auditor issues for another key under the same name does
    not match, whoever signed it.
    """
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as exc:
        raise ProtocolError(f"unreadable certificate ({exc})") from None
    return key_fingerprint(certificate.public_key())


def key_fingerprint(public_key: CertificatePublicKeyTypes) -> str:
    """`sha256:HEX` of a public key (DER SubjectPublicKeyInfo): what `public_key_fingerprint`
    gives for a certificate of that key."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return FINGERPRINT_PREFIX + digest.finalize().hex()


def private_key_fingerprint(private_key_pem: bytes) -> str:
    """`sha256:HEX` of the public half of a private key (PEM)."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("private key is not an EC key")
    return key_fingerprint(key.public_key())


def sign(private_key_pem: bytes, message: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("private key is not an EC key")
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def certificate_key(certificate_pem: bytes) -> ec.EllipticCurvePublicKey:
    """The EC public key a certificate holds (ProtocolError if it is unreadable or not EC)."""
    try:
        public = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except ValueError as exc:
        raise ProtocolError(f"unreadable certificate ({exc})") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ProtocolError("certificate key is not an EC key")
    return public


def verify_signature(certificate_pem: bytes, message: bytes, signature: bytes) -> None:
    try:
        certificate_key(certificate_pem).verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ProtocolError("signature does not verify against the certificate") from None


# ------------------------------------------------------------------ files


def write_certified_key(folder: Path, stem: str, material: CertifiedKey) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    refuse_symlinks(cert_path, key_path)
    write_key_file(key_path, material.private_key_pem)
    write_public_file(cert_path, material.certificate_pem)
    return cert_path, key_path


def write_key_file(path: Path, private_key_pem: bytes) -> None:
    """Write a private key: mode 0600 (also over an older, looser file), never through a link."""
    try:
        write_secret_file(path, private_key_pem)
    except OSError as exc:
        raise ConfigError(f"cannot write the key ({exc.strerror})", where=str(path)) from None


_PKI_FILES = "certificates, requests and keys are never written through one"


def refuse_symlinks(*paths: Path) -> None:
    """Refuse, before writing anything, to write any of `paths` through a symbolic link."""
    for path in paths:
        if path.is_symlink():
            raise link_refused(path, _PKI_FILES)


def write_public_file(path: Path, data: bytes) -> None:
    """Write a certificate or request (mode 0644), never through a symbolic link."""
    refuse_symlinks(path)
    try:
        descriptor = open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PKI_FILES, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write ({exc.strerror})", where=str(path)) from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_certified_key(cert_path: Path, key_path: Path) -> CertifiedKey:
    return CertifiedKey(read_pem(cert_path), read_pem(key_path))


def read_pem(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", where=str(path)) from None
    if b"-----BEGIN" not in data:
        raise ConfigError("is not a PEM file", where=str(path))
    return data
