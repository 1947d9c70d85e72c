"""Protocol names every party shares (docs/PROTOCOL.md, "States"): the phases a
round goes through, the ring order, which company names are allowed, and which
group labels a round may declare.

The coordinator's round state machine lives in `monoculture.coordinator.state`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from monoculture.core.errors import MalformedRequest, ProtocolError

# The protocol this code speaks (docs/PROTOCOL.md): 2 = masked failure tags; 3 = with DP
# dummies a list's padded size comes with its hop-0 upload and the seeds of regions of three
# or more with the key confirmations (and re-randomised tags as a round option). A v1 party
# sends no version (0); every other version is refused by name.
PROTOCOL_VERSION = 3
# gRPC trailing metadata of a RESOURCE_EXHAUSTED refusal that names when the same call would be
# admitted (a rate limit): seconds, as text. Clients wait that long and call again.
RETRY_AFTER_METADATA = "monoculture-retry-after-s"
MAX_PARTIES = 16
COMPANY_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# A group code travels in the groups company's failure tags as plaintext byte = bit | code << 1
# (docs/PROTOCOL.md, "Groups"): codes 0..126, so a round declares at most 127 labels.
MAX_GROUP_LABELS = 127
MAX_GROUP_LABEL_LENGTH = 64


class RoundPhase(StrEnum):
    """Phases of a round (docs/PROTOCOL.md, "States")."""

    OPEN = "OPEN"  # companies check their input and enrol their signed per-round keys
    CONFIRMING = "CONFIRMING"  # every company checks every peer's keys and confirms its pair keys
    RELAYING = "RELAYING"  # lists travel the ring from hop 0; each hop re-blinds and re-shuffles
    COUNTING = "COUNTING"  # all lists fully blinded; the coordinator matches and counts
    COMPLETE = "COMPLETE"  # the result is published
    FAILED = "FAILED"  # ended without a result; the reason names the party


TERMINAL_PHASES = frozenset({RoundPhase.COMPLETE, RoundPhase.FAILED})


ROUND_ID = re.compile(r"r-[0-9a-f]{16}")


def check_protocol_version(version: int, party: str) -> None:
    """Refuse a party that speaks another protocol version, naming it and both versions."""
    if version != PROTOCOL_VERSION:
        spoken = f"v{version}" if version else "v1"
        raise MalformedRequest(
            f"{party} speaks protocol {spoken}; this side speaks v{PROTOCOL_VERSION}",
            where=party,
            hint="run the same monoculture release on the coordinator and every company",
        )


def check_round_id(round_id: str, sender: str = "") -> str:
    """A round id is `r-` and 16 hex digits (the coordinator's new_round_id); anything else is
    refused before it is used (it names files in a company's state folder)."""
    if not ROUND_ID.fullmatch(round_id):
        raise MalformedRequest(
            f"malformed round id {round_id[:40]!r}: expected r- and 16 hex digits", where=sender
        )
    return round_id


def check_company_name(name: str) -> None:
    """Company names become pattern labels and config keys: keep them plain."""
    if not name or len(name) > 64 or not set(name) <= COMPANY_NAME_CHARS:
        raise ProtocolError(
            f"company name {name!r} is not allowed",
            hint="use 1-64 characters from a-z, 0-9, '-', '_' and '.'",
        )


def check_groups(roster: Sequence[str], groups_from: str, labels: Sequence[str]) -> None:
    """The groups a round declares: `groups_from` is on the roster, and the labels are 1 to
    MAX_GROUP_LABELS distinct strings of 1-64 printable characters without surrounding spaces
    (label i is group code i). No groups: both empty."""
    if not groups_from and not labels:
        return
    if not groups_from:
        raise ProtocolError(
            "group labels need the company whose data holds the groups", hint="name it: --groups-from COMPANY"
        )
    if groups_from not in roster:
        raise ProtocolError(
            f"groups come from {groups_from!r}, which is not on the roster ({', '.join(roster)})",
            hint="--groups-from names one of the round's companies",
        )
    if not labels:
        raise ProtocolError(
            f"groups from {groups_from} need the labels the round declares",
            hint="list them: --group-labels a,b,c (their order is the order of the group codes)",
        )
    if len(labels) > MAX_GROUP_LABELS:
        raise ProtocolError(
            f"{len(labels)} group labels declared; a round holds at most {MAX_GROUP_LABELS}",
            hint="merge small groups (group codes share the failure tag's one plaintext byte)",
        )
    for label in labels:
        if not 1 <= len(label) <= MAX_GROUP_LABEL_LENGTH or label != label.strip() or not label.isprintable():
            raise ProtocolError(
                f"group label {label[:80]!r} is not allowed",
                hint=f"use 1-{MAX_GROUP_LABEL_LENGTH} printable characters, no leading or trailing spaces",
            )
    if len(set(labels)) != len(labels):
        repeated = next(label for label in labels if labels.count(label) > 1)
        raise ProtocolError(f"group label {repeated!r} is declared twice")


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
