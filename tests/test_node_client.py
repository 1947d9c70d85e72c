"""A Node.js client reads a round's result without parsing JSON (the typed `RoundResult`).

A real round between processes (coordinator and three company daemons over mutual TLS, the
digit example), then tests/node/read_result.mjs (@grpc/grpc-js, the proto loaded from
protos/) connects with the auditor's certificate, calls GetRoundResult and prints the typed
figures. They must equal the Python auditor's result JSON; the Python client's typed result
must agree with that JSON field by field as well. Needs node and `npm ci --prefix tests/node`
(.ci/run does it); skips, saying so, without them. About 15 s on a quiet machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import example
from pki_helpers import LocalPki
from test_typed_result import assert_agree, json_from_typed

from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "tests" / "node" / "read_result.mjs"
NAMES = ["google", "microsoft", "ibm"]

pytestmark = pytest.mark.e2e


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node.js client cannot run (.ci/run installs nodejs and npm)")
    if not (ROOT / "tests" / "node" / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.skip("the Node.js client's packages are not installed: run `npm ci --prefix tests/node`")
    return node


def _expected(result: dict[str, Any]) -> dict[str, Any]:
    """What the Node client should print, from the Python auditor's result JSON."""
    policy = result["release_policy"]
    dp = policy["differential_privacy"]
    made = result["round"]
    return {
        "phase": "ROUND_PHASE_COMPLETE", "round_id": result["round_id"], "companies": result["companies"],
        "k": len(result["companies"]), "withheld": result["suppressed"], "noisy": result["noisy"],
        "N": result["shared_individuals"], "failures": result["failures"],
        "failure_rates": result["failure_rates"], "failure_rate_ci95": result["failure_rate_ci95"],
        "S": result["systemic_failure_rate"], "S_ci95": result["systemic_failure_rate_ci95"],
        "H": result["homogenization"], "H_ci95": result["homogenization_ci95"],
        "patterns": result["pattern_counts"],
        "release_policy": {
            "exact": dp is None, "mechanism": "none" if dp is None else dp["mechanism"],
            "epsilon": 0 if dp is None else dp["epsilon"],
            "min_shared_individuals": policy["min_shared_individuals"],
            "min_cell_count": policy["min_cell_count"],
        },
        "round": {
            "protocol_version": made["protocol_version"],
            "failure_tags": {"masked": "TAG_MODE_MASKED", "re-randomised": "TAG_MODE_RERANDOMISED"}[
                made["failure_tags"]
            ],
            "dummies": made["dummies"] and {k: made["dummies"][k] for k in ("epsilon", "delta")},
            "min_list_size": made["min_list_size"],
        },
    }  # fmt: skip


def test_a_node_client_reads_the_typed_result_over_mtls(tmp_path: Path) -> None:
    node = _node()
    pki = LocalPki(tmp_path / "certs", NAMES)
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=pki.coordinator())
        for name in NAMES:
            start_company(CompanyInput(name, InputSpec(example("digit", name))), address, tmp_path, stack,
                          tls=pki.company(name))  # fmt: skip
        with AuditorClient(address, pki.auditor()) as auditor:
            round_id = auditor.open_round(NAMES).round_id
            auditor.wait(round_id, timeout=180)
            result = auditor.result(round_id)
            typed = auditor.typed_result(round_id)
        read = [node, str(CLIENT), "--coordinator", address, "--certs", str(tmp_path / "certs"), round_id]
        printed = subprocess.run(read, capture_output=True, text=True, timeout=60)
        refused = subprocess.run(
            [*read[:-1], "r-0000000000000000"], capture_output=True, text=True, timeout=60
        )
    assert printed.returncode == 0, printed.stderr
    figures = json.loads(printed.stdout)
    assert figures == _expected(result)
    assert figures["N"] == 2000 and figures["H"] is not None and len(figures["patterns"]) == 8
    assert_agree(json_from_typed(typed), result)  # over real gRPC, the Python client's typed view too
    assert refused.returncode == 2 and "NOT_FOUND" in refused.stderr, refused.stderr
