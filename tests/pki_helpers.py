"""A throwaway PKI for tests that start real daemons over mTLS."""

from __future__ import annotations

from pathlib import Path

from monoculture.core.identity import Identity, Role
from monoculture.pki import local_deployment, tls_files
from monoculture.transport import TlsFiles


class LocalPki:
    def __init__(self, folder: Path, companies: list[str]) -> None:
        self.folder = folder
        local_deployment(folder, companies)

    def company(self, name: str) -> TlsFiles:
        return tls_files(self.folder, Identity(Role.COMPANY, name))

    def coordinator(self) -> TlsFiles:
        return tls_files(self.folder, Identity(Role.COORDINATOR, "127.0.0.1"))

    def auditor(self) -> TlsFiles:
        return tls_files(self.folder, Identity(Role.AUDITOR, "auditor"))
