"""What the auditor may publish: thresholds, cell suppression and optional
differential privacy on the pattern table.

Order of operations (docs/THREAT_MODEL.md, "Release policy"):
1. Differential privacy (optional): noise is added to every one of the 2^k
   cells, once; everything published is computed from the noisy cells.
2. Threshold: with fewer shared individuals than `min_shared_individuals`,
   only the roster and the reason are published.
3. Cell suppression: cells below `min_cell_count` (but above zero) are
   withheld and marked; further cells are withheld until no withheld cell can
   be recomputed exactly from what is still published: N, each company's
   failure count and S. The histogram, pairwise figures and the confidence
   interval (which involve every cell) are withheld with them; when the
   all-fail cell itself is withheld, S and H are too.

Differential privacy: neighbouring tables differ by one individual added or
removed, which changes one cell by 1 (L1 = L2 sensitivity 1). The discrete
Laplace mechanism with scale 1/epsilon gives epsilon-DP for the whole table;
the discrete Gaussian with sigma^2 = 1/(2 rho) gives rho-zCDP, reported as
(epsilon, delta)-DP with epsilon = rho + 2 sqrt(rho ln(1/delta)). Every round
spends its epsilon anew (sequential composition: k rounds over the same people
cost the sum). Samplers are the exact ones of Canonne, Kamath and Steinke
(NeurIPS 2020), on rational arithmetic, drawing only from `secrets`.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from monoculture.core.errors import ConfigError
from monoculture.core.metrics import PatternTable, pattern_string, result_dict

MECHANISMS = ("none", "discrete-laplace", "discrete-gaussian")


# ----------------------------------------------------------- exact samplers


def _bernoulli(p: Fraction) -> bool:
    return secrets.randbelow(p.denominator) < p.numerator


def _bernoulli_exp_at_most_one(gamma: Fraction) -> bool:
    k = 1
    while _bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability exp(-gamma), gamma >= 0, exactly."""
    while gamma > 1:
        if not _bernoulli_exp_at_most_one(Fraction(1)):
            return False
        gamma -= 1
    return _bernoulli_exp_at_most_one(gamma)


def discrete_laplace(scale: Fraction) -> int:
    """P(x) proportional to exp(-|x| / scale), exactly (CKS 2020, Algorithm 2)."""
    s, t = scale.denominator, scale.numerator  # exp(-|x| s / t)
    while True:
        u = secrets.randbelow(t)
        if not bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while bernoulli_exp(Fraction(1)):
            v += 1
        y = (u + t * v) // s
        negative = secrets.randbelow(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma_squared: Fraction) -> int:
    """P(x) proportional to exp(-x^2 / (2 sigma^2)), exactly (CKS 2020, Algorithm 3)."""
    t = math.isqrt(math.floor(sigma_squared)) + 1
    while True:
        y = discrete_laplace(Fraction(t))
        gamma = (abs(y) - sigma_squared / t) ** 2 / (2 * sigma_squared)
        if bernoulli_exp(gamma):
            return y


def gaussian_sigma_squared(epsilon: float, delta: float) -> Fraction:
    """sigma^2 for sensitivity 1 whose rho-zCDP converts to (epsilon, delta)-DP."""
    log_term = math.log(1 / delta)
    rho = (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2
    return Fraction(1 / (2 * rho)).limit_denominator(10**6)


# ----------------------------------------------------------------- policy


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

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "min_shared_individuals": self.min_shared_individuals,
            "min_cell_count": self.min_cell_count,
            "differential_privacy": None,
        }
        if self.mechanism == "discrete-laplace":
            out["differential_privacy"] = {
                "mechanism": self.mechanism, "epsilon": self.epsilon, "delta": 0.0,
                "neighbouring": "one individual added or removed", "scale": 1 / self.epsilon,
            }  # fmt: skip
        elif self.mechanism == "discrete-gaussian":
            out["differential_privacy"] = {
                "mechanism": self.mechanism, "epsilon": self.epsilon, "delta": self.delta,
                "neighbouring": "one individual added or removed",
                "sigma": math.sqrt(float(gaussian_sigma_squared(self.epsilon, self.delta))),
            }  # fmt: skip
        return out


def add_noise(table: PatternTable, policy: ReleasePolicy) -> PatternTable:
    """The table with DP noise on every cell, clamped at 0 (post-processing)."""
    if policy.mechanism == "none":
        return table
    if policy.mechanism == "discrete-laplace":
        scale = Fraction(1 / policy.epsilon).limit_denominator(10**6)
        noise = [discrete_laplace(scale) for _ in table.counts]
    else:
        sigma_squared = gaussian_sigma_squared(policy.epsilon, policy.delta)
        noise = [discrete_gaussian(sigma_squared) for _ in table.counts]
    return PatternTable(
        table.companies, tuple(max(0, c + n) for c, n in zip(table.counts, noise, strict=True))
    )


def _margin_rows(parties: int, with_systemic: bool) -> np.ndarray:
    """Rows: the linear statistics published beside a suppressed table (N, failures, S)."""
    cells = np.arange(2**parties)
    rows = [np.ones(2**parties)]  # N
    rows += [((cells >> (parties - 1 - i)) & 1).astype(float) for i in range(parties)]
    if with_systemic:
        rows.append((cells == 2**parties - 1).astype(float))
    return np.array(rows)


def _determined(constraints: np.ndarray, withheld: list[int]) -> list[int]:
    """Withheld cells whose value follows exactly from the published statistics."""
    sub = constraints[:, withheld]
    rank = np.linalg.matrix_rank(sub)
    determined = []
    for position, cell in enumerate(withheld):
        unit = np.zeros(len(withheld))
        unit[position] = 1
        if np.linalg.matrix_rank(np.vstack([sub, unit])) == rank:
            determined.append(cell)
    return determined


def cells_to_withhold(table: PatternTable, min_cell_count: int) -> list[int]:
    """Primary suppression (0 < count < threshold) plus complementary suppression.

    Complementary cells (smallest first, the all-fail cell last) are added until
    no withheld cell can be recomputed from N, the companies' failure counts and,
    unless its cell is withheld, S.
    """
    withheld = [i for i, c in enumerate(table.counts) if 0 < c < min_cell_count]
    if not withheld:
        return []
    all_fail = 2**table.parties - 1
    # The all-fail cell is S, the headline figure: withheld as a last resort only
    # (with k = 2, N, the failure counts and S pin down every cell).
    candidates = sorted((c, i) for i, c in enumerate(table.counts) if i not in withheld and i != all_fail)
    if all_fail not in withheld:
        candidates.append((table.counts[all_fail], all_fail))
    while candidates:
        constraints = _margin_rows(table.parties, with_systemic=all_fail not in withheld)
        if not _determined(constraints, withheld):
            break
        withheld.append(candidates.pop(0)[1])
    return sorted(withheld)


_NEEDS_EVERY_CELL = ("failure_count_histogram", "pairwise_homogenization", "homogenization_ci95")
_NEEDS_SYSTEMIC = (
    "systemic_failures", "systemic_failure_rate", "homogenization",
    "homogenization_ci95", "homogenization_test",
)  # fmt: skip


def _withhold(result: dict[str, Any], withheld: list[int], parties: int, min_cell_count: int) -> None:
    names = [pattern_string(c, parties) for c in withheld]
    for name in names:
        result["pattern_counts"][name] = None
    for key in _NEEDS_EVERY_CELL:
        result[key] = None
    note = (
        f"cells with 1 to {min_cell_count - 1} individuals are withheld (null), and further cells so "
        "that none can be recomputed from N and the companies' failure counts; the histogram, pairwise "
        "figures and confidence interval are withheld with them"
    )
    if 2**parties - 1 in withheld:
        for key in _NEEDS_SYSTEMIC:
            result[key] = None
        result["homogenization_note"] = "withheld: the systemic-failure cell is below the release minimum"
    result["suppressed_cells"] = names
    result["suppression_note"] = note


def release(table: PatternTable, policy: ReleasePolicy) -> dict[str, Any]:
    """The result JSON the auditor may publish under `policy`."""
    published = add_noise(table, policy)
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
    result = result_dict(published)
    withheld = cells_to_withhold(published, policy.min_cell_count)
    if withheld:
        _withhold(result, withheld, published.parties, policy.min_cell_count)
    result["suppressed"] = False
    result["noisy"] = policy.mechanism != "none"
    result["release_policy"] = policy.describe()
    return result
