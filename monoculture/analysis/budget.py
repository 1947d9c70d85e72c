"""Privacy accounting across rounds, and the floor a company puts under a round's release policy.

Pure: no I/O. The coordinator keeps a ledger per roster in its database and each company
daemon keeps its own in its state folder; both do their arithmetic here.

- **Cost of a round** (`round_cost`): what one release spends. Discrete Laplace is
  epsilon-DP (delta 0); the discrete Gaussian is reported as (epsilon, delta)-DP; a release
  without noise ("none") costs nothing here because it promises nothing: whether a company
  accepts an exact release at all is its floor's `allow_exact_release`, not its budget.
- **Composition:** rounds over the same roster release figures about the same people, so
  their costs add up (basic sequential composition: k rounds of (epsilon, delta) cost
  (k epsilon, k delta)). This is conservative; it never under-counts.
- **Roster:** the set of companies of a round, whatever their ring order: their names
  sorted and joined with "," (`roster_key`).
- **Floor** (`ReleaseFloor`, `floor_violations`): the weakest policy a company accepts;
  every way a round's policy is weaker is said in words a person can act on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from monoculture.analysis.release import ReleasePolicy
from monoculture.core.errors import ConfigError

# The default cap on the epsilon spent on one roster, for the coordinator's [release] and each
# company's [release_floor] alike, so neither binds before the other by default. A total of 10
# is about five rounds at a release epsilon of 1 with DP dummies at 1, or ten failed attempts
# with dummies at 1; past it a DP guarantee (a likelihood ratio of e^10, about 22,000) says
# little. A company's cap must be finite by default: its ledger is what stops repeated rounds
# from averaging its padded list size, even under a coordinator that forgets its own ledger.
DEFAULT_MAX_EPSILON_PER_ROSTER = 10.0

# The default cap on the epsilon one company spends over every roster together (its floor's
# max_epsilon_total; the coordinator's [release] max_epsilon_per_company). A person a company
# holds is in every roster the company is on, and so are its list size and the overlaps with
# each peer: rounds over different rosters add up for them. Without it, failed rounds with DP
# dummies over each roster holding a company gave as many padded sizes per roster, averaged
# together to its exact size (an attacker review: three rosters, 30 sizes, 80.4 +- 0.6 for 80).
DEFAULT_MAX_EPSILON_TOTAL = 10.0

# Sums of floats drift (0.1 + 0.2 > 0.3): a total this close to its cap is at the cap, not over it.
RELATIVE_SLACK = 1e-9


class RoundCost(NamedTuple):
    """What one round's release spends: (epsilon, delta)."""

    epsilon: float
    delta: float


def round_cost(policy: ReleasePolicy) -> RoundCost:
    """The (epsilon, delta) one release under `policy` spends; (0, 0) without noise.

    An unknown mechanism is a ConfigError: nothing is assumed free.
    """
    if policy.mechanism == "discrete-laplace":
        return RoundCost(policy.epsilon, 0.0)
    if policy.mechanism == "discrete-gaussian":
        return RoundCost(policy.epsilon, policy.delta)
    if policy.mechanism == "none":
        return RoundCost(0.0, 0.0)
    raise ConfigError(f"no privacy cost is known for the DP mechanism {policy.mechanism!r}")


def roster_key(companies: Iterable[str]) -> str:
    """The ledger's name for a roster: its companies sorted, joined with ","."""
    return ",".join(sorted(companies))


def amount(value: float) -> str:
    """An epsilon (or delta, or cap) as a person reads it: 1 not 1.0, "no limit" for infinity."""
    return "no limit" if math.isinf(value) else f"{value:g}"


@dataclass(frozen=True)
class ReleaseFloor:
    """The weakest release policy one company accepts, and its privacy budget.

    The defaults accept every policy and cap the epsilon spent per roster at
    DEFAULT_MAX_EPSILON_PER_ROSTER (10), and over every roster together at
    DEFAULT_MAX_EPSILON_TOTAL (10).
    """

    min_shared_individuals: int = 0
    min_cell_count: int = 0
    allow_exact_release: bool = True  # a release without differential privacy
    max_epsilon_per_round: float = math.inf
    max_epsilon_per_roster: float = DEFAULT_MAX_EPSILON_PER_ROSTER  # the sum over rounds with one roster
    max_epsilon_total: float = DEFAULT_MAX_EPSILON_TOTAL  # the sum over every round, every roster

    def check(self) -> None:
        if self.min_shared_individuals < 0 or self.min_cell_count < 0:
            raise ConfigError("min_shared_individuals and min_cell_count must be non-negative")
        for name in ("max_epsilon_per_round", "max_epsilon_per_roster", "max_epsilon_total"):
            value = getattr(self, name)
            if math.isnan(value) or value <= 0:
                raise ConfigError(
                    f"{name} must be above 0 (got {value:g})",
                    hint="inf accepts any epsilon",
                )


def floor_violations(
    policy: ReleasePolicy, floor: ReleaseFloor, company: str = "this company", cost: RoundCost | None = None
) -> list[str]:
    """Every way `policy` is weaker than `floor`, one sentence each naming the rule and `company`.

    Empty when the policy is at or above the floor. `cost`: what the round spends, when more
    than `round_cost(policy)` (a round releasing more than one table). The roster budget is
    the ledger's (`Ledger.violation`): it depends on rounds before this one.
    """
    reasons = []
    for name in ("min_shared_individuals", "min_cell_count"):
        ours, theirs = getattr(policy, name), getattr(floor, name)
        if ours < theirs:
            reasons.append(f"the round's {name} {ours} is below the {theirs} {company} accepts")
    cost = round_cost(policy) if cost is None else cost
    if policy.mechanism == "none" and not floor.allow_exact_release:
        reasons.append(
            f"the round releases exact counts (dp_mechanism none) and {company} accepts only "
            "releases with differential privacy"
        )
    if cost.epsilon > floor.max_epsilon_per_round * (1 + RELATIVE_SLACK):
        reasons.append(
            f"the round's epsilon {amount(cost.epsilon)} is above the {amount(floor.max_epsilon_per_round)} "
            f"{company} accepts per round"
        )
    return reasons


@dataclass(frozen=True)
class Ledger:
    """One roster's spending so far against its cap (epsilon; delta is summed alongside)."""

    spent: float = 0.0
    cap: float = math.inf
    spent_delta: float = 0.0
    rounds: int = 0  # rounds charged so far

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.spent)

    def total_after(self, cost: RoundCost) -> float:
        return self.spent + cost.epsilon

    def would_exceed(self, cost: RoundCost) -> bool:
        """Would charging `cost` take the spending above the cap? (A round costing 0 never does.)"""
        if cost.epsilon <= 0:
            return False
        return self.total_after(cost) > self.cap * (1 + RELATIVE_SLACK)

    def charged(self, cost: RoundCost) -> Ledger:
        """The ledger after one more round costing `cost`."""
        return Ledger(self.spent + cost.epsilon, self.cap, self.spent_delta + cost.delta, self.rounds + 1)

    def violation(self, cost: RoundCost, roster: str, company: str = "this company") -> str | None:
        """Why charging `cost` is refused, in words, or None when it fits under the cap. `roster`:
        the roster's ledger name, or "" for a company's total over every roster."""
        if not self.would_exceed(cost):
            return None
        earlier = "round" if self.rounds == 1 else "rounds"
        what = (
            f"the total for the roster {roster}"
            if roster
            else f"the total {company} spends over every roster"
        )
        return (
            f"the round's epsilon {amount(cost.epsilon)} would bring {what} "
            f"to {amount(self.total_after(cost))}, above the {amount(self.cap)} {company} accepts "
            f"(already spent: {amount(self.spent)} over {self.rounds} earlier {earlier})"
        )
