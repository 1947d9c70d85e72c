"""DP dummies in a round (issue 12; docs/PROTOCOL.md, "DP dummies"): the list sizes and the
overlaps of two companies the coordinator sees carry dummies, the result stays exact.

The in-process harness runs the real RoundBook and the real daemons (real crypto).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from conftest import assert_same_integers
from support.harness import Harness, keep_final_lists

from monoculture.analysis.budget import ReleaseFloor, roster_key
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.release import ReleasePolicy
from monoculture.analysis.table import plaintext_table
from monoculture.core.dummies import DummyPlan, accepted_plan
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
