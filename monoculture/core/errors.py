"""One error base class whose instances explain themselves to a person."""

from __future__ import annotations


class MonocultureError(Exception):
    """An expected failure: bad input, a refused request, a failed round.

    `where` names the file, line, field or party at fault; `hint` says what to do.
    The CLI prints `diagnostics()` and exits non-zero, without a traceback.
    """

    def __init__(self, message: str, *, where: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def for_party(self, party: str) -> MonocultureError:
        """Name the party whose file or step this error is about (returns self)."""
        self.where = f"company {party}: {self.where}" if self.where else f"company {party}"
        return self

    def diagnostics(self) -> str:
        lines = [f"error: {self.where}: {self.message}" if self.where else f"error: {self.message}"]
        if self.hint:
            lines.append(f"  what to do: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InputError(MonocultureError):
    """A company's input file cannot be used as it is."""


class ConfigError(MonocultureError):
    """A configuration file or command-line option is wrong."""


class ProtocolError(MonocultureError):
    """A party sent something the protocol does not allow at this point."""


class NotPermitted(ProtocolError):
    """The caller's identity does not allow this request."""


class UnknownRound(ProtocolError):
    """No such round, or none the caller takes part in (the two look the same)."""


class LimitExceeded(ProtocolError):
    """A configured limit (list size, chunks, rounds in flight) would be exceeded. `retry_after`:
    seconds after which the same call would be admitted (a rate limit), or None."""

    def __init__(
        self, message: str, *, where: str = "", hint: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, where=where, hint=hint)
        self.retry_after = retry_after


class RoundFailed(MonocultureError):
    """A round ended without a result; `where` names the party at fault."""


class MalformedRequest(ProtocolError):
    """A request that can never be valid, whatever the round's state (e.g. an empty upload)."""
