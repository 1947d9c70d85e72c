"""Secrets at rest: files only their owner can read, and data sealed under a local key.

Used for the coordinator's round tag keys (beside its database) and a
company's round keys (in its state folder): AES-256-GCM with a random nonce,
under a 32-byte key from os.urandom kept in a mode-0600 file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from monoculture.core.errors import ConfigError

KEY_SIZE = 32
_NONCE_SIZE = 12


_LINK_HINT = "remove the link (and find out who made it), then run the command again"


def link_refused(path: Path, what: str, hint: str = _LINK_HINT) -> ConfigError:
    """The error for a symbolic link where a file was expected: `what` says what never goes
    through one (e.g. "a secret is never written through one")."""
    return ConfigError(f"is a symbolic link; {what}", where=str(path), hint=hint)


def open_no_follow(path: Path, flags: int, what: str, mode: int = 0o600, hint: str = _LINK_HINT) -> int:
    """`os.open` that never follows a symbolic link: a link at `path` is `link_refused`; any
    other OSError (FileNotFoundError, FileExistsError, ...) is the caller's."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_refused(path, what, hint) from None
        raise


def write_secret_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write `data` to a file created with mode 0600 (never readable by others, even briefly).

    Never through a symbolic link: a link at `path` is refused (ConfigError). Files
    are created with O_EXCL | O_NOFOLLOW. Replacing a file (not `exclusive`) writes a
    fresh 0600 file beside it and renames it over the old one: the result is 0600
    whatever the old file's mode, a hard link to the old file keeps the old bytes, and
    a crash leaves the old file or the new one, never half of one. `exclusive`
    refuses an existing file (FileExistsError).
    """
    what = "a secret is never written through one"
    if path.is_symlink():
        raise link_refused(path, what)
    target = path if exclusive else path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    descriptor = open_no_follow(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if target != path:
            if path.is_symlink():  # made meanwhile: the rename would replace it, but say so
                raise link_refused(path, what)
            os.replace(target, path)
    except BaseException:
        if target != path:
            target.unlink(missing_ok=True)
        raise


class LocalSealer:
    """Seals data under the key in `key_path`, creating the key on first use."""

    def __init__(self, key_path: Path) -> None:
        if not key_path.exists():
            write_secret_file(key_path, os.urandom(KEY_SIZE), exclusive=True)
        key = key_path.read_bytes()
        if len(key) != KEY_SIZE:
            raise ConfigError(f"sealing key must be {KEY_SIZE} bytes", where=str(key_path))
        self._aead = AESGCM(key)
        self._key_path = key_path

    def seal(self, data: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, data, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:], context)
        except InvalidTag:
            raise ConfigError(
                "sealed state does not open: altered, or sealed under another key", where=str(self._key_path)
            ) from None
