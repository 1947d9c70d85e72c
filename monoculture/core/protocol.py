"""Protocol names every party shares (docs/PROTOCOL.md, "States"): the phases a
round goes through, the ring order, and which company names are allowed.

The coordinator's round state machine lives in `monoculture.coordinator.state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from monoculture.core.errors import ProtocolError

MAX_PARTIES = 16
COMPANY_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class RoundPhase(StrEnum):
    """Phases of a round (docs/PROTOCOL.md, "States")."""

    OPEN = "OPEN"  # companies check their input and enrol their signed per-round keys
    RELAYING = "RELAYING"  # lists travel the ring from hop 0; each hop re-blinds and re-shuffles
    COUNTING = "COUNTING"  # all lists fully blinded; the coordinator matches and counts
    COMPLETE = "COMPLETE"  # the result is published
    FAILED = "FAILED"  # ended without a result; the reason names the party


TERMINAL_PHASES = frozenset({RoundPhase.COMPLETE, RoundPhase.FAILED})


def check_company_name(name: str) -> None:
    """Company names become pattern labels and config keys: keep them plain."""
    if not name or len(name) > 64 or not set(name) <= COMPANY_NAME_CHARS:
        raise ProtocolError(
            f"company name {name!r} is not allowed",
            hint="use 1-64 characters from a-z, 0-9, '-', '_' and '.'",
        )


@dataclass(frozen=True)
class Ring:
    """The ring order of a round: list i visits companies i, i+1, ..., i+k-1 (mod k)."""

    roster: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 2 <= len(self.roster) <= MAX_PARTIES:
            raise ProtocolError(
                f"a round needs 2 to {MAX_PARTIES} companies, got {len(self.roster)}",
                hint="name at least two companies (k = 1 gives H = 1 trivially)",
            )
        if len(set(self.roster)) != len(self.roster):
            raise ProtocolError("a company is named twice in the roster")
        for name in self.roster:
            check_company_name(name)

    @property
    def parties(self) -> int:
        return len(self.roster)

    @property
    def final_hop(self) -> int:
        return self.parties - 1

    def position(self, company: str) -> int:
        try:
            return self.roster.index(company)
        except ValueError:
            raise ProtocolError("not on this round's roster", where=company) from None

    def blinder(self, owner: str, hop: int) -> str:
        """The company that produces list `owner` at `hop` (hop 0: the owner itself)."""
        return self.roster[(self.position(owner) + hop) % self.parties]
