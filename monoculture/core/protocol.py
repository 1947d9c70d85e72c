"""The round's state machine (docs/PROTOCOL.md, "States"), without any I/O.

The coordinator keeps one `RoundState` per round and asks it what each
company should do next and whether an upload is allowed; `count_patterns`
turns the fully blinded lists into the 2^k pattern table.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from monoculture.core.errors import ProtocolError
from monoculture.core.metrics import PatternTable
from monoculture.core.psi_crypto import NONCE_SIZE, POINT_SIZE, CompanyTags, split_tags

MAX_PARTIES = 16
COMPANY_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class RoundPhase(StrEnum):
    """Phases of a round (docs/PROTOCOL.md, "States")."""

    OPEN = "OPEN"  # companies check their input and enrol their signed per-round keys
    RELAYING = "RELAYING"  # lists travel the ring from hop 0; each hop re-blinds and re-shuffles
    COUNTING = "COUNTING"  # all lists fully blinded; the coordinator matches and counts
    COMPLETE = "COMPLETE"  # the result is published
    FAILED = "FAILED"  # ended without a result; the reason names the party


TRANSITIONS: dict[RoundPhase, frozenset[RoundPhase]] = {
    RoundPhase.OPEN: frozenset({RoundPhase.RELAYING, RoundPhase.FAILED}),
    RoundPhase.RELAYING: frozenset({RoundPhase.COUNTING, RoundPhase.FAILED}),
    RoundPhase.COUNTING: frozenset({RoundPhase.COMPLETE, RoundPhase.FAILED}),
    RoundPhase.COMPLETE: frozenset(),
    RoundPhase.FAILED: frozenset(),
}

TERMINAL_PHASES = frozenset({RoundPhase.COMPLETE, RoundPhase.FAILED})


def new_round_id() -> str:
    return "r-" + secrets.token_hex(8)


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


@dataclass(frozen=True)
class Work:
    """One task for one company: join (enrol), or blind list `list_owner` at `hop`."""

    round_id: str
    list_owner: str
    hop: int
    join: bool = False


@dataclass
class RoundState:
    """What the coordinator knows about one round. No ids, no keys, no bits."""

    round_id: str
    ring: Ring
    min_list_size: int = 1
    deadline_seconds: float = 3600.0  # each step must be done this long after it can start
    opened_at: float = field(default_factory=time.time)
    phase: RoundPhase = RoundPhase.OPEN
    list_sizes: dict[str, int] = field(default_factory=dict)
    joined: set[str] = field(default_factory=set)  # JoinRound sent at least once
    done: set[tuple[str, int]] = field(default_factory=set)  # (owner, hop) uploaded
    done_at: dict[tuple[str, int], float] = field(default_factory=dict)
    relaying_since: float = 0.0
    failure_reason: str = ""
    failed_party: str = ""

    # ------------------------------------------------------------ persistence

    def to_json(self) -> str:
        """Everything needed to resume the round after a restart (no secrets, no data)."""
        return json.dumps({
            "round_id": self.round_id, "roster": list(self.ring.roster), "min_list_size": self.min_list_size,
            "deadline_seconds": self.deadline_seconds, "opened_at": self.opened_at, "phase": self.phase.value,
            "list_sizes": self.list_sizes, "joined": sorted(self.joined),
            "done_at": [[o, h, t] for (o, h), t in sorted(self.done_at.items())],
            "relaying_since": self.relaying_since,
            "failure_reason": self.failure_reason, "failed_party": self.failed_party,
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> RoundState:
        data: dict[str, Any] = json.loads(text)
        done_at = {(o, int(h)): float(t) for o, h, t in data["done_at"]}
        return cls(
            round_id=data["round_id"], ring=Ring(tuple(data["roster"])), min_list_size=data["min_list_size"],
            deadline_seconds=data["deadline_seconds"], opened_at=data["opened_at"],
            phase=RoundPhase(data["phase"]), list_sizes=dict(data["list_sizes"]), joined=set(data["joined"]),
            done=set(done_at), done_at=done_at, relaying_since=data["relaying_since"],
            failure_reason=data["failure_reason"], failed_party=data["failed_party"],
        )  # fmt: skip

    def advance(self, target: RoundPhase) -> None:
        if target not in TRANSITIONS[self.phase]:
            raise ProtocolError(f"round {self.round_id} cannot go from {self.phase} to {target}")
        self.phase = target

    def fail(self, reason: str, party: str = "") -> None:
        if self.phase in TERMINAL_PHASES:
            return
        self.failure_reason = reason
        self.failed_party = party
        self.advance(RoundPhase.FAILED)

    @property
    def hops_total(self) -> int:
        return self.ring.parties * self.ring.parties

    def enroll(self, company: str, list_size: int) -> None:
        self.ring.position(company)
        self._require_phase(RoundPhase.OPEN, company)
        if company in self.list_sizes:
            raise ProtocolError("already enrolled in this round", where=company)
        if list_size < self.min_list_size:
            raise ProtocolError(
                f"list of {list_size} records is below this round's minimum of {self.min_list_size}",
                where=company,
            )
        self.list_sizes[company] = list_size
        if len(self.list_sizes) == self.ring.parties:
            self.advance(RoundPhase.RELAYING)
            self.relaying_since = time.time()

    def check_upload(self, sender: str, owner: str, hop: int, list_size: int) -> None:
        """Refuse an upload the protocol does not expect now (raises ProtocolError)."""
        self.ring.position(sender)
        self.ring.position(owner)
        if not 0 <= hop <= self.ring.final_hop:
            raise ProtocolError(f"hop {hop} is outside 0..{self.ring.final_hop}", where=sender)
        self._require_phase(RoundPhase.RELAYING, sender)
        if self.ring.blinder(owner, hop) != sender:
            raise ProtocolError(
                f"list of {owner} at hop {hop} is {self.ring.blinder(owner, hop)}'s to produce",
                where=sender,
            )
        if (owner, hop) in self.done:
            raise ProtocolError(f"list of {owner} at hop {hop} was already uploaded", where=sender)
        if list_size != self.list_sizes[owner]:
            raise ProtocolError(
                f"list of {owner} has {self.list_sizes[owner]} elements, upload declares {list_size}",
                where=sender,
            )

    def check_download(self, company: str, owner: str, hop: int) -> None:
        """Only the next blinder may download a list, and never a fully blinded one."""
        if hop >= self.ring.final_hop:
            raise ProtocolError("fully blinded lists go to the coordinator only", where=company)
        self._require_phase(RoundPhase.RELAYING, company)
        if self.ring.blinder(owner, hop + 1) != company:
            raise ProtocolError(f"list of {owner} at hop {hop} is not yours to relay", where=company)
        if (owner, hop) not in self.done:
            raise ProtocolError(f"list of {owner} at hop {hop} is not complete", where=company)

    def record_upload(self, owner: str, hop: int) -> None:
        self.done.add((owner, hop))
        self.done_at[(owner, hop)] = time.time()
        if self.phase == RoundPhase.RELAYING and self.all_lists_final():
            self.advance(RoundPhase.COUNTING)

    def all_lists_final(self) -> bool:
        return all((o, self.ring.final_hop) in self.done for o in self.ring.roster)

    def next_work(self, company: str) -> Work | None:
        """The next task for `company`, or None when it has none now.

        A task stays on offer until it is done: a company asks for work only
        between tasks, so asking again while one is open means it lost it
        (a restart) and should do it again.
        """
        if self.phase == RoundPhase.OPEN and company not in self.list_sizes:
            self.ring.position(company)
            self.joined.add(company)
            return Work(self.round_id, company, 0, join=True)
        if self.phase != RoundPhase.RELAYING:
            return None
        for owner in self.ring.roster:
            hop = (self.ring.position(company) - self.ring.position(owner)) % self.ring.parties
            if self._ready(owner, hop) and (owner, hop) not in self.done:
                return Work(self.round_id, owner, hop)
        return None

    def _ready(self, owner: str, hop: int) -> bool:
        return hop == 0 or (owner, hop - 1) in self.done

    def overdue(self, now: float) -> tuple[str, str] | None:
        """(party, what it failed to do) for the first step past its deadline, else None."""
        if self.phase == RoundPhase.OPEN:
            for company in self.ring.roster:
                if company not in self.list_sizes and now - self.opened_at > self.deadline_seconds:
                    return company, "did not enrol"
        if self.phase == RoundPhase.RELAYING:
            for owner in self.ring.roster:
                for hop in range(self.ring.parties):
                    if (owner, hop) in self.done or not self._ready(owner, hop):
                        continue
                    since = self.relaying_since if hop == 0 else self.done_at[(owner, hop - 1)]
                    if now - since > self.deadline_seconds:
                        return self.ring.blinder(owner, hop), f"did not deliver list of {owner} at hop {hop}"
        return None

    def _require_phase(self, phase: RoundPhase, company: str) -> None:
        if self.phase != phase:
            raise ProtocolError(
                f"round {self.round_id} is {self.phase}, this step needs {phase}", where=company
            )


@dataclass(frozen=True)
class FinalList:
    """One fully blinded list as the coordinator received it."""

    owner: str
    tokens: bytes  # concatenated POINT_SIZE tokens
    tags: np.ndarray  # uint8, one TAG_SIZE row per token


@dataclass(frozen=True)
class _SortedList:
    """One final list, tokens sorted, with the way back to each token's tag."""

    tokens: np.ndarray  # sorted S33
    order: np.ndarray  # tokens[i] is the token at position order[i] of the received list
    tags: np.ndarray


def _sorted(final: FinalList) -> _SortedList:
    tokens = np.frombuffer(final.tokens, dtype=f"S{POINT_SIZE}")
    if len(tokens) != len(final.tags):
        raise ProtocolError("tokens and tags differ in number", where=f"list of {final.owner}")
    order = np.argsort(tokens, kind="stable")
    ordered = tokens[order]
    if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        raise ProtocolError("a token repeats within one list", where=f"list of {final.owner}")
    nonces = np.sort(np.ascontiguousarray(final.tags[:, :NONCE_SIZE]).view(f"V{NONCE_SIZE}").ravel())
    if len(nonces) > 1 and bool((nonces[1:] == nonces[:-1]).any()):
        raise ProtocolError("a failure tag repeats within one list", where=f"list of {final.owner}")
    return _SortedList(ordered, order, final.tags)


def _members(sorted_list: _SortedList, wanted: np.ndarray) -> np.ndarray:
    """Mask of the `wanted` tokens (sorted) that are in `sorted_list`."""
    at = np.searchsorted(sorted_list.tokens, wanted)
    at[at == len(sorted_list.tokens)] = 0
    return (
        np.asarray(sorted_list.tokens[at] == wanted)
        if len(sorted_list.tokens)
        else np.zeros(len(wanted), bool)
    )


def count_patterns(
    roster: Sequence[str], finals: Iterable[FinalList], openers: dict[str, CompanyTags]
) -> PatternTable:
    """Match tokens present in all k lists, open only their tags, count patterns.

    `finals` may be a generator: each list's raw bytes can go as soon as it is sorted.
    Nothing per token outlives this call.
    """
    by_owner: dict[str, _SortedList] = {}
    for final in finals:
        by_owner[final.owner] = _sorted(final)
        del final
    lists = [by_owner[owner] for owner in roster]
    shared = lists[0].tokens
    for other in lists[1:]:
        shared = shared[_members(other, shared)]
    index = np.zeros(len(shared), dtype=np.int64)
    for owner, sorted_list in zip(roster, lists, strict=True):
        positions = sorted_list.order[np.searchsorted(sorted_list.tokens, shared)]
        bits = openers[owner].open(split_tags(sorted_list.tags[positions].tobytes()))
        index = (index << 1) | bits.astype(np.int64)
    counts = np.bincount(index, minlength=2 ** len(roster))
    return PatternTable(tuple(roster), tuple(int(c) for c in counts))
