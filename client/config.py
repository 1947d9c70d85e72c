"""The company daemon's TOML configuration (deploy/client-*.toml show every key)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monoculture.core.config import Key, check_sections, read_toml, resolve_path, section
from monoculture.core.dataset import DEFAULT_MAX_ID_LENGTH, DuplicatePolicy, InputSpec
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.core.protocol import check_company_name
from monoculture.core.wire import CHUNK_ELEMENTS, MAX_CHUNK_ELEMENTS
from monoculture.transport import TlsFiles

_CLIENT = {
    "company": Key(str, required=True),
    "coordinator": Key(str, required=True),
    "poll_seconds": Key(float, 10.0),
    "stats_file": Key(str, ""),
    "exit_after_rounds": Key(int, 0),
    "chunk_elements": Key(int, CHUNK_ELEMENTS),
    "state_dir": Key(str, "client-state"),
    "retry_seconds": Key(float, 600.0),
    "workers": Key(int, 0),
}
_TLS = {"ca_file": Key(str, ""), "cert_file": Key(str, ""), "key_file": Key(str, "")}
_DATA = {
    "path": Key(str, required=True),
    "format": Key(str, "auto"),
    "id_column": Key(str, "id"),
    "failure_column": Key(str, "failed"),
    "duplicates": Key(str, DuplicatePolicy.REFUSE.value),
    "max_id_length": Key(int, DEFAULT_MAX_ID_LENGTH),
}


@dataclass(frozen=True)
class ClientConfig:
    company: str
    coordinator: str
    data: InputSpec
    tls: TlsFiles | None = None  # None only with --insecure
    poll_seconds: float = 10.0
    stats_file: Path | None = None  # JSON lines of per-round EC operation counts
    exit_after_rounds: int = 0  # 0: serve forever
    chunk_elements: int = CHUNK_ELEMENTS
    state_dir: Path = Path("client-state")  # sealed per-round keys, for restarts
    retry_seconds: float = 600.0  # how long to retry a step while the coordinator is unreachable
    workers: int = 0  # blinding worker processes; 0 = one per core, 1 = blind in the daemon itself


def _tls(path: Path, values: dict[str, str], insecure: bool) -> TlsFiles | None:
    given = [k for k, v in values.items() if v]
    if insecure:
        return None
    if len(given) != 3:
        raise ConfigError(
            "[tls] needs ca_file, cert_file and key_file",
            where=str(path),
            hint="get them from the auditor (`monoculture certs issue --company NAME`), "
            "or pass --insecure (plaintext, loopback only)",
        )
    return TlsFiles(*(resolve_path(path, values[k]) for k in ("ca_file", "cert_file", "key_file")))


def load_client_config(path: Path, *, insecure: bool = False) -> ClientConfig:
    document = read_toml(path)
    check_sections(path, document, {"client", "tls", "data"})
    client = section(path, document, "client", _CLIENT)
    data = section(path, document, "data", _DATA)
    tls = _tls(path, section(path, document, "tls", _TLS), insecure)
    try:
        check_company_name(client["company"])
    except MonocultureError as exc:
        raise ConfigError(f"[client] company: {exc.message}", where=str(path), hint=exc.hint) from None
    if not 1 <= client["chunk_elements"] <= MAX_CHUNK_ELEMENTS:
        raise ConfigError(f"[client] chunk_elements must be 1..{MAX_CHUNK_ELEMENTS}", where=str(path))
    try:
        policy = DuplicatePolicy(data["duplicates"])
    except ValueError:
        choices = ", ".join(p.value for p in DuplicatePolicy)
        raise ConfigError(
            f"[data] duplicates = {data['duplicates']!r} is not a policy",
            where=str(path),
            hint=f"choose one of {choices}",
        ) from None
    return ClientConfig(
        company=client["company"],
        coordinator=client["coordinator"],
        tls=tls,
        poll_seconds=client["poll_seconds"],
        stats_file=resolve_path(path, client["stats_file"]) if client["stats_file"] else None,
        exit_after_rounds=client["exit_after_rounds"],
        chunk_elements=client["chunk_elements"],
        state_dir=resolve_path(path, client["state_dir"]),
        retry_seconds=client["retry_seconds"],
        workers=client["workers"],
        data=InputSpec(
            path=resolve_path(path, data["path"]),
            id_column=data["id_column"],
            failure_column=data["failure_column"],
            file_format=data["format"],
            duplicates=policy,
            max_id_length=data["max_id_length"],
        ),
    )
