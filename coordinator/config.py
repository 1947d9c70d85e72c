"""The coordinator's TOML configuration (deploy/coordinator.toml shows every key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from monoculture.analysis.release import ReleasePolicy
from monoculture.core.config import Key, check_sections, read_toml, resolve_path, section
from monoculture.core.errors import ConfigError
from monoculture.transport import TlsFiles

_COORDINATOR = {
    "listen": Key(str, "127.0.0.1:50051"),
    "port_file": Key(str, ""),
    "record_dir": Key(str, ""),
    "max_workers": Key(int, 32),
    "database": Key(str, "coordinator-state/coordinator.sqlite"),
}
_TLS = {"ca_file": Key(str, ""), "cert_file": Key(str, ""), "key_file": Key(str, "")}
_LIMITS = {
    "min_list_size": Key(int, 1),
    "max_list_size": Key(int, 10_000_000),
    "max_chunks_per_list": Key(int, 4096),
    "max_rounds_in_flight": Key(int, 16),
    "deadline_seconds": Key(float, 3600.0),
}
_RELEASE = {
    "min_shared_individuals": Key(int, 0),
    "min_cell_count": Key(int, 0),
    "dp_mechanism": Key(str, "none"),
    "dp_epsilon": Key(float, 0.0),
    "dp_delta": Key(float, 0.0),
}


@dataclass(frozen=True)
class Limits:
    """Bounds on what one company may send and how many rounds may run."""

    min_list_size: int = 1  # guards the probe attack: no company may enrol a handful of ids
    max_list_size: int = 10_000_000
    max_chunks_per_list: int = 4096
    max_rounds_in_flight: int = 16
    deadline_seconds: float = 3600.0  # a party must finish each step this long after it can start


@dataclass(frozen=True)
class CoordinatorConfig:
    listen: str = "127.0.0.1:50051"
    port_file: Path | None = None  # where to write the bound port (for listen port 0)
    record_dir: Path | None = None  # test aid: keep a copy of everything stored
    max_workers: int = 32
    database: Path = Path("coordinator-state/coordinator.sqlite")
    tls: TlsFiles | None = None  # None only with --insecure
    limits: Limits = field(default_factory=Limits)
    release: ReleasePolicy = field(default_factory=ReleasePolicy)


def _tls(path: Path, values: dict[str, str]) -> TlsFiles | None:
    given = [k for k, v in values.items() if v]
    if not given:
        return None
    if len(given) != 3:
        raise ConfigError("[tls] needs ca_file, cert_file and key_file together", where=str(path))
    return TlsFiles(*(resolve_path(path, values[k]) for k in ("ca_file", "cert_file", "key_file")))


def load_coordinator_config(path: Path, *, insecure: bool = False) -> CoordinatorConfig:
    document = read_toml(path)
    check_sections(path, document, {"coordinator", "tls", "limits", "release"})
    values = section(path, document, "coordinator", _COORDINATOR)
    tls = _tls(path, section(path, document, "tls", _TLS))
    if tls is None and not insecure:
        raise ConfigError(
            "no [tls] files: the coordinator needs its certificate, key and the CA",
            where=str(path),
            hint="create them with `monoculture certs init` and "
            "`monoculture certs issue --coordinator HOST`, or pass --insecure (plaintext, loopback only)",
        )
    limits = Limits(**section(path, document, "limits", _LIMITS))
    if not 1 <= limits.min_list_size <= limits.max_list_size or limits.max_rounds_in_flight < 1:
        raise ConfigError(
            "[limits] need 1 <= min_list_size <= max_list_size, max_rounds_in_flight >= 1", where=str(path)
        )
    release_values = section(path, document, "release", _RELEASE)
    release = ReleasePolicy(
        release_values["min_shared_individuals"], release_values["min_cell_count"],
        release_values["dp_mechanism"], release_values["dp_epsilon"], release_values["dp_delta"],
    )  # fmt: skip
    try:
        release.check()
    except ConfigError as exc:
        raise ConfigError(f"[release] {exc.message}", where=str(path), hint=exc.hint) from None
    if values["max_workers"] < 4:
        raise ConfigError("[coordinator] max_workers must be at least 4", where=str(path))
    return CoordinatorConfig(
        listen=values["listen"],
        port_file=resolve_path(path, values["port_file"]) if values["port_file"] else None,
        record_dir=resolve_path(path, values["record_dir"]) if values["record_dir"] else None,
        max_workers=values["max_workers"],
        database=resolve_path(path, values["database"]),
        tls=None if insecure else tls,
        limits=limits,
        release=release,
    )
