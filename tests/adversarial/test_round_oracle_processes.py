"""The bit probe of tests/adversarial/test_round_oracle.py over real processes and mutual TLS:
the attacker is `monoculture client run` with its own certificate (tests/lane_shifter.py), the
coordinator and the two honest companies are the real daemons. What the attacker and the auditor
see must not depend on the victim's bit: the same phase and reason, `undecodable_sums` withheld in
the exact release, and N moved by at most the one person a changed record moves."""

from __future__ import annotations

from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, write_csv
from pki_helpers import LocalPki

from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec
from monoculture.core.errors import RoundFailed
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator

pytestmark = pytest.mark.e2e
NAMES = ["alpha", "beta", "gamma"]  # gamma shifts alpha's lane (4^(k-1-0) = 16) of person-30


def _rows(victim_bit: int) -> dict[str, list[tuple[str, object]]]:
    alpha = [(f"person-{i}", victim_bit if i == 30 else int(i % 2 == 0)) for i in range(60)]
    beta = [(f"person-{i}", int(i % 3 == 0)) for i in range(20, 80)]
    gamma = [(f"person-{i}", int(i % 5 == 0)) for i in range(10, 70)]
    return {"alpha": alpha, "beta": beta, "gamma": gamma}


def _probe(folder: Path, victim_bit: int) -> tuple[str, str, dict[str, Any]]:
    pki = LocalPki(folder / "certs", NAMES)
    shifter = [str(ROOT / "tests" / "lane_shifter.py"), "person-30=16"]
    with ExitStack() as stack:
        address = start_coordinator(folder, stack, tls=pki.coordinator())
        for name, rows in _rows(victim_bit).items():
            spec = InputSpec(write_csv(folder / f"{name}.csv", rows))
            program = shifter if name == "gamma" else None
            start_company(
                CompanyInput(name, spec), address, folder, stack, tls=pki.company(name), program=program
            )
        with AuditorClient(address, pki.auditor()) as auditor:
            round_id = auditor.open_round(NAMES).round_id
            with suppress(RoundFailed):  # both outcomes are compared below
                auditor.wait(round_id, timeout=120)
            status = auditor.status(round_id)
            result = auditor.result(round_id) if status.phase == "COMPLETE" else {}
    return status.phase, status.failure_reason, result


def test_a_bit_probe_by_a_real_daemon_over_mtls_learns_nothing_from_the_outcome(tmp_path: Path) -> None:
    phase_0, reason_0, result_0 = _probe(tmp_path / "bit-0", 0)
    phase_1, reason_1, result_1 = _probe(tmp_path / "bit-1", 1)
    assert (phase_0, reason_0) == (phase_1, reason_1) == ("COMPLETE", "")
    assert sorted(result_0) == sorted(result_1)
    assert result_0["undecodable_sums"] is None and result_1["undecodable_sums"] is None
    # The shift did run: where alpha failed person-30 its lane overflowed and it left N (one
    # person, as when a record changes); where not, it stayed with alpha's bit set.
    assert result_0["shared_individuals"] - result_1["shared_individuals"] == 1
