"""Certificate revocation: the CA's signed X.509 CRL, made and checked.

The auditor's CA revokes a certificate (a lost or stolen key) by publishing a CRL
(`monoculture certs revoke`, re-published by `certs crl` before its next update). Python
gRPC cannot check CRLs in the TLS layer, so each party checks them itself: the coordinator
every caller's certificate, a company daemon the coordinator's certificate and every peer
certificate it verifies signatures with. A CRL counts only when the deployment's CA signed
it and it is not past its next update; otherwise nothing can be known about revocations,
and the party refuses to go on (`RevocationListUnusable`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from monoculture.core.errors import ConfigError, NotPermitted
from monoculture.core.identity import CertifiedKey, identity_of

DEFAULT_CRL_DAYS = 30  # a published CRL is valid this long: re-publish (`certs crl`) before then
REASONS = {
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "unspecified": x509.ReasonFlags.unspecified,
}
_REPUBLISH = "the auditor re-publishes it with `monoculture certs crl` and the file is copied here again"


class CertificateRevoked(NotPermitted):
    """A party presented (or relayed) a certificate that the CA's CRL revokes."""


class RevocationListUnusable(ConfigError):
    """The CRL file does not verify against the CA, cannot be read, or is past its next update."""


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate, as the CA records and publishes it."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "key-compromise"  # a key of REASONS


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_crl(
    ca: CertifiedKey,
    revoked: Sequence[Revocation],
    number: int,
    days: int = DEFAULT_CRL_DAYS,
    now: dt.datetime | None = None,
) -> bytes:
    """The CA's CRL (PEM) listing `revoked`: this update now, next update `days` later, CRL
    number `number` (the CA raises it at every publication), signed by the CA's key."""
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem)
    ca_key = serialization.load_pem_private_key(ca.private_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the CA key is not an EC key")
    start = now or _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class RevocationList:
    """A CRL that verified against the deployment's CA: revoked serials and their dates."""

    revoked: Mapping[int, dt.datetime]
    last_update: dt.datetime
    next_update: dt.datetime
    number: int

    def check_current(self, now: dt.datetime | None = None) -> None:
        """RevocationListUnusable once past the next update: revocations since are unknown."""
        if (now or _now()) > self.next_update:
            raise RevocationListUnusable(
                "the certificate revocation list is past its next update "
                f"({self.next_update:%Y-%m-%d %H:%M} UTC): revocations since then are unknown",
                hint=_REPUBLISH,
            )

    def check(self, certificate_pem: bytes, who: str = "", now: dt.datetime | None = None) -> None:
        """CertificateRevoked (naming the certificate's identity and serial) if the CRL revokes
        `certificate_pem`; RevocationListUnusable if the CRL is stale. `who` names the party
        (else the certificate's identity)."""
        self.check_current(now)
        serial = certificate_serial(certificate_pem)
        since = self.revoked.get(serial)
        if since is not None:
            raise CertificateRevoked(
                f"the certificate of {who or identity_of(certificate_pem)} (serial {serial:x}) is revoked "
                f"since {since:%Y-%m-%d %H:%M} UTC by the CA's revocation list",
                hint="the auditor issues a new certificate (`monoculture certs request`, `certs sign`) "
                "and the party installs it",
            )


def certificate_serial(certificate_pem: bytes) -> int:
    """The serial number of a certificate (PEM)."""
    try:
        return x509.load_pem_x509_certificate(certificate_pem).serial_number
    except ValueError as exc:
        raise NotPermitted(f"unreadable certificate ({exc})") from None


def read_crl(crl_pem: bytes, ca_pem: bytes, now: dt.datetime | None = None) -> RevocationList:
    """The CRL in `crl_pem`, checked: issued by the CA in `ca_pem` (issuer name and signature),
    with a next update that has not passed. RevocationListUnusable saying what is wrong."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as exc:
        raise RevocationListUnusable(
            f"is not a certificate revocation list ({exc})",
            hint="give the crl.pem that `monoculture certs revoke` or `certs crl` wrote",
        ) from None
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = ca_cert.public_key()
    if (
        crl.issuer != ca_cert.subject
        or not isinstance(ca_key, ec.EllipticCurvePublicKey)
        or not crl.is_signature_valid(ca_key)
    ):
        raise RevocationListUnusable(
            "the certificate revocation list is not signed by this deployment's CA (forged, altered, or "
            "from another CA)",
            hint="copy the crl.pem that the auditor's CA published, unchanged",
        )
    next_update = crl.next_update_utc
    if next_update is None:
        raise RevocationListUnusable("the certificate revocation list has no next update", hint=_REPUBLISH)
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    checked = RevocationList(
        revoked={entry.serial_number: entry.revocation_date_utc for entry in crl},
        last_update=crl.last_update_utc,
        next_update=next_update,
        number=number,
    )
    checked.check_current(now)
    return checked
