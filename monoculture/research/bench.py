"""`monoculture bench`: a simulated round timed against the elliptic-curve floor.

The floor is the EC work the protocol must do, at the cost this machine takes
for one operation, spread over every core:
    floor = sum over companies (own records x cost of hash-to-curve+multiply
                                + relayed records x cost of a multiply) / cores
The cost is measured on one core before and after the round; the lower counts.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from monoculture.analysis.metrics import result_dict
from monoculture.client.company import INLINE
from monoculture.client.workers import BlindingPool
from monoculture.core.dataset import InputSpec
from monoculture.core.psi_crypto import BlindingKey
from monoculture.research.psi_peers import PeerRun, expected_ratio, run_two_processes
from monoculture.research.simulate import CompanyInput, SimulationRun, run_round
from monoculture.research.synthetic import SyntheticSpec, generate

_SAMPLE = 4000


def measure_operation_costs(sample: int = _SAMPLE, repeats: int = 3) -> tuple[float, float]:
    """Seconds per (hash-to-curve + multiply) and per multiply, on one core (best of repeats)."""
    key = BlindingKey.fresh()
    ids = [secrets.token_hex(8) for _ in range(sample)]
    create, process = float("inf"), float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        points = key.hash_and_blind(ids)
        create = min(create, (time.perf_counter() - started) / sample)
        started = time.perf_counter()
        key.reblind(points)
        process = min(process, (time.perf_counter() - started) / sample)
    return create, process


class CostProbes:
    """The cost of one operation sampled over and over: before the round, every `interval` seconds
    during it (a background thread, a few milliseconds of one core each time) and after it.

    Each probe times `sample` ids in the probing thread's CPU time, not in wall time, so a busy
    neighbour (or the round itself, on the same cores) does not inflate it; what stays is the
    machine's own variation (frequency, caches, the hypervisor), which the spread shows."""

    def __init__(self, sample: int = 300, interval: float = 5.0) -> None:
        self._sample, self._interval = sample, interval
        self._key = BlindingKey.fresh()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def probe(self) -> None:
        ids = [secrets.token_hex(8) for _ in range(self._sample)]
        started = time.thread_time()
        points = self._key.hash_and_blind(ids)
        created = time.thread_time()
        self._key.reblind(points)
        done = time.thread_time()
        self.samples.append(((created - started) / self._sample, (done - created) / self._sample))

    def __enter__(self) -> CostProbes:
        for _ in range(3):
            self.probe()
        self._thread = threading.Thread(target=self._run, name="cost-probes", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        key = BlindingKey(self._key.key_bytes)  # openmined-psi objects stay on their own thread
        self._key = key
        while not self._stop.wait(self._interval):
            self.probe()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._key = BlindingKey(self._key.key_bytes)
        for _ in range(3):
            self.probe()

    def costs(self, pick: str) -> tuple[float, float]:
        """The "median", "low" or "high" cost of each operation over every probe."""
        pickers: dict[str, Callable[[list[float]], float]] = {
            "median": statistics.median,
            "low": min,
            "high": max,
        }
        chosen = pickers[pick]
        return chosen([c for c, _ in self.samples]), chosen([m for _, m in self.samples])


def pool_speedup(workers: int, size: int = 16 * 2048) -> tuple[float, float]:
    """Seconds to hash-to-curve + multiply `size` ids in this process and over `workers`
    worker processes (what one company's daemon does with `workers`), in batches of 2048."""
    key = BlindingKey.fresh()
    batch = min(2048, max(1, size // workers))
    batches = [[secrets.token_hex(8) for _ in range(batch)] for _ in range(max(workers, size // batch))]
    started = time.perf_counter()
    inline = list(INLINE.hash_and_blind(key, batches))
    one = time.perf_counter() - started
    pool = BlindingPool(workers)
    try:
        list(pool.hash_and_blind(key, batches[:workers]))  # the workers are started and warm
        started = time.perf_counter()
        pooled = list(pool.hash_and_blind(key, batches))
        spread = time.perf_counter() - started
    finally:
        pool.close()
    if pooled != inline:
        raise RuntimeError("the worker pool gave different points from one process")
    return one, spread


def _print_peer_comparison(run: SimulationRun, psi_run: PeerRun, costs: tuple[float, float]) -> None:
    """openmined-psi's two-party cardinality, client and server as two processes, beside our round:
    the measured ratio and the one expected from the operations on each critical path."""
    same = psi_run.size == run.result["shared_individuals"]
    steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in psi_run.steps.items())
    print(
        f"openmined-psi two-party cardinality, client and server as two processes on the same files: "
        f"{psi_run.seconds:.2f} s (size {psi_run.size}, {'equal to' if same else 'DIFFERENT from'} ours; "
        f"{steps})"
    )
    companies = sorted(run.operation_counts, key=lambda c: c["company"])
    ours = [(c["hash_to_curve"], c["multiplications"] - c["hash_to_curve"]) for c in companies]
    # the first company's file is openmined's client, the second's its server (as run_two_processes)
    expected = expected_ratio(ours, (ours[0][0], ours[1][0]), *costs)
    print(
        f"ratio of our round to openmined-psi cardinality: {run.wall_seconds / psi_run.seconds:.3f} "
        f"(expected from the operations on each critical path: {expected:.3f})"
    )


def _floor(run: SimulationRun, costs: tuple[float, float]) -> float:
    """Seconds of elliptic-curve work the round's companies did, at these per-operation costs."""
    create, multiply = costs
    return sum(
        float(c["hash_to_curve"] * create + (c["multiplications"] - c["hash_to_curve"]) * multiply)
        for c in run.operation_counts
    )


def _print_costs(when: str, costs: tuple[float, float]) -> None:
    print(
        f"cost of one operation (one core, {when}): hash-to-curve + multiply {costs[0] * 1e6:.1f} us, "
        f"multiply {costs[1] * 1e6:.1f} us"
    )


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def _print_memory(run: SimulationRun) -> None:
    print("peak RSS per process:")
    for counts in sorted(run.operation_counts, key=lambda c: c["company"]):
        held = counts["largest_list"]
        print(
            f"  {counts['company']}: {_mib(counts['peak_rss_bytes'])} "
            f"({counts['peak_rss_bytes'] / held:.0f} bytes per record held, lists of {held})"
        )
    held = sum(c["largest_list"] for c in run.operation_counts)  # the final lists, all at once
    peak = run.coordinator_peak_rss_bytes
    print(f"  coordinator: {_mib(peak)} ({peak / held:.0f} bytes per record held, {held} final tokens)")


def run_bench(
    parties: int,
    records: int,
    overlap: float,
    seed: int,
    insecure: bool = False,
    cost_sample: int = _SAMPLE,
    pool_ids: int = 16 * 2048,
    rerandomise: bool = False,
    compare_tags: bool = False,
) -> int:
    """Print every figure of docs/USAGE.md, "monoculture bench"; exit status 1 if a result is not exact.

    `cost_sample`: ids per measurement of one operation's cost; `pool_ids`: ids blinded to
    show what the worker pool gives one company (smaller is quicker and noisier).
    `compare_tags`: a round with masked tags, then one with re-randomised tags on the same
    files, back to back, and the ratio of their wall times (what the option costs, measured
    in one run on a shared machine)."""
    cores = os.cpu_count() or 1
    transport = "plaintext (--insecure)" if insecure else "mTLS + sealed relays"
    modes = [False, True] if compare_tags else [rerandomise]
    tags = " then ".join(_TAGS[mode] for mode in modes)
    print(f"monoculture bench: {parties} parties x {records} records, {cores} cores, {transport}, {tags}")
    before = measure_operation_costs(cost_sample)
    _print_costs("before the round", before)
    if cores > 1:
        one, spread = pool_speedup(cores, pool_ids)
        print(
            f"one company's blinding over {cores} worker processes: {one:.2f} s in one process, "
            f"{spread:.2f} s over the workers (speed-up {one / spread:.2f}; "
            "simulated companies use one each, as they share this machine)"
        )
    runs: list[tuple[bool, SimulationRun, float]] = []
    with tempfile.TemporaryDirectory(prefix="monoculture-bench-") as tmp:
        workdir = Path(tmp)
        spec = SyntheticSpec(parties, records, seed, overlap=1.0 if overlap >= 1 else overlap)
        population = generate(spec, workdir / "data")
        companies = [
            CompanyInput(n, InputSpec(p)) for n, p in zip(population.companies, population.files, strict=True)
        ]
        with CostProbes() as probes:
            for mode in modes:
                started = time.perf_counter()
                run = run_round(companies, workdir / _TAGS[mode].replace(" ", "-"), insecure=insecure,
                                rerandomise=mode)  # fmt: skip
                runs.append((mode, run, time.perf_counter() - started))
        psi_run = run_two_processes(*population.files) if parties == 2 else None
    after = measure_operation_costs(cost_sample)
    _print_costs("after the round", after)
    truth = result_dict(population.truth)["pattern_counts"]
    exact = True
    for mode, run, total in runs:
        if compare_tags:
            print(f"round with {_TAGS[mode]}:")
        _print_round(run, total, probes, cores)
        exact = exact and run.result["pattern_counts"] == truth
    if compare_tags:
        masked, rerandomised = runs[0][1].wall_seconds, runs[1][1].wall_seconds
        print(
            f"ratio of the re-randomised round's wall time to the masked round's: "
            f"{rerandomised / masked:.3f} ({rerandomised:.2f} s / {masked:.2f} s, one run)"
        )
    run = runs[-1][1]
    create_cost, multiply_cost = probes.costs("median")
    if psi_run is not None:
        _print_peer_comparison(run, psi_run, (create_cost, multiply_cost))
    print(
        f"result equals plaintext ground truth: {'yes' if exact else 'NO'} "
        f"(H = {run.result['homogenization']})"
    )
    return 0 if exact else 1


_TAGS = {False: "masked tags", True: "re-randomised tags"}


def _print_round(run: SimulationRun, total: float, probes: CostProbes, cores: int) -> None:
    """One round's EC operations, wall time, floor and ratio (with its spread over the cost
    probes), memory and bytes on the wire."""
    print("EC operations per company:")
    for counts in sorted(run.operation_counts, key=lambda c: c["company"]):
        own = counts["hash_to_curve"]
        print(
            f"  {counts['company']}: {own} hash-to-curve + multiply, {counts['multiplications'] - own} "
            f"multiply ({counts['blind_seconds']:.1f} s blinding)"
        )
    floors = {pick: _floor(run, probes.costs(pick)) / cores for pick in ("median", "low", "high")}
    print(f"wall time, round open to result: {run.wall_seconds:.2f} s (with process start-up: {total:.2f} s)")
    (create, multiply), low, high = probes.costs("median"), probes.costs("low"), probes.costs("high")
    print(
        f"cost probes ({len(probes.samples)}, CPU time, before, during and after the rounds): "
        f"hash-to-curve + multiply {low[0] * 1e6:.1f}-{high[0] * 1e6:.1f} us (median {create * 1e6:.1f}), "
        f"multiply {low[1] * 1e6:.1f}-{high[1] * 1e6:.1f} us (median {multiply * 1e6:.1f})"
    )
    print(f"EC floor (operations x the median probed cost / {cores} cores): {floors['median']:.2f} s")
    print(
        f"ratio of wall time to EC floor: {run.wall_seconds / floors['median']:.3f} "
        f"(spread {run.wall_seconds / floors['high']:.3f}-{run.wall_seconds / floors['low']:.3f} "
        "over the probes' highest and lowest costs)"
    )
    _print_memory(run)
    sent = sum(c["bytes_uploaded"] for c in run.operation_counts)
    elements = sum(c["elements_uploaded"] for c in run.operation_counts)
    print(
        f"bytes on the wire per record per hop: {sent / elements:.1f} "
        f"(serialized upload chunks; each is downloaded once more, except the last hop)"
    )
