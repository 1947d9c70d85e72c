"""The coordinator's rounds: state machines behind one lock, state in SQLite.

Every change of a round's state is written to the store before it is
announced, so a coordinator killed at any point resumes every unfinished
round where it stopped. Chunks live only in the store; a list is dropped when
the next hop is in, and every final list when the result is stored. Uploads
are idempotent by (round, list, hop, chunk): a retried stream never counts
twice.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monoculture.analysis.budget import (
    DEFAULT_MAX_EPSILON_PER_ROSTER,
    Ledger,
    RoundCost,
    amount,
    roster_key,
    round_cost,
)
from monoculture.analysis.groups import group_round_cost, with_groups
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.coordinator.buckets import SpillPlan, remove_leftovers
from monoculture.coordinator.config import Limits
from monoculture.coordinator.counting import (
    FinalList,
    GroupedCounts,
    count_group_patterns,
    count_patterns,
    count_rerandomised,
)
from monoculture.coordinator.state import ListTooSmall, RoundState, Work, new_round_id
from monoculture.coordinator.store import REFUNDED, BudgetEntry, RoundStore
from monoculture.core.blame import COORDINATOR, judge
from monoculture.core.errors import LimitExceeded, MalformedRequest, ProtocolError, UnknownRound
from monoculture.core.masks import CONFIRMATION_SIZE
from monoculture.core.messages import phase_message
from monoculture.core.protocol import (
    PROTOCOL_VERSION,
    TERMINAL_PHASES,
    Ring,
    RoundPhase,
    check_groups,
    check_protocol_version,
    check_round_id,
)
from monoculture.core.psi_crypto import TAG_SIZE, CompanyTags, TagOpener
from monoculture.core.relay import ChunkVerifier, RelayPeer
from monoculture.core.rerandomise import CoordinatorKey, check_sum_table
from monoculture.core.timing import SYSTEM_CLOCK, Clock
from monoculture.core.wire import ChunkSequence, ListAddress, chunk_content
from monoculture.observe import CoordinatorSnapshot, Metrics, roster_epsilons
from monoculture.v1 import monoculture_pb2 as pb

log = logging.getLogger("monoculture.coordinator")


# Bytes counting may hold before it counts in bucket files (coordinator/buckets.py): a round of
# up to about two million final tokens in all is counted in memory, larger ones in bounded memory.
COUNTING_MEMORY = 256 * 1024 * 1024


@dataclass(frozen=True)
class StoredFinal:
    """A final list in the store, read chunk by chunk (coordinator/counting.py's FinalSource)."""

    store: RoundStore
    address: ListAddress
    size: int
    tag_size: int

    @property
    def owner(self) -> str:
        return self.address.list_owner

    def blocks(self) -> Iterator[FinalList]:
        address = self.address
        for chunk in self.store.chunks(address.round_id, address.list_owner, address.hop):
            tokens = b"".join(chunk_content(chunk, self.tag_size))
            tags = np.frombuffer(chunk.tags, dtype=np.uint8).reshape(-1, self.tag_size)
            yield FinalList(address.list_owner, tokens, tags)


@dataclass
class RoundRecord:
    state: RoundState
    tag_opener: TagOpener = field(default_factory=TagOpener)
    company_tags: dict[str, CompanyTags] = field(default_factory=dict)
    peers: dict[str, RelayPeer] = field(default_factory=dict)
    told_ended: set[str] = field(default_factory=set)
    result_json: str = ""
    counting: bool = False

    @property
    def elgamal_key(self) -> CoordinatorKey:
        """The round's key for re-randomised tags, derived from its tag key (core/rerandomise.py)."""
        return CoordinatorKey(self.tag_opener.private_bytes())


@dataclass(frozen=True)
class _ExpectedUpload:
    """What an upload in progress must be: sealed to `receiver` ("" = open, the last hop) and
    signed by its sender (`verifier`; None in an --insecure round)."""

    receiver: str
    verifier: ChunkVerifier | None
    tag_size: int = TAG_SIZE


class StoreRecorder:
    """Test aid: appends a copy of everything the coordinator stores to a file in a folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / "stored.bin"
        self._lock = threading.Lock()

    def record(self, kind: str, payload: bytes) -> None:
        with self._lock, self._path.open("ab") as handle:
            header = kind.encode()
            handle.write(len(header).to_bytes(2, "big") + header)
            handle.write(len(payload).to_bytes(8, "big") + payload)


def _daemon_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, daemon=True).start()


def _released_before_failing(state: RoundState) -> RoundCost | None:
    """What a round about to fail has released: with DP dummies, once it is RELAYING every
    company may upload its hop 0, whose header carries its padded size, so the dummies' (epsilon,
    delta) is spent whatever happens next (refunding it would let failed rounds be repeated and
    their padded sizes averaged). Before RELAYING no size has been told: None, refund it all."""
    if not state.sizes_at_hop_0 or state.phase not in (RoundPhase.RELAYING, RoundPhase.COUNTING):
        return None
    return RoundCost(state.dummy_epsilon, state.dummy_delta)


def _how_made(state: RoundState) -> dict[str, object]:
    """How a round's result was made, published with it: the protocol, the failure tags and the
    DP dummies on the sizes the coordinator saw (the release policy is `release_policy`)."""
    padding = state.padding
    return {
        "protocol_version": PROTOCOL_VERSION,
        "failure_tags": "re-randomised" if state.rerandomise else "masked",
        "dummies": None if padding is None else {
            "epsilon": state.dummy_epsilon, "delta": state.dummy_delta, "padded_regions": padding.value,
        },
        "min_list_size": state.min_list_size,
    }  # fmt: skip


def _entry_message(entry: BudgetEntry) -> pb.BudgetEntry:
    return pb.BudgetEntry(
        round_id=entry.round_id, epsilon=entry.cost.epsilon, delta=entry.cost.delta, status=entry.status,
        opened_at=entry.reserved_at, dp_mechanism=entry.policy.mechanism,
    )  # fmt: skip


def policy_message(policy: ReleasePolicy) -> pb.ReleasePolicy:
    """A release policy as JoinRound announces it."""
    return pb.ReleasePolicy(
        min_shared_individuals=policy.min_shared_individuals, min_cell_count=policy.min_cell_count,
        dp_mechanism=policy.mechanism, dp_epsilon=policy.epsilon, dp_delta=policy.delta,
    )  # fmt: skip


class RoundBook:
    """Every round this coordinator runs. Thread-safe; no network I/O."""

    def __init__(
        self,
        store: RoundStore,
        *,
        limits: Limits | None = None,
        release_policy: ReleasePolicy | None = None,
        ca_pem: bytes | None = None,
        recorder: StoreRecorder | None = None,
        clock: Clock = SYSTEM_CLOCK,
        in_background: Callable[[Callable[[], None]], None] | None = None,
        max_epsilon_per_roster: float = DEFAULT_MAX_EPSILON_PER_ROSTER,
        dummies: tuple[float, float] = (0.0, 1e-6),
        counting_memory: int = COUNTING_MEMORY,
    ) -> None:
        """`clock` gives every time the rounds record (deadlines); `in_background` runs the
        counting of rounds resumed in COUNTING (default: a daemon thread each);
        `max_epsilon_per_roster` caps the privacy ledger of each roster ([release]);
        `counting_memory`: bytes counting may hold; larger rounds are counted in bucket files
        in the store's folder (coordinator/buckets.py)."""
        self._store = store
        self._spill = SpillPlan(store.path.parent, counting_memory)
        self._clock = clock
        self._in_background = in_background or _daemon_thread
        self._rounds: dict[str, RoundRecord] = {}
        self._changed = threading.Condition()
        self._limits = limits or Limits()
        self._release = release_policy or ReleasePolicy()
        self._max_epsilon_per_roster = max_epsilon_per_roster
        self._dummies = dummies  # [release] dummy_epsilon (0: none), dummy_delta
        self._ca_pem = ca_pem  # None with --insecure: relay keys are then not checked
        self._recorder = recorder
        self.metrics = Metrics()  # served by server.py when [coordinator] metrics_port is set
        self.metrics.watch_coordinator(self.metrics_snapshot)
        self._resume()

    def _resume(self) -> None:
        remove_leftovers(self._store.path.parent)
        for stored in self._store.load():
            record = RoundRecord(
                stored.state, TagOpener(stored.tag_private_key), peers=stored.peers,
                told_ended=stored.told_ended, result_json=stored.result_json,
            )  # fmt: skip
            for company, peer in stored.peers.items():
                record.company_tags[company] = record.tag_opener.opener_for(
                    stored.state.round_id, company, peer.tag_public_key, stored.state.group_labels_of(company)
                )
            self._rounds[stored.state.round_id] = record
            if stored.state.phase not in TERMINAL_PHASES:
                if stored.state.protocol_version != PROTOCOL_VERSION:
                    reason = (
                        f"opened under protocol v{stored.state.protocol_version}; this coordinator speaks "
                        f"v{PROTOCOL_VERSION}: open the round again"
                    )
                    with self._changed:
                        self._fail(record, reason, COORDINATOR)
                    continue
                log.info("round %s resumed in %s", stored.state.round_id, stored.state.phase)
                self._store.audit(stored.state.round_id, COORDINATOR, "resumed", stored.state.phase)
        for round_id, record in self._rounds.items():
            if record.state.phase == RoundPhase.COUNTING:
                self._in_background(functools.partial(self._count, round_id))

    # ------------------------------------------------------------ auditor

    def open_round(
        self,
        companies: list[str],
        min_list_size: int,
        deadline_seconds: float = 0,
        groups_from: str = "",
        group_labels: Sequence[str] = (),
        rerandomise: bool = False,
    ) -> RoundState:
        """`groups_from`, `group_labels`: group-level homogenization (docs/PROTOCOL.md, "Groups"):
        the company whose group column defines the groups, and the labels declared, in order.
        `rerandomise`: re-randomised failure tags (core/rerandomise.py)."""
        ring = Ring(tuple(companies))
        check_groups(ring.roster, groups_from, group_labels)
        if rerandomise:
            check_sum_table(ring.parties, len(group_labels))
        state = RoundState(
            new_round_id(), ring, min_list_size=max(self._limits.min_list_size, min_list_size),
            deadline_seconds=deadline_seconds or self._limits.deadline_seconds, opened_at=self._clock.time(),
            groups_from=groups_from, group_labels=tuple(group_labels),
            dummy_epsilon=self._dummies[0], dummy_delta=self._dummies[1] if self._dummies[0] else 0.0,
            rerandomise=rerandomise,
        )  # fmt: skip
        with self._changed:
            in_flight = sum(r.state.phase not in TERMINAL_PHASES for r in self._rounds.values())
            if in_flight >= self._limits.max_rounds_in_flight:
                raise LimitExceeded(
                    f"{in_flight} rounds are in flight, the limit is {self._limits.max_rounds_in_flight}",
                    hint="wait for a round to end or raise [limits] max_rounds_in_flight",
                )
            roster, cost = roster_key(companies), round_cost(self._release)
            cost = group_round_cost(cost, bool(group_labels))  # group tables are a second release
            if state.sizes_at_hop_0:  # the dummies' sizes are a release to the coordinator
                cost = RoundCost(cost.epsilon + state.dummy_epsilon, cost.delta + state.dummy_delta)
            ledger = self._ledger(roster)
            if ledger.would_exceed(cost):
                hint = (
                    "rounds over the same companies release figures about the same people, so their "
                    "epsilons add up; wait for rounds in flight to end (a failed round is refunded, but for "
                    "its DP dummies' share once it was relaying), lower "
                    "[release] dp_epsilon, or raise [release] max_epsilon_per_roster if a larger total is "
                    f"acceptable (`monoculture round budget --companies {roster}` shows the ledger)"
                )
                raise LimitExceeded(
                    f"the privacy budget of roster {roster} would be exceeded: epsilon "
                    f"{amount(ledger.spent)} of its cap of {amount(ledger.cap)} is spent or reserved "
                    f"({ledger.rounds} rounds), and this round would spend {amount(cost.epsilon)} more",
                    hint=hint,
                )
            record = RoundRecord(state)
            # Reserved before the round exists: a crash between the two leaves a reservation without
            # a round, refunded when the store opens, never a round without its reservation.
            self._store.reserve_budget(state.round_id, roster, cost, self._release)
            self._store.create_round(state, record.tag_opener.private_bytes())
            self._store.audit(state.round_id, "auditor", "opened", ",".join(companies))
            if groups_from:
                detail = f"from {groups_from}: {len(group_labels)} labels"
                self._store.audit(state.round_id, "auditor", "groups declared", detail)
            self._store.audit(
                state.round_id, COORDINATOR, "budget reserved",
                f"epsilon {amount(cost.epsilon)}, delta {amount(cost.delta)} for roster {roster} "
                f"({amount(ledger.charged(cost).spent)} of {amount(ledger.cap)})",
            )  # fmt: skip
            self._rounds[state.round_id] = record
            self._changed.notify_all()
        log.info("round %s opened for %s", state.round_id, ", ".join(companies))
        return state

    def status(self, round_id: str, company: str | None = None) -> RoundState:
        """A round's state; a company sees only rounds it is on."""
        with self._changed:
            return self._record(round_id, company).state

    def result(self, round_id: str) -> tuple[RoundState, str]:
        with self._changed:
            record = self._record(round_id)
            return record.state, record.result_json

    def history(self, companies: list[str]) -> list[tuple[RoundState, str]]:
        """Every round over the set `companies` (any ring order; none: every round), oldest first,
        each with its released result ("" unless complete): the coordinator keeps every released
        result."""
        if companies:
            Ring(tuple(sorted(companies)))  # refuses a repeated or malformed name
        wanted = set(companies)
        with self._changed:
            rounds = [
                (r.state, r.result_json) for r in self._rounds.values()
                if not wanted or set(r.state.ring.roster) == wanted
            ]  # fmt: skip
        return sorted(rounds, key=lambda pair: pair[0].opened_at)

    def metrics_snapshot(self) -> CoordinatorSnapshot:
        """What the metrics endpoint shows: rounds by phase, list hops done, epsilon by roster."""
        with self._changed:
            phases = Counter(str(r.state.phase) for r in self._rounds.values())
            hops = sum(len(r.state.done) for r in self._rounds.values())
        spent = roster_epsilons(
            (e.roster, e.cost.epsilon) for e in self._store.all_budget() if e.status != REFUNDED
        )
        return CoordinatorSnapshot(dict(phases), hops, spent)

    def cancel(self, round_id: str) -> RoundState:
        """End a round in flight on the auditor's word: it fails naming the auditor (the companies
        hear it ended and forget its keys; its dummies' share is spent once it was relaying)."""
        with self._changed:
            record = self._record(round_id)
            if record.state.phase in TERMINAL_PHASES:
                raise ProtocolError(f"round {round_id} has already ended ({record.state.phase})")
            self._fail(record, "cancelled by the auditor", "auditor")
            return record.state

    def _ledger(self, roster: str, excluding: str = "") -> Ledger:
        """What `roster` has spent or reserved (refunded rounds cost nothing), against the cap."""
        charged = [
            entry for entry in self._store.budget(roster)
            if entry.status != REFUNDED and entry.round_id != excluding
        ]  # fmt: skip
        return Ledger(
            spent=sum(entry.cost.epsilon for entry in charged),
            cap=self._max_epsilon_per_roster,
            spent_delta=sum(entry.cost.delta for entry in charged),
            rounds=len(charged),
        )

    def _policy(self, round_id: str) -> ReleasePolicy:
        """The release policy a round was opened with (and announced): kept in the ledger, so a
        coordinator restarted with another [release] still releases each round as announced."""
        entry = self._store.round_budget(round_id)
        return self._release if entry is None else entry.policy

    # ---------------------------------------------------------- deadlines

    def fail_overdue(self, now: float | None = None) -> None:
        """Fail every round whose current step is past its deadline, naming the party."""
        with self._changed:
            for record in self._rounds.values():
                if record.state.phase in TERMINAL_PHASES:
                    continue
                late = record.state.overdue(self._clock.time() if now is None else now)
                if late is not None:
                    party, what = late
                    deadline = record.state.deadline_seconds
                    self._fail(record, f"{party} {what} within the deadline of {deadline:g} s", party)

    # ---------------------------------------------------------- companies

    def poll_work(self, company: str, wait_seconds: float) -> pb.PollWorkResponse:
        deadline = self._clock.monotonic() + max(0.0, min(wait_seconds, 60.0))
        with self._changed:
            while True:
                response = self._next_work(company)
                if response is not None:
                    return response
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    return pb.PollWorkResponse()
                self._changed.wait(remaining)

    def _next_work(self, company: str) -> pb.PollWorkResponse | None:
        for record in self._rounds.values():
            state = record.state
            if company not in state.ring.roster:
                continue
            if state.phase in TERMINAL_PHASES:
                if company in record.told_ended or company not in state.joined:
                    continue
                record.told_ended.add(company)
                self._store.save_told_ended(state.round_id, record.told_ended)
                return pb.PollWorkResponse(
                    round_ended=pb.RoundEnded(
                        round_id=state.round_id,
                        phase=phase_message(state.phase),
                        reason=state.failure_reason,
                        phase_name=state.phase.value,
                    )
                )
            work = state.next_work(company)
            if work is not None:
                if work.join:
                    self._store.save_state(state)
                return self._work_message(record, work)
        return None

    def _work_message(self, record: RoundRecord, work: Work) -> pb.PollWorkResponse:
        state = record.state
        if work.join:
            return pb.PollWorkResponse(
                join_round=pb.JoinRound(
                    round_id=work.round_id,
                    roster=list(state.ring.roster),
                    coordinator_public_key=record.tag_opener.public_key,
                    min_list_size=state.min_list_size,
                    release_policy=policy_message(self._policy(work.round_id)),
                    roster_budget=self._budget_message(state.ring.roster, excluding=work.round_id),
                    round_charge=self._charge_message(work.round_id),
                    groups_from=state.groups_from,
                    group_labels=list(state.group_labels),
                    protocol_version=PROTOCOL_VERSION,
                    dummies=(
                        pb.DummyPolicy(epsilon=state.dummy_epsilon, delta=state.dummy_delta)
                        if state.sizes_at_hop_0
                        else None
                    ),
                    rerandomise_public_key=(record.elgamal_key.public_key if state.rerandomise else b""),
                )
            )
        if work.confirm:
            peers = [record.peers[name].to_message() for name in state.ring.roster]
            return pb.PollWorkResponse(pair_keys=pb.PairKeys(round_id=work.round_id, peers=peers))
        blind = pb.BlindList(round_id=work.round_id, list_owner=work.list_owner, hop=work.hop)
        if work.hop == 0:
            seeds = state.region_seeds_for(work.list_owner)
            for sender, mac in state.confirmations_for(work.list_owner).items():
                confirmation = pb.KeyConfirmation(
                    sender=sender, receiver=work.list_owner, mac=bytes.fromhex(mac),
                    region_seeds=bytes.fromhex(seeds.get(sender, "")),
                )  # fmt: skip
                blind.confirmations.append(confirmation)
        if work.hop > 0:
            blind.sender.CopyFrom(
                record.peers[state.ring.blinder(work.list_owner, work.hop - 1)].to_message()
            )
        if work.hop < state.ring.final_hop:
            blind.receiver.CopyFrom(
                record.peers[state.ring.blinder(work.list_owner, work.hop + 1)].to_message()
            )
        return pb.PollWorkResponse(blind_list=blind)

    def enroll(self, company: str, request: pb.EnrollRequest) -> None:
        """Record a company's signed per-round keys and list size. Everything is checked before
        the round changes: keys (length, low order, signature over round and roster, the CA),
        the size against the limits; a malformed enrolment is refused naming the company and
        leaves the round as it was (it can enrol again, or the deadline names it)."""
        check_round_id(request.round_id, company)
        check_protocol_version(request.protocol_version, company)
        peer = RelayPeer(
            company,
            request.relay_public_key,
            request.tag_public_key,
            request.certificate_pem,
            request.signature,
        )
        with self._changed:
            record = self._record(request.round_id, company)
            if (
                company in record.state.enrolled
                and record.peers.get(company) == peer
                and record.state.list_sizes.get(company, 0) == request.list_size
            ):
                return  # the same enrolment again (a retry after a lost reply)
            self._check_enrolment(record, company, peer, request.list_size)
            try:
                record.state.enroll(company, request.list_size, self._clock.time())
            except ProtocolError as exc:
                if record.state.phase == RoundPhase.OPEN:
                    self._fail(record, f"enrolment of {company} refused: {exc.message}", company)
                raise
            record.company_tags[company] = record.tag_opener.opener_for(
                request.round_id, company, request.tag_public_key, record.state.group_labels_of(company)
            )
            record.peers[company] = peer
            self._store.save_peer(request.round_id, peer)
            self._store.save_state(record.state)
            self._store.audit(request.round_id, company, "enrolled", f"list size {request.list_size}")
            self._changed.notify_all()
        log.info("round %s: %s enrolled with a list of %d", request.round_id, company, request.list_size)

    def confirm_keys(self, company: str, request: pb.KeyConfirmations) -> None:
        """Record a company's key confirmations (one MAC per peer); they reach each peer with its
        hop-0 work, and only the peer can check them. All in: relaying starts."""
        check_round_id(request.round_id, company)
        macs: dict[str, str] = {}
        seeds: dict[str, str] = {}
        if request.list_size:
            raise MalformedRequest(
                "a list size comes at enrolment or, padded with dummies, with the hop-0 upload",
                where=company,
            )
        for confirmation in request.confirmations:
            if confirmation.sender != company or len(confirmation.mac) != CONFIRMATION_SIZE:
                raise MalformedRequest(
                    f"a key confirmation of {company} must be sent by it and {CONFIRMATION_SIZE} bytes",
                    where=company,
                )
            if confirmation.receiver in macs:
                raise MalformedRequest(f"{company} confirmed {confirmation.receiver} twice", where=company)
            macs[confirmation.receiver] = confirmation.mac.hex()
            seeds[confirmation.receiver] = confirmation.region_seeds.hex()
        with self._changed:
            record = self._record(request.round_id, company)
            record.state.confirm(company, macs, self._clock.time(), seeds)
            self._store.save_state(record.state)
            self._store.audit(request.round_id, company, "confirmed pair keys", f"{len(macs)} peers")
            self._changed.notify_all()

    def _check_enrolment(self, record: RoundRecord, company: str, peer: RelayPeer, list_size: int) -> None:
        """Refuse (MalformedRequest, LimitExceeded, ProtocolError) an enrolment that could never
        be valid, before anything of it is kept."""
        try:
            peer.verify(record.state.round_id, company, self._ca_pem, record.state.ring.roster)
        except ProtocolError as exc:
            self._refused(record, company, "enrolment", exc)
            raise MalformedRequest(f"enrolment of {company} refused: {exc.message}", where=company) from None
        self._check_list_limit(record, company, list_size, "enrolment")

    def _check_list_limit(self, record: RoundRecord, company: str, list_size: int, what: str) -> None:
        """Refuse (LimitExceeded, the round untouched) a list above [limits] max_list_size, declared
        at enrolment or, with dummies, at its hop-0 upload."""
        if list_size > self._limits.max_list_size:
            limit = self._limits.max_list_size
            error = LimitExceeded(f"list of {list_size} records is above the limit of {limit}", where=company)
            self._refused(record, company, what, error)
            raise error

    def _refused(self, record: RoundRecord, company: str, what: str, error: ProtocolError) -> None:
        """A refused request leaves the round as it was; the audit log keeps why."""
        self._store.audit(record.state.round_id, company, f"{what} refused", error.message)
        log.warning("round %s: %s of %s refused: %s", record.state.round_id, what, company, error.message)

    def withdraw(
        self,
        round_id: str,
        company: str,
        reason: str,
        blamed: str = "",
        evidence: pb.BlameEvidence | None = None,
    ) -> None:
        """A company ends the round. Whom the failure is put on is judged from the evidence
        (core/blame.py): a blame without evidence stays the withdrawing company's claim."""
        check_round_id(round_id, company)
        blamed, reason = blamed[:64], reason[:2000]  # a cheat's text is kept, but not without bound
        with self._changed:
            record = self._record(round_id, company)
            verdict = judge(
                company, blamed, evidence, round_id=round_id, ring=record.state.ring, peers=record.peers,
                secure=self._ca_pem is not None, rerandomise=record.state.rerandomise,
            )  # fmt: skip
            self._store.audit(round_id, company, "withdrew", reason)
            if blamed and blamed != company:
                kind = "blame verdict" if verdict.proven else "blame claim"
                self._store.audit(round_id, company, kind, f"{verdict.party} at fault: {verdict.finding}")
                reason = f"{reason} [{verdict.finding}]"
            self._fail(record, f"{company} withdrew: {reason}", verdict.party)

    # ------------------------------------------------------------ uploads

    def receive_list(self, company: str, chunks: Iterator[pb.ListChunk]) -> int:
        """Validate and store an uploaded list, chunk by chunk; returns its size once complete.

        Each chunk is checked in full before it is stored: its place in the list, its size
        against its element count, that it is sealed to the next company and signed by its
        sender. A chunk that fails is refused naming the sender and nothing of it is kept; the
        round stays as it was. A stream that breaks off leaves the chunks it delivered; the
        sender re-sends and chunks already stored are not counted again.
        """
        sequence = ChunkSequence(sender=company)
        address: ListAddress | None = None
        expected = _ExpectedUpload("", None)
        for chunk in chunks:
            # Only the fields this protocol defines are kept (and signed): bytes of unknown fields
            # would be stored and relayed unchecked, beyond every size bound.
            chunk.DiscardUnknownFields()
            if address is None:
                address = ListAddress(chunk.round_id, chunk.list_owner, chunk.hop)
                expected = self._check_upload(company, chunk)
                sequence.tag_size = expected.tag_size
            try:
                self._check_chunk(chunk, expected)
                sequence.add(chunk)
                self._put_while_relaying(address, chunk)
            except ProtocolError as exc:
                with self._changed:
                    self._refused(self._record(address.round_id), company, f"{address.describe()}", exc)
                raise
            if self._recorder is not None:
                self._recorder.record("list-chunk", chunk.SerializeToString())
        if address is None:
            raise MalformedRequest("the upload held no chunks", where=company)
        progress = self._store.progress(address.round_id, address.list_owner, address.hop)
        if progress.chunks < progress.chunk_count or progress.elements != progress.list_size:
            raise ProtocolError(
                f"{address.describe()} is incomplete: {progress.chunks} of {progress.chunk_count} chunks "
                f"({progress.elements} of {progress.list_size} elements); send the rest",
                where=company,
            )
        self._complete_upload(company, address)
        return progress.elements

    def _put_while_relaying(self, address: ListAddress, chunk: pb.ListChunk) -> None:
        """Store a chunk only while its round is relaying, atomically with the check: a round that
        ends mid-stream (a withdrawal, a deadline) has dropped its chunks, and none may follow."""
        with self._changed:
            phase = self._record(address.round_id).state.phase
            if phase != RoundPhase.RELAYING:
                raise ProtocolError(f"round {address.round_id} is {phase}: the upload is not kept")
            self._store.put_chunk(chunk)
        self.metrics.bytes_received.inc(chunk.ByteSize())

    def _check_upload(self, company: str, chunk: pb.ListChunk) -> _ExpectedUpload:
        """Is this upload expected now? Returns whom it must be sealed to and whose signature
        it must carry."""
        check_round_id(chunk.round_id, company)
        with self._changed:
            record = self._record(chunk.round_id, company)
            state = record.state
            first_size = state.sizes_at_hop_0 and chunk.hop == 0 and chunk.list_owner not in state.list_sizes
            try:
                state.check_upload(
                    company, chunk.list_owner, chunk.hop, chunk.list_size, self._limits.max_list_size
                )
            except (ListTooSmall, LimitExceeded) as exc:
                if first_size:  # the padded size, first seen here, from its own company: the round ends
                    self._fail(record, f"the hop-0 list of {company} refused: {exc.message}", company)
                raise
            if chunk.chunk_count > self._limits.max_chunks_per_list:
                raise LimitExceeded(
                    f"{chunk.chunk_count} chunks per list, the limit is {self._limits.max_chunks_per_list}",
                    where=company,
                )
            verifier = None
            if self._ca_pem is not None:
                verifier = ChunkVerifier(record.peers[company].certificate_pem, company)
            if chunk.hop == state.ring.final_hop:
                return _ExpectedUpload("", verifier, state.tag_size)
            return _ExpectedUpload(
                state.ring.blinder(chunk.list_owner, chunk.hop + 1), verifier, state.tag_size
            )

    @staticmethod
    def _check_chunk(chunk: pb.ListChunk, expected: _ExpectedUpload) -> None:
        """Intermediate lists must be sealed to the next company, the final one must not be,
        and every chunk carries its sender's signature (secure rounds)."""
        receiver = expected.receiver
        if receiver and (not chunk.sealed or chunk.receiver != receiver):
            raise ProtocolError(f"chunk {chunk.chunk_index} is not sealed to {receiver}", where=chunk.sender)
        if not receiver and chunk.sealed:
            raise ProtocolError(
                "the fully blinded list must come open to the coordinator", where=chunk.sender
            )
        if expected.verifier is not None and not expected.verifier.signed_by_sender(chunk):
            raise MalformedRequest(
                f"chunk {chunk.chunk_index} does not carry {expected.verifier.sender}'s signature",
                where=chunk.sender,
            )

    def _complete_upload(self, company: str, address: ListAddress) -> None:
        with self._changed:
            record = self._record(address.round_id, company)
            state = record.state
            if (address.list_owner, address.hop) in state.done:
                return  # a concurrent retry completed it first
            state.record_upload(address.list_owner, address.hop, self._clock.time())
            self._store.save_state(state)
            if address.hop > 0:
                self._store.drop_list(address.round_id, address.list_owner, address.hop - 1)
            self._store.audit(
                address.round_id, company, "uploaded", f"list of {address.list_owner}, hop {address.hop}"
            )
            log.info("%s: uploaded by %s", address.describe(), company)
            counting = state.phase == RoundPhase.COUNTING
            self._changed.notify_all()
        if counting:
            self._count(address.round_id)

    def download_list(self, company: str, address: ListAddress) -> Iterator[pb.ListChunk]:
        with self._changed:
            record = self._record(address.round_id, company)
            record.state.check_download(company, address.list_owner, address.hop)
        return self._store.chunks(address.round_id, address.list_owner, address.hop)

    # ----------------------------------------------------------- counting

    def _count(self, round_id: str) -> None:
        with self._changed:
            record = self._record(round_id)
            if record.counting or record.state.phase != RoundPhase.COUNTING:
                return
            record.counting = True
            state = record.state
        try:
            roster, spill = state.ring.roster, self._spill
            finals = [self._final_list(round_id, owner, state.ring.final_hop) for owner in roster]
            if state.rerandomise:
                counted = count_rerandomised(
                    roster, finals, record.elgamal_key, state.groups_from, state.group_labels, spill
                )
            elif state.group_labels:
                counted = count_group_patterns(
                    roster, finals, record.company_tags, state.groups_from, state.group_labels, spill
                )
            else:
                counted = count_patterns(roster, finals, record.company_tags, spill)
        except ProtocolError as exc:
            self._fail_round(round_id, f"counting failed: {exc}", exc.where)
            return
        finally:
            record.counting = False
        try:
            result_json = self._released(round_id, state, counted)
        except Exception:  # a bug must end the round with a reason, not leave it counting forever
            log.exception("round %s: releasing the result failed", round_id)
            reason = "the coordinator could not release the result (an internal error; see its log)"
            self._fail_round(round_id, reason, COORDINATOR)
            return
        with self._changed:
            state.advance(RoundPhase.COMPLETE)
            state.ended_at = self._clock.time()
            self._store.complete(state, result_json)
            self._store.audit(round_id, COORDINATOR, "completed")
            record.result_json = result_json
            if self._recorder is not None:
                self._recorder.record("result", result_json.encode())
            self._changed.notify_all()
        log.info("round %s complete", round_id)

    def _released(self, round_id: str, state: RoundState, counted: GroupedCounts) -> str:
        """The result JSON the release policy allows (the sums that did not decode are one more
        cell under it). Only the released form is kept; the exact table ends with the counting
        call."""
        policy = self._policy(round_id)
        result = release(counted.table, policy, undecodable=counted.undecodable)
        if state.group_labels:  # one released table per group, linked to the overall one
            result = with_groups(result, counted.table, counted.groups, policy)
        result["round_id"] = round_id
        result["round"] = _how_made(state)
        result["privacy_budget"] = self._budget_summary(state.ring.roster)
        if policy.mechanism == "none":
            result["list_sizes"] = dict(state.list_sizes)
        return json.dumps(result, indent=2)

    def _final_list(self, round_id: str, owner: str, hop: int) -> StoredFinal:
        size = self._store.progress(round_id, owner, hop).elements
        return StoredFinal(
            self._store, ListAddress(round_id, owner, hop), size, self._record(round_id).state.tag_size
        )

    # ------------------------------------------------------------ budget

    def budget(self, companies: list[str]) -> pb.PrivacyBudget:
        """The privacy ledger of a roster (any order): totals against the cap, and every round."""
        Ring(tuple(sorted(companies)))  # refuses an empty, repeated or malformed name
        return self._budget_message(companies)

    def _budget_message(self, companies: Iterable[str], excluding: str = "") -> pb.PrivacyBudget:
        roster = roster_key(companies)
        ledger = self._ledger(roster, excluding)
        entries = [_entry_message(e) for e in self._store.budget(roster) if e.round_id != excluding]
        return pb.PrivacyBudget(
            roster=roster.split(","), spent_epsilon=ledger.spent, spent_delta=ledger.spent_delta,
            cap_epsilon=ledger.cap, rounds=entries,
        )  # fmt: skip

    def _charge_message(self, round_id: str) -> pb.BudgetEntry | None:
        """A round's own ledger line (None for a round opened before the ledger existed)."""
        entry = self._store.round_budget(round_id)
        return None if entry is None else _entry_message(entry)

    def _budget_summary(self, companies: Iterable[str]) -> dict[str, object]:
        """The roster's spending with this round (for the result JSON; a cap of inf is null)."""
        ledger = self._ledger(roster_key(companies))
        return {
            "roster": sorted(companies),
            "spent_epsilon": ledger.spent,
            "spent_delta": ledger.spent_delta,
            "cap": None if math.isinf(ledger.cap) else ledger.cap,
        }

    # ------------------------------------------------------------ helpers

    def _record(self, round_id: str, company: str | None = None) -> RoundRecord:
        """The round; for a company, only one it is on (else it looks unknown)."""
        record = self._rounds.get(round_id)
        if record is None or (company is not None and company not in record.state.ring.roster):
            raise UnknownRound(f"unknown round {round_id!r}")
        return record

    def _fail_round(self, round_id: str, reason: str, party: str) -> None:
        with self._changed:
            self._fail(self._record(round_id), reason, party)

    def _fail(self, record: RoundRecord, reason: str, party: str) -> None:
        if record.state.phase in TERMINAL_PHASES:
            return
        spent = _released_before_failing(record.state)
        record.state.fail(reason, party)
        record.state.ended_at = self._clock.time()
        self._store.fail(record.state, spent)
        self._store.audit(record.state.round_id, COORDINATOR, "failed", f"{party}: {reason}")
        if spent is not None:
            self._store.audit(
                record.state.round_id, COORDINATOR, "budget spent",
                f"the DP dummies' epsilon {amount(spent.epsilon)}, delta {amount(spent.delta)}: padded "
                "sizes could reach the coordinator; the release's share is refunded",
            )  # fmt: skip
        log.warning("round %s failed: %s", record.state.round_id, reason)
        self._changed.notify_all()
