"""The coordinator's TOML configuration (deploy/coordinator.toml shows every key)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monoculture.core.config import Key, check_sections, read_toml, resolve_path, section
from monoculture.core.errors import ConfigError

_SCHEMA = {
    "listen": Key(str, "127.0.0.1:50051"),
    "port_file": Key(str, ""),
    "record_dir": Key(str, ""),
    "max_workers": Key(int, 32),
}


@dataclass(frozen=True)
class CoordinatorConfig:
    listen: str = "127.0.0.1:50051"
    port_file: Path | None = None  # where to write the bound port (for listen port 0)
    record_dir: Path | None = None  # test aid: keep a copy of everything stored
    max_workers: int = 32


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    document = read_toml(path)
    check_sections(path, document, {"coordinator"})
    values = section(path, document, "coordinator", _SCHEMA)
    if values["max_workers"] < 4:
        raise ConfigError("[coordinator] max_workers must be at least 4", where=str(path))
    return CoordinatorConfig(
        listen=values["listen"],
        port_file=resolve_path(path, values["port_file"]) if values["port_file"] else None,
        record_dir=resolve_path(path, values["record_dir"]) if values["record_dir"] else None,
        max_workers=values["max_workers"],
    )
