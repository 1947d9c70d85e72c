"""`monoculture certs`: the auditor's small PKI, kept in one folder.

ca.pem / ca.key                        the deployment's CA (keep ca.key offline)
coordinator.pem / coordinator.key      the coordinator, for HOST
auditor.pem / auditor.key              round administration
company-NAME.pem / company-NAME.key    one per company
"""

from __future__ import annotations

from pathlib import Path

from monoculture.core.errors import ConfigError
from monoculture.core.identity import (
    DEFAULT_DAYS,
    Identity,
    Role,
    create_ca,
    issue,
    read_certified_key,
    write_certified_key,
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


def issue_certificate(
    folder: Path, identity: Identity, host: str | None = None, days: int = DEFAULT_DAYS
) -> TlsFiles:
    if not (folder / "ca.key").exists():
        raise ConfigError("no CA here", where=str(folder), hint="run `monoculture certs init` first")
    ca = read_certified_key(folder / "ca.pem", folder / "ca.key")
    cert_path, key_path = write_certified_key(
        folder, _stem(identity), issue(ca, identity, host=host, days=days)
    )
    return TlsFiles(folder / "ca.pem", cert_path, key_path)


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
