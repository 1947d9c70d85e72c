"""The round's state machine (docs/PROTOCOL.md, "States"), without any I/O.

The coordinator keeps one `RoundState` per round and asks it what each
company should do next and whether an upload is allowed. Time comes in as an
argument (`now`, seconds since the epoch), so the state machine is tested with
any clock.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from monoculture.core.dummies import DummyPlan, Padding, round_padding_level, sealed_seeds_size
from monoculture.core.errors import LimitExceeded, ProtocolError
from monoculture.core.protocol import PROTOCOL_VERSION, TERMINAL_PHASES, Ring, RoundPhase
from monoculture.core.wire import round_tag_size

TRANSITIONS: dict[RoundPhase, frozenset[RoundPhase]] = {
    RoundPhase.OPEN: frozenset({RoundPhase.CONFIRMING, RoundPhase.FAILED}),
    RoundPhase.CONFIRMING: frozenset({RoundPhase.RELAYING, RoundPhase.FAILED}),
    RoundPhase.RELAYING: frozenset({RoundPhase.COUNTING, RoundPhase.FAILED}),
    RoundPhase.COUNTING: frozenset({RoundPhase.COMPLETE, RoundPhase.FAILED}),
    RoundPhase.COMPLETE: frozenset(),
    RoundPhase.FAILED: frozenset(),
}


class ListTooSmall(ProtocolError):
    """A list below the round's minimum size (a probe-attack guard): the round fails naming
    the company, at enrolment or, with dummies, at its key confirmation."""


def new_round_id() -> str:
    return "r-" + secrets.token_hex(8)


@dataclass(frozen=True)
class Work:
    """One task for one company: join (enrol), confirm its pair keys, or blind list
    `list_owner` at `hop`."""

    round_id: str
    list_owner: str
    hop: int
    join: bool = False
    confirm: bool = False


@dataclass
class RoundState:
    """What the coordinator knows about one round. No ids, no keys, no bits."""

    round_id: str
    ring: Ring
    min_list_size: int = 1
    deadline_seconds: float = 3600.0  # each step must be done this long after it can start
    opened_at: float = 0.0  # when the auditor opened it (the coordinator's clock)
    phase: RoundPhase = RoundPhase.OPEN
    list_sizes: dict[str, int] = field(default_factory=dict)
    enrolled: set[str] = field(default_factory=set)  # keys in (with dummies, sizes come at confirm)
    joined: set[str] = field(default_factory=set)  # JoinRound sent at least once
    done: set[tuple[str, int]] = field(default_factory=set)  # (owner, hop) uploaded
    done_at: dict[tuple[str, int], float] = field(default_factory=dict)
    relaying_since: float = 0.0
    confirming_since: float = 0.0
    # Protocol v2: each company's key confirmations, sender -> receiver -> MAC (hex). Only the
    # receiver can check one (it needs the pair key); the coordinator relays them at hop 0.
    confirmations: dict[str, dict[str, str]] = field(default_factory=dict)
    # DP dummies with every region padded: sender -> receiver -> hex of the region seeds it sealed.
    region_seeds: dict[str, dict[str, str]] = field(default_factory=dict)
    failure_reason: str = ""
    failed_party: str = ""
    ended_at: float = 0.0  # when it completed or failed (the coordinator's clock); 0 in flight
    # Groups (docs/PROTOCOL.md, "Groups"): the company whose group column defines them ("" =
    # none) and the labels declared at open, in code order. Checked by `check_groups`.
    groups_from: str = ""
    group_labels: tuple[str, ...] = ()
    # The protocol the round was opened under (a round stored before versions were kept: 1).
    protocol_version: int = PROTOCOL_VERSION
    # DP dummies on the sizes the coordinator sees (epsilon 0: none); with them, a company's list
    # size arrives with its key confirmations, padded.
    dummy_epsilon: float = 0.0
    dummy_delta: float = 0.0
    # Re-randomised failure tags (core/rerandomise.py): ElGamal tags every relay re-randomises.
    rerandomise: bool = False

    # ------------------------------------------------------------ persistence

    def to_json(self) -> str:
        """Everything needed to resume the round after a restart (no secrets, no data)."""
        return json.dumps({
            "round_id": self.round_id, "roster": list(self.ring.roster), "min_list_size": self.min_list_size,
            "deadline_seconds": self.deadline_seconds, "opened_at": self.opened_at, "phase": self.phase.value,
            "list_sizes": self.list_sizes, "joined": sorted(self.joined),
            "done_at": [[o, h, t] for (o, h), t in sorted(self.done_at.items())],
            "relaying_since": self.relaying_since, "confirming_since": self.confirming_since,
            "confirmations": self.confirmations, "region_seeds": self.region_seeds,
            "failure_reason": self.failure_reason, "failed_party": self.failed_party,
            "groups_from": self.groups_from, "group_labels": list(self.group_labels),
            "protocol_version": self.protocol_version, "enrolled": sorted(self.enrolled),
            "dummy_epsilon": self.dummy_epsilon, "dummy_delta": self.dummy_delta,
            "rerandomise": self.rerandomise, "ended_at": self.ended_at,
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
            confirming_since=data.get("confirming_since", 0.0), confirmations=data.get("confirmations", {}),
            region_seeds=data.get("region_seeds", {}),
            failure_reason=data["failure_reason"], failed_party=data["failed_party"],
            groups_from=data.get("groups_from", ""), group_labels=tuple(data.get("group_labels", ())),
            protocol_version=data.get("protocol_version", 1),
            enrolled=set(data.get("enrolled", data["list_sizes"])),
            dummy_epsilon=data.get("dummy_epsilon", 0.0), dummy_delta=data.get("dummy_delta", 0.0),
            rerandomise=bool(data.get("rerandomise", False)), ended_at=float(data.get("ended_at", 0.0)),
        )  # fmt: skip

    def group_labels_of(self, company: str) -> tuple[str, ...]:
        """The labels `company`'s failure tags are sealed with: the round's for the groups
        company, none for every other company (and in a round without groups)."""
        return self.group_labels if company == self.groups_from else ()

    def advance(self, target: RoundPhase) -> None:
        if target not in TRANSITIONS[self.phase]:
            raise ProtocolError(f"round {self.round_id} cannot go from {self.phase} to {target}")
        self.phase = target
        if target in TERMINAL_PHASES:  # needed only until hop 0: not kept beyond the round
            self.confirmations.clear()
            self.region_seeds.clear()

    def fail(self, reason: str, party: str = "") -> None:
        if self.phase in TERMINAL_PHASES:
            return
        self.failure_reason = reason
        self.failed_party = party
        self.advance(RoundPhase.FAILED)

    @property
    def hops_total(self) -> int:
        return self.ring.parties * self.ring.parties

    @property
    def tag_size(self) -> int:
        return round_tag_size(self.rerandomise)

    @property
    def sizes_at_hop_0(self) -> bool:
        """With dummies, a list's size comes padded with its hop-0 upload, not at enrolment (a
        company learns the seeds of the regions others lead with its hop-0 work)."""
        return self.dummy_epsilon > 0

    @property
    def padding(self) -> Padding | None:
        """Which regions get dummies (None: the round has none), from what JoinRound announced."""
        if not self.sizes_at_hop_0:
            return None
        plan = DummyPlan.for_round(self.dummy_epsilon, self.dummy_delta, self.ring.parties)
        return round_padding_level(plan, self.min_list_size)

    def enroll(self, company: str, list_size: int, now: float) -> None:
        self.ring.position(company)
        self._require_phase(RoundPhase.OPEN, company)
        if company in self.enrolled:
            raise ProtocolError("already enrolled in this round", where=company)
        if self.sizes_at_hop_0:
            if list_size:
                raise ProtocolError(
                    "this round has dummies: a list size comes, padded, with the hop-0 upload",
                    where=company,
                )
        else:
            self._check_size(company, list_size)
            self.list_sizes[company] = list_size
        self.enrolled.add(company)
        if len(self.enrolled) == self.ring.parties:
            self.advance(RoundPhase.CONFIRMING)
            self.confirming_since = now

    def _check_size(self, company: str, list_size: int) -> None:
        if list_size < self.min_list_size:
            raise ListTooSmall(
                f"list of {list_size} records is below this round's minimum of {self.min_list_size}",
                where=company,
            )

    def confirm(
        self, company: str, macs: dict[str, str], now: float, seeds: dict[str, str] | None = None
    ) -> None:
        """Record `company`'s key confirmations (receiver -> MAC hex), one for every other
        company, and with every region padded the region seeds it seals to each (receiver ->
        hex, each of the exact length the round needs); once every company has confirmed,
        relaying starts."""
        self.ring.position(company)
        self._require_phase(RoundPhase.CONFIRMING, company)
        seeds = {receiver: sealed for receiver, sealed in (seeds or {}).items() if sealed}
        self._check_seeds(company, seeds)
        others = {name for name in self.ring.roster if name != company}
        if set(macs) != others:
            raise ProtocolError(
                f"key confirmations must name every other company ({', '.join(sorted(others))}) once",
                where=company,
            )
        if company in self.confirmations:
            if self.confirmations[company] == macs and self.region_seeds.get(company, {}) == seeds:
                return  # the same confirmations again (a retry)
            raise ProtocolError("already confirmed its keys, with other values", where=company)
        self.confirmations[company] = dict(macs)
        if seeds:
            self.region_seeds[company] = seeds
        if len(self.confirmations) == self.ring.parties:
            self.advance(RoundPhase.RELAYING)
            self.relaying_since = now

    def _check_seeds(self, company: str, seeds: dict[str, str]) -> None:
        """Each envelope of region seeds must be exactly as long as the round needs (none where
        the sender leads no region holding the receiver): nothing beyond them is stored."""
        padding = self.padding
        for receiver in self.ring.roster:
            if receiver == company:
                continue
            expected = sealed_seeds_size(company, receiver, self.ring.roster, padding) if padding else 0
            if len(seeds.get(receiver, "")) != 2 * expected:
                raise ProtocolError(
                    f"the region seeds for {receiver} must be {expected} bytes in this round",
                    where=company,
                )
        if set(seeds) - set(self.ring.roster):
            raise ProtocolError("region seeds addressed to a company not in the round", where=company)

    def region_seeds_for(self, receiver: str) -> dict[str, str]:
        """sender -> hex of the region seeds sealed to `receiver`."""
        return {
            sender: sealed[receiver] for sender, sealed in self.region_seeds.items() if receiver in sealed
        }

    def confirmations_for(self, receiver: str) -> dict[str, str]:
        """sender -> MAC hex of the confirmations addressed to `receiver`."""
        return {sender: macs[receiver] for sender, macs in self.confirmations.items() if receiver in macs}

    def check_upload(
        self, sender: str, owner: str, hop: int, list_size: int, max_list_size: int | None = None
    ) -> None:
        """Refuse an upload the protocol does not expect now (raises ProtocolError). With dummies,
        a hop-0 upload first tells its list's padded size: checked against the round's minimum
        and `max_list_size` ([limits]), then kept."""
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
        if hop > 0 and (owner, hop - 1) not in self.done:  # (with dummies its size is not known yet)
            raise ProtocolError(f"list of {owner} at hop {hop - 1} has not been uploaded yet", where=sender)
        if hop == 0 and self.sizes_at_hop_0 and owner not in self.list_sizes:
            self._check_size(owner, list_size)  # the padded size, first seen here
            if max_list_size is not None and list_size > max_list_size:
                raise LimitExceeded(
                    f"list of {list_size} records is above the limit of {max_list_size}", where=sender
                )
            self.list_sizes[owner] = list_size
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

    def record_upload(self, owner: str, hop: int, now: float) -> None:
        self.done.add((owner, hop))
        self.done_at[(owner, hop)] = now
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
        if self.phase == RoundPhase.OPEN and company not in self.enrolled:
            self.ring.position(company)
            self.joined.add(company)
            return Work(self.round_id, company, 0, join=True)
        if self.phase == RoundPhase.CONFIRMING and company not in self.confirmations:
            self.ring.position(company)
            return Work(self.round_id, company, 0, confirm=True)
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
                if company not in self.enrolled and now - self.opened_at > self.deadline_seconds:
                    return company, "did not enrol"
        if self.phase == RoundPhase.CONFIRMING:
            for company in self.ring.roster:
                if company not in self.confirmations and now - self.confirming_since > self.deadline_seconds:
                    return company, "did not confirm its pair keys"
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
