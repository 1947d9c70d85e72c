"""The round's state machine and ring schedule."""

from __future__ import annotations

import pytest

from monoculture.coordinator.state import TRANSITIONS, RoundState
from monoculture.core.errors import ProtocolError
from monoculture.core.protocol import Ring, RoundPhase


def _state(k: int = 3) -> RoundState:
    return RoundState("r-1", Ring(tuple(f"c{i}" for i in range(k))))


def test_ring_schedule_visits_every_company_once_per_list() -> None:
    ring = Ring(("a", "b", "c", "d"))
    for owner in ring.roster:
        blinders = [ring.blinder(owner, hop) for hop in range(ring.parties)]
        assert blinders[0] == owner
        assert sorted(blinders) == sorted(ring.roster)
    # At every hop each company blinds exactly one list: the work is balanced.
    for hop in range(ring.parties):
        assert sorted(ring.blinder(o, hop) for o in ring.roster) == sorted(ring.roster)


@pytest.mark.parametrize("roster", [("a",), ("a", "a"), ("a", "B"), ("a", "x y"), ()])
def test_bad_rosters_are_refused(roster: tuple[str, ...]) -> None:
    with pytest.raises(ProtocolError):
        Ring(roster)


def test_terminal_phases_have_no_way_out() -> None:
    assert TRANSITIONS[RoundPhase.COMPLETE] == frozenset()
    assert TRANSITIONS[RoundPhase.FAILED] == frozenset()
    state = _state()
    with pytest.raises(ProtocolError, match="cannot go from OPEN to COMPLETE"):
        state.advance(RoundPhase.COMPLETE)


def _enrol_all(state: RoundState, size: int = 5) -> None:
    """Every company enrols, then confirms its pair keys: the round is RELAYING."""
    for company in state.ring.roster:
        join = state.next_work(company)
        assert join is not None and join.join
        assert state.next_work(company) == join  # on offer until done (a restarted company asks again)
        state.enroll(company, size, 0.0)
        later = state.next_work(company)
        assert later is None or not later.join
    assert state.phase == RoundPhase.CONFIRMING
    _confirm_all(state)


def _macs(state: RoundState, company: str) -> dict[str, str]:
    return {other: f"{company}>{other}".encode().hex() for other in state.ring.roster if other != company}


def _confirm_all(state: RoundState) -> None:
    for company in state.ring.roster:
        work = state.next_work(company)
        assert work is not None and work.confirm
        assert state.next_work(company) == work  # on offer until done
        state.confirm(company, _macs(state, company), 0.0)


def _run_hop0(state: RoundState, size: int = 5) -> None:
    _enrol_all(state, size)
    assert state.phase == RoundPhase.RELAYING
    works = {company: state.next_work(company) for company in state.ring.roster}
    for company, work in works.items():
        assert work is not None and work.hop == 0 and work.list_owner == company
        state.check_upload(company, company, 0, size)
        state.record_upload(company, 0, 0.0)


def test_a_whole_round_walks_open_relaying_counting() -> None:
    state = _state(3)
    _run_hop0(state)
    assert state.phase == RoundPhase.RELAYING
    relayed = []
    while state.phase == RoundPhase.RELAYING:
        progressed = False
        for company in state.ring.roster:
            work = state.next_work(company)
            if work is None:
                continue
            # A company only ever gets a list whose previous hop is complete, and only its own hop.
            assert state.ring.blinder(work.list_owner, work.hop) == company
            assert work.hop >= 1
            state.check_download(company, work.list_owner, work.hop - 1)
            state.check_upload(company, work.list_owner, work.hop, 5)
            state.record_upload(work.list_owner, work.hop, 0.0)
            relayed.append((work.list_owner, work.hop))
            progressed = True
        assert progressed
    assert sorted(relayed) == sorted((o, h) for o in state.ring.roster for h in (1, 2))
    assert state.phase == RoundPhase.COUNTING
    assert all(state.next_work(c) is None for c in state.ring.roster)


def test_uploads_out_of_turn_are_refused() -> None:
    state = _state(3)
    state.enroll("c0", 5, 0.0)
    with pytest.raises(ProtocolError, match="needs RELAYING"):
        state.check_upload("c0", "c0", 0, 5)  # before everyone enrolled
    for company in ("c1", "c2"):
        state.enroll(company, 5, 0.0)
    with pytest.raises(ProtocolError, match="needs RELAYING"):
        state.check_upload("c0", "c0", 0, 5)  # before everyone confirmed its pair keys
    _confirm_all(state)
    with pytest.raises(ProtocolError, match="c0's to produce"):
        state.check_upload("c1", "c0", 0, 5)  # someone else's own list
    with pytest.raises(ProtocolError, match="c1's to produce"):
        state.check_upload("c2", "c0", 1, 5)
    with pytest.raises(ProtocolError, match="not on this round's roster"):
        state.check_upload("mallory", "c0", 0, 5)
    with pytest.raises(ProtocolError, match="declares 4"):
        state.check_upload("c0", "c0", 0, 4)
    with pytest.raises(ProtocolError, match="outside"):
        state.check_upload("c0", "c0", 7, 5)


def test_a_list_cannot_be_uploaded_twice() -> None:
    state = _state(2)
    _run_hop0(state)
    with pytest.raises(ProtocolError):
        state.check_upload("c0", "c0", 0, 5)


def test_fully_blinded_lists_never_go_to_a_company() -> None:
    state = _state(2)
    _run_hop0(state)
    state.check_upload("c1", "c0", 1, 5)
    state.record_upload("c0", 1, 0.0)
    with pytest.raises(ProtocolError, match="coordinator only"):
        state.check_download("c1", "c0", 1)
    with pytest.raises(ProtocolError, match="not yours"):
        state.check_download("c0", "c0", 0)  # an owner never gets its own list back


def test_enrolment_checks() -> None:
    state = RoundState("r-1", Ring(("a", "b")), min_list_size=10)
    with pytest.raises(ProtocolError, match="below this round's minimum"):
        state.enroll("a", 9, 0.0)
    state.enroll("a", 10, 0.0)
    with pytest.raises(ProtocolError, match="already enrolled"):
        state.enroll("a", 10, 0.0)


def test_failing_names_the_party_and_is_final() -> None:
    state = _state()
    state.fail("withdrew", "c1")
    assert state.phase == RoundPhase.FAILED and state.failed_party == "c1"
    state.fail("again", "c2")  # no effect once ended
    assert state.failed_party == "c1"
    assert state.next_work("c0") is None


def test_a_step_stays_on_offer_until_it_is_done() -> None:
    state = _state(2)
    _enrol_all(state)
    first = state.next_work("c0")
    assert first is not None and state.next_work("c0") == first
    state.check_upload("c0", "c0", 0, 5)
    state.record_upload("c0", 0, 0.0)
    assert state.next_work("c0") != first


def test_deadlines_name_the_late_party() -> None:
    state = RoundState("r-1", Ring(("a", "b", "c")), deadline_seconds=10, opened_at=1000.0)
    assert state.overdue(1005.0) is None
    state.enroll("a", 5, 0.0)
    assert state.overdue(1011.0) == ("b", "did not enrol")
    state.enroll("b", 5, 0.0)
    state.enroll("c", 5, 0.0)
    state.confirming_since = 1500.0
    state.confirm("a", _macs(state, "a"), 1501.0)
    assert state.overdue(1511.0) == ("b", "did not confirm its pair keys")
    state.confirm("b", _macs(state, "b"), 1502.0)
    state.confirm("c", _macs(state, "c"), 1503.0)
    state.relaying_since = 2000.0
    for company in ("a", "b"):
        state.record_upload(company, 0, 0.0)
        state.done_at[(company, 0)] = 2005.0
    assert state.overdue(2011.0) == ("c", "did not deliver list of c at hop 0")
    state.record_upload("c", 0, 0.0)
    state.done_at[("c", 0)] = 2011.0
    assert state.overdue(2014.0) is None
    assert state.overdue(2016.0) == ("b", "did not deliver list of a at hop 1")


def test_confirmations_name_every_peer_once_and_reach_their_receiver() -> None:
    state = _state(3)
    for company in state.ring.roster:
        state.enroll(company, 5, 0.0)
    with pytest.raises(ProtocolError, match="must name every other company"):
        state.confirm("c0", {"c1": "aa"}, 0.0)
    with pytest.raises(ProtocolError, match="must name every other company"):
        state.confirm("c0", {"c0": "aa", "c1": "aa", "c2": "aa"}, 0.0)
    state.confirm("c0", _macs(state, "c0"), 0.0)
    state.confirm("c0", _macs(state, "c0"), 0.0)  # the same again: a retry
    with pytest.raises(ProtocolError, match="other values"):
        state.confirm("c0", {"c1": "bb", "c2": "bb"}, 0.0)
    state.confirm("c1", _macs(state, "c1"), 0.0)
    state.confirm("c2", _macs(state, "c2"), 0.0)
    assert state.phase == RoundPhase.RELAYING
    assert state.confirmations_for("c1") == {"c0": _macs(state, "c0")["c1"], "c2": _macs(state, "c2")["c1"]}


def test_state_survives_json() -> None:
    state = _state(3)
    _run_hop0(state)
    state.fail("late", "c2")
    again = RoundState.from_json(state.to_json())
    assert again == state


def test_a_v2_party_is_refused_by_name() -> None:
    """v3 moved a padded list size from the key confirmations to the hop-0 upload: a v2 daemon
    and a v3 coordinator (or the reverse) must refuse each other at once, not stall in
    CONFIRMING until the deadline (review of ed117dd)."""
    from monoculture.core.errors import MalformedRequest
    from monoculture.core.protocol import PROTOCOL_VERSION, check_protocol_version

    assert PROTOCOL_VERSION == 3
    with pytest.raises(MalformedRequest, match="beta speaks protocol v2; this side speaks v3"):
        check_protocol_version(2, "beta")
