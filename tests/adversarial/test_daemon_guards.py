"""Issue 11: a company daemon against a coordinator that asks what the protocol does not
allow. The coordinator here is the in-process one (tests/support/harness.py: the real
RoundBook and servicers; the real daemons); the cheating coordinator is played by handing
a daemon work no honest coordinator sends.

Each test fails on the code before issue 11 (noted in its docstring) and passes now.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from support.harness import Harness

from monoculture.client.company import ListInTransit, ListReceiver
from monoculture.client.daemon import round_settings
from monoculture.core.blame import RelayFault
from monoculture.core.masks import pair_keys as derive_pair_keys
from monoculture.core.protocol import PROTOCOL_VERSION, RoundPhase
from monoculture.core.relay import RelayKeys
from monoculture.core.wire import ListAddress, sealed_size
from monoculture.v1 import monoculture_pb2 as pb

POPULATION = {
    "alpha": [(f"person-{i}", i % 2) for i in range(40)],
    "beta": [(f"person-{i}", i % 3 == 0) for i in range(10, 50)],
    "gamma": [(f"person-{i}", i % 5 == 0) for i in range(5, 45)],
}


@pytest.fixture
def harness(tmp_path: Path):
    population = {name: [(i, int(f)) for i, f in rows] for name, rows in POPULATION.items()}
    h = Harness(tmp_path, population)
    yield h
    h.close()


def uploads(harness: Harness) -> int:
    return harness.network.calls.count("UploadList")


@pytest.mark.parametrize("round_id", ["../../etc/passwd", "r-XYZ", "", "r-" + "0" * 400])
def test_a_malformed_round_id_from_the_coordinator_is_ignored(harness: Harness, round_id: str) -> None:
    """Before: the daemon used the id to name a file in its state folder and crashed."""
    daemon = harness.daemons["alpha"]
    for work in (
        pb.PollWorkResponse(join_round=pb.JoinRound(round_id=round_id, roster=["alpha", "beta"])),
        pb.PollWorkResponse(blind_list=pb.BlindList(round_id=round_id, list_owner="alpha")),
        pb.PollWorkResponse(round_ended=pb.RoundEnded(round_id=round_id, phase=pb.ROUND_PHASE_FAILED)),
    ):
        daemon._handle(work)  # logs and ignores; raises nothing
    state = harness.configs["alpha"].state_dir
    assert not [p.name for p in state.iterdir() if p.name.startswith("round-")]  # no file named by it
    assert "Withdraw" not in harness.network.calls  # nothing to withdraw from


@pytest.mark.parametrize(
    ("owner", "hop", "why"),
    [
        ("beta", 1, "at a hop the ring gives gamma"),  # beta's list at hop 1 is gamma's work
        ("alpha", 2, "at a hop the ring gives gamma"),  # its own list past hop 0
        ("alpha", 7, "a list or hop this round does not have"),
        ("nobody", 0, "a list or hop this round does not have"),
    ],
)
def test_work_off_the_signed_ring_is_refused_before_anything_is_sent(
    harness: Harness, owner: str, hop: int, why: str
) -> None:
    """Before: a daemon blinded whatever list at whatever hop the coordinator asked for (a
    blinding oracle: a list of the coordinator's choosing, under this company's key)."""
    round_id = harness.open_round()
    harness.step_all()  # everyone joined and enrolled
    before = uploads(harness)
    harness.daemons["alpha"]._blind(pb.BlindList(round_id=round_id, list_owner=owner, hop=hop))
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and why in status.failure_reason
    assert "alpha withdrew" in status.failure_reason and status.failed_party == "coordinator"
    assert uploads(harness) == before


def test_a_second_different_list_at_one_hop_is_refused(harness: Harness) -> None:
    """Before: asked twice for the same hop, a daemon blinded both lists."""
    round_id = harness.open_round()
    harness.step_all()
    daemon = harness.daemons["beta"]
    company_round = daemon._round(round_id)
    assert company_round is not None
    work = pb.BlindList(round_id=round_id, list_owner="alpha", hop=1)
    first = ListInTransit(bytearray(b"\x02" * 33), bytearray(29))
    daemon._check_once_per_hop(company_round, work, first)
    daemon._check_once_per_hop(company_round, work, first)  # the same list again: a restart's retry
    harness.restart_company("beta")  # the digest is in the sealed state, not only in memory
    daemon = harness.daemons["beta"]
    company_round = daemon._round(round_id)
    assert company_round is not None
    with pytest.raises(RelayFault, match="a second, different list of alpha at hop 1"):
        daemon._check_once_per_hop(company_round, work, ListInTransit(bytearray(b"\x03" * 33), bytearray(29)))


def test_an_input_changed_between_join_and_a_restart_refuses_the_resume(harness: Harness) -> None:
    """Before: the restarted daemon sealed the new file's bits under the round's tag key and
    the same AES-GCM nonces (one per hop-0 position): nonce reuse."""
    round_id = harness.open_round()
    harness.start_relaying()
    data = harness.configs["beta"].data.path
    data.write_text(data.read_text().replace("person-12,1", "person-12,0"), encoding="utf-8")
    harness.restart_company("beta")
    before = uploads(harness)
    harness.step("beta")
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "beta"
    assert uploads(harness) == before
    log_hint = "its input was refused by its daemon"
    assert log_hint in status.failure_reason


def test_input_read_with_other_settings_after_a_restart_refuses_the_resume(harness: Harness) -> None:
    """Found by an attacker review: the sealed state bound only the file's bytes, so a daemon
    restarted mid-round with another [data] failure_column over the same file re-sealed other
    bits under the round's chunk keys and nonces (the coordinator saw both bodies of chunk 0)."""
    data = harness.configs["beta"].data.path
    data.write_text(
        "\n".join(f"{line},{line.split(',')[1] if n else 'other'}" for n, line in
                  enumerate(data.read_text(encoding="utf-8").splitlines())) + "\n",
        encoding="utf-8",
    )  # fmt: skip  # a second failure column, the same bits
    round_id = harness.open_round()
    harness.start_relaying()
    spec = harness.configs["beta"].data
    harness.reconfigure("beta", data=replace(spec, failure_column="other"))
    before = uploads(harness)
    harness.step("beta")
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "beta"
    assert uploads(harness) == before
    assert "its input was refused by its daemon" in status.failure_reason


def test_a_list_size_no_sender_signed_allocates_nothing() -> None:
    """Before: the daemon allocated what the first chunk's `list_size` asked for (3.1 GB for
    50 million) before it checked anything."""
    sender, receiver = RelayKeys(), RelayKeys()
    address = ListAddress("r-0123456789abcdef", "alpha", 0)
    opener = receiver.opener(
        _peer("alpha", sender), address.round_id, "beta", address.list_owner, address.hop
    )
    chunk = pb.ListChunk(
        round_id=address.round_id, sender="alpha", list_owner="alpha", hop=0, chunk_index=0,
        chunk_count=1, list_size=40_000_000, chunk_elements=1, receiver="beta", sealed=bytes(sealed_size(1)),
    )  # fmt: skip
    tracemalloc.start()
    try:
        with pytest.raises(RelayFault, match="fails authentication"):
            ListReceiver(address, "alpha", opener).add(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000  # 40 million elements would take 2.5 GB


def _peer(name: str, keys: RelayKeys):
    from monoculture.core.relay import RelayPeer

    return RelayPeer(name, keys.public_key, keys.public_key, b"", b"")


def test_a_v1_coordinator_is_refused_by_name_before_anything_is_sent(harness: Harness) -> None:
    """A JoinRound without a protocol version is a v1 coordinator's: the v2 daemon withdraws,
    saying which versions speak, before it reads its data or sends a key."""
    round_id = harness.open_round()
    before = list(harness.network.calls)
    harness.daemons["alpha"]._join(pb.JoinRound(round_id=round_id, roster=["alpha", "beta", "gamma"]))
    assert harness.network.calls[len(before) :] == ["Withdraw"]  # no Enroll
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "coordinator"
    assert "alpha withdrew: the coordinator speaks protocol v1; this side speaks v3" in status.failure_reason


def _pair_keys_work(harness: Harness, round_id: str) -> pb.PairKeys:
    """The PairKeys an honest coordinator hands out for this round (every enrolled key, in order)."""
    record = harness.book._rounds[round_id]
    peers = [record.peers[name].to_message() for name in record.state.ring.roster]
    return pb.PairKeys(round_id=round_id, peers=peers)


def test_pair_keys_do_not_come_from_the_relay_key_a_blame_discloses(harness: Harness) -> None:
    """A receiver discloses its relay private key as blame evidence; the pair keys come from the
    tag keys, so the coordinator holding that evidence cannot unmask the receiver's values."""
    round_id = harness.open_round()
    harness.start_relaying()
    beta = harness.daemons["beta"]._round(round_id)
    assert beta is not None
    secrets_ = beta.secrets
    peers = _pair_keys_work(harness, round_id).peers
    relay_keys = {p.company: p.relay_public_key for p in peers if p.company != "beta"}
    from_relay = derive_pair_keys(
        secrets_.relay_private_key, "beta", relay_keys, secrets_.transcript, round_id, secrets_.roster
    )
    assert set(from_relay.values()).isdisjoint(dict(secrets_.pair_keys).values())


def test_pair_keys_shown_again_differently_are_refused(harness: Harness) -> None:
    """Pair keys are derived once: a second PairKeys giving another transcript would re-mask
    hop 0 under the same tag nonces (AES-GCM nonce reuse); the daemon withdraws instead."""
    round_id = harness.open_round()
    harness.start_relaying()
    daemon = harness.daemons["alpha"]
    company_round = daemon._round(round_id)
    assert company_round is not None
    company_round.secrets = replace(company_round.secrets, transcript=bytes(32))  # another transcript
    daemon._confirm(_pair_keys_work(harness, round_id))
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "coordinator"
    assert "showed the peers' keys a second time, and differently" in status.failure_reason


def test_a_peer_key_altered_on_its_way_is_put_on_the_coordinator(harness: Harness) -> None:
    """The coordinator checked every key at enrolment: one that does not hold when it is shown
    for the pair keys was changed by the coordinator, not by the peer it names."""
    round_id = harness.open_round()
    harness.step_all()  # enrolled; CONFIRMING
    work = _pair_keys_work(harness, round_id)
    work.peers[2].tag_public_key = bytes(32)  # gamma's tag key, low order
    harness.daemons["alpha"]._confirm(work)
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "coordinator"
    assert "alpha withdrew: the peers' keys are refused" in status.failure_reason


def test_what_the_coordinator_announced_is_bound_into_the_transcript() -> None:
    """Two companies told different groups (or policies) derive different transcripts, so their
    key confirmations fail before any list moves."""
    base = pb.JoinRound(round_id="r-0123456789abcdef", roster=["a", "b"], protocol_version=PROTOCOL_VERSION)
    grouped = pb.JoinRound()
    grouped.CopyFrom(base)
    grouped.groups_from, grouped.group_labels[:] = "a", ["north", "south"]
    cheaper = pb.JoinRound()
    cheaper.CopyFrom(base)
    cheaper.release_policy.dp_epsilon = 0.5
    ledger_moved = pb.JoinRound()
    ledger_moved.CopyFrom(base)
    ledger_moved.roster_budget.spent_epsilon = 3.0  # the ledger moves between joins: not bound
    digests = {round_settings(j) for j in (base, grouped, cheaper)}
    assert len(digests) == 3 and round_settings(ledger_moved) == round_settings(base)


def test_work_the_daemon_cannot_handle_ends_its_round_not_the_daemon(harness: Harness, monkeypatch) -> None:
    """An unexpected error while handling one piece of work (here: blinding raises) is logged,
    the company leaves that round, and the daemon serves on (it used to end the process)."""
    round_id = harness.open_round()
    harness.start_relaying()

    def broken(*args, **kwargs):
        raise RuntimeError("an unforeseen failure")

    monkeypatch.setattr("monoculture.client.daemon.blind_own_list", broken)
    assert harness.step("alpha") is True  # returns: no exception escapes the step
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "alpha"
    assert "alpha's daemon could not handle its blind_list work" in status.failure_reason


def test_a_round_announced_without_a_release_policy_is_refused_before_any_charge(harness: Harness) -> None:
    """Found by an attacker review: a JoinRound without a release policy took an old branch that
    charged nothing and checked no dummies, so a coordinator could repeat failed rounds with
    dummies at any epsilon (1e6: the padded size exact) past every cap."""
    round_id = harness.open_round()
    join = harness.book.poll_work("alpha", 0).join_round
    join.ClearField("release_policy")
    join.dummies.CopyFrom(pb.DummyPolicy(epsilon=1e6, delta=1e-6))
    before = list(harness.network.calls)
    harness.daemons["alpha"]._join(join)
    assert harness.network.calls[len(before) :] == ["Withdraw"]
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and "no release policy" in status.failure_reason
    assert not harness.daemons["alpha"]._ledger.knows(round_id)


def test_a_join_offered_again_after_the_keys_are_confirmed_is_refused(harness: Harness) -> None:
    """Found by an attacker review: a JoinRound offered again re-read the input with the live file
    and settings, unchecked, and the hop 0 that followed re-sealed other records under the chunk
    keys and nonces already used. Past enrolment (pair keys confirmed) it is refused, naming the
    coordinator."""
    round_id = harness.open_round()
    join = harness.book.poll_work("beta", 0).join_round
    harness.start_relaying()
    before = list(harness.network.calls)
    harness.daemons["beta"]._join(join)
    assert harness.network.calls[len(before) :] == ["Withdraw"]
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and "already confirmed" in status.failure_reason


def test_a_join_offered_again_over_a_changed_input_is_refused(harness: Harness) -> None:
    """Before its pair keys are confirmed a restarted company may join again with its sealed keys
    (its enrolment may not have gone through), but only over the input it joined with."""
    round_id = harness.open_round()
    join = harness.book.poll_work("beta", 0).join_round
    harness.daemons["beta"]._join(join)  # enrolled; the round waits for the others
    data = harness.configs["beta"].data.path
    data.write_text(data.read_text().replace("person-12,1", "person-12,0"), encoding="utf-8")
    harness.restart_company("beta")
    before = list(harness.network.calls)
    harness.daemons["beta"]._join(join)
    assert harness.network.calls[len(before) :] == ["Withdraw"]
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "beta"
    assert "its input was refused by its daemon" in status.failure_reason
