"""TOML configuration read with the standard library; unknown keys are refused."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monoculture.core.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """One allowed key: its type and default (None = required)."""

    kind: type
    default: Any = None
    required: bool = False


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file cannot be read ({exc})", where=str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML ({exc})", where=str(path)) from None


def check_sections(path: Path, document: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown section [{unknown[0]}]",
            where=str(path),
            hint=f"allowed sections: {', '.join(sorted(allowed))}",
        )


def section(path: Path, document: dict[str, Any], name: str, schema: dict[str, Key]) -> dict[str, Any]:
    """The keys of section `name`, typed and defaulted; unknown or mistyped keys are errors."""
    raw = document.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table", where=str(path))
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in [{name}]",
            where=str(path),
            hint=f"allowed keys: {', '.join(sorted(schema))}",
        )
    values: dict[str, Any] = {}
    for key, spec in schema.items():
        if key not in raw:
            if spec.required:
                raise ConfigError(f"[{name}] needs key {key!r}", where=str(path))
            values[key] = spec.default
            continue
        value = raw[key]
        if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, spec.kind) or (spec.kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"[{name}] {key} must be a {spec.kind.__name__}, got {type(value).__name__}",
                where=str(path),
            )
        values[key] = value
    return values


def resolve_path(config_path: Path, value: str) -> Path:
    """Paths in a config file are relative to the file's folder."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (config_path.parent / candidate).resolve()
