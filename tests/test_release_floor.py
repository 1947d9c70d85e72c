"""Trustworthy release: companies set a floor under the round's release policy, and the privacy
budget is accounted per roster, by each company and by the coordinator (docs/THREAT_MODEL.md,
"Release policy").

In process (tests/support/harness.py): the real RoundBook and store behind their servicers and
real company daemons, on a fake clock; one test runs the `round budget` command end to end.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.harness import Harness, LinkError

from monoculture.analysis.budget import ReleaseFloor
from monoculture.analysis.release import ReleasePolicy
from monoculture.client.ledger import LEDGER_FILE
from monoculture.core.protocol import RoundPhase
from monoculture.research.simulate import start_coordinator
from monoculture.v1 import monoculture_pb2 as pb

NAMES = ("alpha", "beta", "gamma")
ROSTER = "alpha,beta,gamma"
LAPLACE = ReleasePolicy(mechanism="discrete-laplace", epsilon=1.0)


def _population(size: int = 40, seed: int = 11) -> dict[str, list[tuple[str, int]]]:
    rng = random.Random(seed)  # test data only; never a key
    people = [f"person-{i}" for i in range(size)]
    return {
        name: [(p, int(rng.random() < 0.3)) for j, p in enumerate(people) if j % 5 != index]
        for index, name in enumerate(NAMES)
    }


@pytest.fixture
def made(tmp_path: Path):
    """Makes harnesses on `tmp_path` and closes them after the test."""
    harnesses: list[Harness] = []

    def make(**options: Any) -> Harness:
        harness = Harness(tmp_path, _population(), **options)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.close()


def _refused(harness: Harness, companies: list[str] | None = None) -> LinkError:
    with pytest.raises(LinkError) as caught:
        harness.open_round(companies)
    return caught.value


def _ledger_file(harness: Harness, name: str) -> dict:
    return json.loads((harness.folder / f"state-{name}" / LEDGER_FILE).read_text())


def _sent_by(harness: Harness, round_id: str, company: str) -> list[str]:
    return [action for actor, action, _ in harness.audit_actions(round_id) if actor == company]


# ---------------------------------------------------------------- the announced policy


def test_the_round_policy_and_the_roster_budget_are_announced_at_join(made) -> None:
    policy = ReleasePolicy(5, 2, "discrete-gaussian", 0.5, 1e-6)
    harness = made(release_policy=policy, max_epsilon_per_roster=4.0)
    round_id = harness.open_round()
    work = harness.company_servicer.PollWork(pb.PollWorkRequest(company="beta"), None)
    join = work.join_round
    assert join.round_id == round_id
    assert join.release_policy == pb.ReleasePolicy(
        min_shared_individuals=5, min_cell_count=2, dp_mechanism="discrete-gaussian", dp_epsilon=0.5,
        dp_delta=1e-6,
    )  # fmt: skip
    # The ledger before this round: nothing spent yet, and this round itself left out.
    assert list(join.roster_budget.roster) == list(NAMES)
    assert join.roster_budget.spent_epsilon == 0 and join.roster_budget.cap_epsilon == 4.0
    assert list(join.roster_budget.rounds) == []
    # ... and this round's own line: what it charges the roster.
    charge = join.round_charge
    assert (charge.round_id, charge.status, charge.epsilon, charge.delta) == (round_id, "reserved", 0.5, 1e-6)


# ---------------------------------------------------------------- the company's floor


def test_a_company_whose_floor_is_stronger_refuses_and_sends_nothing(made) -> None:
    floor = ReleaseFloor(min_cell_count=5, allow_exact_release=False)
    harness = made(floors={"beta": floor})
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "beta"
    reason = status.failure_reason
    assert reason.startswith("beta withdrew: its release floor refuses this round: ")
    assert "the round's min_cell_count 0 is below the 5 beta accepts" in reason
    assert "the round releases exact counts (dp_mechanism none) and beta accepts only" in reason
    assert str(harness.folder) not in reason and "state-beta" not in reason
    # beta withdrew and did nothing else: no enrolment (keys, list size), no upload by anyone.
    assert _sent_by(harness, round_id, "beta") == ["withdrew"]
    assert not [a for _, a, _ in harness.audit_actions(round_id) if a == "uploaded"]
    # Nothing of the round kept by beta: no sealed keys, no charge in its ledger.
    state = harness.folder / "state-beta"
    assert not list(state.glob("round-*.sealed")) and not (state / LEDGER_FILE).exists()
    # The coordinator refunds the round (nothing was published).
    assert [(e.round_id, e.status) for e in harness.budget().rounds] == [(round_id, "refunded")]


def test_a_floor_met_by_the_policy_lets_the_round_run(made) -> None:
    policy = ReleasePolicy(3, 2, "discrete-laplace", 0.5)
    floor = ReleaseFloor(3, 2, allow_exact_release=False, max_epsilon_per_round=0.5, max_epsilon_per_roster=1)
    harness = made(release_policy=policy, floors=dict.fromkeys(NAMES, floor))
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    for name in NAMES:
        rounds = _ledger_file(harness, name)["rosters"][ROSTER]
        assert rounds[round_id]["epsilon"] == 0.5 and rounds[round_id]["delta"] == 0.0


def test_a_round_above_the_epsilon_a_company_accepts_per_round_is_refused(made) -> None:
    harness = made(release_policy=LAPLACE, floors={"gamma": ReleaseFloor(max_epsilon_per_round=0.5)})
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "gamma"
    assert "the round's epsilon 1 is above the 0.5 gamma accepts per round" in status.failure_reason
    assert _sent_by(harness, round_id, "gamma") == ["withdrew"]


@pytest.mark.parametrize("restart", [False, True], ids=["running", "after a daemon restart"])
def test_a_company_over_its_own_roster_budget_refuses_the_next_round(made, restart: bool) -> None:
    harness = made(
        release_policy=LAPLACE, max_epsilon_per_roster=100.0,
        floors={"alpha": ReleaseFloor(max_epsilon_per_roster=1.5)},
    )  # fmt: skip
    first = harness.open_round()
    assert harness.run(first) == RoundPhase.COMPLETE
    assert _ledger_file(harness, "alpha")["rosters"][ROSTER][first]["epsilon"] == 1.0
    if restart:
        harness.restart_company("alpha")  # the budget is on disk, not in the daemon's memory
    second = harness.open_round()
    assert harness.run(second) == RoundPhase.FAILED
    status = harness.status(second)
    assert status.failed_party == "alpha"
    assert (
        "the round's epsilon 1 would bring the total for the roster alpha,beta,gamma to 2, above the 1.5 "
        "alpha accepts (already spent: 1 over 1 earlier round)"
    ) in status.failure_reason
    assert _sent_by(harness, second, "alpha") == ["withdrew"]
    assert list(_ledger_file(harness, "alpha")["rosters"][ROSTER]) == [first]
    # The budget is per roster: another set of companies is another budget.
    pair = harness.open_round(["alpha", "beta"])
    assert harness.run(pair) == RoundPhase.COMPLETE
    assert list(_ledger_file(harness, "alpha")["rosters"]) == ["alpha,beta", ROSTER]


def test_a_company_that_lost_its_ledger_counts_what_the_coordinator_announces(made) -> None:
    harness = made(
        release_policy=LAPLACE, max_epsilon_per_roster=100.0,
        floors={"beta": ReleaseFloor(max_epsilon_per_roster=1.5)},
    )  # fmt: skip
    first = harness.open_round()
    assert harness.run(first) == RoundPhase.COMPLETE
    (harness.folder / "state-beta" / LEDGER_FILE).unlink()
    harness.restart_company("beta")
    second = harness.open_round()
    assert harness.run(second) == RoundPhase.FAILED
    assert harness.status(second).failed_party == "beta"
    assert "above the 1.5 beta accepts (already spent: 1 over 1 earlier round)" in (
        harness.status(second).failure_reason
    )


def test_a_company_charges_what_the_coordinator_charges_when_it_is_more(made, monkeypatch) -> None:
    """A round releasing more than one table (groups) costs more than its policy says; the
    coordinator announces its charge, and the company counts the larger of the two."""
    from monoculture.analysis.budget import RoundCost
    from monoculture.coordinator import rounds as coordinator_rounds

    monkeypatch.setattr(coordinator_rounds, "round_cost", lambda policy: RoundCost(2 * policy.epsilon, 0.0))
    harness = made(
        release_policy=LAPLACE,
        floors={
            "alpha": ReleaseFloor(max_epsilon_per_round=3),  # accepts, and is charged 2
            "gamma": ReleaseFloor(max_epsilon_per_round=1.5),  # the policy's 1 would pass; 2 does not
        },
    )
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "gamma"
    assert "the round's epsilon 2 is above the 1.5 gamma accepts per round" in status.failure_reason
    assert _ledger_file(harness, "alpha")["rosters"][ROSTER][round_id]["epsilon"] == 2.0


def test_a_join_offered_again_is_charged_once(made) -> None:
    """alpha is charged, its enrolment is lost, the join comes again: its own charge for this very
    round does not count against it twice (a budget of exactly one round still accepts)."""
    harness = made(
        release_policy=LAPLACE, retry_seconds=0.0, floors={"alpha": ReleaseFloor(max_epsilon_per_roster=1.0)}
    )
    harness.network.unreachable_calls = 1
    harness.network.unreachable_methods = frozenset({"Enroll"})
    round_id = harness.open_round()
    harness.step("alpha")  # charged, then the enrolment fails and is not retried
    assert _sent_by(harness, round_id, "alpha") == []
    assert list(_ledger_file(harness, "alpha")["rosters"][ROSTER]) == [round_id]
    assert harness.run(round_id) == RoundPhase.COMPLETE
    assert _ledger_file(harness, "alpha")["rosters"][ROSTER] == {
        round_id: {"epsilon": 1.0, "delta": 0.0, "at": pytest.approx(harness.clock.time(), abs=1e3)}
    }


# ---------------------------------------------------------------- the coordinator's ledger


def test_the_coordinator_refuses_a_round_over_the_roster_cap(made) -> None:
    harness = made(release_policy=LAPLACE, max_epsilon_per_roster=1.5)
    first = harness.open_round()
    # A second round is refused while the first is in flight: its spend is reserved.
    error = _refused(harness)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error.details()
    assert "the privacy budget of roster alpha,beta,gamma would be exceeded" in details
    assert "epsilon 1 of its cap of 1.5 is spent or reserved (1 rounds)" in details
    assert "this round would spend 1 more" in details
    assert "what to do:" in details and "max_epsilon_per_roster" in details
    assert "monoculture round budget --companies alpha,beta,gamma" in details
    assert harness.run(first) == RoundPhase.COMPLETE
    assert _refused(harness, ["gamma", "alpha", "beta"]).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Nothing was stored for the refused rounds.
    assert [e.round_id for e in harness.budget().rounds] == [first]
    # Another roster has its own budget.
    assert harness.run(harness.open_round(["alpha", "beta"])) == RoundPhase.COMPLETE


def test_a_round_that_fails_before_counting_is_refunded(made) -> None:
    harness = made(release_policy=LAPLACE, max_epsilon_per_roster=1.5)
    first = harness.open_round(deadline_seconds=10)
    harness.step("alpha")  # gamma and beta never enrol
    assert harness.budget().spent_epsilon == 1.0
    harness.clock.advance(11)
    harness.book.fail_overdue()
    assert harness.phase(first) == RoundPhase.FAILED
    budget = harness.budget()
    assert budget.spent_epsilon == 0.0
    assert [(e.round_id, e.status, e.epsilon) for e in budget.rounds] == [(first, "refunded", 1.0)]
    second = harness.open_round()  # the refund makes room for it
    assert harness.run(second) == RoundPhase.COMPLETE
    assert harness.budget().spent_epsilon == 1.0


def test_the_spend_is_visible_to_the_auditor_and_in_the_result(made) -> None:
    policy = ReleasePolicy(mechanism="discrete-gaussian", epsilon=0.5, delta=1e-6)
    harness = made(release_policy=policy, max_epsilon_per_roster=2.0)
    budget = harness.budget(["gamma", "alpha", "beta"])  # any order names the same roster
    assert list(budget.roster) == list(NAMES) and budget.spent_epsilon == 0 and budget.cap_epsilon == 2.0
    rounds = []
    for expected in (0.5, 1.0):
        round_id = harness.open_round()
        assert "budget reserved" in _sent_by(harness, round_id, "coordinator")
        assert harness.run(round_id) == RoundPhase.COMPLETE
        rounds.append(round_id)
        assert harness.result(round_id)["privacy_budget"] == {
            "roster": list(NAMES), "spent_epsilon": expected,
            "spent_delta": pytest.approx(2 * expected * 1e-6), "cap": 2.0,
        }  # fmt: skip
    budget = harness.budget()
    assert budget.spent_epsilon == 1.0 and budget.spent_delta == pytest.approx(2e-6)
    assert [(e.round_id, e.status, e.dp_mechanism, e.epsilon) for e in budget.rounds] == [
        (r, "spent", "discrete-gaussian", 0.5) for r in rounds
    ]
    # Asking about a roster that is not one is refused like opening it would be.
    with pytest.raises(LinkError) as caught:
        harness.budget(["alpha", "alpha"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_exact_release_costs_nothing_and_an_infinite_cap_is_null(made) -> None:
    harness = made(max_epsilon_per_roster=float("inf"))
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    assert harness.result(round_id)["privacy_budget"] == {
        "roster": list(NAMES), "spent_epsilon": 0.0, "spent_delta": 0.0, "cap": None,
    }  # fmt: skip
    assert [(e.status, e.dp_mechanism, e.epsilon) for e in harness.budget().rounds] == [("spent", "none", 0)]


def test_the_ledger_survives_a_coordinator_restart(made) -> None:
    harness = made(release_policy=LAPLACE, max_epsilon_per_roster=1.5)
    first = harness.open_round()
    harness.step_all()  # everyone enrols
    harness.restart_coordinator()
    assert [(e.round_id, e.status) for e in harness.budget().rounds] == [(first, "reserved")]
    assert _refused(harness).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert harness.run(first) == RoundPhase.COMPLETE
    harness.restart_coordinator()
    budget = harness.budget()
    assert budget.spent_epsilon == 1.0 and [e.status for e in budget.rounds] == ["spent"]
    assert "epsilon 1 of its cap of 1.5" in _refused(harness).details()


def test_a_round_is_released_under_the_policy_it_announced(made) -> None:
    """A coordinator restarted with another [release] still releases each open round as announced
    (and charged), so a company's check at join holds for the result."""
    harness = made(release_policy=LAPLACE, max_epsilon_per_roster=5.0)
    round_id = harness.open_round()
    harness.step_all()
    harness.restart_coordinator(release_policy=ReleasePolicy())
    assert harness.run(round_id) == RoundPhase.COMPLETE
    result = harness.result(round_id)
    assert result["noisy"] is True and "list_sizes" not in result
    assert result["release_policy"]["differential_privacy"]["mechanism"] == "discrete-laplace"
    # A round opened now is announced, charged and released under the new policy.
    later = harness.open_round()
    work = harness.company_servicer.PollWork(pb.PollWorkRequest(company="alpha"), None)
    assert work.join_round.round_id == later and work.join_round.release_policy.dp_mechanism == "none"
    assert work.join_round.roster_budget.spent_epsilon == 1.0


def test_a_reservation_without_its_round_is_refunded_when_the_store_opens(made) -> None:
    """A crash between reserving and creating the round leaves a reservation of a round that never
    existed; it is refunded at the next start, so it cannot block the roster."""
    from monoculture.analysis.budget import round_cost

    harness = made(release_policy=LAPLACE, max_epsilon_per_roster=1.0)
    harness.store.reserve_budget("r-00000000000000ff", ROSTER, round_cost(LAPLACE), LAPLACE)
    assert _refused(harness).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    harness.restart_coordinator()
    assert [(e.round_id, e.status) for e in harness.budget().rounds] == [("r-00000000000000ff", "refunded")]
    assert harness.run(harness.open_round()) == RoundPhase.COMPLETE


# ---------------------------------------------------------------- the command, end to end


@pytest.mark.e2e
def test_round_budget_command(tmp_path: Path) -> None:
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack)

        def monoculture(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "monoculture", "round", *args, "--insecure"]
            return subprocess.run(
                [*command, "--coordinator", address], capture_output=True, text=True, timeout=120
            )

        opened = monoculture("open", "--companies", "google,ibm")
        assert opened.returncode == 0, opened.stderr
        done = monoculture("budget", "--companies", "ibm,google")
        assert done.returncode == 0, done.stderr
        budget = json.loads(done.stdout)
        assert budget["roster"] == ["google", "ibm"] and budget["cap"] == 10.0
        assert budget["spent_epsilon"] == 0.0
        assert [(r["round_id"], r["status"], r["dp_mechanism"]) for r in budget["rounds"]] == [
            (opened.stdout.strip(), "reserved", "none")
        ]
        refused = monoculture("budget", "--companies", "google")
        assert refused.returncode != 0 and "a round needs 2 to" in refused.stderr
        assert "Traceback" not in refused.stderr
