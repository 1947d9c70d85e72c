"""Coverage and size of the inference under differential privacy, by simulation.

Rows: k companies, N shared individuals, the mechanism's epsilon, the share of
individuals every company fails ("hard"; 0 is independence, H = 1). Each replicate
draws a table, adds the release's noise, and runs monoculture.analysis.dp_inference
(the parametric bootstrap the coordinator publishes). Where fewer than 3 individuals
would be failed by everyone under independence (estimated from the noisy counts) the
release gives a one-sided 95% upper bound for H instead of a two-sided interval.
Columns: E0 = N prod fail_i (true); for H, the share of replicates publishing a two-sided
interval, its coverage over those and its misses below / above, and the coverage of
the one-sided bound where that is published instead; coverage of S's and of
fail_0's intervals; how often the test of H = 1 rejects at 5% (its size where
hard = 0, its power otherwise).

    .venv/bin/python scripts/dp_coverage.py --reps 600
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from monoculture.analysis.dp_inference import _bits, noisy_inference
from monoculture.analysis.privacy import NoiseMechanism

RATES = (0.3, 0.2, 0.25, 0.35, 0.15)
ROWS = [
    (3, 2000, 0.1, 0.0), (3, 2000, 0.1, 0.1), (3, 2000, 1.0, 0.0), (3, 2000, 1.0, 0.1),
    (3, 200, 1.0, 0.0), (3, 200, 1.0, 0.1), (3, 500, 0.5, 0.0), (5, 2000, 1.0, 0.0), (5, 2000, 1.0, 0.1),
]  # fmt: skip


def _probabilities(parties: int, hard: float) -> np.ndarray:
    bits = _bits(parties)
    rates = np.asarray(RATES[:parties])
    independent = np.prod(np.where(bits == 1, rates, 1 - rates), axis=1)
    everyone = np.zeros(len(independent))
    everyone[-1] = 1.0
    return np.asarray((1 - hard) * independent + hard * everyone)


def _num(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"


def _share(hits: int, total: int) -> float:
    return hits / total if total else math.nan


def _row(parties: int, n: int, epsilon: float, hard: float, reps: int, rng: np.random.Generator) -> str:
    probabilities = _probabilities(parties, hard)
    failure = probabilities @ _bits(parties)
    truth_h, truth_s = probabilities[-1] / np.prod(failure), probabilities[-1]
    mechanism = NoiseMechanism.calibrated("discrete-laplace", epsilon)
    names = [f"c{i}" for i in range(parties)]
    h_n = h_in = h_lo = h_hi = hu_n = hu_in = s_n = s_in = f_n = f_in = rejected = 0
    for _ in range(reps):
        noisy = rng.multinomial(n, probabilities) + mechanism.simulate(rng, (2**parties,))
        out = noisy_inference(noisy.tolist(), mechanism, names, replicates=400, rng=rng)
        ci, upper = out["homogenization_ci95"], out["homogenization_upper95"]
        if ci is not None:
            h_n += 1
            h_in += ci[0] <= truth_h <= ci[1]
            h_lo += truth_h < ci[0]
            h_hi += truth_h > ci[1]
        if upper is not None:
            hu_n += 1
            hu_in += truth_h <= upper
        s_ci = out["systemic_failure_rate_ci95"]
        if s_ci is not None:
            s_n += 1
            s_in += s_ci[0] <= truth_s <= s_ci[1]
        f_ci = out["failure_rate_ci95"]["c0"]
        if f_ci is not None:
            f_n += 1
            f_in += f_ci[0] <= failure[0] <= f_ci[1]
        test = out["homogenization_test"]
        rejected += test is not None and test["p_value_greater"] < 0.05
    expected = n * float(np.prod(failure))
    return (
        f"{parties:>2} {n:>5} {epsilon:>5} {hard:>5} {truth_h:>6.2f} {expected:>6.2f} | {h_n / reps:5.3f} "
        f"{_num(_share(h_in, h_n)):>5} {f'{h_lo}/{h_hi}':>6} {_num(_share(hu_in, hu_n)):>6} | "
        f"{_num(_share(s_in, s_n)):>5} | "
        f"{_num(_share(f_in, f_n)):>6} | {rejected / reps:6.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        " k     N   eps  hard true H     E0 | H pub   cov  lo/hi up cov | S cov | f0 cov | rejects H=1 at 5%"
    )
    started = time.perf_counter()
    for row in ROWS:
        print(_row(*row, args.reps, rng), flush=True)
    seconds = time.perf_counter() - started
    print(f"({args.reps} replicates per row, 400 bootstrap replicates each; {seconds:.0f} s)")


if __name__ == "__main__":
    main()
