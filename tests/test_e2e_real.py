"""Real data through the full protocol between separate processes (Must show 2).

Each test runs `monoculture simulate` as a user would: one coordinator process
and one daemon process per company over loopback gRPC.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_same_integers, example

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.core.dataset import InputSpec, load_records

pytestmark = pytest.mark.e2e


def simulate(tmp: Path, folder: str, companies: list[str]) -> tuple[dict, str]:
    out = tmp / "result.json"
    args = [sys.executable, "-m", "monoculture", "simulate", "--out", str(out)]
    for name in companies:
        args += ["--company", f"{name}={example(folder, name)}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def plaintext(folder: str, companies: list[str]) -> dict:
    outcomes = [load_records(InputSpec(example(folder, c))).as_mapping() for c in companies]
    return result_dict(plaintext_table(companies, outcomes))


def test_digit(tmp_path: Path) -> None:
    companies = ["google", "microsoft", "ibm"]
    result, stdout = simulate(tmp_path, "digit", companies)
    assert result["systemic_failure_rate"] == 0.1435
    assert round(result["homogenization"], 4) == 4.6676
    assert result["companies"] == companies
    assert_same_integers(result, plaintext("digit", companies))
    assert "homogenization H = 4.6676" in stdout and "2000 shared individuals" in stdout


@pytest.mark.parametrize(
    ("folder", "companies", "h"),
    [
        ("ferplus", ["google", "facepp", "microsoft"], 3.6271),
        ("waimai", ["google", "baidu", "amazon"], 18.3599),
    ],
)
def test_known_figures(tmp_path: Path, folder: str, companies: list[str], h: float) -> None:
    result, _ = simulate(tmp_path, folder, companies)
    assert round(result["homogenization"], 4) == h
    assert_same_integers(result, plaintext(folder, companies))


def test_four_companies(tmp_path: Path) -> None:
    companies = ["google", "microsoft", "ibm", "github"]
    result, _ = simulate(tmp_path, "digit", companies)
    assert len(result["pattern_counts"]) == 16
    plain = plaintext("digit", companies)
    assert_same_integers(result, plain)
    assert result["homogenization"] == pytest.approx(plain["homogenization"], rel=1e-12)
