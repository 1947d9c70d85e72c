"""Durable rounds under faults (issue 4, Must show 1-3), with real processes.

kill -9 of a company daemon mid-relay and of the coordinator mid-round, a
company that never comes back, a proxy that cuts and stalls connections
mid-stream, three rounds at once — every finished round equals the plaintext
computation, and a failed one names the party at fault.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import assert_same_integers, write_csv
from pki_helpers import LocalPki
from wiretap import WireTap

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec, load_records
from monoculture.core.errors import RoundFailed
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator
from monoculture.research.synthetic import SyntheticSpec, generate

pytestmark = pytest.mark.e2e


def _population(folder: Path, parties: int, individuals: int, seed: int) -> list[CompanyInput]:
    population = generate(SyntheticSpec(parties, individuals, seed, correlation=0.4), folder / "data")
    return [
        CompanyInput(n, InputSpec(p)) for n, p in zip(population.companies, population.files, strict=True)
    ]


def _plaintext(companies: list[CompanyInput]) -> dict:
    outcomes = [load_records(c.spec).as_mapping() for c in companies]
    return result_dict(plaintext_table([c.name for c in companies], outcomes))


def _assert_exact(result: dict, companies: list[CompanyInput]) -> None:
    plain = _plaintext(companies)
    assert_same_integers(result, plain)
    assert result["homogenization"] == plain["homogenization"]


def _wait_for(predicate, timeout: float = 120, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)


def _uploads(database: Path) -> Counter:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT round_id, actor, detail FROM audit WHERE action = 'uploaded'").fetchall()
    return Counter(rows)


def test_kill_a_company_mid_relay_and_restart_it(tmp_path: Path) -> None:
    companies = _population(tmp_path, 3, 6000, seed=11)
    pki = LocalPki(tmp_path / "certs", [c.name for c in companies])
    victim = companies[1]
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=pki.coordinator())
        daemons = {
            c.name: start_company(c, address, tmp_path, stack, tls=pki.company(c.name)) for c in companies
        }
        with AuditorClient(address, pki.auditor()) as auditor:
            round_id = auditor.open_round([c.name for c in companies]).round_id
            # Every own list is in: the relays are running. Kill the victim in the middle of one.
            _wait_for(
                lambda: auditor.status(round_id).hops_done >= 3, interval=0.06
            )  # under [limits] calls_per_second_per_company = 20
            daemons[victim.name].kill()
            daemons[victim.name].wait()
            hops_at_kill = auditor.status(round_id).hops_done
            assert hops_at_kill < 9
            start_company(victim, address, tmp_path, stack, tls=pki.company(victim.name))
            auditor.wait(round_id, timeout=180)
            result = auditor.result(round_id)
    _assert_exact(result, companies)
    log = (tmp_path / f"client-{victim.name}.log").read_text()
    assert f"resuming round {round_id} from sealed state" in log
    assert not list((tmp_path / f"client-state-{victim.name}").glob("round-*.sealed"))  # deleted at the end
    assert all(n == 1 for n in _uploads(tmp_path / "coordinator-state" / "coordinator.sqlite").values())


def test_kill_the_coordinator_mid_round_and_restart_it(tmp_path: Path) -> None:
    companies = _population(tmp_path, 3, 6000, seed=12)
    pki = LocalPki(tmp_path / "certs", [c.name for c in companies])
    with ExitStack() as stack:
        coordinator_stack = stack.enter_context(ExitStack())
        address = start_coordinator(tmp_path, coordinator_stack, tls=pki.coordinator())
        for c in companies:
            start_company(c, address, tmp_path, stack, tls=pki.company(c.name))
        auditor = stack.enter_context(AuditorClient(address, pki.auditor()))
        round_id = auditor.open_round([c.name for c in companies]).round_id
        _wait_for(
            lambda: auditor.status(round_id).hops_done >= 4, interval=0.06
        )  # under [limits] calls_per_second_per_company = 20
        processes = [p for p in _children(tmp_path / "coordinator.toml")]
        assert processes, "coordinator process not found"
        for pid in processes:
            subprocess.run(["kill", "-9", str(pid)], check=True)
        time.sleep(0.5)
        coordinator_stack.close()
        start_coordinator(tmp_path, stack, tls=pki.coordinator(), listen=address)
        auditor.wait(round_id, timeout=180)
        result = auditor.result(round_id)
    _assert_exact(result, companies)
    log = (tmp_path / "coordinator.log").read_text()
    assert f"round {round_id} resumed in RELAYING" in log
    assert all(n == 1 for n in _uploads(tmp_path / "coordinator-state" / "coordinator.sqlite").values())


def _children(config: Path) -> list[int]:
    """Pids of the processes started with this config file."""
    done = subprocess.run(["pgrep", "-f", str(config)], capture_output=True, text=True)
    return [int(pid) for pid in done.stdout.split()]


def test_a_company_that_never_returns_fails_the_round_by_its_deadline(tmp_path: Path) -> None:
    companies = _population(tmp_path, 3, 3000, seed=13)
    pki = LocalPki(tmp_path / "certs", [c.name for c in companies])
    victim = companies[2]
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=pki.coordinator())
        daemons = {c.name: start_company(c, address, tmp_path, stack, rounds=2, tls=pki.company(c.name))
                   for c in companies}  # fmt: skip
        with AuditorClient(address, pki.auditor()) as auditor:
            # 10 s a step: honest daemons starting and blinding beside two CPU hogs took over 4 s
            round_id = auditor.open_round([c.name for c in companies], deadline_seconds=10).round_id
            _wait_for(
                lambda: auditor.status(round_id).phase == "RELAYING", interval=0.06
            )  # under [limits] calls_per_second_per_company = 20
            daemons[victim.name].kill()
            killed_at = time.monotonic()
            with pytest.raises(RoundFailed) as failed:
                auditor.wait(round_id, timeout=60)
            waited = time.monotonic() - killed_at
            assert failed.value.where == victim.name
            assert "within the deadline of 10 s" in auditor.status(round_id).failure_reason
            assert waited < 10 + 5  # the deadline, plus the check interval and some slack
            # The others are released, and the auditor can open a new round at once.
            rest = companies[:2]
            second = auditor.open_round([c.name for c in rest]).round_id
            auditor.wait(second, timeout=120)
            result = auditor.result(second)
    _assert_exact(result, rest)
    for company in rest:
        assert f"round {round_id} ended FAILED" in (tmp_path / f"client-{company.name}.log").read_text()


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_cut_and_stalled_connections_are_retried_without_double_counting(tmp_path: Path, fault: str) -> None:
    companies = _population(tmp_path, 3, 2000, seed=14)
    pki = LocalPki(tmp_path / "certs", [c.name for c in companies])
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=pki.coordinator())
        port = int(address.rsplit(":", 1)[1])
        if fault == "cut":
            # The first six connections are cut after 40-90 kB: in the middle of uploads.
            tap = WireTap(port, cut_after=[40_000, 60_000, 90_000, 40_000, 60_000, 90_000])
        else:
            tap = WireTap(port, stall_after=30_000, stall_seconds=2.0)
        stack.callback(tap.close)
        for c in companies:
            start_company(
                c, f"127.0.0.1:{tap.port}", tmp_path, stack, tls=pki.company(c.name), chunk_elements=200
            )
        with AuditorClient(address, pki.auditor()) as auditor:
            round_id = auditor.open_round([c.name for c in companies]).round_id
            auditor.wait(round_id, timeout=180)
            result = auditor.result(round_id)
    _assert_exact(result, companies)
    if fault == "cut":
        assert tap.cuts_done >= 3
        logs = "".join((tmp_path / f"client-{c.name}.log").read_text() for c in companies)
        assert "retry" in logs
    else:
        assert tap.stalls_done >= 1
    uploads = _uploads(tmp_path / "coordinator-state" / "coordinator.sqlite")
    assert len(uploads) == 9 and all(n == 1 for n in uploads.values())  # every list-hop counted once


def test_three_rounds_at_once_with_overlapping_companies(tmp_path: Path) -> None:
    names = ["alpha", "beta", "gamma", "delta"]
    rng_rows = {
        name: [(f"person-{j}", (j * (i + 3)) % 5 == 0) for j in range(i * 50, 1500 + i * 50)]
        for i, name in enumerate(names)
    }
    files = {
        n: write_csv(tmp_path / f"{n}.csv", [(a, int(b)) for a, b in rows]) for n, rows in rng_rows.items()
    }
    companies = {n: CompanyInput(n, InputSpec(path)) for n, path in files.items()}
    rosters = [["alpha", "beta", "gamma"], ["beta", "gamma", "delta"], ["delta", "alpha"]]
    rounds_of = {n: sum(n in r for r in rosters) for n in names}
    pki = LocalPki(tmp_path / "certs", names)
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=pki.coordinator())
        for name in names:
            start_company(
                companies[name], address, tmp_path, stack, rounds=rounds_of[name], tls=pki.company(name)
            )
        with AuditorClient(address, pki.auditor()) as auditor:
            round_ids = [auditor.open_round(roster).round_id for roster in rosters]
            for round_id in round_ids:
                auditor.wait(round_id, timeout=180)
            results = [auditor.result(r) for r in round_ids]
    for roster, result in zip(rosters, results, strict=True):
        assert result["companies"] == roster
        _assert_exact(result, [companies[n] for n in roster])
