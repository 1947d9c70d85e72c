"""Tampering by the coordinator (issue 3, Must show 2).

A coordinator process that flips a byte in a relayed chunk, drops one, replays
one, reorders them or swaps two companies' lists — keeping indices, counts and
sizes consistent so that only the cryptography can notice. Each is detected by
the receiving company, the round fails naming the hop, and nothing is published.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import ROOT, example
from pki_helpers import LocalPki

from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec
from monoculture.core.errors import MonocultureError, RoundFailed
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator

pytestmark = pytest.mark.e2e
COMPANIES = ["google", "microsoft", "ibm"]


@pytest.mark.parametrize("mode", ["flip-byte", "drop", "replay", "reorder", "swap"])
def test_tampered_relay_fails_the_round_naming_the_hop(tmp_path: Path, mode: str) -> None:
    pki = LocalPki(tmp_path / "certs", COMPANIES)
    program = [str(ROOT / "tests" / "evil_coordinator.py"), mode]
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=pki.coordinator(), program=program)
        for name in COMPANIES:
            company = CompanyInput(name, InputSpec(example("digit", name)))
            # 300 elements a chunk: 7 chunks per list, so chunks can be dropped or reordered.
            start_company(company, address, tmp_path, stack, tls=pki.company(name), chunk_elements=300)
        with AuditorClient(address, pki.auditor()) as auditor:
            round_id = auditor.open_round(COMPANIES).round_id
            with pytest.raises(RoundFailed) as failed:
                auditor.wait(round_id, timeout=120)
            status = auditor.status(round_id)
            with pytest.raises(MonocultureError, match="no result"):
                auditor.result(round_id)
    assert failed.value.where == "coordinator"
    assert "withdrew" in status.failure_reason
    # The hop: which list, which hop, relayed from whom to whom.
    assert "list of" in status.failure_reason and "hop 0 relayed from" in status.failure_reason
    # Every alteration changes what the sender signed (the evil coordinator renumbers chunks it
    # drops, replays, reorders or swaps), so the receiver holds the chunk as evidence.
    assert "does not carry" in status.failure_reason and "its evidence: chunk" in status.failure_reason
    assert "recorded as a claim" in status.failure_reason  # the accused cannot judge itself
    assert "tampering" in (tmp_path / "coordinator.log").read_text()
