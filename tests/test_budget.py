"""Privacy accounting, pure (monoculture/analysis/budget.py), and the company's ledger on disk
(client/ledger.py)."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoculture.analysis.budget import (
    Ledger,
    ReleaseFloor,
    RoundCost,
    amount,
    floor_violations,
    roster_key,
    round_cost,
)
from monoculture.analysis.release import ReleasePolicy
from monoculture.client.ledger import LEDGER_FILE, PrivacyLedger
from monoculture.core.errors import ConfigError

LAPLACE = ReleasePolicy(mechanism="discrete-laplace", epsilon=1.0, delta=0.3)
GAUSSIAN = ReleasePolicy(mechanism="discrete-gaussian", epsilon=0.5, delta=1e-6)
EXACT = ReleasePolicy()


# ------------------------------------------------------------------ cost and roster


def test_round_cost_by_mechanism() -> None:
    assert round_cost(LAPLACE) == RoundCost(1.0, 0.0)  # pure DP: a stray delta in the policy costs nothing
    assert round_cost(GAUSSIAN) == RoundCost(0.5, 1e-6)
    assert round_cost(EXACT) == RoundCost(0.0, 0.0)
    assert round_cost(GAUSSIAN) == (0.5, 1e-6)  # a plain (epsilon, delta) tuple too
    with pytest.raises(ConfigError, match="no privacy cost is known for the DP mechanism 'laplace'"):
        round_cost(ReleasePolicy(mechanism="laplace", epsilon=1.0))


def test_a_roster_is_its_companies_in_any_order() -> None:
    assert roster_key(["ibm", "google", "microsoft"]) == "google,ibm,microsoft"
    assert roster_key(("b", "a")) == roster_key(["a", "b"])


def test_amounts_read_as_a_person_writes_them() -> None:
    assert [amount(1.0), amount(0.25), amount(1e-6), amount(math.inf)] == ["1", "0.25", "1e-06", "no limit"]


# ------------------------------------------------------------------ the floor


@pytest.mark.parametrize(
    "policy", [EXACT, LAPLACE, GAUSSIAN, ReleasePolicy(10**9, 10**9, "discrete-laplace", 50)]
)
def test_the_default_floor_accepts_any_policy(policy: ReleasePolicy) -> None:
    assert floor_violations(policy, ReleaseFloor(), "google") == []


def test_each_rule_is_said_in_words_naming_the_company() -> None:
    floor = ReleaseFloor(100, 5, allow_exact_release=False, max_epsilon_per_round=0.5)
    assert floor_violations(ReleasePolicy(10, 0), floor, "google") == [
        "the round's min_shared_individuals 10 is below the 100 google accepts",
        "the round's min_cell_count 0 is below the 5 google accepts",
        "the round releases exact counts (dp_mechanism none) and google accepts only releases with "
        "differential privacy",
    ]
    assert floor_violations(ReleasePolicy(100, 5, "discrete-laplace", 2.0), floor, "ibm") == [
        "the round's epsilon 2 is above the 0.5 ibm accepts per round"
    ]


def test_a_policy_at_the_floor_is_accepted() -> None:
    floor = ReleaseFloor(100, 5, allow_exact_release=False, max_epsilon_per_round=0.3)
    assert floor_violations(ReleasePolicy(100, 5, "discrete-gaussian", 0.1 + 0.2, 1e-6), floor) == []
    assert floor_violations(ReleasePolicy(101, 6, "discrete-laplace", 0.3), floor) == []


@pytest.mark.parametrize(
    ("floor", "message"),
    [
        (ReleaseFloor(min_cell_count=-1), "must be non-negative"),
        (ReleaseFloor(max_epsilon_per_round=0.0), "max_epsilon_per_round must be above 0"),
        (ReleaseFloor(max_epsilon_per_roster=-1.0), "max_epsilon_per_roster must be above 0"),
        (ReleaseFloor(max_epsilon_per_roster=math.nan), "max_epsilon_per_roster must be above 0"),
    ],
)
def test_a_floor_that_makes_no_sense_is_refused(floor: ReleaseFloor, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        floor.check()


# ------------------------------------------------------------------ the ledger


def test_the_ledger_refuses_only_what_goes_above_the_cap() -> None:
    ledger = Ledger(spent=2.0, cap=3.0, rounds=2)
    assert not ledger.would_exceed(RoundCost(1.0, 0.0))  # exactly at the cap is allowed
    assert ledger.would_exceed(RoundCost(1.5, 0.0))
    assert ledger.remaining == 1.0
    assert ledger.charged(RoundCost(1.0, 1e-6)) == Ledger(3.0, 3.0, 1e-6, 3)
    assert not Ledger(spent=5.0, cap=3.0).would_exceed(RoundCost(0.0, 0.0))  # an exact round spends nothing
    assert not Ledger(spent=1e9).would_exceed(RoundCost(1e9, 0.5))  # no cap


def test_float_drift_does_not_refuse_a_round_at_the_cap() -> None:
    ledger = Ledger(cap=0.3)
    for _ in range(2):
        ledger = ledger.charged(RoundCost(0.1, 0.0))
    assert ledger.total_after(RoundCost(0.1, 0.0)) > 0.3  # 0.30000000000000004
    assert not ledger.would_exceed(RoundCost(0.1, 0.0))
    assert ledger.would_exceed(RoundCost(0.1000001, 0.0))


def test_the_ledger_says_why_in_words() -> None:
    ledger = Ledger(spent=2.0, cap=2.5, rounds=2)
    assert ledger.violation(RoundCost(1.0, 0.0), "a,b", "google") == (
        "the round's epsilon 1 would bring the total for the roster a,b to 3, above the 2.5 google accepts "
        "(already spent: 2 over 2 earlier rounds)"
    )
    assert ledger.violation(RoundCost(0.5, 0.0), "a,b", "google") is None


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 1e-3)), max_size=30))
def test_costs_compose_by_adding_up(costs: list[tuple[float, float]]) -> None:
    ledger = Ledger()
    for epsilon, delta in costs:
        ledger = ledger.charged(RoundCost(epsilon, delta))
    assert ledger.rounds == len(costs)
    assert math.isclose(ledger.spent, math.fsum(e for e, _ in costs), abs_tol=1e-9)
    assert math.isclose(ledger.spent_delta, math.fsum(d for _, d in costs), abs_tol=1e-12)


# ------------------------------------------------------------------ the company's ledger on disk


def test_the_company_ledger_charges_each_round_once_and_survives_a_restart(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "state", cap=2.0)
    assert ledger.ledger("a,b") == Ledger(0.0, 2.0, 0.0, 0)
    ledger.charge("a,b", "r-1", RoundCost(1.0, 0.0), at=5.0)
    ledger.charge("a,b", "r-1", RoundCost(1.0, 0.0), at=6.0)  # again: a restarted daemon enrolling
    ledger.charge("a,b", "r-2", RoundCost(0.5, 1e-6), at=7.0)
    ledger.charge("a,b,c", "r-3", RoundCost(3.0, 0.0), at=8.0)
    again = PrivacyLedger(tmp_path / "state", cap=2.0)
    assert again.ledger("a,b") == Ledger(1.5, 2.0, 1e-6, 2)
    assert again.ledger("a,b", excluding="r-2") == Ledger(1.0, 2.0, 0.0, 1)
    assert again.ledger("a,b,c").spent == 3.0 and again.charged("a,b", "r-1")
    path = tmp_path / "state" / LEDGER_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [LEDGER_FILE]  # no temporary file left


@pytest.mark.parametrize(
    "text", ["{", '{"version": 2, "rosters": {}}', '{"version": 1, "rosters": {"a,b": 1}}']
)
def test_a_ledger_that_cannot_be_read_stops_the_daemon(tmp_path: Path, text: str) -> None:
    (tmp_path / LEDGER_FILE).write_text(text)
    with pytest.raises(ConfigError, match="the privacy ledger cannot be read") as caught:
        PrivacyLedger(tmp_path)
    assert caught.value.where == str(tmp_path / LEDGER_FILE)
