"""The company daemon's TOML configuration (deploy/client.toml shows every key)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monoculture.core.config import Key, check_sections, read_toml, resolve_path, section
from monoculture.core.dataset import DEFAULT_MAX_ID_LENGTH, DuplicatePolicy, InputSpec
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.core.protocol import check_company_name

_CLIENT = {
    "company": Key(str, required=True),
    "coordinator": Key(str, required=True),
    "poll_seconds": Key(float, 10.0),
    "stats_file": Key(str, ""),
    "exit_after_rounds": Key(int, 0),
}
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
    poll_seconds: float = 10.0
    stats_file: Path | None = None  # JSON lines of per-round EC operation counts
    exit_after_rounds: int = 0  # 0: serve forever


def load_client_config(path: Path) -> ClientConfig:
    document = read_toml(path)
    check_sections(path, document, {"client", "data"})
    client = section(path, document, "client", _CLIENT)
    data = section(path, document, "data", _DATA)
    try:
        check_company_name(client["company"])
    except MonocultureError as exc:
        raise ConfigError(f"[client] company: {exc.message}", where=str(path), hint=exc.hint) from None
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
        poll_seconds=client["poll_seconds"],
        stats_file=resolve_path(path, client["stats_file"]) if client["stats_file"] else None,
        exit_after_rounds=client["exit_after_rounds"],
        data=InputSpec(
            path=resolve_path(path, data["path"]),
            id_column=data["id_column"],
            failure_column=data["failure_column"],
            file_format=data["format"],
            duplicates=policy,
            max_id_length=data["max_id_length"],
        ),
    )
