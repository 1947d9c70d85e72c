"""The researcher-facing commands: synthetic simulate, plaintext, bench, deploy configs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, example

from monoculture.client.config import load_client_config
from monoculture.coordinator.config import load_coordinator_config
from monoculture.research.synthetic import SyntheticSpec, generate


def monoculture(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monoculture", *args], capture_output=True, text=True, timeout=600
    )


def test_synthetic_population_has_the_asked_shape(tmp_path: Path) -> None:
    spec = SyntheticSpec(3, 20_000, seed=5, overlap=0.5, failure_rates=(0.1, 0.2, 0.3), correlation=0.0)
    population = generate(spec, tmp_path)
    truth = population.truth
    n = truth.shared_individuals
    assert 0.45 < n / 20_000 < 0.55
    for i, rate in enumerate((0.1, 0.2, 0.3)):
        assert abs(truth.failures(i) / n - rate) < 0.02
    # correlation 0: independent failures, H close to 1
    h = truth.systemic_failures / n / (truth.failures(0) * truth.failures(1) * truth.failures(2) / n**3)
    assert 0.6 < h < 1.4


def test_synthetic_correlation_raises_h(tmp_path: Path) -> None:
    spec = SyntheticSpec(3, 20_000, seed=6, overlap=1.0, failure_rates=(0.2,), correlation=0.5)
    truth = generate(spec, tmp_path).truth
    n = truth.shared_individuals
    assert n == 20_000
    h = (
        truth.systemic_failures
        / n
        / ((truth.failures(0) / n) * (truth.failures(1) / n) * (truth.failures(2) / n))
    )
    assert spec.model_homogenization() == pytest.approx(0.5 * 0.2 / 0.008 + 0.5)
    assert h == pytest.approx(spec.model_homogenization(), rel=0.1)


@pytest.mark.e2e
def test_simulate_synthetic_prints_truth_beside_result(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = monoculture(
        "simulate",
        "--parties",
        "3",
        "--individuals",
        "500",
        "--seed",
        "3",
        "--correlation",
        "0.5",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "pattern table identical: yes" in done.stdout
    assert "ground truth" in done.stdout
    assert json.loads(out.read_text())["companies"] == ["company-1", "company-2", "company-3"]


def test_plaintext_command(tmp_path: Path) -> None:
    out = tmp_path / "plain.json"
    args = ["plaintext", "--out", str(out)]
    for name in ("google", "microsoft", "ibm"):
        args += ["--company", f"{name}={example('digit', name)}"]
    done = monoculture(*args)
    assert done.returncode == 0, done.stderr
    assert round(json.loads(out.read_text())["homogenization"], 4) == 4.6676


@pytest.mark.e2e
def test_bench_prints_every_figure() -> None:
    done = monoculture(
        "--log-level", "WARNING", "bench", "--parties", "2", "--records", "300",
        "--cost-sample", "500", "--pool-ids", "2048",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for figure in (
        "cost of one operation",
        "EC operations per company",
        "300 hash-to-curve + multiply, 300 multiply",
        "wall time",
        "EC floor",
        "ratio of wall time to EC floor",
        "over the probes' highest and lowest costs",
        "cost probes (",
        "bytes on the wire per record per hop",
        "result equals plaintext ground truth: yes",
        "peak RSS per process",
        "bytes per record held, lists of 300",
        "ratio of our round to openmined-psi cardinality",
        "client and server as two processes",
        "expected from the operations on each critical path",
    ):
        assert figure in done.stdout
    if (os.cpu_count() or 1) > 1:
        assert re.search(r"worker processes: [\d.]+ s in one process, [\d.]+ s over the workers", done.stdout)


@pytest.mark.e2e
def test_bench_compares_masked_and_rerandomised_tags_in_one_run() -> None:
    """What re-randomised tags cost is the ratio of two rounds run back to back, printed beside
    the two wall times it is computed from."""
    done = monoculture(
        "--log-level", "WARNING", "bench", "--parties", "3", "--records", "200",
        "--cost-sample", "300", "--pool-ids", "1024", "--compare-tags",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "masked tags then re-randomised tags" in out
    masked, rerandomised = out.index("round with masked tags:"), out.index("round with re-randomised tags:")
    assert masked < rerandomised
    walls = [float(w) for w in re.findall(r"wall time, round open to result: ([\d.]+) s", out)]
    assert len(walls) == 2
    assert out[masked:rerandomised].count("200 hash-to-curve + multiply, 400 multiply") == 3
    ratio = re.search(
        r"re-randomised round's wall time to the masked round's: ([\d.]+) \(([\d.]+) s / ([\d.]+) s", out
    )
    assert ratio is not None
    assert float(ratio[2]) == walls[1] and float(ratio[3]) == walls[0]
    # the printed walls are rounded to 0.01 s, the ratio is of the unrounded ones
    assert float(ratio[1]) == pytest.approx(walls[1] / walls[0], rel=0.01)
    # 44-byte masked tags, then 64-byte ElGamal tags: 20 bytes more per record per hop
    sizes = [float(b) for b in re.findall(r"bytes on the wire per record per hop: ([\d.]+)", out)]
    assert len(sizes) == 2 and sizes[1] - sizes[0] == pytest.approx(20, abs=1)
    assert "result equals plaintext ground truth: yes" in out


def test_deploy_configs_are_valid() -> None:
    coordinator = load_coordinator_config(ROOT / "deploy" / "coordinator.toml")
    assert coordinator.listen == "127.0.0.1:50051"
    for name in ("google", "microsoft", "ibm"):
        config = load_client_config(ROOT / "deploy" / f"client-{name}.toml")
        assert config.company == name
        assert config.data.path.exists()
