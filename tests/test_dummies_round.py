"""DP dummies in a round (issue 12; docs/PROTOCOL.md, "DP dummies"): the list sizes and the
overlaps of two companies the coordinator sees carry dummies, the result stays exact.

The in-process harness runs the real RoundBook and the real daemons (real crypto).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import grpc
import pytest
from conftest import assert_same_integers
from support.harness import Harness, LinkError, keep_final_lists

from monoculture.analysis.budget import DEFAULT_MAX_EPSILON_PER_ROSTER, ReleaseFloor, roster_key
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.release import ReleasePolicy
from monoculture.analysis.table import plaintext_table
from monoculture.core.dummies import (
    DummyPlan,
    Padding,
    accepted_plan,
    exact_regions,
    padded_regions,
    round_padding_level,
)
from monoculture.core.protocol import RoundPhase
from monoculture.core.psi_crypto import POINT_SIZE
from monoculture.v1 import monoculture_pb2 as pb

POPULATION = {
    "alpha": [(f"person-{i}", int(i % 2 == 0)) for i in range(80)],
    "beta": [(f"person-{i}", int(i % 3 == 0)) for i in range(30, 110)],
    "gamma": [(f"person-{i}", int(i % 5 == 0)) for i in range(15, 95)],
}
PLAN = DummyPlan.for_round(1.0, 1e-6, 3)  # mu = 27: each padded region gets 0..54 dummies


@pytest.fixture
def finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    finals = keep_final_lists(monkeypatch)
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    yield harness, round_id, finals
    harness.close()


def _regions(membership: dict[str, set[str]]) -> dict[tuple[str, ...], int]:
    """How many ids each exact set of holders has (the Venn regions)."""
    counts: dict[tuple[str, ...], int] = {}
    everyone = set().union(*membership.values())
    for x in everyone:
        holders = tuple(name for name in POPULATION if x in membership[name])
        counts[holders] = counts.get(holders, 0) + 1
    return counts


def test_the_result_stays_exact_and_the_sizes_are_padded(finished) -> None:
    harness, round_id, _ = finished
    result = harness.result(round_id)
    outcomes = [dict(rows) for rows in POPULATION.values()]
    assert_same_integers(result, result_dict(plaintext_table(list(POPULATION), outcomes)))
    padded = result["list_sizes"]
    extra = {name: padded[name] - len(rows) for name, rows in POPULATION.items()}
    # a singleton and two pair regions per company: 0..54 dummies each
    assert all(0 <= e <= 3 * 2 * PLAN.mu for e in extra.values()) and sum(extra.values()) > 0


def test_every_region_but_the_output_is_padded_by_0_to_2mu(finished) -> None:
    """The coordinator's view of the Venn regions: each of two companies or one padded, the full
    intersection (the output) exact."""
    _, _, finals = finished
    tokens = {
        name: {final.tokens[p : p + POINT_SIZE] for p in range(0, len(final.tokens), POINT_SIZE)}
        for name, final in finals.items()
    }
    seen = _regions(tokens)
    truth = _regions({name: {x for x, _ in rows} for name, rows in POPULATION.items()})
    for size in (1, 2):
        for region in itertools.combinations(POPULATION, size):
            assert 0 <= seen.get(region, 0) - truth.get(region, 0) <= 2 * PLAN.mu, region
    assert seen[tuple(POPULATION)] == truth[tuple(POPULATION)]
    assert sum(seen.values()) > sum(truth.values())


def test_a_restarted_company_declares_the_same_padded_size(tmp_path: Path) -> None:
    """The noise is drawn from sealed seeds and the pair keys: a retry reuses it (a coordinator
    failing rounds on purpose does not get fresh draws within a round)."""
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round()
    harness.start_relaying()
    before = harness.daemons["beta"]._round(round_id)
    assert before is not None
    size = before.padded_size("beta")
    harness.restart_company("beta")
    after = harness.daemons["beta"]._round(round_id)
    assert after is not None and after.padded_size("beta") == size > len(POPULATION["beta"])
    assert harness.run(round_id) == RoundPhase.COMPLETE  # the size comes with the hop-0 upload
    assert harness.book._rounds[round_id].state.list_sizes["beta"] == size
    harness.close()


def test_without_dummies_the_sizes_are_exact(tmp_path: Path) -> None:
    harness = Harness(tmp_path, POPULATION)
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    assert harness.result(round_id)["list_sizes"] == {name: len(rows) for name, rows in POPULATION.items()}
    harness.close()


def test_the_dummies_are_charged_to_each_companys_ledger(finished) -> None:
    """The sizes the coordinator sees are another release about the same people: each company
    charges the dummies' epsilon with the round (here an exact release, which costs 0)."""
    harness, _, _ = finished
    roster = roster_key(POPULATION)
    for name in POPULATION:
        ledger = harness.daemons[name]._ledger.ledger(roster)
        assert ledger.spent == pytest.approx(1.0) and ledger.spent_delta == pytest.approx(1e-6)


@pytest.mark.e2e
def test_simulate_with_dummies_on_real_data_is_exact(tmp_path: Path) -> None:
    """`monoculture simulate --dummy-epsilon 1`: real processes over mTLS on the digit results;
    the result equals the plaintext one, and the list sizes the coordinator saw are padded."""
    import json
    import subprocess
    import sys

    from conftest import example

    from monoculture.core.dataset import InputSpec, load_records

    names = ("google", "microsoft", "ibm")
    args = [f"--company={n}={example('digit', n)}" for n in names]
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "simulate", *args, "--dummy-epsilon", "1",
         "--out", str(tmp_path / "result.json"), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    outcomes = [load_records(InputSpec(example("digit", n))).as_mapping() for n in names]
    assert_same_integers(result, result_dict(plaintext_table(list(names), outcomes)))
    padded = result["list_sizes"]
    assert all(padded[n] >= len(o) for n, o in zip(names, outcomes, strict=True))
    assert sum(padded.values()) > sum(len(o) for o in outcomes)


def test_with_dummies_no_minimum_is_tested_on_the_exact_size(tmp_path: Path) -> None:
    """Before: the daemon withdrew when its exact size was below the round's minimum, free of
    charge, so rounds with rising minimums gave the exact size away. With dummies the minimum
    is the coordinator's to check, on the padded size."""
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    exact = len(POPULATION["beta"])
    state = harness.book.open_round(list(POPULATION), min_list_size=exact + 1)
    join = harness.book.poll_work("beta", 0).join_round
    assert join.min_list_size == exact + 1
    harness.daemons["beta"]._join(join)
    assert harness.network.calls[-1] == "Enroll" and "Withdraw" not in harness.network.calls
    assert harness.phase(state.round_id) == RoundPhase.OPEN
    harness.close()


def test_a_round_announced_twice_differently_is_refused(tmp_path: Path) -> None:
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round()
    join = harness.book.poll_work("alpha", 0).join_round
    harness.daemons["alpha"]._join(join)
    again = pb.JoinRound()
    again.CopyFrom(join)
    again.min_list_size = 50  # the same round, announced again with another setting
    harness.daemons["alpha"]._join(again)
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "coordinator"
    assert "announced this round twice, differently" in status.failure_reason
    harness.close()


@pytest.mark.parametrize(
    ("epsilon", "delta", "why"),
    [
        (1e6, 1e-6, "outside [0.001, 100]"), (float("inf"), 1e-6, "outside"), (1.0, 0.0, "dummy delta 0"),
        (1e-70, 1e-6, "outside"),
    ],
)  # fmt: skip
def test_a_dummy_policy_a_company_cannot_accept_is_refused_before_any_charge(
    tmp_path: Path, epsilon: float, delta: float, why: str
) -> None:
    """Before: any announced policy was charged at join (a huge epsilon spent a company's budget
    at once), and an invalid one crashed the daemon at confirmation."""
    harness = Harness(tmp_path, POPULATION)
    round_id = harness.open_round()
    join = harness.book.poll_work("gamma", 0).join_round
    join.dummies.CopyFrom(pb.DummyPolicy(epsilon=epsilon, delta=delta))
    harness.daemons["gamma"]._join(join)
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "gamma"
    assert "DP dummies cannot be accepted" in status.failure_reason and why in status.failure_reason
    assert harness.daemons["gamma"]._ledger.ledger(roster_key(POPULATION)).spent == 0
    harness.close()


def test_the_floor_and_both_ledgers_count_the_dummies(tmp_path: Path) -> None:
    """Before: floors and the auditor's cap saw the release alone (0 for an exact release), so
    rounds with dummies could repeat without bound and their sizes be averaged."""
    floors = {"beta": ReleaseFloor(max_epsilon_per_round=1.5)}
    policy = ReleasePolicy(
        min_shared_individuals=1, min_cell_count=0, mechanism="discrete-laplace", epsilon=1.0
    )
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6), floors=floors, release_policy=policy)
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert (
        status.failed_party == "beta" and "epsilon 2 is above the 1.5 beta accepts" in status.failure_reason
    )
    harness.close()
    harness = Harness(tmp_path / "again", POPULATION, dummies=(1.0, 1e-6), max_epsilon_per_roster=1.5)
    harness.open_round()
    assert harness.budget().spent_epsilon == pytest.approx(1.0)  # exact release: the dummies alone
    with pytest.raises(Exception, match="budget of roster"):
        harness.open_round()  # 1 + 1 > 1.5: refused by the auditor's cap
    harness.close()


def test_a_policy_that_would_make_too_many_dummies_is_refused() -> None:
    with pytest.raises(ValueError, match="1281952 dummies per company, above 1000000"):
        accepted_plan(0.001, 1e-12, 16)  # mu = 40,061, 16 padded regions per company
    assert accepted_plan(0.001, 1e-12, 3).mu == 40061


def test_a_round_id_already_taken_part_in_is_refused(tmp_path: Path) -> None:
    """Before: after a round ended (its state deleted), the same round id offered again was
    joined afresh: fresh noise, no new charge (the ledger is keyed by round id), so padded
    sizes could be averaged to the exact size for the price of one round."""
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round()
    join = harness.book.poll_work("alpha", 0).join_round
    assert harness.run(round_id) == RoundPhase.COMPLETE
    before = list(harness.network.calls)
    harness.daemons["alpha"]._join(join)  # the same JoinRound, replayed after the end
    assert harness.network.calls[len(before) :] == ["Withdraw"]
    assert harness.daemons["alpha"]._ledger.ledger(roster_key(POPULATION)).rounds == 1
    harness.close()


@pytest.mark.parametrize("field", ["round_charge", "roster_budget"])
def test_ledger_figures_that_are_not_numbers_are_refused(tmp_path: Path, field: str) -> None:
    """Before: a NaN in the coordinator's ledger figure replaced the company's own and made
    every cap comparison false: the roster cap stopped binding."""
    harness = Harness(tmp_path, POPULATION)
    round_id = harness.open_round()
    join = harness.book.poll_work("alpha", 0).join_round
    if field == "round_charge":
        join.round_charge.epsilon = float("nan")
    else:
        join.roster_budget.spent_epsilon = float("nan")
    harness.daemons["alpha"]._join(join)
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and "not non-negative numbers" in status.failure_reason
    harness.close()


def test_a_low_order_coordinator_key_is_refused_not_crashed_on(tmp_path: Path) -> None:
    """Before: an all-zero coordinator tag key raised out of the daemon's step (the process
    ended, and the deadline later named the honest company)."""
    harness = Harness(tmp_path, POPULATION)
    round_id = harness.open_round()
    join = harness.book.poll_work("alpha", 0).join_round
    join.coordinator_public_key = bytes(32)
    harness.daemons["alpha"]._handle(pb.PollWorkResponse(join_round=join))  # returns
    status = harness.status(round_id)
    assert status.phase == RoundPhase.FAILED and status.failed_party == "coordinator"
    assert "low-order point" in status.failure_reason
    harness.close()


# ------------------------------------------------------------ every region (k >= 4)

# Every one of the 15 regions of four companies is non-empty: person i is in the lists of i % 15 + 1.
FOUR = {
    name: [(f"person-{i}", int(i % (bit + 2) == 0)) for i in range(600) if (i % 15 + 1) >> bit & 1]
    for bit, name in enumerate(["alpha", "beta", "gamma", "delta"])
}
FOUR_PLAN = DummyPlan.for_round(8.0, 1e-6, 4)  # mu = 4: 7 regions x 4 = 28 dummies per company


def _four_company_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_list_size: int):
    finals = keep_final_lists(monkeypatch)
    harness = Harness(tmp_path, FOUR, dummies=(8.0, 1e-6))
    round_id = harness.open_round(min_list_size=min_list_size)
    assert harness.run(round_id) == RoundPhase.COMPLETE
    outcomes = [dict(rows) for rows in FOUR.values()]
    assert_same_integers(harness.result(round_id), result_dict(plaintext_table(list(FOUR), outcomes)))
    tokens = {
        name: {final.tokens[p : p + POINT_SIZE] for p in range(0, len(final.tokens), POINT_SIZE)}
        for name, final in finals.items()
    }
    harness.close()
    seen = _venn(tokens, list(FOUR))
    truth = _venn({name: {x for x, _ in rows} for name, rows in FOUR.items()}, list(FOUR))
    return seen, truth


def _venn(membership: dict[str, set[str]], roster: list[str]) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {}
    for x in set().union(*membership.values()):
        holders = tuple(name for name in roster if x in membership[name])
        counts[holders] = counts.get(holders, 0) + 1
    return counts


def test_every_region_but_the_output_is_padded_where_the_minimum_allows(tmp_path, monkeypatch) -> None:
    """k = 4, minimum list size 280 (the 10% rule: 28 expected dummies per company): the seeds of the
    four regions of three companies go, sealed, from each region's first member to the others; the
    coordinator sees all 14 regions but the output padded by 0..2mu, the output exact."""
    assert round_padding_level(FOUR_PLAN, 280) is Padding.ALL
    seen, truth = _four_company_round(tmp_path, monkeypatch, min_list_size=280)
    for region in padded_regions(list(FOUR), Padding.ALL):
        assert 0 <= seen.get(region, 0) - truth.get(region, 0) <= 2 * FOUR_PLAN.mu, region
    assert seen[tuple(FOUR)] == truth[tuple(FOUR)]
    triples = [r for r in itertools.combinations(FOUR, 3)]
    assert sum(seen[r] - truth[r] for r in triples) > 0  # 4 draws of 0..8: all 0 has chance < 1e-4


def test_below_the_ten_percent_rule_regions_of_three_stay_exact(tmp_path, monkeypatch) -> None:
    """The same round with a minimum of 279: singletons and pairs padded, the regions of three
    companies exact to the coordinator (as docs/PROTOCOL.md and the README state)."""
    assert round_padding_level(FOUR_PLAN, 279) is Padding.PAIRS
    seen, truth = _four_company_round(tmp_path, monkeypatch, min_list_size=279)
    for region in exact_regions(list(FOUR), Padding.PAIRS):
        assert seen[region] == truth[region], region
    assert sum(seen[r] - truth[r] for r in padded_regions(list(FOUR), Padding.PAIRS)) > 0


def test_a_padded_size_below_the_minimum_or_above_the_limit_fails_the_round_at_hop_0(tmp_path: Path) -> None:
    """With dummies the padded size first reaches the coordinator in the hop-0 upload: one below
    the round's minimum, or above [limits] max_list_size, ends the round there, naming its company
    (not a refusal the company would retry until the deadline)."""
    from monoculture.coordinator.config import Limits

    big = 10_000  # no padded list of 80 records reaches it
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round(min_list_size=big)
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert "below this round's minimum" in status.failure_reason and status.failed_party in POPULATION
    harness.close()
    harness = Harness(tmp_path / "limit", POPULATION, dummies=(1.0, 1e-6), limits=Limits(max_list_size=81))
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert "above the limit of 81" in status.failure_reason and status.failed_party in POPULATION
    harness.close()


def test_a_company_can_require_every_region_padded(tmp_path: Path) -> None:
    """Review of ed117dd: the coordinator chooses the minimum list size, and with it whether the
    regions of three or more are padded. A company that needs them padded says so ([client]
    require_padded_regions) and refuses, before any charge, rounds without dummies and rounds
    whose minimum leaves those regions exact; a round that pads every region runs."""

    four = {name: rows for name, rows in FOUR.items()}
    # Each company charges every round it enrols in: two rounds at epsilon 8 need more than the
    # default cap of 10 per roster.
    floors = {
        name: ReleaseFloor(max_epsilon_per_roster=math.inf, max_epsilon_total=math.inf) for name in four
    }
    harness = Harness(tmp_path, four, dummies=(8.0, 1e-6), floors=floors)
    try:
        harness.reconfigure("beta", require_padded_regions=True)
        low = harness.open_round(min_list_size=279)
        assert harness.run(low) == RoundPhase.FAILED
        reason = harness.status(low).failure_reason
        assert "require_padded_regions" in reason and "a minimum list size of 280 would pad" in reason
        assert not harness.daemons["beta"]._ledger.knows(low)  # refused before any charge
        good = harness.open_round(min_list_size=280)
        assert harness.run(good) == RoundPhase.COMPLETE
    finally:
        harness.close()
    plain = Harness(tmp_path / "plain", four)
    try:
        plain.reconfigure("beta", require_padded_regions=True)
        round_id = plain.open_round()
        assert plain.run(round_id) == RoundPhase.FAILED
        assert "only in rounds with DP dummies" in plain.status(round_id).failure_reason
    finally:
        plain.close()


def test_an_upload_before_its_previous_hop_is_refused_naming_the_sender(tmp_path: Path) -> None:
    """Review of ed117dd: with dummies a list's size is unknown until its hop-0 upload; an upload
    of a later hop before that raised KeyError (gRPC UNKNOWN). It is a protocol error naming
    the sender, and the round is left as it was."""
    from monoculture.core.errors import ProtocolError

    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    try:
        round_id = harness.open_round()
        harness.start_relaying()
        state = harness.book._rounds[round_id].state
        with pytest.raises(ProtocolError, match="hop 0 has not been uploaded yet") as caught:
            state.check_upload("beta", "alpha", 1, 100)
        assert caught.value.where == "beta" and state.phase == RoundPhase.RELAYING
    finally:
        harness.close()


def _failed_attempts(harness: Harness, attempts: int) -> list[list[int]]:
    """Open up to `attempts` rounds that each fail at the first hop-0 upload (the round's minimum
    is far above every padded size), until the auditor's cap refuses to open one. Returns, per
    round, the padded sizes of alpha the coordinator saw (the refusal quotes them)."""
    seen = []
    for _ in range(attempts):
        try:
            round_id = harness.open_round(min_list_size=1_000_000)
        except LinkError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "budget of roster" in exc.details()
            break
        assert harness.run(round_id) == RoundPhase.FAILED
        reason = harness.status(round_id).failure_reason
        seen.append(
            [int(size) for size in re.findall(r"hop-0 list of alpha refused: list of (\d+) records", reason)]
        )
    return seen


def test_failed_rounds_spend_the_dummies_and_stop_at_the_auditors_cap(tmp_path: Path) -> None:
    """Before: a failed round was refunded whole, although the coordinator had seen a padded size
    at its hop-0 upload: 25 failed rounds left the ledger at 0 of a cap of 1.5, and the 25 padded
    sizes averaged to alpha's exact size. Now the dummies' share of a round that failed while
    relaying is spent (the release's is refunded): the cap stops the attempts."""
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6), max_epsilon_per_roster=3.0)
    seen = _failed_attempts(harness, 25)
    assert len(seen) == 3  # 3 of the cap's epsilon 3, at the dummies' epsilon 1 each
    assert all(len(sizes) == 1 for sizes in seen)  # one padded size per round, alpha's
    budget = harness.budget()
    assert budget.spent_epsilon == pytest.approx(3.0) and budget.spent_delta == pytest.approx(3e-6)
    assert [entry.status for entry in budget.rounds] == ["spent"] * 3
    audit = harness.audit_actions(budget.rounds[0].round_id)
    assert any(action == "budget spent" and "DP dummies" in detail for _, action, detail in audit)
    harness.close()


def test_a_round_that_fails_before_relaying_is_refunded_even_with_dummies(tmp_path: Path) -> None:
    """No size has reached the coordinator before RELAYING (with dummies, enrolments carry none)."""
    floors = {"gamma": ReleaseFloor(allow_exact_release=False)}  # gamma withdraws at join
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6), floors=floors)
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    assert [(e.status, e.epsilon) for e in harness.budget().rounds] == [("refunded", 1.0)]
    harness.close()


def test_each_companys_default_cap_stops_failed_rounds_under_a_coordinator_without_one(
    tmp_path: Path,
) -> None:
    """A coordinator whose ledger has no cap (or forgets it) cannot repeat failed rounds without
    bound: each company charges every round it enrols in and, by default, stops at an epsilon of
    10 per roster. At the dummies' epsilon 2.5 that is four rounds: the coordinator sees four
    padded sizes of alpha, and from the fifth round on the companies withdraw at join."""
    harness = Harness(tmp_path, POPULATION, dummies=(2.5, 1e-6), max_epsilon_per_roster=math.inf)
    seen = _failed_attempts(harness, 6)
    assert len(seen) == 6  # the coordinator never refuses
    assert [len(sizes) for sizes in seen] == [1, 1, 1, 1, 0, 0]
    assert DEFAULT_MAX_EPSILON_PER_ROSTER == ReleaseFloor().max_epsilon_per_roster == 10.0
    for name in POPULATION:
        assert harness.daemons[name]._ledger.ledger(roster_key(POPULATION)).spent == pytest.approx(10.0)
    last = harness.budget().rounds[-1]
    assert last.status == "refunded"  # withdrawn at join: no size seen
    harness.close()


def test_a_companys_total_over_every_roster_stops_failed_rounds_across_rosters(tmp_path: Path) -> None:
    """Found by an attacker review: the ledgers were per roster, but alpha's list size is the same
    in every roster holding it. Failed rounds over {alpha, beta}, {alpha, gamma} and all three,
    each up to its roster's cap, gave 30 padded sizes that averaged to alpha's exact size (80.4
    +- 0.6 for 80). Each company now also caps what it spends over every roster together (10 by
    default): at a dummy epsilon of 2.5, alpha takes part in four rounds in all."""
    harness = Harness(tmp_path, POPULATION, dummies=(2.5, 1e-6), max_epsilon_per_roster=math.inf)
    rosters = [["alpha", "beta"], ["alpha", "gamma"], ["alpha", "beta", "gamma"]]
    sizes_of_alpha, reasons = [], []
    for attempt in range(9):
        round_id = harness.open_round(companies=rosters[attempt % 3], min_list_size=1_000_000)
        assert harness.run(round_id) == RoundPhase.FAILED
        reason = harness.status(round_id).failure_reason
        sizes_of_alpha += re.findall(r"hop-0 list of alpha refused: list of (\d+) records", reason)
        reasons.append(reason)
    assert len(sizes_of_alpha) == 4  # 10 / 2.5, over the three rosters together
    assert all("total alpha spends over every roster" in reason for reason in reasons[4:])
    assert harness.daemons["alpha"]._ledger.total().spent == pytest.approx(10.0)
    harness.close()
