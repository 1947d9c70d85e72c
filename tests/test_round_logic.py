"""The round's logic in one process (tests/support/harness.py): every phase
transition of docs/PROTOCOL.md, every way a round fails, deadlines, retries and
resumption after a crash at each step, on a clock the test moves.

The real coordinator (state machine, SQLite store, counting, release) and real
company daemons (openmined-psi blinding, tags, sealed relays, sealed state)
talk through their servicers without a network; tests/test_faults.py shows the
same with real processes and sockets.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from pathlib import Path

import grpc
import pytest
from conftest import assert_same_integers
from support.harness import Harness, LinkError

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.client import company as company_steps
from monoculture.coordinator import rounds as coordinator_rounds
from monoculture.coordinator.config import Limits
from monoculture.coordinator.state import RoundState
from monoculture.core.protocol import RoundPhase
from monoculture.core.psi_crypto import TAG_SIZE
from monoculture.core.timing import POLL_BACKOFF, RECONNECT_BACKOFF
from monoculture.v1 import monoculture_pb2 as pb

NAMES = ("alpha", "beta", "gamma")


def _population(size: int = 40, seed: int = 7) -> dict[str, list[tuple[str, int]]]:
    """Three companies over overlapping ids, with correlated failures (an exact answer to check)."""
    rng = __import__("random").Random(seed)  # test data only; never a key
    people = [f"person-{i}" for i in range(size)]
    hard = {p for p in people if rng.random() < 0.3}
    rows: dict[str, list[tuple[str, int]]] = {}
    for index, name in enumerate(NAMES):
        held = [p for j, p in enumerate(people) if j % 5 != index]  # each misses a fifth
        rows[name] = [(p, int(p in hard or rng.random() < 0.15)) for p in held]
    return rows


def _plaintext(population: dict[str, list[tuple[str, int]]]) -> dict:
    return result_dict(plaintext_table(list(population), [dict(rows) for rows in population.values()]))


@pytest.fixture
def population() -> dict[str, list[tuple[str, int]]]:
    return _population()


@pytest.fixture
def harness(tmp_path: Path, population: dict[str, list[tuple[str, int]]]):
    h = Harness(tmp_path, population)
    yield h
    h.close()


def _assert_exact(harness: Harness, round_id: str, population: dict) -> None:
    assert harness.phase(round_id) == RoundPhase.COMPLETE
    result = harness.result(round_id)
    plain = _plaintext(population)
    assert_same_integers(result, plain)
    assert result["homogenization"] == plain["homogenization"]


def _uploads(harness: Harness, round_id: str) -> Counter:
    return Counter(d for _, action, d in harness.audit_actions(round_id) if action == "uploaded")


def _state_files(harness: Harness) -> list[Path]:
    return [p for name in NAMES for p in (harness.folder / f"state-{name}").glob("round-*.sealed")]


# ------------------------------------------------------------- the happy path


def test_a_round_in_one_process_equals_plaintext(harness: Harness, population: dict) -> None:
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)
    assert _uploads(harness, round_id) == Counter(
        {f"list of {o}, hop {h}": 1 for o in NAMES for h in range(3)}
    )
    assert _state_files(harness) == []  # every company forgot the round's keys


def test_every_phase_is_entered_in_the_documented_order(harness: Harness, monkeypatch) -> None:
    moves: list[tuple[str, str]] = []
    original = RoundState.advance

    def recording(self: RoundState, target: RoundPhase) -> None:
        moves.append((self.phase.value, target.value))
        original(self, target)

    monkeypatch.setattr(RoundState, "advance", recording)
    round_id = harness.open_round()
    assert harness.phase(round_id) == RoundPhase.OPEN
    harness.run(round_id)
    assert moves == [
        ("OPEN", "CONFIRMING"),
        ("CONFIRMING", "RELAYING"),
        ("RELAYING", "COUNTING"),
        ("COUNTING", "COMPLETE"),
    ]
    actions = [action for _, action, _ in harness.audit_actions(round_id)]
    assert actions[0] == "opened" and actions[-1] == "completed"
    assert actions.count("enrolled") == 3 and actions.count("uploaded") == 9


def test_ring_order_and_hop_offers(harness: Harness) -> None:
    """Hop 0 of every list is on offer at once; hop h only after hop h - 1 of that list."""
    round_id = harness.open_round()
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    assert harness.phase(round_id) == RoundPhase.RELAYING
    harness.step("alpha")  # alpha blinds its own list (hop 0)
    hops = {d for _, a, d in harness.audit_actions(round_id) if a == "uploaded"}
    assert hops == {"list of alpha, hop 0"}
    harness.step("gamma")  # gamma has its own hop 0; alpha's list reaches gamma only at hop 2
    hops = {d for _, a, d in harness.audit_actions(round_id) if a == "uploaded"}
    assert hops == {"list of alpha, hop 0", "list of gamma, hop 0"}
    harness.step("beta")  # beta's own hop 0 comes first in roster order? no: alpha's hop 1 is ready
    done = {d for _, a, d in harness.audit_actions(round_id) if a == "uploaded"}
    assert len(done) == 3 and ("list of alpha, hop 1" in done or "list of beta, hop 0" in done)


# ------------------------------------------------------------- failures by phase


def test_open_fails_when_a_company_withdraws_over_bad_input(tmp_path: Path, population: dict) -> None:
    population = dict(population)
    population["beta"] = population["beta"] + [population["beta"][0]]  # a repeated id: refused
    harness = Harness(tmp_path, population)
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "beta" and "input was refused" in status.failure_reason
    assert "person-" not in status.failure_reason  # no id leaves in the reason
    assert _uploads(harness, round_id) == Counter()
    harness.close()


def test_open_fails_when_an_enrolment_is_below_the_minimum(tmp_path: Path, population: dict) -> None:
    harness = Harness(tmp_path, population, limits=Limits(min_list_size=33))
    population_sizes = {name: len(rows) for name, rows in population.items()}
    assert min(population_sizes.values()) == 32
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    assert harness.status(round_id).failed_party in NAMES
    harness.close()


def test_open_fails_when_a_company_does_not_enrol_in_time(harness: Harness) -> None:
    round_id = harness.open_round(deadline_seconds=30)
    harness.step("alpha")
    harness.step("beta")
    harness.clock.advance(29)
    harness.book.fail_overdue()
    assert harness.phase(round_id) == RoundPhase.OPEN
    harness.clock.advance(2)
    harness.book.fail_overdue()
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "gamma"
    assert status.failure_reason == "gamma did not enrol within the deadline of 30 s"


def test_relaying_fails_when_a_hop_is_late_and_the_others_are_released(
    harness: Harness, population: dict
) -> None:
    round_id = harness.open_round(deadline_seconds=60)
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    harness.step("alpha")
    harness.step("beta")  # gamma never blinds its own list
    harness.clock.advance(61)
    harness.book.fail_overdue()
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "gamma"
    assert "did not deliver list of" in status.failure_reason
    harness.step("alpha")
    harness.step("beta")  # they hear the round ended and forget its keys
    assert not list((harness.folder / "state-alpha").glob("round-*.sealed"))
    second = harness.open_round(deadline_seconds=60)
    assert harness.run(second) == RoundPhase.COMPLETE
    _assert_exact(harness, second, population)


def test_relaying_fails_when_a_relayed_list_is_altered_blaming_the_coordinator(harness: Harness) -> None:
    def flip(chunk: pb.ListChunk) -> pb.ListChunk:
        altered = pb.ListChunk()
        altered.CopyFrom(chunk)
        altered.sealed = bytes([chunk.sealed[0] ^ 1]) + chunk.sealed[1:]
        return altered

    harness.network.tamper = flip
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "coordinator"
    assert "fails authentication" in status.failure_reason


def test_an_unsealed_intermediate_list_is_refused_and_the_deadline_names_its_sender(harness: Harness) -> None:
    round_id = harness.open_round(deadline_seconds=60)
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    chunk = pb.ListChunk(
        round_id=round_id, sender="alpha", list_owner="alpha", hop=0, chunk_index=0, chunk_count=1,
        list_size=32, chunk_elements=32, points=b"", tags=b"",
    )  # fmt: skip
    with pytest.raises(LinkError) as refused:
        harness.daemons["alpha"]._stub.UploadList(iter([chunk]))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not sealed to beta" in refused.value.details()
    # Refused, nothing kept: the round is as it was, and alpha's own step is still due.
    assert harness.status(round_id).phase == RoundPhase.RELAYING
    assert harness.book._store.progress(round_id, "alpha", 0).chunks == 0
    harness.clock.advance(61)
    harness.book.fail_overdue()
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "alpha"


def test_relaying_fails_when_a_company_withdraws(harness: Harness) -> None:
    round_id = harness.open_round()
    harness.step_all()
    harness.daemons["beta"]._withdraw(round_id, "its operator stopped it")
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "beta"
    assert "beta withdrew: its operator stopped it" in status.failure_reason


def _forge_final_tags(monkeypatch, forge) -> None:
    """The company uploading each final list alters the tags of its first chunk."""
    original = company_steps.outgoing_chunks

    def altered(address, sender, outgoing, sealer, chunk_elements=16, signer=None):
        for chunk in original(address, sender, outgoing, None, chunk_elements):
            if address.hop == 2 and chunk.chunk_index == 0:
                chunk.tags = forge(chunk.tags)
            sealed = sealer.seal(chunk) if sealer is not None else chunk
            yield signer.sign(sealed) if signer is not None else sealed

    monkeypatch.setattr("monoculture.client.daemon.outgoing_chunks", altered)


def test_counting_fails_when_a_failure_tag_does_not_authenticate(harness: Harness, monkeypatch) -> None:
    # Every tag of the chunk: only shared individuals' tags are opened.
    _forge_final_tags(
        monkeypatch, lambda tags: bytes(b ^ (i % TAG_SIZE == TAG_SIZE - 1) for i, b in enumerate(tags))
    )
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failure_reason.startswith("counting failed")
    assert "does not authenticate" in status.failure_reason and "no one is named" in status.failure_reason
    assert status.failed_party == ""  # any blinder of the list (or its owner) could have done it


def test_counting_fails_when_a_failure_tag_repeats(harness: Harness, monkeypatch) -> None:
    _forge_final_tags(monkeypatch, lambda tags: tags[TAG_SIZE : 2 * TAG_SIZE] + tags[TAG_SIZE:])  # 1 over 0
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    assert "a failure tag repeats" in harness.status(round_id).failure_reason


def test_terminal_rounds_take_no_more_steps(harness: Harness) -> None:
    round_id = harness.open_round()
    harness.run(round_id)
    calls_before = len(harness.network.calls)
    harness.step_all()
    assert harness.network.calls[calls_before:] == ["PollWork"] * 3  # nothing to do
    state = harness.book.status(round_id)
    with pytest.raises(Exception, match="cannot go from COMPLETE"):
        state.advance(RoundPhase.FAILED)


def test_requests_out_of_turn_are_refused_without_ending_the_round(
    harness: Harness, population: dict
) -> None:
    round_id = harness.open_round()
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    stub = harness.daemons["beta"]._stub
    with pytest.raises(LinkError) as not_yours:
        list(
            stub.DownloadList(
                pb.DownloadListRequest(round_id=round_id, company="beta", list_owner="beta", hop=0)
            )
        )
    assert not_yours.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(LinkError) as unknown:
        stub.Withdraw(pb.WithdrawRequest(round_id="r-0000000000000000", company="beta", reason="x"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(LinkError) as empty:
        stub.UploadList(iter([]))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)


# ------------------------------------------------------------- retries


def test_an_unreachable_coordinator_is_retried_with_backoff(harness: Harness, population: dict) -> None:
    round_id = harness.open_round()
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    harness.network.unreachable_calls = 4  # alpha's upload fails four times, then goes through
    harness.network.unreachable_methods = frozenset({"UploadList"})
    harness.step("alpha")
    delays = harness.clock.slept
    assert len(delays) == 4
    for attempt, delay in enumerate(delays, start=1):
        base = min(
            RECONNECT_BACKOFF.maximum,
            RECONNECT_BACKOFF.initial * RECONNECT_BACKOFF.multiplier ** (attempt - 1),
        )
        assert base * (1 - RECONNECT_BACKOFF.jitter) <= delay <= base * (1 + RECONNECT_BACKOFF.jitter)
    assert harness.daemons["alpha"]._reconnects == 3  # a fresh connection from the second retry on
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)
    assert set(_uploads(harness, round_id).values()) == {1}


def test_polling_an_unreachable_coordinator_backs_off(harness: Harness) -> None:
    harness.network.unreachable_calls = 3
    assert [harness.step("alpha") for _ in range(4)] == [False, False, False, True]
    assert len(harness.clock.slept) == 3
    assert all(d <= POLL_BACKOFF.maximum * (1 + POLL_BACKOFF.jitter) for d in harness.clock.slept)


def test_a_company_gives_up_after_retry_seconds_and_the_deadline_names_it(
    tmp_path: Path, population: dict
) -> None:
    harness = Harness(tmp_path, population, retry_seconds=20)
    round_id = harness.open_round(deadline_seconds=100)
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    started = harness.clock.time()
    harness.network.unreachable_calls = 10**6
    harness.network.unreachable_methods = frozenset({"UploadList"})
    harness.step("alpha")  # retries for 20 s of its clock, then gives the step up
    assert 20 <= harness.clock.time() - started <= 20 + RECONNECT_BACKOFF.maximum * 1.5
    harness.network.unreachable_calls = 0
    harness.clock.advance(100)
    harness.book.fail_overdue()
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "alpha"
    harness.close()


def test_an_upload_cut_mid_stream_completes_on_retry_without_double_counting(
    harness: Harness, population: dict
) -> None:
    round_id = harness.open_round()
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    harness.network.cut_upload_after = 1  # the first stream breaks off after one chunk
    harness.step("alpha")
    assert harness.network.calls.count("UploadList") == 2
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)
    assert set(_uploads(harness, round_id).values()) == {1}


# ------------------------------------------------------------- crashes and resumption


def _sweeps_of_a_round(tmp_path: Path, population: dict) -> int:
    harness = Harness(tmp_path / "count", population)
    round_id = harness.open_round()
    sweeps = 0
    while harness.phase(round_id) != RoundPhase.COMPLETE:
        harness.step_all()
        sweeps += 1
    harness.close()
    return sweeps


@pytest.mark.parametrize("crash_after", range(7))
def test_the_coordinator_resumes_after_a_crash_at_each_step(
    tmp_path: Path, population: dict, crash_after: int
) -> None:
    assert _sweeps_of_a_round(tmp_path, population) == 6  # crash before every sweep, and after the last
    harness = Harness(tmp_path / "run", population)
    round_id = harness.open_round()
    for _ in range(crash_after):
        harness.step_all()
    harness.restart_coordinator()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)
    assert set(_uploads(harness, round_id).values()) == {1}
    if crash_after < 6:
        assert ("coordinator", "resumed") in [(a, act) for a, act, _ in harness.audit_actions(round_id)]
    harness.close()


def test_the_coordinator_resumes_a_round_caught_counting(
    harness: Harness, population: dict, monkeypatch
) -> None:
    class Crash(BaseException):  # the coordinator process dying: not an error a daemon handles
        pass

    def crash(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(coordinator_rounds, "count_patterns", crash)
    round_id = harness.open_round()
    with pytest.raises(Crash):
        harness.run(round_id)
    assert harness.phase(round_id) == RoundPhase.COUNTING
    monkeypatch.undo()
    harness.restart_coordinator()  # resumes, and counts the round again from its stored lists
    assert harness.phase(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)


@pytest.mark.parametrize("crash_after", range(4))
@pytest.mark.parametrize("victim", ["alpha", "gamma"])
def test_a_company_resumes_after_a_crash_at_each_step(
    tmp_path: Path, population: dict, crash_after: int, victim: str
) -> None:
    harness = Harness(tmp_path, population)
    round_id = harness.open_round()
    for _ in range(crash_after):
        harness.step_all()
    harness.restart_company(victim)
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)
    assert set(_uploads(harness, round_id).values()) == {1}
    assert _state_files(harness) == []
    harness.close()


def test_a_company_restarted_mid_upload_resends_the_same_bytes(harness: Harness, population: dict) -> None:
    """The stored half of the list and the re-sent list must agree chunk for chunk:
    the coordinator refuses a re-sent chunk with different content."""
    round_id = harness.open_round()
    harness.start_relaying()  # everyone joined and confirmed its pair keys: RELAYING
    harness.network.cut_upload_after = 1
    harness.network.unreachable_calls = 0
    daemon = harness.daemons["beta"]
    daemon.config = daemon.config.__class__(**{**daemon.config.__dict__, "retry_seconds": 0.0})
    harness.step("beta")  # hop 0 breaks off after one chunk and is not retried: a crash
    assert harness.network.calls.count("UploadList") == 1
    harness.restart_company("beta")
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)


def test_a_company_that_lost_its_state_withdraws_with_a_reason(harness: Harness) -> None:
    round_id = harness.open_round()
    harness.step_all()
    for sealed in (harness.folder / "state-beta").glob("round-*.sealed"):
        sealed.unlink()
    harness.restart_company("beta")
    harness.step("beta")
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "beta"
    assert "holds no key" in status.failure_reason


def test_rounds_run_side_by_side_with_overlapping_rosters(harness: Harness, population: dict) -> None:
    first = harness.open_round()
    second = harness.open_round(["gamma", "alpha"])
    for _ in range(20):
        harness.step_all()
    assert harness.phase(first) == RoundPhase.COMPLETE and harness.phase(second) == RoundPhase.COMPLETE
    _assert_exact(harness, first, population)
    pair = {"gamma": population["gamma"], "alpha": population["alpha"]}
    assert_same_integers(harness.result(second), _plaintext(pair))


def test_round_ids_are_random(harness: Harness) -> None:
    ids = {harness.open_round() for _ in range(3)}
    assert len(ids) == 3 and all(len(i) == 18 for i in ids)
    assert secrets  # ids come from secrets.token_hex (coordinator.state.new_round_id)


def test_a_file_refused_after_a_restart_is_withdrawn_without_ids(harness: Harness) -> None:
    """Read again at hop 0 by a restarted daemon, a file that now repeats an id is refused;
    the reason sent names the step but no id (the duplicate-id error lists ids locally)."""
    round_id = harness.open_round()
    harness.start_relaying()  # everyone joined; their records are held for hop 0
    data = harness.configs["beta"].data.path
    data.write_text(data.read_text() + "person-1,1\nperson-1,0\n", encoding="utf-8")
    harness.restart_company("beta")  # the records held at join are gone: the file is read again
    harness.step("beta")
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "beta"
    assert "input was refused" in status.failure_reason and "person-" not in status.failure_reason


def test_a_release_that_breaks_fails_the_round_naming_the_coordinator(harness: Harness, monkeypatch) -> None:
    """An internal error while releasing must end the round with a reason, not leave it
    counting for ever (seen: three rounds released at once hit a half-imported module)."""

    def broken(*args, **kwargs):
        raise AttributeError("module 'scipy.optimize' has no attribute 'brentq'")

    monkeypatch.setattr(coordinator_rounds, "release", broken)
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "coordinator" and "could not release the result" in status.failure_reason
    assert "brentq" not in status.failure_reason  # internals stay in the coordinator's log


def test_a_round_stored_under_protocol_v1_fails_on_resume(harness: Harness) -> None:
    """A coordinator upgraded to v2 with a v1 round in flight (its state has no protocol version)
    ends that round with a reason, rather than counting 29-byte tags as 44-byte ones."""
    round_id = harness.open_round()
    harness.start_relaying()
    db = harness.store._db
    (state,) = db.execute("SELECT state FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
    stored = json.loads(state)
    del stored["protocol_version"]
    db.execute("UPDATE rounds SET state = ? WHERE round_id = ?", (json.dumps(stored), round_id))
    harness.restart_coordinator()
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "coordinator"
    assert "opened under protocol v1; this coordinator speaks v3" in status.failure_reason


class _Crash(BaseException):
    """The daemon's process dies (nothing in the daemon catches it)."""


@pytest.mark.parametrize("hop", [0, 1])
def test_a_restart_under_another_chunk_size_never_seals_two_bodies_under_one_nonce(
    harness: Harness, population: dict, monkeypatch: pytest.MonkeyPatch, hop: int
) -> None:
    """A relay chunk's AES-GCM nonce is its index, under a key that survives restarts (its
    sender, receiver, list and hop). A daemon that dies mid-upload and comes back with another
    [client] chunk_elements must not seal other elements under an index it has already sent:
    the coordinator would hold two bodies under one (key, nonce). Every chunk the coordinator
    receives is checked."""
    received: dict[tuple[str, str, str, str, int, int], set[bytes]] = {}
    original = harness.company_servicer.UploadList
    crash_after: dict[str, int] = {}

    def upload(chunks, context):
        def watched():
            for sent, chunk in enumerate(chunks):
                key = (
                    chunk.round_id,
                    chunk.sender,
                    chunk.receiver,
                    chunk.list_owner,
                    chunk.hop,
                    chunk.chunk_index,
                )
                if chunk.receiver:  # sealed to the next company (the last hop goes open)
                    received.setdefault(key, set()).add(chunk.sealed)
                if crash_after.get(chunk.sender) == sent + 1 and chunk.hop == hop:
                    del crash_after[chunk.sender]
                    raise _Crash
                yield chunk

        return original(watched(), context)

    monkeypatch.setattr(harness.company_servicer, "UploadList", upload)
    round_id = harness.open_round()
    harness.start_relaying()
    crasher = harness.daemons["alpha"]._round(round_id).secrets.roster[hop]  # blinds alpha's list at `hop`
    crash_after[crasher] = 2
    with pytest.raises(_Crash):
        for _ in range(2 * hop + 2):
            harness.step_all()
    harness.reconfigure(crasher, chunk_elements=7)  # was 16
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_exact(harness, round_id, population)
    assert received and all(len(bodies) == 1 for bodies in received.values()), [
        key for key, bodies in received.items() if len(bodies) > 1
    ]
