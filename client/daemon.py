"""`monoculture client run`: the company daemon's main loop.

Long-polls the coordinator for work and does it: join (check the input,
enrol signed per-round keys), blind (hop 0: the own list; later hops: download
a list sealed to us, re-shuffle, re-blind, upload it sealed to the next
company), forget a round's keys when it ends. The input file is read and
checked before anything is sent; if it is refused, the daemon withdraws with a
reason that holds no id, no file name and no line. A relayed list that fails
authentication or holds an invalid point makes it withdraw, naming the hop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, TypeVar

import grpc

from monoculture.analysis.budget import Ledger, RoundCost, floor_violations, roster_key, round_cost
from monoculture.analysis.groups import group_round_cost
from monoculture.analysis.release import ReleasePolicy
from monoculture.client.company import (
    INLINE,
    Blinder,
    ListInTransit,
    ListReceiver,
    Masking,
    OperationCounts,
    Rerandomising,
    blind_own_list,
    chunk_has_invalid_points,
    outgoing_chunks,
    relay_list,
    shuffle_label,
)
from monoculture.client.config import ClientConfig
from monoculture.client.ledger import PrivacyLedger
from monoculture.client.sources import input_digest, load_records
from monoculture.client.state import RoundSecrets, SecretStore
from monoculture.client.workers import BlindingPool
from monoculture.core.blame import COORDINATOR, RelayFault
from monoculture.core.dataset import (
    CompanyRecords,
    GroupLabelError,
    InputSpec,
    reading_digest,
)
from monoculture.core.dummies import (
    MAX_DUMMIES_PER_COMPANY,
    DummyPlan,
    Padding,
    SeedEnvelope,
    accepted_plan,
    company_dummies,
    new_seed,
    round_padding_level,
)
from monoculture.core.errors import ConfigError, InputError, MonocultureError, ProtocolError
from monoculture.core.identity import Identity, Role, expiry_warning, private_key_fingerprint
from monoculture.core.masks import confirmation_matches, key_confirmation, transcript_digest
from monoculture.core.masks import pair_keys as derive_pair_keys
from monoculture.core.messages import phase_of
from monoculture.core.protocol import (
    PROTOCOL_VERSION,
    Ring,
    check_groups,
    check_protocol_version,
    check_round_id,
)
from monoculture.core.psi_crypto import BlindingKey, InvalidPoint, TagSealer, check_x25519_public_key
from monoculture.core.relay import ChunkOpener, ChunkSigner, ChunkVerifier, RelayKeys, RelayPeer
from monoculture.core.rerandomise import check_public_key as check_rerandomise_key
from monoculture.core.revocation import CertificateRevoked, RevocationListUnusable, certificate_serial
from monoculture.core.timing import POLL_BACKOFF, SYSTEM_CLOCK, Clock, retry
from monoculture.core.wire import ListAddress, round_tag_size
from monoculture.memory import peak_rss_bytes
from monoculture.observe import Metrics
from monoculture.progress import PROGRESS_FILE, StepProgress, stderr_is_terminal
from monoculture.transport import (
    RenewalWatch,
    channel,
    named_retry_delay,
    presented_certificate,
    revocation_watch,
    warn_insecure,
)
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.client")

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
T = TypeVar("T")
# The coordinator's certificate is checked against the CRL on every new connection, whenever the
# CRL changes, and at least this often (gRPC may reconnect under the hood).
COORDINATOR_RECHECK_SECONDS = 60.0
RegionSeeds = Mapping[tuple[str, ...], bytes]  # region -> its seed, from its leader's envelope


@dataclass
class CompanyRound:
    """What a company holds for one round: keys (memory, and sealed on disk for restarts), counts."""

    secrets: RoundSecrets
    key: BlindingKey
    tags: TagSealer
    relay: RelayKeys
    counts: OperationCounts = field(default_factory=OperationCounts)
    blind_seconds: float = 0.0
    # The records checked at join, kept for hop 0 (which follows at once) so the file is
    # read once; a restarted daemon reads it again. Never stored.
    joined_records: CompanyRecords | None = None

    def take_records(self, data: InputSpec) -> CompanyRecords:
        """The records for hop 0, let go here: from join, or read again after a restart (with
        their group labels when this company defines the round's groups). A file that changed
        since join is refused: its records would be sealed under this round's keys and tag
        nonces a second time."""
        records, self.joined_records = self.joined_records, None
        if records is not None:
            return records
        self.check_input(data)
        return load_records(data, groups=bool(self.secrets.group_labels))

    def check_input(self, data: InputSpec) -> None:
        """Refuse (InputError) an input file, or [data] settings, other than at join: whatever
        reads the records again for this round (a restart, a JoinRound offered again) would seal
        other records under the round's keys, tag nonces and chunk nonces."""
        if self.secrets.input_digest and input_digest(data) != self.secrets.input_digest:
            raise InputError(
                "changed since this company joined the round; the round cannot resume over another input",
                where=data.origin,
                hint="restore the input (file or table) as it was at join, or let this round fail and join "
                "the next one",
            )
        if self.secrets.input_reading and reading_digest(data) != self.secrets.input_reading:
            raise InputError(
                "is read with other [data] settings than when this company joined the round (a column, "
                "the format, the duplicate policy or the id length limit changed); the round cannot "
                "resume over other records",
                where=data.origin,
                hint="restore the [data] settings as they were at join, or let this round fail and join "
                "the next one",
            )

    @property
    def ring(self) -> Ring:
        return Ring(self.secrets.roster)

    @property
    def has_dummies(self) -> bool:
        return self.secrets.dummy_epsilon > 0

    @property
    def padding(self) -> Padding:
        return Padding(self.secrets.dummy_padding or Padding.PAIRS.value)

    def dummy_ids(self, company: str, received_seeds: RegionSeeds | None = None) -> list[str]:
        """The dummy ids this company adds to its list (none without dummies): the same on every
        call and after a restart (sealed seed, sealed pair keys, and the seeds of the regions
        others lead, as their envelopes gave them)."""
        if not self.has_dummies:
            return []
        plan = DummyPlan.for_round(
            self.secrets.dummy_epsilon, self.secrets.dummy_delta, len(self.secrets.roster)
        )
        return company_dummies(
            company, self.secrets.roster, self.round_id, plan, self.secrets.dummy_seed,
            dict(self.secrets.pair_keys), self.padding, received_seeds,
        )  # fmt: skip

    def padded_size(self, company: str, received_seeds: RegionSeeds | None = None) -> int:
        """The list size its hop-0 upload declares: records and dummies (0 without dummies)."""
        return (
            self.secrets.list_size + len(self.dummy_ids(company, received_seeds)) if self.has_dummies else 0
        )

    def region_seeds_to(self, company: str, peer: str, pair_key: bytes) -> bytes:
        """The envelope of the seeds of the regions this company leads that hold `peer`."""
        if not self.has_dummies:
            return b""
        envelope = SeedEnvelope(pair_key, self.round_id, company, peer, self.secrets.roster, self.padding)
        return envelope.seal(self.secrets.dummy_seed)

    def region_seeds_from(self, company: str, work: pb.BlindList) -> dict[tuple[str, ...], bytes]:
        """The seeds of the regions others lead that hold this company, opened from the envelopes
        its hop-0 work carries (ProtocolError naming the coordinator, which relayed them, if one
        does not open; a sender that sealed garbage does the same, and no one can tell which)."""
        if not self.has_dummies:
            return {}
        envelopes = {c.sender: c.region_seeds for c in work.confirmations if c.receiver == company}
        roster, seeds = self.secrets.roster, {}
        for at, key in self.secrets.pair_keys:
            sender, sealed = roster[at], envelopes.get(roster[at], b"")
            envelope = SeedEnvelope(key, self.round_id, sender, company, roster, self.padding)
            try:
                seeds.update(envelope.open(sealed))
            except ValueError as exc:
                raise ProtocolError(
                    f"{exc}: altered on its way, or sealed wrongly by {sender} (the pair key is shared: "
                    "no one can tell which; put on the coordinator, which relayed it, as a claim)",
                    where=COORDINATOR,
                ) from None
        return seeds

    def masking(self, company: str) -> Masking:
        """This company's place and pair keys, for its masked failure values (and the round's
        ElGamal key, when its tags are re-randomised)."""
        ring = self.ring
        return Masking(
            ring.position(company), ring.parties, dict(self.secrets.pair_keys), self.secrets.rerandomise_key
        )

    def rerandomising(self, company: str, hop: int) -> Rerandomising | None:
        """How a relay re-randomises tags at `hop` (None: the round's tags are not re-randomised)."""
        if not self.secrets.rerandomise_key:
            return None
        last = self.masking(company) if hop == self.ring.final_hop else None
        return Rerandomising(self.secrets.rerandomise_key, last)

    @property
    def tag_size(self) -> int:
        return round_tag_size(bool(self.secrets.rerandomise_key))

    @classmethod
    def from_secrets(cls, secrets: RoundSecrets, company: str) -> CompanyRound:
        return cls(
            secrets,
            BlindingKey(secrets.blinding_key),
            TagSealer(
                secrets.round_id,
                company,
                secrets.coordinator_public_key,
                secrets.tag_private_key,
                group_labels=secrets.group_labels,
            ),
            RelayKeys(secrets.relay_private_key),
        )

    @classmethod
    def fresh(
        cls,
        round_id: str,
        company: str,
        coordinator_public_key: bytes,
        group_labels: tuple[str, ...] = (),
        *,
        roster: tuple[str, ...],
        digest: str = "",
        settings: bytes = b"",
        chunk_elements: int = 0,
        reading: str = "",
    ) -> CompanyRound:
        """`group_labels`: the round's, when it takes its groups from this company; `roster`:
        the ring as JoinRound gave it (signed into the enrolment); `digest`: the input's;
        `chunk_elements`: the chunk size of every list this company sends in the round;
        `reading`: how its input is read (core.dataset.reading_digest)."""
        tag_key = TagSealer(round_id, company, coordinator_public_key).private_key
        blinding_key = BlindingKey.fresh().key_bytes
        relay_key = RelayKeys().private_bytes()
        secrets = RoundSecrets(
            round_id, blinding_key, tag_key, relay_key, os.urandom(32), coordinator_public_key, group_labels,
            input_digest=digest, roster=roster, settings=settings, chunk_elements=chunk_elements,
            input_reading=reading,
        )  # fmt: skip
        return cls.from_secrets(secrets, company)

    @property
    def round_id(self) -> str:
        return self.secrets.round_id


class CoordinatorLink(Protocol):
    """A connection to the coordinator: its CompanyService stub, and a way to close it."""

    @property
    def stub(self) -> Any: ...

    def close(self) -> None: ...


class GrpcLink:
    """The real link: a gRPC channel (mTLS, or plaintext on loopback with --insecure)."""

    def __init__(self, config: ClientConfig) -> None:
        self._channel = channel(config.coordinator, config.tls)
        self.stub = pb_grpc.CompanyServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()


def round_settings(join: pb.JoinRound) -> bytes:
    """What every company must have been told alike, bound into the pair keys' transcript: the
    round as JoinRound announced it (release policy, its charge, groups, the coordinator's tag
    key, the protocol version), less the roster ledger, which moves as other rounds settle. A
    coordinator that told two companies different things fails their key confirmations."""
    announced = pb.JoinRound()
    announced.CopyFrom(join)
    announced.ClearField("roster_budget")
    return hashlib.sha256(announced.SerializeToString(deterministic=True)).digest()


def _has_dummies(join: pb.JoinRound) -> bool:
    return join.HasField("dummies") and join.dummies.epsilon > 0


def _retryable(error: Exception) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() in _RETRYABLE


class CompanyDaemon:
    def __init__(
        self,
        config: ClientConfig,
        stop: threading.Event | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        connect: Callable[[ClientConfig], CoordinatorLink] = GrpcLink,
    ) -> None:
        """`clock` times retries and backoff; `connect` opens a link to the coordinator
        (tests connect the daemon to an in-process coordinator)."""
        self.config = config
        self._stop = stop or threading.Event()
        self._clock = clock
        if config.tls is None:
            warn_insecure()
        self._ca_pem = config.tls.ca_pem() if config.tls else None
        self._cert_pem = config.tls.cert_pem() if config.tls else b""
        self._key_pem = config.tls.key_pem() if config.tls else None
        self._signer = ChunkSigner(self._key_pem) if self._key_pem else None
        self._revocations = revocation_watch(config.tls)  # the CA's CRL; None: not checked
        self._coordinator_checked: tuple[int, float] | None = None  # (CRL version, monotonic time)
        self._renewals = (
            RenewalWatch(config.tls, Identity(Role.COMPANY, config.company), self._take_up_renewal)
            if config.tls
            else None
        )
        self._connect = connect
        self._link = connect(config)
        self._reconnects = 0
        self._poll_failures = 0
        self._rounds: dict[str, CompanyRound] = {}
        self._secrets = SecretStore(config.state_dir, config.company)
        floor = config.release_floor
        self._ledger = PrivacyLedger(config.state_dir, floor.max_epsilon_per_roster, floor.max_epsilon_total)
        workers = config.workers or os.cpu_count() or 1
        self._blinder: Blinder = BlindingPool(workers) if workers > 1 else INLINE
        self._rounds_ended = 0
        self.metrics = Metrics()
        self._interactive = stderr_is_terminal()
        if config.metrics_port:
            bound = self.metrics.serve(config.metrics_address, config.metrics_port)
            log.info("%s: metrics on http://%s:%d/metrics", config.company, config.metrics_address, bound)

    @property
    def company(self) -> str:
        return self.config.company

    def _reconnect(self) -> None:
        """A fresh channel. Seen here: after the coordinator was killed mid-stream, a channel
        could stay in TRANSIENT_FAILURE although the restarted coordinator accepted new
        connections; a new channel connects at once."""
        self._link.close()
        self._link = self._connect(self.config)
        self._reconnects += 1
        self._coordinator_checked = None  # a new connection: check its certificate again

    def _take_up_renewal(self, cert_pem: bytes, key_pem: bytes) -> None:
        """A renewed certificate (the files changed): sign with it and reconnect with it, no
        restart; rounds in progress go on (their enrolled certificate, of the same key, stays)."""
        held = private_key_fingerprint(self._key_pem) if self._key_pem else None
        if held is not None and held != private_key_fingerprint(key_pem):
            log.warning(
                "%s: the new certificate holds another key (a rotation): rounds in progress will fail, "
                "and peers must pin the new fingerprint", self.company,
            )  # fmt: skip
        self._cert_pem, self._key_pem = cert_pem, key_pem
        self._signer = ChunkSigner(key_pem)
        log.info(
            "%s: renewed certificate taken up (serial %x); reconnecting with it",
            self.company, certificate_serial(cert_pem),
        )  # fmt: skip
        warning = expiry_warning(cert_pem)
        if warning is not None:
            log.warning("%s: %s", self.company, warning)
        self._reconnect()

    def _coordinator_refusal(self, unreachable_ok: bool = False) -> str:
        """Why this daemon will not talk to the coordinator now ("" = it will): the CRL cannot
        be used, it revokes the certificate the coordinator presents, or (unless `unreachable_ok`,
        a retry whose own call will fail and be retried) that certificate could not be fetched."""
        if self._revocations is None or self.config.tls is None:
            return ""
        try:
            crl = self._revocations.current()
            version, now = self._revocations.version, self._clock.monotonic()
            if self._coordinator_checked is not None:
                checked_version, checked_at = self._coordinator_checked
                if checked_version == version and now - checked_at < COORDINATOR_RECHECK_SECONDS:
                    return ""
            presented = presented_certificate(self.config.coordinator, self.config.tls)
            crl.check(presented, f"the coordinator at {self.config.coordinator}")
        except OSError as exc:  # ssl.SSLError too
            if unreachable_ok:
                return ""
            return f"{self.company}: cannot check the coordinator's certificate, so sends nothing ({exc})"
        except MonocultureError as exc:
            return f"{self.company} will not talk to the coordinator: {exc.diagnostics()}"
        self._coordinator_checked = (version, now)
        return ""

    @property
    def _stub(self) -> Any:
        return self._link.stub

    def run(self) -> int:
        """Serve until stopped (or until `exit_after_rounds` rounds have ended)."""
        log.info("%s: serving, coordinator at %s", self.company, self.config.coordinator)
        while not self._stop.is_set():
            self.step()
            if self.config.exit_after_rounds and self._rounds_ended >= self.config.exit_after_rounds:
                break
        self.close()
        return 0

    def close(self) -> None:
        self._link.close()
        self.metrics.close()
        if isinstance(self._blinder, BlindingPool):
            self._blinder.close()

    def step(self) -> bool:
        """Ask for work once and do what came; False when the coordinator was unreachable
        (then this waits by the poll backoff before returning). Before it asks, a renewed
        certificate is taken up, and the coordinator's certificate checked against the CRL:
        while the CRL cannot be used or revokes it, this daemon sends nothing and waits."""
        if self._renewals is not None:
            self._renewals.poll()
        refusal = self._coordinator_refusal()
        if refusal:
            self._poll_failures += 1
            delay = POLL_BACKOFF.delay(self._poll_failures)
            log.error("%s\n  (checked again in %.1f s)", refusal, delay)
            self._clock.sleep(delay, self._stop)
            return False
        try:
            response = self._stub.PollWork(
                pb.PollWorkRequest(company=self.company, wait_seconds=self.config.poll_seconds),
                timeout=self.config.poll_seconds + 10,
            )
        except grpc.RpcError as exc:
            # RESOURCE_EXHAUSTED: the coordinator's admission limits (too many polls at once, too
            # fast); back off and poll again rather than stop.
            if exc.code() not in _RETRYABLE and exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise MonocultureError(
                    f"the coordinator refuses this daemon: {exc.details()}", where=self.company
                ) from None
            self._poll_failures += 1
            if self._poll_failures >= 2:
                self._reconnect()
            delay = POLL_BACKOFF.delay(self._poll_failures)
            log.warning(
                "%s: coordinator unreachable (%s: %s); retry in %.1f s",
                self.company, exc.code().name, exc.details(), delay,
            )  # fmt: skip
            self._clock.sleep(delay, self._stop)
            return False
        self._poll_failures = 0
        self._handle(response)
        return True

    @property
    def rounds_ended(self) -> int:
        return self._rounds_ended

    def _handle(self, response: pb.PollWorkResponse) -> None:
        kind = response.WhichOneof("work")
        if kind is None:
            return
        round_id = getattr(response, kind).round_id
        try:
            check_round_id(round_id, COORDINATOR)
        except ProtocolError as exc:  # nothing can be done for a round it cannot name
            log.error("%s: ignored %s from the coordinator: %s", self.company, kind, exc.message)
            return
        try:
            with self.metrics.timed(kind):
                if kind == "join_round":
                    self._join(response.join_round)
                elif kind == "blind_list":
                    self._blind(response.blind_list)
                elif kind == "pair_keys":
                    self._confirm(response.pair_keys)
                elif kind == "round_ended":
                    self._end(response.round_ended)
        except grpc.RpcError as exc:
            log.error("%s: the coordinator refused a step: %s", self.company, exc.details())
        except MonocultureError as exc:  # a step that cannot go on is logged; the daemon serves on
            log.error("%s: round %s: %s", self.company, round_id, exc.diagnostics())
        except Exception:  # work this daemon cannot handle must not stop it: it leaves that round
            log.exception("%s: round %s: the %s work could not be handled", self.company, round_id, kind)
            with contextlib.suppress(grpc.RpcError, MonocultureError):
                self._withdraw(
                    round_id, f"{self.company}'s daemon could not handle its {kind} work (see its log)"
                )

    # ------------------------------------------------------------------ join

    def _join(self, join: pb.JoinRound) -> None:
        round_id = join.round_id
        log.info("%s: joining round %s (ring %s)", self.company, round_id, ", ".join(join.roster))
        try:
            check_protocol_version(join.protocol_version, "the coordinator")
            if not join.HasField("release_policy"):  # every v3 coordinator announces one
                raise ProtocolError("the coordinator announced no release policy: nothing could be charged")
            check_x25519_public_key(join.coordinator_public_key, "tag public key", "the coordinator")
            if join.rerandomise_public_key:
                check_rerandomise_key(join.rerandomise_public_key)
        except ProtocolError as exc:
            self._withdraw(round_id, exc.message, COORDINATOR)
            return
        if self._ledger.knows(round_id) and self._round(round_id) is None:
            # Charged for this id before and holding nothing for it: the round ended. Joining it
            # again would draw fresh noise (dummies, a release) for no new charge.
            self._withdraw(
                round_id, "the coordinator offered a round this company already took part in", COORDINATOR
            )
            return
        refusal = (
            self._roster_refusal(join.round_id, join.roster)
            or self._tags_refusal(join)
            or self._padding_refusal(join)
        )
        if refusal:
            self._withdraw(round_id, refusal)
            return
        cost = self._accept_release(join)
        if cost is None:
            return
        labels = self._group_labels(join)
        if labels is None:
            return
        held = self._round(round_id)
        if held is not None and not self._rejoin_allowed(held):
            return
        # With dummies the coordinator checks the minimum against the padded size: a check here on
        # the exact size would answer, by a withdrawal, whether it is below any minimum asked.
        minimum = 0 if _has_dummies(join) else join.min_list_size
        records = self._load_for_round(round_id, minimum, labels)
        if records is None:
            return
        company_round = self._round(round_id)
        if company_round is None:
            company_round = CompanyRound.fresh(
                round_id, self.company, join.coordinator_public_key, labels, roster=tuple(join.roster),
                digest=input_digest(self.config.data), settings=round_settings(join),
                chunk_elements=self.config.chunk_elements, reading=reading_digest(self.config.data),
            )  # fmt: skip
            if join.rerandomise_public_key:
                company_round.secrets = replace(
                    company_round.secrets, rerandomise_key=join.rerandomise_public_key
                )
            if _has_dummies(join):
                plan = DummyPlan.for_round(join.dummies.epsilon, join.dummies.delta, len(join.roster))
                company_round.secrets = replace(
                    company_round.secrets, dummy_epsilon=join.dummies.epsilon, dummy_delta=join.dummies.delta,
                    dummy_seed=new_seed(), list_size=len(records),
                    dummy_padding=round_padding_level(plan, join.min_list_size).value,
                )  # fmt: skip
            # Sealed to disk before the keys are used: a restarted daemon can finish the round.
            self._secrets.save(company_round.secrets)
            self._rounds[round_id] = company_round
        company_round.joined_records = records
        if company_round.secrets.settings != round_settings(join):
            self._withdraw(round_id, "the coordinator announced this round twice, differently", COORDINATOR)
            return
        signed = company_round.relay.signed(
            round_id, self.company, company_round.tags.public_key, self._cert_pem, self._key_pem,
            company_round.secrets.roster,
        )  # fmt: skip
        request = pb.EnrollRequest(
            round_id=round_id,
            company=self.company,
            tag_public_key=company_round.tags.public_key,
            # With dummies the size comes, padded, with the hop-0 upload.
            list_size=0 if company_round.has_dummies else len(records),
            relay_public_key=signed.relay_public_key,
            signature=signed.signature,
            certificate_pem=signed.certificate_pem,
            protocol_version=PROTOCOL_VERSION,
        )
        # Charged before enrolling (a round this company is in may release), once per round; the
        # cost includes the dummies' (the sizes the coordinator sees are another release).
        self._ledger.charge(roster_key(join.roster), round_id, cost, self._clock.time())
        self._retrying("enrol", lambda: self._stub.Enroll(request))

    def _rejoin_allowed(self, held: CompanyRound) -> bool:
        """A JoinRound for a round this company holds state for: a restart before its enrolment
        went through may join again with the sealed keys, over the same input read the same way
        (else it would re-seal other records under the round's nonces). Once it has confirmed
        its pair keys, the round is past enrolment: a JoinRound then is off the protocol."""
        if held.secrets.transcript:
            self._withdraw(
                held.round_id, "the coordinator offered to join a round whose keys this company has "
                "already confirmed", COORDINATOR,
            )  # fmt: skip
            return False
        try:
            held.check_input(self.config.data)
        except InputError as exc:
            self._withdraw(held.round_id, self._input_refused(held.round_id, exc))
            return False
        return True

    def _tags_refusal(self, join: pb.JoinRound) -> str:
        """Why this company refuses the round's failure tags ("" = it takes them): with [client]
        require_rerandomised_tags, a round without re-randomised tags, or one of two companies."""
        if not self.config.require_rerandomised_tags:
            return ""
        if not join.rerandomise_public_key:
            return (
                "this company takes part only in rounds with re-randomised tags ([client] "
                "require_rerandomised_tags); ask the auditor to open the round with --rerandomise"
            )
        if len(join.roster) < 3:
            return "re-randomised tags protect nothing in a round of two companies (this company needs them)"
        return ""

    def _padding_refusal(self, join: pb.JoinRound) -> str:
        """Why this company refuses the round's DP dummies ("" = it takes them): with [client]
        require_padded_regions, a round without dummies, or one whose minimum list size leaves
        regions of three to k - 1 companies exact (checked before anything is charged)."""
        if not self.config.require_padded_regions:
            return ""
        if not _has_dummies(join):
            return (
                "this company takes part only in rounds with DP dummies ([client] require_padded_regions); "
                "ask the auditor to set [release] dummy_epsilon"
            )
        try:
            plan = accepted_plan(join.dummies.epsilon, join.dummies.delta, len(join.roster))
        except ValueError:
            return ""  # refused, with the reason, where the dummy policy is checked
        if len(join.roster) < 4 or round_padding_level(plan, join.min_list_size) is Padding.ALL:
            return ""
        k, needed = len(join.roster), 10 * plan.expected_dummies_per_company(Padding.ALL)
        why = (
            f"a minimum list size of {needed} would pad every region"
            if plan.max_dummies_per_company(Padding.ALL) <= MAX_DUMMIES_PER_COMPANY
            else f"no minimum pads every region at k = {k} (a company would add over a million dummies)"
        )
        return (
            f"the round leaves the overlaps of three to {k - 1} companies exact to the coordinator "
            f"(its minimum list size is {join.min_list_size}; {why}), and this company requires every "
            "region padded ([client] require_padded_regions)"
        )

    def _roster_refusal(self, round_id: str, roster: Sequence[str]) -> str:
        """Why this company refuses a round's roster ("" = it accepts): not a valid ring, or a
        company on it that [peers] does not pin (checked before anything is sent)."""
        try:
            Ring(tuple(roster))
        except ProtocolError as exc:
            return f"the round's roster is not valid: {exc.message}"
        if self.company not in roster:
            return f"{self.company} was asked to join a round whose roster leaves it out"
        if self._ca_pem is None:  # --insecure: no certificates, nothing to pin
            return ""
        unpinned = [name for name in roster if name != self.company and name not in self.config.peers]
        if not unpinned:
            return ""
        if self.config.allow_unpinned:
            log.warning(
                "%s: round %s: %s not pinned in [peers]; trusting the auditor's CA alone to name "
                "them ([client] allow_unpinned = true)", self.company, round_id, ", ".join(unpinned),
            )  # fmt: skip
            return ""
        verb = "is" if len(unpinned) == 1 else "are"
        return (
            f"{', '.join(unpinned)} {verb} not among the companies {self.company} agreed to be measured "
            f"with (its [peers]); it joins only rounds whose whole roster it has pinned"
        )

    def _checked_peer(self, company_round: CompanyRound, peer: RelayPeer) -> RelayPeer:
        """`peer`'s signed keys, checked: the CA, the fingerprint [peers] pins for it (none: unpinned,
        allowed by allow_unpinned), this round and the roster as this company signed it."""
        pinned = self.config.peers.get(peer.company)
        peer.verify(company_round.round_id, peer.company, self._ca_pem, company_round.secrets.roster, pinned)
        if self._revocations is not None:
            self._revocations.check(peer.certificate_pem, f"company {peer.company}")
        return peer

    def _accept_release(self, join: pb.JoinRound) -> RoundCost | None:
        """What the round will spend, if its announced release policy is at or above this
        company's [release_floor] and fits its budget for the roster; otherwise the daemon
        withdraws, naming itself and each rule it applied, before sending anything else (None)."""
        cost, reasons = self._release_refusals(join)
        if reasons:
            self._withdraw(join.round_id, "its release floor refuses this round: " + "; ".join(reasons))
            return None
        return cost

    def _release_refusals(self, join: pb.JoinRound) -> tuple[RoundCost, list[str]]:
        """The round's cost and every reason this company refuses it (none: it accepts)."""
        floor = self.config.release_floor  # a round without a release policy was refused at join
        announced = join.release_policy
        policy = ReleasePolicy(
            announced.min_shared_individuals, announced.min_cell_count, announced.dp_mechanism,
            announced.dp_epsilon, announced.dp_delta,
        )  # fmt: skip
        try:
            policy.check()
            # With groups the group tables are released too: twice the cost (analysis/groups.py).
            cost = group_round_cost(round_cost(policy), bool(join.groups_from))
        except ConfigError as exc:
            return RoundCost(0.0, 0.0), [f"the round's release policy cannot be checked ({exc.message})"]
        if _has_dummies(join):  # the sizes the coordinator sees are a release too: same budget
            try:
                accepted_plan(join.dummies.epsilon, join.dummies.delta, len(join.roster))
            except (ValueError, ArithmeticError) as exc:
                return cost, [f"the round's DP dummies cannot be accepted ({exc})"]
            cost = RoundCost(cost.epsilon + join.dummies.epsilon, cost.delta + join.dummies.delta)
        figures = [join.round_charge.epsilon, join.round_charge.delta, join.roster_budget.spent_epsilon,
                   join.roster_budget.spent_delta]  # fmt: skip
        if not all(math.isfinite(x) and x >= 0 for x in figures):
            return cost, ["the coordinator's ledger figures for this round are not non-negative numbers"]
        if join.HasField("round_charge"):  # the coordinator may charge more (more than one release)
            charge = join.round_charge
            cost = RoundCost(max(cost.epsilon, charge.epsilon), max(cost.delta, charge.delta))
        roster = roster_key(join.roster)
        ledger = self._roster_ledger(join, roster)
        over = [ledger.violation(cost, roster, self.company),
                self._ledger.total(excluding=join.round_id).violation(cost, "", self.company)]  # fmt: skip
        reasons = floor_violations(policy, floor, self.company, cost) + [text for text in over if text]
        if not reasons:
            log.info(
                "%s: round %s releases with %s (epsilon %g, delta %g); %s has spent epsilon %g on "
                "roster %s (its limit: %g)",
                self.company, join.round_id, policy.mechanism, cost.epsilon, cost.delta, self.company,
                ledger.spent, roster, ledger.cap,
            )  # fmt: skip
        return cost, reasons

    def _roster_ledger(self, join: pb.JoinRound, roster: str) -> Ledger:
        """This company's spending on `roster` before this round: its own ledger, or the
        coordinator's when that counts more (rounds before this state folder existed)."""
        own = self._ledger.ledger(roster, excluding=join.round_id)
        if not join.HasField("roster_budget") or join.roster_budget.spent_epsilon <= own.spent:
            return own
        theirs = join.roster_budget
        charged = sum(entry.status != "refunded" for entry in theirs.rounds)
        return Ledger(theirs.spent_epsilon, own.cap, max(own.spent_delta, theirs.spent_delta), charged)

    def _round(self, round_id: str) -> CompanyRound | None:
        """This round's keys: in memory, or unsealed from the state folder after a restart."""
        if round_id not in self._rounds:
            secrets = self._secrets.load(round_id)
            if secrets is None:
                return None
            log.info("%s: resuming round %s from sealed state", self.company, round_id)
            self._rounds[round_id] = CompanyRound.from_secrets(secrets, self.company)
        return self._rounds[round_id]

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """Run `call`, retrying with backoff and jitter while the coordinator is unreachable
        (for `retry_seconds`); from the second retry on, over a fresh connection. A rate refusal
        that names its delay is waited out and the call made again, within the same time."""

        def on_retry(attempt: int, error: Exception, delay: float) -> None:
            if attempt >= 2:
                self._reconnect()
                refusal = self._coordinator_refusal(unreachable_ok=True)
                if refusal:
                    raise MonocultureError(refusal)
            assert isinstance(error, grpc.RpcError)
            log.warning("%s: %s failed (%s: %s); retry %d in %.1f s", self.company, what, error.code().name,
                        error.details(), attempt, delay)  # fmt: skip

        give_up_at = self._clock.monotonic() + self.config.retry_seconds
        return retry(
            call, retryable=_retryable, give_up_at=give_up_at, clock=self._clock, stop=self._stop,
            on_retry=on_retry, named_delay=named_retry_delay,
        )  # fmt: skip

    def _group_labels(self, join: pb.JoinRound) -> tuple[str, ...] | None:
        """The round's group labels if it takes its groups from this company, () if it does not
        (other companies' tags stay one bit); None when the declared groups are not valid (the
        daemon then withdraws)."""
        if join.groups_from:
            log.info(
                "%s: round %s takes %d groups from %s",
                self.company, join.round_id, len(join.group_labels), join.groups_from,
            )  # fmt: skip
        try:
            check_groups(join.roster, join.groups_from, join.group_labels)
        except ProtocolError as exc:
            self._withdraw(join.round_id, f"the round's groups are not valid: {exc.message}")
            return None
        return tuple(join.group_labels) if join.groups_from == self.company else ()

    def _load_for_round(
        self, round_id: str, min_list_size: int, group_labels: tuple[str, ...] = ()
    ) -> CompanyRecords | None:
        """The checked records, or None after withdrawing. With `group_labels` (this company
        defines the round's groups) their group labels too, every one of them declared."""
        try:
            records = load_records(self.config.data, groups=bool(group_labels))
            if len(records) < min_list_size:
                raise InputError(
                    f"holds {len(records)} records, below this round's minimum of {min_list_size}",
                    where=self.config.data.origin,
                )
            if records.groups is not None:
                records.groups.round_codes(group_labels, where=self.config.data.origin)
        except GroupLabelError as exc:
            log.error("%s: round %s: group labels refused\n%s", self.company, round_id, exc.diagnostics())
            # exc.reason names no label, id, path or line: those stay in the company's own log.
            self._withdraw(round_id, exc.reason)
            return None
        except MonocultureError as exc:
            self._withdraw(round_id, self._input_refused(round_id, exc))
            return None
        if records.rows_merged or records.ids_dropped:
            log.warning(
                "%s: duplicate policy %s merged %d repeated rows and dropped %d ids",
                self.company, self.config.data.duplicates.value, records.rows_merged, records.ids_dropped,
            )  # fmt: skip
        return records

    # --------------------------------------------------------------- confirm

    def _confirm(self, work: pb.PairKeys) -> None:
        """Protocol v2: check every peer's signed keys (CA, pinned key, this round's roster),
        derive a pairwise mask key with each, seal them, and post one key confirmation per
        peer. A coordinator that showed two companies different keys is caught at hop 0, when
        each checks the confirmations addressed to it."""
        company_round = self._round(work.round_id)
        if company_round is None:
            self._withdraw(work.round_id, "asked to confirm keys of a round it holds no key for (restarted?)")
            return
        try:
            peers = self._checked_peers(company_round, work)
        except (CertificateRevoked, RevocationListUnusable) as exc:  # no one tampered: no blame
            self._withdraw(work.round_id, f"the peers' keys are refused: {exc.message}")
            return
        except MonocultureError as exc:
            # The coordinator checked every key when it was enrolled: a key that does not hold here
            # was changed on its way, so the claim is against the coordinator.
            self._withdraw(work.round_id, f"the peers' keys are refused: {exc.message}", COORDINATOR)
            return
        secrets_ = company_round.secrets
        transcript = transcript_digest(work.round_id, secrets_.roster, peers, secrets_.settings)
        if secrets_.transcript and secrets_.transcript != transcript:
            # Pair keys are derived once: others would re-mask the same list under the same tag
            # nonces (AES-GCM nonce reuse) if hop 0 were done again.
            self._withdraw(
                work.round_id, "the coordinator showed the peers' keys a second time, and differently",
                COORDINATOR,
            )  # fmt: skip
            return
        # Pair keys come from the tag key pairs (signed, pinned, never disclosed), not from the relay
        # keys, which a company discloses as blame evidence.
        others = {peer.company: peer.tag_public_key for peer in peers if peer.company != self.company}
        pair_keys = derive_pair_keys(
            company_round.tags.private_key,
            self.company,
            others,
            transcript,
            work.round_id,
            secrets_.roster,
        )
        company_round.secrets = replace(
            secrets_, transcript=transcript, pair_keys=tuple(sorted(pair_keys.items()))
        )
        self._secrets.save(company_round.secrets)  # before any confirmation leaves
        confirmations = [
            pb.KeyConfirmation(
                sender=self.company, receiver=peers[at].company,
                mac=key_confirmation(key, transcript, self.company, peers[at].company),
                region_seeds=company_round.region_seeds_to(self.company, peers[at].company, key),
            )
            for at, key in sorted(pair_keys.items())
        ]  # fmt: skip
        request = pb.KeyConfirmations(
            round_id=work.round_id, company=self.company, confirmations=confirmations
        )
        self._retrying("key confirmation", lambda: self._stub.ConfirmKeys(request))
        log.info(
            "%s: round %s: confirmed pair keys with %d peers", self.company, work.round_id, len(pair_keys)
        )

    def _checked_peers(self, company_round: CompanyRound, work: pb.PairKeys) -> list[RelayPeer]:
        """Every company's signed keys in ring order, each checked; this company's own as it
        enrolled them (ProtocolError naming the party at fault otherwise)."""
        roster = company_round.secrets.roster
        peers = [RelayPeer.from_message(peer) for peer in work.peers]
        if [peer.company for peer in peers] != list(roster):
            raise ProtocolError("the keys shown are not one per company in ring order", where=COORDINATOR)
        for peer in peers:
            if peer.company == self.company:
                mine = (company_round.relay.public_key, company_round.tags.public_key)
                if (peer.relay_public_key, peer.tag_public_key) != mine:
                    raise ProtocolError(f"{self.company}'s own keys were shown altered", where=COORDINATOR)
                continue
            self._checked_peer(company_round, peer)
        return peers

    def _confirmation_refusal(self, company_round: CompanyRound, work: pb.BlindList) -> str:
        """Why the key confirmations addressed to this company do not hold ("" = they do): each
        peer must have derived the same pair key from the same transcript."""
        secrets_ = company_round.secrets
        if not secrets_.pair_keys:
            return "its pair keys were never confirmed"
        received = {c.sender: c.mac for c in work.confirmations if c.receiver == self.company}
        roster = secrets_.roster
        for at, key in secrets_.pair_keys:
            peer = roster[at]
            if not confirmation_matches(
                key, secrets_.transcript, peer, self.company, received.get(peer, b"")
            ):
                return (
                    f"{peer}'s key confirmation does not match: the coordinator showed {peer} other keys "
                    f"or another roster than it showed {self.company}"
                )
        return ""

    # ----------------------------------------------------------------- blind

    def _blind(self, work: pb.BlindList) -> None:
        company_round = self._round(work.round_id)
        if company_round is None:
            self._withdraw(work.round_id, "asked to blind a list of a round it holds no key for (restarted?)")
            return
        target = ListAddress(work.round_id, work.list_owner, work.hop)
        off_ring = self._off_ring(company_round.ring, work)
        if not off_ring and work.hop == 0:
            off_ring = self._confirmation_refusal(company_round, work)
        if off_ring:
            self._withdraw(work.round_id, f"{target.describe()}: {off_ring}", COORDINATOR)
            return
        try:
            sealer = None
            if work.HasField("receiver"):
                receiver = self._checked_peer(company_round, RelayPeer.from_message(work.receiver))
                sealer = company_round.relay.sealer(
                    receiver, work.round_id, self.company, work.list_owner, work.hop
                )
            outgoing = self._blinded(company_round, work)
            self.metrics.elements_blinded.inc(len(outgoing))
        except RelayFault as exc:
            self._withdraw(work.round_id, f"{target.describe()}: {exc.message}", exc.where, exc.evidence)
            return
        except GroupLabelError as exc:  # the file changed since join (a restart): no label is sent
            log.error(
                "%s: round %s: group labels refused\n%s", self.company, work.round_id, exc.diagnostics()
            )
            self._withdraw(work.round_id, f"{target.describe()}: {exc.reason}")
            return
        except InputError as exc:  # the file, read again after a restart, is refused now
            self._withdraw(work.round_id, f"{target.describe()}: {self._input_refused(work.round_id, exc)}")
            return
        except MonocultureError as exc:
            self._withdraw(work.round_id, f"{target.describe()}: {exc.message}", exc.where)
            return

        counts = company_round.counts
        sent = [0]

        def measured(chunks: Iterator[pb.ListChunk]) -> Iterator[pb.ListChunk]:
            for chunk in chunks:
                sent[0] += chunk.ByteSize()
                yield chunk

        def upload() -> pb.UploadReceipt:
            sent[0] = 0
            # The round's chunk size, sealed at join (not the live setting): chunk indices are
            # AES-GCM nonces under a key that survives restarts.
            per_chunk = company_round.secrets.chunk_elements or self.config.chunk_elements
            chunks = outgoing_chunks(target, self.company, outgoing, sealer, per_chunk, self._signer)
            receipt: pb.UploadReceipt = self._stub.UploadList(measured(chunks))
            return receipt

        receipt = self._retrying(f"upload of {target.describe()}", upload)
        self.metrics.bytes_uploaded.inc(sent[0])
        self.metrics.hops_uploaded.inc()
        counts.bytes_uploaded += sent[0]
        counts.elements_uploaded += receipt.elements
        counts.largest_list = max(counts.largest_list, receipt.elements)
        log.info("%s: uploaded %s (%d elements)", self.company, target.describe(), receipt.elements)

    def _off_ring(self, ring: Ring, work: pb.BlindList) -> str:
        """Why this work is not what the signed ring gives this company ("" = it is): it blinds
        list `owner` at the one hop where the ring brings it there (its own list at hop 0 only),
        from the company before it, for the company after it (none at the last hop)."""
        if work.list_owner not in ring.roster or work.hop > ring.final_hop:
            return "the coordinator asked for a list or hop this round does not have"
        if ring.blinder(work.list_owner, work.hop) != self.company:
            return (
                f"the coordinator asked {self.company} to blind a list at a hop the ring gives "
                f"{ring.blinder(work.list_owner, work.hop)}"
            )
        if work.hop > 0 and work.sender.company != ring.blinder(work.list_owner, work.hop - 1):
            return f"the list is to come from {work.sender.company}, not from the company before on the ring"
        if work.hop < ring.final_hop and work.receiver.company != ring.blinder(work.list_owner, work.hop + 1):
            return f"the list is to go to {work.receiver.company}, not to the company after on the ring"
        if work.hop == ring.final_hop and work.HasField("receiver"):
            return "the fully blinded list was to be sealed to a company"
        return ""

    def _progress(self, what: str) -> StepProgress:
        """A long step's progress: a bar on this daemon's terminal or log lines, and its state in
        the progress file of its own state folder (monoculture/progress.py)."""
        board = self.config.state_dir / PROGRESS_FILE
        return StepProgress(what, log=log, interactive=self._interactive, board=board)

    def _blinded(self, company_round: CompanyRound, work: pb.BlindList) -> ListInTransit:
        started = time.perf_counter()
        progress = self._progress(
            f"{self.company}: round {work.round_id}: list of {work.list_owner}, hop {work.hop}"
        )
        seed = company_round.secrets.shuffle_seed
        key, counts = company_round.key, company_round.counts
        if work.hop == 0:
            data = self.config.data
            received = company_round.region_seeds_from(self.company, work)
            outgoing = blind_own_list(
                lambda: company_round.take_records(data), key, company_round.tags, counts,
                company_round.masking(self.company), progress, seed, self.company, self._blinder,
                dummy_ids=company_round.dummy_ids(self.company, received),
                tag_progress=self._progress(f"{progress.what}: failure tags encrypted"),
            )  # fmt: skip
        else:
            label = shuffle_label(work.list_owner, work.hop)
            what = f"download of list of {work.list_owner}, hop {work.hop - 1}"
            incoming = self._retrying(what, lambda: self._download(company_round, work))
            self._check_once_per_hop(company_round, work, incoming)
            try:
                outgoing = relay_list(
                    incoming, key, counts, progress, seed, label, self._blinder,
                    company_round.rerandomising(self.company, work.hop),
                    self._progress(f"{progress.what}: failure tags re-randomised"),
                )  # fmt: skip
            except InvalidPoint as exc:
                raise self._invalid_point_fault(company_round, work, exc) from None
        company_round.blind_seconds += time.perf_counter() - started
        return outgoing

    def _download(self, company_round: CompanyRound, work: pb.BlindList) -> ListInTransit:
        """The list at hop - 1, opened chunk by chunk as it arrives (sealed chunks are not kept)."""
        sender = self._sender(company_round, work)
        receiver = ListReceiver(
            ListAddress(work.round_id, work.list_owner, work.hop - 1),
            sender.company,
            self._opener(company_round, work, sender),
            ChunkVerifier(sender.certificate_pem, sender.company) if self._ca_pem else None,
            company_round.relay.private_bytes(),  # disclosed only as evidence against the sender
            company_round.tag_size,
        )
        hop = f"the list at hop {work.hop - 1} relayed from {sender.company} to {self.company}"
        try:
            for chunk in self._stub.DownloadList(self._download_request(work)):
                receiver.add(chunk)
            return receiver.finish()
        except RelayFault as exc:
            raise RelayFault(f"{hop}: {exc.message}", where=exc.where, evidence=exc.evidence) from None
        except ProtocolError as exc:  # chunks missing: only the coordinator serves them
            raise RelayFault(f"{hop}: {exc.message}", where=COORDINATOR) from None

    def _sender(self, company_round: CompanyRound, work: pb.BlindList) -> RelayPeer:
        """The company the list comes from, its keys checked: CA, pinned key, round and roster."""
        return self._checked_peer(company_round, RelayPeer.from_message(work.sender))

    def _opener(self, company_round: CompanyRound, work: pb.BlindList, sender: RelayPeer) -> ChunkOpener:
        return company_round.relay.opener(sender, work.round_id, self.company, work.list_owner, work.hop - 1)

    def _download_request(self, work: pb.BlindList) -> pb.DownloadListRequest:
        return pb.DownloadListRequest(
            round_id=work.round_id, company=self.company, list_owner=work.list_owner, hop=work.hop - 1
        )

    def _invalid_point_fault(
        self, company_round: CompanyRound, work: pb.BlindList, error: InvalidPoint
    ) -> RelayFault:
        """A relayed list held an invalid point: find the chunk (downloading the list again and
        checking it chunk by chunk), the evidence that its sender sent it."""
        sender = self._sender(company_round, work)
        opener, key = self._opener(company_round, work, sender), company_round.relay.private_bytes()
        message = f"{error.message}; the list came from {sender.company}"
        try:
            for chunk in self._stub.DownloadList(self._download_request(work)):
                if chunk_has_invalid_points(opener.open(chunk), bool(company_round.secrets.rerandomise_key)):
                    evidence = pb.BlameEvidence(chunk=chunk, receiver_relay_private_key=key)
                    return RelayFault(message, where=sender.company, evidence=evidence)
        except (grpc.RpcError, ProtocolError):
            pass
        return RelayFault(message, where=sender.company)

    def _check_once_per_hop(
        self, company_round: CompanyRound, work: pb.BlindList, incoming: ListInTransit
    ) -> None:
        """A list is blinded at most once at its hop: asked again (a restart), it must be the
        same list, or this company would blind two lists of the coordinator's choosing."""
        digest = incoming.digest()
        relayed = dict(company_round.secrets.relayed)
        seen = relayed.get(work.list_owner)
        if seen is not None and seen != digest:
            raise RelayFault(
                f"the coordinator asked {self.company} to blind a second, different list of "
                f"{work.list_owner} at hop {work.hop}",
                where=COORDINATOR,
            )
        if seen is None:
            relayed[work.list_owner] = digest
            company_round.secrets = replace(company_round.secrets, relayed=tuple(sorted(relayed.items())))
            self._secrets.save(company_round.secrets)

    # ------------------------------------------------------------------- end

    def _end(self, ended: pb.RoundEnded) -> None:
        company_round = self._rounds.pop(ended.round_id, None)
        self._secrets.delete(ended.round_id)
        self._rounds_ended += 1
        detail = f": {ended.reason}" if ended.reason else ""
        phase = _ended_phase(ended)
        log.info("%s: round %s ended %s%s", self.company, ended.round_id, phase, detail)
        if company_round is not None and self.config.stats_file is not None:
            line = {
                "round_id": ended.round_id,
                "company": self.company,
                "phase": phase,
                **asdict(company_round.counts),
                "blind_seconds": round(company_round.blind_seconds, 4),
                "peak_rss_bytes": peak_rss_bytes(),
            }
            with self.config.stats_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")

    def _input_refused(self, round_id: str, error: MonocultureError) -> str:
        """Log why the input was refused, and return the reason to send: it holds no id, path or
        line (a duplicate-id error lists ids), which stay in the company's own log."""
        log.error("%s: round %s: input refused\n%s", self.company, round_id, error.diagnostics())
        return f"its input was refused by its daemon ({type(error).__name__}); see {self.company}'s log"

    def _withdraw(
        self, round_id: str, reason: str, blamed: str = "", evidence: pb.BlameEvidence | None = None
    ) -> None:
        log.error("%s: withdrawing from round %s: %s", self.company, round_id, reason)
        self.metrics.withdrawals.inc()
        request = pb.WithdrawRequest(
            round_id=round_id, company=self.company, reason=reason, blamed=blamed, evidence=evidence
        )
        self._retrying("withdrawal", lambda: self._stub.Withdraw(request))


def _ended_phase(ended: pb.RoundEnded) -> str:
    """The phase a round ended in, as its name; "ended" when the coordinator sent none it knows
    (the daemon forgets the round's keys whatever the phase)."""
    try:
        return phase_of(ended.phase).value
    except ProtocolError:
        return "ended"
