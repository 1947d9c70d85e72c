"""Differential privacy on the pattern table: exact samplers and the noise step.

Neighbouring tables differ by one individual added or removed, which changes
one cell by 1 (L1 = L2 sensitivity 1). The discrete Laplace mechanism with
scale 1/epsilon gives epsilon-DP for the whole table; the discrete Gaussian
with sigma^2 = 1/(2 rho) gives rho-zCDP, reported as (epsilon, delta)-DP with
epsilon = rho + 2 sqrt(rho ln(1/delta)). Samplers are the exact ones of
Canonne, Kamath and Steinke (NeurIPS 2020), on rational arithmetic, drawing
only from `secrets`.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

from monoculture.analysis.table import PatternTable

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


def add_noise(table: PatternTable, mechanism: str, epsilon: float, delta: float = 0.0) -> PatternTable:
    """The table with DP noise on every cell, clamped at 0 (post-processing)."""
    if mechanism == "none":
        return table
    if mechanism == "discrete-laplace":
        scale = Fraction(1 / epsilon).limit_denominator(10**6)
        noise = [discrete_laplace(scale) for _ in table.counts]
    else:
        sigma_squared = gaussian_sigma_squared(epsilon, delta)
        noise = [discrete_gaussian(sigma_squared) for _ in table.counts]
    return PatternTable(
        table.companies, tuple(max(0, c + n) for c, n in zip(table.counts, noise, strict=True))
    )
