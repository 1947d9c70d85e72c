"""TOML configuration, read and written with the standard library; unknown keys are refused.

A config file is a set of sections, each described by a frozen *section dataclass*: its
fields are the section's keys (str, int, float or bool), a field without a default is a
required key, and `field(metadata={"doc": ...})` is the comment written above the key. A
section may have a `check()` method raising ConfigError; it runs on reading and on writing,
so no file the dataclasses write can fail to load. The class docstring is the comment
written above the section.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from monoculture.core.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Section = TypeVar("Section", bound="DataclassInstance")

# The TOML types a key may have; TOML's dates, arrays and tables are not used.
SCALARS: tuple[type, ...] = (str, int, float, bool)


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed document at `path`; any failure is a ConfigError naming the file."""
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
    """Refuse a section not in `allowed` (a misspelt section would otherwise be ignored)."""
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown section [{unknown[0]}]",
            where=str(path),
            hint=f"allowed sections: {', '.join(sorted(allowed))}",
        )


def read_section(path: Path, document: dict[str, Any], name: str, kind: type[Section]) -> Section:
    """Section `name` of `document` as a `kind` instance, defaulted and checked.

    Unknown, missing required and mistyped keys are ConfigErrors naming the file, the
    section and the key. An int is accepted for a float; a bool is never an int.
    """
    raw = document.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table", where=str(path))
    keys = _keys(kind)
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in [{name}]",
            where=str(path),
            hint=f"allowed keys: {', '.join(sorted(keys))}",
        )
    values: dict[str, Any] = {}
    for key, (scalar, required) in keys.items():
        if key in raw:
            values[key] = _typed(path, name, key, scalar, raw[key])
        elif required:
            raise ConfigError(f"[{name}] needs key {key!r}", where=str(path))
    section = kind(**values)
    check_section(name, section, where=str(path))
    return section


def check_section(name: str, section: object, *, where: str = "") -> None:
    """Run the section's own `check()`, if it has one, naming the section (and `where`)."""
    check = getattr(section, "check", None)
    if check is None:
        return
    try:
        check()
    except ConfigError as exc:
        raise ConfigError(f"[{name}] {exc.message}", where=where or exc.where, hint=exc.hint) from None


def _keys(kind: type[DataclassInstance]) -> dict[str, tuple[type, bool]]:
    """Each field's name, its scalar type and whether the key is required."""
    hints = typing.get_type_hints(kind)
    keys: dict[str, tuple[type, bool]] = {}
    for spec in dataclasses.fields(kind):
        scalar = hints[spec.name]
        if scalar not in SCALARS:  # a mistake in the dataclass, not in a config file
            raise TypeError(f"{kind.__name__}.{spec.name}: a config key must be str, int, float or bool")
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        keys[spec.name] = (scalar, required)
    return keys


def _typed(path: Path, name: str, key: str, scalar: type, value: object) -> object:
    if scalar is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is a subclass of int in Python, but `workers = true` is a mistake in a config.
    if not isinstance(value, scalar) or (scalar is int and isinstance(value, bool)):
        raise ConfigError(
            f"[{name}] {key} must be a {scalar.__name__}, got {type(value).__name__}", where=str(path)
        )
    return value


def render_toml(sections: dict[str, object], *, comments: bool) -> str:
    """TOML text of section dataclass instances, by section name, every key written.

    Each section is checked first (see `check_section`). With `comments`, each section's
    docstring and each key's doc go above it as `#` lines.
    """
    for name, section in sections.items():
        if not isinstance(section, FreeTable):
            check_section(name, section)
    return "\n".join(_render_section(name, section, comments) for name, section in sections.items())


@dataclass(frozen=True)
class FreeTable:
    """A section whose keys are names chosen by the user (e.g. [peers]: company = fingerprint),
    with the comment written above it."""

    doc: str
    entries: Mapping[str, str]


def _render_section(name: str, section: object, comments: bool) -> str:
    if isinstance(section, FreeTable):
        lines = _comment(section.doc) if comments else []
        lines.append(f"[{name}]")
        lines += [f"{toml_value(key)} = {toml_value(value)}" for key, value in section.entries.items()]
        return "\n".join(lines) + "\n"
    if not dataclasses.is_dataclass(section) or isinstance(section, type):
        raise TypeError(f"[{name}]: expected a section dataclass instance, got {section!r}")
    lines = _comment(_section_doc(section)) if comments else []
    lines.append(f"[{name}]")
    for spec in dataclasses.fields(section):
        if comments:
            lines += _comment(spec.metadata.get("doc", ""))
        lines.append(f"{spec.name} = {toml_value(getattr(section, spec.name))}")
    return "\n".join(lines) + "\n"


def render_reference(sections: dict[str, object]) -> str:
    """Markdown reference of a config file's sections: each section's doc, then a table of its
    keys with their type, their default (or "required") and their doc."""
    return "\n".join(_reference_section(name, section) for name, section in sections.items())


def _reference_section(name: str, section: object) -> str:
    if isinstance(section, FreeTable):
        return f"#### `[{name}]`\n\n{_prose(section.doc)}\n"
    kind = type(section)
    lines = [f"#### `[{name}]`", ""]
    if doc := _section_doc(section):
        lines += [_prose(doc), ""]
    lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    hints = typing.get_type_hints(kind)
    for spec in dataclasses.fields(section):  # type: ignore[arg-type]
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        default = "required" if required else f"`{toml_value(_default(spec))}`"
        meaning = _prose(spec.metadata.get("doc", "")).replace("|", "\\|")
        lines.append(f"| `{spec.name}` | {hints[spec.name].__name__} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def _default(spec: dataclasses.Field[Any]) -> object:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    return spec.default_factory()  # type: ignore[operator]


def _prose(text: str) -> str:
    """A doc's lines joined into one paragraph (its line breaks were for the TOML comments)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _section_doc(section: object) -> str:
    doc = inspect.getdoc(section) or ""
    # dataclass() writes a signature as the docstring of a class without one: not a comment.
    return "" if doc.startswith(f"{type(section).__name__}(") else doc


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


def toml_value(value: object) -> str:
    """`value` (str, int, float or bool) as a TOML literal that reads back equal."""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for two things: TOML wants DEL escaped too,
        # and refuses the surrogate pairs JSON writes for characters beyond U+FFFF, so those
        # are written as they are (config files are UTF-8).
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, int | float):
        return repr(value)  # repr of a float keeps its point or exponent, and inf/nan are TOML's
    raise TypeError(f"not a TOML scalar: {value!r}")


def resolve_path(config_path: Path, value: str) -> Path:
    """Paths in a config file are relative to the file's folder."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (config_path.parent / candidate).resolve()


def optional_path(config_path: Path, value: str) -> Path | None:
    """A path key where "" means none."""
    return resolve_path(config_path, value) if value else None


def path_value(path: Path | None) -> str:
    """A path as written in a config file; "" for none (the reverse of `optional_path`)."""
    return "" if path is None else str(path)


@dataclasses.dataclass(frozen=True)
class TlsPaths:
    """The [tls] keys of either role: the PEM files of one party."""

    ca_file: str = dataclasses.field(default="", metadata={"doc": "The deployment's CA certificate."})
    cert_file: str = dataclasses.field(default="", metadata={"doc": "This party's certificate."})
    key_file: str = dataclasses.field(default="", metadata={"doc": "This party's private key."})
    crl_file: str = dataclasses.field(
        default="",
        metadata={
            "doc": 'The CA\'s certificate revocation list ("" = none), as `monoculture certs revoke` and\n'
            "`certs crl` publish it. When set, it must verify against the CA and not be past its next\n"
            "update, or this party refuses to go on; re-read when the file changes (docs/USAGE.md)."
        },
    )

    def given(self) -> list[str]:
        """The keys of the three PEM files (ca, cert, key) that name a file."""
        return [name for name in ("ca_file", "cert_file", "key_file") if getattr(self, name)]

    def resolved(self, config_path: Path) -> tuple[Path, Path, Path, Path | None]:
        """The files, relative to the config file's folder (the CRL: None when not set)."""
        return (
            resolve_path(config_path, self.ca_file),
            resolve_path(config_path, self.cert_file),
            resolve_path(config_path, self.key_file),
            optional_path(config_path, self.crl_file),
        )
