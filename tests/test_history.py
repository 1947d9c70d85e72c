"""The coordinator keeps every released result: `round history` lists a roster's rounds and
`round compare` shows what changed between two (each change with its interval, and the
self-defeating improvement flags)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import example
from pki_helpers import LocalPki
from support.harness import Harness, _Context

from monoculture.analysis.compare import compare_results
from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec
from monoculture.core.protocol import RoundPhase
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator
from monoculture.v1 import monoculture_pb2 as pb

POPULATION = {
    "alpha": [(f"person-{i}", int(i % 2 == 0)) for i in range(60)],
    "beta": [(f"person-{i}", int(i % 3 == 0)) for i in range(20, 80)],
    "gamma": [(f"person-{i}", int(i % 5 == 0)) for i in range(10, 70)],
}


def test_history_lists_a_rosters_rounds_oldest_first_with_their_results(tmp_path: Path) -> None:
    harness = Harness(tmp_path, POPULATION)
    first = harness.open_round()
    assert harness.run(first) == RoundPhase.COMPLETE
    harness.clock.advance(5)
    pair = harness.open_round(companies=["alpha", "beta"])  # another roster: not listed
    assert harness.run(pair) == RoundPhase.COMPLETE
    harness.clock.advance(5)
    second = harness.open_round(companies=["gamma", "alpha", "beta"])  # the same set, another ring order
    assert harness.run(second) == RoundPhase.COMPLETE
    reply = harness.auditor_servicer.ListRounds(
        pb.PrivacyBudgetRequest(companies=["beta", "gamma", "alpha"]), None
    )
    assert [e.status.round_id for e in reply.rounds] == [first, second]
    assert reply.rounds[0].opened_at < reply.rounds[1].opened_at
    results = [json.loads(e.result_json) for e in reply.rounds]
    assert results[0]["shared_individuals"] == results[1]["shared_individuals"] == 40
    comparison = compare_results(results[0], results[1])
    assert comparison["homogenization"]["change"] == pytest.approx(0.0, abs=1e-12)
    assert comparison["self_defeating"] == []
    harness.close()


@pytest.mark.e2e
def test_round_history_and_compare_from_the_command_line(tmp_path: Path) -> None:
    names = ["google", "microsoft", "ibm"]
    pki = LocalPki(tmp_path / "certs", names)
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=pki.coordinator())
        for name in names:
            company = CompanyInput(name, InputSpec(example("digit", name)))
            start_company(company, address, tmp_path, stack, rounds=2, tls=pki.company(name))
        with AuditorClient(address, pki.auditor()) as auditor:
            rounds = []
            for _ in range(2):
                rounds.append(auditor.open_round(names).round_id)
                auditor.wait(rounds[-1], timeout=120)
        base = [sys.executable, "-m", "monoculture", "round"]
        where = ["--coordinator", address, "--certs", str(tmp_path / "certs")]
        history = subprocess.run([*base, "history", "--companies", "ibm,google,microsoft", *where],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        listed = subprocess.run([*base, "list", *where], capture_output=True, text=True, timeout=60)
        compare = subprocess.run(
            [*base, "compare", *rounds, *where], capture_output=True, text=True, timeout=60
        )
    assert history.returncode == 0, history.stderr
    lines = [line for line in history.stdout.splitlines() if line.startswith("r-")]
    assert [line.split()[0] for line in lines] == rounds and all(
        "COMPLETE" in line and "2000" in line for line in lines
    )
    assert compare.returncode == 0, compare.stderr
    assert "H " in compare.stdout and "+0 (95% CI" in compare.stdout
    assert "no self-defeating improvement flagged" in compare.stdout
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()[1:]] == [[r, "COMPLETE"] for r in rounds]


@pytest.mark.parametrize("rerandomise", [False, True])
def test_every_result_records_how_it_was_made(tmp_path: Path, rerandomise: bool) -> None:
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round(rerandomise=rerandomise)
    assert harness.run(round_id) == RoundPhase.COMPLETE
    made = harness.result(round_id)["round"]
    assert made == {
        "protocol_version": 3, "failure_tags": "re-randomised" if rerandomise else "masked",
        "dummies": {"epsilon": 1.0, "delta": 1e-6, "padded_regions": "singletons and pairs"},
        "min_list_size": 1,
    }  # fmt: skip
    assert harness.result(round_id)["release_policy"]["differential_privacy"] is None
    harness.close()


@pytest.mark.e2e
def test_an_option_that_protects_nothing_is_named(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "monoculture",
        "simulate",
        "--rerandomise",
        "--out",
        str(tmp_path / "r.json"),
    ]
    for name in ("google", "microsoft"):
        args += ["--company", f"{name}={example('digit', name)}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--rerandomise protects nothing in a round of two companies" in done.stderr


def test_the_auditor_cancels_a_round_in_flight_and_the_companies_forget_its_keys(tmp_path: Path) -> None:
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    done = harness.open_round()
    assert harness.run(done) == RoundPhase.COMPLETE
    round_id = harness.open_round()
    harness.start_relaying()
    harness.step("alpha")  # alpha's hop 0 is in: its padded size has reached the coordinator
    assert list((tmp_path / "state-alpha").glob("round-*.sealed"))
    status = harness.auditor_servicer.CancelRound(pb.RoundRef(round_id=round_id), None)
    assert (status.phase, status.failed_party, status.failure_reason) == (
        pb.ROUND_PHASE_FAILED,
        "auditor",
        "cancelled by the auditor",
    )
    assert harness.run(round_id) == RoundPhase.FAILED  # every company hears the end
    for name in POPULATION:
        assert not list((tmp_path / f"state-{name}").glob("round-*.sealed")), name
    # the dummies' share of a round cancelled while relaying stays spent
    assert [(e.round_id, e.status) for e in harness.budget().rounds][-1] == (round_id, "spent")
    with pytest.raises(Exception, match="already ended"):
        harness.auditor_servicer.CancelRound(pb.RoundRef(round_id=done), _Context())
    everything = harness.auditor_servicer.ListRounds(pb.PrivacyBudgetRequest(), None)
    assert [e.status.round_id for e in everything.rounds] == [done, round_id]
    assert all(e.ended_at >= e.opened_at > 0 for e in everything.rounds)
    harness.close()
