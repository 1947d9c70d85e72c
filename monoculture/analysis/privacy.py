"""Differential privacy on the pattern table: OpenDP does the sampling and the accounting.

Neighbouring tables differ by one individual added or removed, which changes one
cell by 1 (L1 = L2 sensitivity 1). OpenDP's integer Laplace and Gaussian
measurements (`make_laplace`, `make_gaussian` on integer vectors) draw the noise;
they are vetted against the floating-point and timing attacks that hand-written
samplers fall to, and draw from OpenSSL's CSPRNG. Their privacy maps give the
epsilon (and delta) each release spends, which the budget ledgers add up.
Trusted for: exact discrete samplers and their privacy maps. Not relied on for:
anything else (the bootstrap in `dp_inference` simulates the same distributions
with numpy, for statistics only). tests/test_dp_release.py pins their behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

MECHANISMS = ("none", "discrete-laplace", "discrete-gaussian")


# ------------------------------------------------------- OpenDP mechanisms

# The chance that noise lifts a population below the N threshold over it (see
# `NoiseMechanism.sum_upper_tail`): a release needs noisy N minus that margin >= threshold.
THRESHOLD_FAILURE_PROBABILITY = 1e-9


def _opendp() -> object:
    """OpenDP, with its "contrib" features on (the integer Laplace and Gaussian
    measurements on vectors are contrib in OpenDP 0.16)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


@dataclass(frozen=True)
class NoiseMechanism:
    """Noise added to every cell of a pattern table, with OpenDP doing the sampling and the
    accounting.

    Neighbouring tables differ by one individual added or removed: one cell moves by 1
    (L1 = L2 sensitivity 1). `discrete-laplace`: P(x) proportional to exp(-|x| / scale),
    epsilon = 1 / scale (pure DP). `discrete-gaussian`: P(x) proportional to
    exp(-x^2 / (2 scale^2)), rho = 1 / (2 scale^2) zCDP, converted by OpenDP to
    (epsilon, delta)-DP; `calibrated` finds the smallest scale meeting the budget.
    """

    name: str
    scale: float
    epsilon: float
    delta: float = 0.0

    @classmethod
    def calibrated(cls, name: str, epsilon: float, delta: float = 0.0) -> NoiseMechanism:
        """The mechanism of `name` that spends exactly (at most) `epsilon`, `delta` per table."""
        if name == "discrete-laplace":
            return cls(name, 1.0 / epsilon, epsilon, 0.0)
        if name == "discrete-gaussian":
            dp: Any = _opendp()
            scale = dp.binary_search_param(
                lambda s: _gaussian_approx(dp, s, delta), d_in=1, d_out=(epsilon, delta), T=float
            )
            return cls(name, float(scale), epsilon, delta)
        raise ValueError(f"unknown DP mechanism {name!r}")

    def _measurement(self) -> Any:
        dp: Any = _opendp()
        if self.name == "discrete-laplace":
            space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
            return dp.m.make_laplace(*space, scale=self.scale)
        space = dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int)
        return dp.m.make_gaussian(*space, scale=self.scale)

    def guarantee(self) -> tuple[float, float]:
        """(epsilon, delta) of one noisy table, from OpenDP's privacy map at distance 1."""
        if self.name == "discrete-laplace":
            return float(self._measurement().map(1)), 0.0
        dp: Any = _opendp()
        epsilon, delta = _gaussian_approx(dp, self.scale, self.delta).map(1)
        return float(epsilon), float(delta)

    def noisy(self, counts: Sequence[int]) -> list[int]:
        """`counts` with independent noise on each (OpenDP's sampler; integers, may be negative)."""
        if not counts:
            return []
        return [int(v) for v in self._measurement()([int(c) for c in counts])]

    def support(self, mass: float = 1e-15) -> npt.NDArray[np.int64]:
        """Integers carrying all but `mass` of one draw's probability."""
        if self.name == "discrete-laplace":
            width = math.ceil(self.scale * math.log(2 / mass)) + 1
        else:
            width = math.ceil(self.scale * math.sqrt(2 * math.log(2 / mass))) + 1
        return np.arange(-width, width + 1, dtype=np.int64)

    def pmf(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(noise = x) for each integer x, exactly as the sampler draws it."""
        x = np.asarray(values, dtype=np.float64)
        if self.name == "discrete-laplace":
            t = math.exp(-1.0 / self.scale)
            return np.asarray((1 - t) / (1 + t) * t ** np.abs(x), dtype=np.float64)
        support = self.support()
        weights = np.exp(-(support.astype(np.float64) ** 2) / (2 * self.scale**2))
        return np.asarray(np.exp(-(x**2) / (2 * self.scale**2)) / weights.sum(), dtype=np.float64)

    def sum_pmf(
        self, terms: int, mass: float = 1e-12
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(support, pmf) of the sum of `terms` independent draws: exact convolution up to 64
        terms, beyond that a discretised normal of the same variance (the central limit is
        then far finer than the counts it is used for)."""
        support = self.support(mass)
        pmf = self.pmf(support)
        pmf = pmf / pmf.sum()
        if terms <= 64:
            total, total_pmf = np.array([0], dtype=np.int64), np.array([1.0])
            for _ in range(terms):
                total_pmf = np.convolve(total_pmf, pmf)
                total = np.arange(total[0] + support[0], total[-1] + support[-1] + 1, dtype=np.int64)
            keep = total_pmf > mass * 1e-3
            return total[keep], total_pmf[keep] / total_pmf[keep].sum()
        sd = math.sqrt(terms * self.variance())
        width = math.ceil(sd * math.sqrt(2 * math.log(2 / mass))) + 1
        values = np.arange(-width, width + 1, dtype=np.int64)
        weights = np.exp(-(values.astype(np.float64) ** 2) / (2 * sd**2))
        return values, weights / weights.sum()

    def variance(self) -> float:
        support = self.support()
        return float(np.sum(self.pmf(support) * support.astype(np.float64) ** 2))

    def simulate(self, rng: np.random.Generator, shape: tuple[int, ...]) -> npt.NDArray[np.int64]:
        """Draws with this noise's distribution, for statistical simulation only (the
        bootstrap): never for a release, which uses `noisy`."""
        if self.name == "discrete-laplace":
            p = 1 - math.exp(-1.0 / self.scale)
            return np.asarray(rng.geometric(p, shape) - rng.geometric(p, shape), dtype=np.int64)
        support = self.support()
        return np.asarray(rng.choice(support, size=shape, p=self.pmf(support) / self.pmf(support).sum()))

    def sum_upper_tail(self, terms: int, failure_probability: float = THRESHOLD_FAILURE_PROBABILITY) -> int:
        """A margin a with P(sum of `terms` independent draws >= a) <= `failure_probability`.

        Chernoff bounds: the discrete Laplace's moment generating function is
        (1 - t)^2 / ((1 - t e^l)(1 - t e^-l)) for l < 1/scale (t = exp(-1/scale)); the discrete
        Gaussian is scale^2-subgaussian (Canonne, Kamath, Steinke 2020), so
        P(sum >= a) <= exp(-a^2 / (2 terms scale^2)).
        """
        log_beta = math.log(failure_probability)
        if self.name == "discrete-gaussian":
            return math.ceil(math.sqrt(-2 * log_beta * terms * self.scale**2))
        t = math.exp(-1.0 / self.scale)

        def log_bound(a: float) -> float:
            grid = np.linspace(1e-6, 1.0 / self.scale - 1e-9, 2000)
            log_mgf = 2 * math.log(1 - t) - np.log(1 - t * np.exp(grid)) - np.log(1 - t * np.exp(-grid))
            return float(np.min(-grid * a + terms * log_mgf))

        low, high = 0, 1
        while log_bound(high) > log_beta:
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if log_bound(middle) > log_beta else (low, middle)
        return high


def _gaussian_approx(dp: Any, scale: float, delta: float) -> Any:
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int)
    return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(dp.m.make_gaussian(*space, scale=scale)), delta)
