"""Synthetic companies for `monoculture simulate --parties K --individuals N`.

The model (all choices are options):
- a population of N individuals; a share `overlap` of them is held by every
  company, each other individual by every company independently with
  probability 1/2 (never by all);
- company i fails an individual when u_ij < fail_i; with probability
  `correlation` one uniform u_j is shared by every company for that individual
  (a "hard case" for everybody), otherwise each company draws its own.
  So P(all fail) = correlation * min_i fail_i + (1 - correlation) * prod_i fail_i,
  and the model's H is that over prod_i fail_i (1 at correlation 0).

This is simulation data, not key material: numpy's seeded generator is right
here, so a seed reproduces a population exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monoculture.analysis.table import PatternTable, count_patterns
from monoculture.core.errors import ConfigError


@dataclass(frozen=True)
class SyntheticSpec:
    parties: int
    individuals: int
    seed: int | None = None
    overlap: float = 0.8
    failure_rates: tuple[float, ...] = (0.2,)
    correlation: float = 0.3

    def rates(self) -> list[float]:
        if len(self.failure_rates) == 1:
            return list(self.failure_rates) * self.parties
        return list(self.failure_rates)

    def check(self) -> None:
        if not 2 <= self.parties <= 16:
            raise ConfigError("--parties must be 2..16")
        if self.individuals < 1:
            raise ConfigError("--individuals must be at least 1")
        if not 0 <= self.overlap <= 1 or not 0 <= self.correlation <= 1:
            raise ConfigError("--overlap and --correlation must lie in [0, 1]")
        if len(self.failure_rates) not in (1, self.parties):
            raise ConfigError(f"--failure-rate takes one rate or {self.parties} comma-separated rates")
        if any(not 0 <= r <= 1 for r in self.failure_rates):
            raise ConfigError("failure rates must lie in [0, 1]")

    def model_homogenization(self) -> float | None:
        rates = self.rates()
        product = math.prod(rates)
        if product == 0:
            return None
        return (self.correlation * min(rates) + (1 - self.correlation) * product) / product


@dataclass(frozen=True)
class SyntheticPopulation:
    companies: list[str]
    files: list[Path]
    truth: PatternTable  # plaintext table over the individuals every company holds


def company_names(parties: int) -> list[str]:
    return [f"company-{i + 1}" for i in range(parties)]


def _holdings(rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    shape = (spec.individuals, spec.parties)
    held = rng.random(shape) < 0.5
    everywhere = rng.random(spec.individuals) < spec.overlap
    held[everywhere] = True
    # An individual outside the overlap is never held by all: drop one holder.
    not_all = ~everywhere & held.all(axis=1)
    dropped = rng.integers(0, spec.parties, size=int(not_all.sum()))
    held[np.nonzero(not_all)[0], dropped] = False
    return held


def _failures(rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    shared_u = rng.random(spec.individuals)
    own_u = rng.random((spec.individuals, spec.parties))
    correlated = rng.random(spec.individuals) < spec.correlation
    u = np.where(correlated[:, None], shared_u[:, None], own_u)
    return (u < np.array(spec.rates())[None, :]).astype(np.uint8)


def generate(spec: SyntheticSpec, folder: Path) -> SyntheticPopulation:
    """Write one CSV per company into `folder` and return the plaintext truth."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    held = _holdings(rng, spec)
    failed = _failures(rng, spec)
    # Ids look like real customer numbers; their order in each file is shuffled.
    ids = np.array([f"cust-{n:012d}" for n in rng.choice(10**12, spec.individuals, replace=False)])
    names = company_names(spec.parties)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for column, name in enumerate(names):
        rows = rng.permutation(np.nonzero(held[:, column])[0])
        path = folder / f"{name}.csv"
        with path.open("w", encoding="utf-8") as handle:
            handle.write("id,failed\n")
            handle.writelines(f"{ids[j]},{failed[j, column]}\n" for j in rows.tolist())
        files.append(path)
    shared = held.all(axis=1)
    counts = count_patterns([failed[shared, c] for c in range(spec.parties)])
    truth = PatternTable(tuple(names), tuple(int(c) for c in counts))
    return SyntheticPopulation(names, files, truth)
