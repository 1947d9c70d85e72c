"""What the auditor may publish (docs/THREAT_MODEL.md, "Release policy").

Exact releases (no DP):
1. Threshold: with fewer shared individuals than `min_shared_individuals`,
   only the roster and the reason are published.
2. Cell suppression (`disclosure`): small cells and failure counts are
   withheld, and complementary cells until every withheld figure keeps two
   whole, non-negative tables consistent with everything published that
   differ in it by at least `min_cell_count`; figures that need a withheld
   count go with it.

A round's shared individuals whose masked sum did not decode (a tag swapped, replayed or
shifted by a company) are one more cell, `undecodable_sums`, beside the 2^k pattern cells
(`exact_cells`), in no figure. Under DP it is noised with the pattern cells, in the same
vector, and published. Exact releases never publish it, not even 0: its honest value is known
to be 0, so any exact figure (or a withheld one, which would mean "1 to min_cell_count - 1")
would be the very bit a company shifting another's lane probes for (an attacker review).

Under DP (`privacy`, `dp_inference`): every cell is noised once by OpenDP;
estimates come from the unclamped noisy cells; the threshold applies to the
noisy N less a margin noise cannot exceed but with probability 1e-9;
intervals and the test include the noise; no cell suppression (the noise
protects every cell). Every round spends its epsilon (the ledgers add it up).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from monoculture.analysis.disclosure import apply_suppression, plan_suppression
from monoculture.analysis.dp_inference import noisy_release
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.privacy import MECHANISMS, NoiseMechanism
from monoculture.analysis.table import PatternTable
from monoculture.core.errors import ConfigError

# The version of the result JSON's schema (monoculture/schemas/result.schema.json): raised when a key
# is removed or retyped; added keys keep it (the schema lets new top-level keys through).
RESULT_SCHEMA_VERSION = 1

EXACT_UNDECODABLE_NOTE = (
    "not published in an exact release: honest rounds have none, so an exact count would tell a "
    "company that shifted another company's failure value whether that company failed the person; "
    "under differential privacy it is published with noise"
)


@functools.lru_cache(maxsize=64)
def _mechanism(name: str, epsilon: float, delta: float) -> NoiseMechanism:
    return NoiseMechanism.calibrated(name, epsilon, delta)


@dataclass(frozen=True)
class ReleasePolicy:
    min_shared_individuals: int = 0
    min_cell_count: int = 0
    mechanism: str = "none"
    epsilon: float = 0.0
    delta: float = 0.0

    def check(self) -> None:
        if self.min_shared_individuals < 0 or self.min_cell_count < 0:
            raise ConfigError("release thresholds must be non-negative")
        if self.mechanism not in MECHANISMS:
            raise ConfigError(
                f"unknown DP mechanism {self.mechanism!r}", hint=f"one of {', '.join(MECHANISMS)}"
            )
        if self.mechanism != "none" and not self.epsilon > 0:
            raise ConfigError("differential privacy needs epsilon > 0")
        if self.mechanism == "discrete-gaussian" and not 0 < self.delta < 1:
            raise ConfigError("the discrete Gaussian needs 0 < delta < 1")

    def noise(self) -> NoiseMechanism:
        """The noise this policy adds (OpenDP calibrates the Gaussian's scale to epsilon, delta)."""
        return _mechanism(self.mechanism, self.epsilon, self.delta)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "min_shared_individuals": self.min_shared_individuals,
            "min_cell_count": self.min_cell_count,
            "differential_privacy": None,
        }
        if self.mechanism != "none":
            mechanism = self.noise()
            out["differential_privacy"] = {
                "mechanism": self.mechanism, "epsilon": self.epsilon, "delta": self.delta,
                "neighbouring": "one individual added or removed", "scale": mechanism.scale,
                "noise": "OpenDP's integer Laplace or Gaussian sampler, every pattern cell once",
            }  # fmt: skip
        return out


def exact_cells(table: PatternTable, undecodable: int = 0) -> list[int]:
    """The vector a release policy is applied to: the 2^k pattern cells in pattern order, then
    the shared individuals whose sum did not decode."""
    if undecodable < 0:
        raise ValueError(f"{undecodable} undecodable sums")
    return [*table.counts, undecodable]


def release(table: PatternTable, policy: ReleasePolicy, undecodable: int = 0) -> dict[str, Any]:
    """The result JSON the auditor may publish under `policy`; `undecodable`: the round's shared
    individuals whose sum did not decode (module docstring). Its first key, `schema_version`,
    names the version of monoculture/schemas/result.schema.json it follows."""
    return {"schema_version": RESULT_SCHEMA_VERSION, **_release(table, policy, undecodable)}


def _release(table: PatternTable, policy: ReleasePolicy, undecodable: int) -> dict[str, Any]:
    cells = exact_cells(table, undecodable)
    if policy.mechanism != "none":
        return _noisy_release(table, policy, cells[-1])
    published = table
    n = published.shared_individuals
    if n < policy.min_shared_individuals:
        return {
            "companies": list(table.companies),
            "suppressed": True,
            "suppression_reason": (
                f"fewer shared individuals than the release minimum of {policy.min_shared_individuals}"
            ),
            "release_policy": policy.describe(),
        }
    plan = plan_suppression(published, policy.min_cell_count)
    if not plan.protected:
        # Even with every cell withheld some withheld figure would be pinned to a narrower range
        # than the protection (e.g. N itself is below it): nothing but the roster is safe.
        return {
            "companies": list(table.companies),
            "suppressed": True,
            "suppression_reason": (
                "no choice of withheld cells keeps the possible values of every withheld count at "
                f"least {plan.protection} apart: too few individuals for the release minimum"
            ),
            "release_policy": policy.describe(),
        }
    result = result_dict(published)
    apply_suppression(result, published, plan, policy.min_cell_count)
    result["undecodable_sums"] = None
    result["undecodable_sums_note"] = EXACT_UNDECODABLE_NOTE
    result["suppressed"] = False
    result["noisy"] = False
    result["release_policy"] = policy.describe()
    return result


def _noisy_release(table: PatternTable, policy: ReleasePolicy, undecodable: int) -> dict[str, Any]:
    """Under DP: every cell noised once by OpenDP, estimates from the unclamped noisy cells,
    the N threshold applied to what noise cannot fake, intervals that include the noise.
    No cell is suppressed: the noise protects every cell, and withholding noisy cells would
    only bias the published figures."""
    mechanism = policy.noise()
    result = noisy_release(
        table.companies, table.counts, mechanism, policy.min_shared_individuals, undecodable=undecodable
    )
    if not result.get("suppressed"):
        result["suppressed"] = False
        result["noisy"] = True
    result["release_policy"] = policy.describe()
    return result
