"""A deployment across hosts: the coordinator, three companies and the auditor each on a host of
its own (a network namespace with its own address on one LAN, tests/support/netns.py), parties
dialling the coordinator by its host name, which its certificate names.

A round completes with the plaintext figures. A company whose cable is pulled in the middle of the
round, for longer than several retry intervals, recovers once it is plugged back: the round
completes with the exact figures, every list hop counted once (docs/PROTOCOL.md, "Durability,
retries and deadlines"). A company that stays cut past the round's deadline fails the round, which
names it; plugged back, it learns the round ended and forgets its keys.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import assert_same_integers
from support.netns import NETNS_ETC, Lan, netns_unavailable

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.client.config import ClientConfig, client_sections
from monoculture.coordinator.config import CoordinatorConfig, coordinator_sections
from monoculture.core.config import render_toml
from monoculture.core.dataset import InputSpec, load_records
from monoculture.core.identity import Identity, Role
from monoculture.pki import fingerprint, init_ca, issue_certificate, request_certificate, sign_certificate
from monoculture.research.synthetic import SyntheticSpec, generate
from monoculture.transport import TlsFiles

pytestmark = pytest.mark.e2e

PORT = 7443  # each host has its own addresses: a fixed port clashes with nothing
COMPANIES = ["company-1", "company-2", "company-3"]
POLL_SECONDS = 1.0  # a daemon's long poll, whose call times out POLL_SECONDS + 10 s after it started
CUT_SECONDS = 13.0  # past that timeout, and past several retry intervals (0.2 s, doubling, jittered)
DEADLINE_SECONDS = 8.0  # the second round's step deadline, which the cut company misses (others take ~1 s)
PYTHON = [sys.executable, "-P", "-m", "monoculture"]


@pytest.fixture(scope="module")
def netns_ready() -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)


def _certificates(folder: Path, lan: Lan) -> dict[str, TlsFiles]:
    """The auditor's CA certifies the coordinator under its host names (full and short); each
    company makes its key on its own host and the auditor signs its request."""
    ca = folder / "auditor-ca"
    init_ca(ca)
    coordinator = lan.hosts["coordinator"]
    files = {
        "coordinator": issue_certificate(
            ca,
            Identity(Role.COORDINATOR, coordinator.name),
            host=coordinator.name,
            more_hosts=[coordinator.alias],
        ),
        "auditor": issue_certificate(ca, Identity(Role.AUDITOR, "auditor")),
    }
    for name in COMPANIES:
        own = folder / f"{name}-certs"
        request = request_certificate(own, name)
        signed = sign_certificate(ca, request.request_file)
        (own / "ca.pem").write_bytes((ca / "ca.pem").read_bytes())
        files[name] = TlsFiles(own / "ca.pem", signed.cert_file, request.key_file)
    return files


def _start_coordinator(lan: Lan, folder: Path, tls: TlsFiles) -> Path:
    """The coordinator on its host, listening on every address there; returns its database."""
    settings = CoordinatorConfig(
        listen=f"0.0.0.0:{PORT}", port_file=folder / "coordinator.port",
        database=folder / "coordinator-state" / "coordinator.sqlite", tls=tls,
    )  # fmt: skip
    config = folder / "coordinator.toml"
    config.write_text(render_toml(coordinator_sections(settings), comments=False), encoding="utf-8")
    process = lan.spawn("coordinator", [*PYTHON, "coordinator", "serve", "--config", str(config)],
                        folder / "coordinator.log", _env())  # fmt: skip
    _wait_for(lambda: (folder / "coordinator.port").exists() or process.poll() is not None, 60)
    assert process.poll() is None, (folder / "coordinator.log").read_text()
    return settings.database


def _start_company(
    lan: Lan, folder: Path, name: str, data: Path, tls: TlsFiles, pins: dict[str, str]
) -> subprocess.Popen[bytes]:
    """A company's daemon on its host, dialling the coordinator by its host name."""
    settings = ClientConfig(
        company=name, coordinator=f"{lan.hosts['coordinator'].name}:{PORT}", data=InputSpec(data), tls=tls,
        poll_seconds=POLL_SECONDS, state_dir=folder / f"client-state-{name}", workers=1,
        peers=pins,
    )  # fmt: skip
    config = folder / f"client-{name}.toml"
    config.write_text(render_toml(client_sections(settings), comments=False), encoding="utf-8")
    return lan.spawn(
        name, [*PYTHON, "client", "run", "--config", str(config)], folder / f"client-{name}.log", _env()
    )


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1")


def _wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)


def _audit(database: Path, action: str) -> Counter[tuple[str, str, str]]:
    """(round, actor, detail) of the coordinator's audit log entries of `action`."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute("SELECT round_id, actor, detail FROM audit WHERE action = ?", (action,)).fetchall()
    return Counter(rows)


def _uploads_by(database: Path, round_id: str, company: str) -> int:
    return sum(
        n for (r, actor, _), n in _audit(database, "uploaded").items() if (r, actor) == (round_id, company)
    )


class Auditor:
    """`monoculture round ...` on the auditor's own host, dialling the coordinator's short name."""

    def __init__(self, lan: Lan, folder: Path, tls: TlsFiles) -> None:
        self._lan, self._folder = lan, folder
        self._certs = str(tls.cert_file.parent)
        self._coordinator = f"{lan.hosts['coordinator'].alias}:{PORT}"

    def run(
        self, action: str, *args: str, coordinator: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        where = ["--coordinator", coordinator or self._coordinator, "--certs", self._certs]
        return self._lan.run("auditor", [*PYTHON, "round", action, *where, *args], timeout=timeout)

    def open(self, *options: str) -> str:
        done = self.run("open", "--companies", ",".join(COMPANIES), *options)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def result(self, round_id: str, wait: float) -> tuple[int, str, dict | None]:
        out = self._folder / f"result-{round_id}.json"
        done = self.run("result", round_id, "--wait", str(wait), "--out", str(out), timeout=wait + 120)
        return done.returncode, done.stderr, json.loads(out.read_text()) if out.exists() else None


@pytest.fixture
def lan(netns_ready: None) -> Iterator[Lan]:
    with Lan(["coordinator", *COMPANIES, "auditor"]) as made:
        yield made
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for host in [*made.hosts.values()]:
        assert host.netns not in names and not (NETNS_ETC / host.netns).exists()  # all removed
    assert made.switch not in names


def test_a_round_across_hosts_survives_a_pulled_cable(lan: Lan, tmp_path: Path) -> None:
    population = generate(SyntheticSpec(3, 2000, seed=19, correlation=0.4), tmp_path / "data")
    assert population.companies == COMPANIES
    tls = _certificates(tmp_path, lan)
    pins = {name: fingerprint(tls[name].cert_file) for name in COMPANIES}
    database = _start_coordinator(lan, tmp_path, tls["coordinator"])
    daemons = {
        name: _start_company(lan, tmp_path, name, data, tls[name], pins)
        for name, data in zip(COMPANIES, population.files, strict=True)
    }
    auditor = Auditor(lan, tmp_path, tls["auditor"])
    victim = "company-2"
    # TLS checks the coordinator by the name dialled: its address is not a name its certificate holds.
    by_address = auditor.run("list", coordinator=f"{lan.hosts['coordinator'].address}:{PORT}")
    assert by_address.returncode != 0 and "unreachable" in by_address.stderr, by_address.stderr
    assert auditor.run("list").returncode == 0

    # Round 1: the victim's cable is pulled once its own list is in, and plugged back CUT_SECONDS later.
    round_id = auditor.open()
    _wait_for(lambda: _uploads_by(database, round_id, victim) >= 1, 120, interval=0.02)
    lan.cut(victim)
    uploads_at_cut = _uploads_by(database, round_id, victim)
    time.sleep(CUT_SECONDS)
    assert _uploads_by(database, round_id, victim) == uploads_at_cut < 3  # nothing crossed the cut
    assert not _audit(database, "completed")  # so the round waited for the victim's hops
    lan.mend(victim)
    code, stderr, result = auditor.result(round_id, wait=180)
    assert code == 0, stderr
    plain = result_dict(
        plaintext_table(COMPANIES, [load_records(InputSpec(p)).as_mapping() for p in population.files])
    )
    assert result is not None
    assert_same_integers(result, plain)
    assert result["homogenization"] == plain["homogenization"]
    uploads = Counter({key: n for key, n in _audit(database, "uploaded").items() if key[0] == round_id})
    assert len(uploads) == 9 and set(uploads.values()) == {1}  # every list hop counted once
    assert daemons[victim].poll() is None  # it recovered by itself: the same process, never restarted
    log = tmp_path / f"client-{victim}.log"
    assert "withdr" not in log.read_text()

    # Round 2: the victim is cut once the round relays and stays cut past the step deadline.
    second = auditor.open("--deadline-seconds", str(DEADLINE_SECONDS))
    _wait_for(lambda: _uploads_by(database, second, victim) >= 1, 120, interval=0.02)
    lan.cut(victim)
    sealed = tmp_path / f"client-state-{victim}"
    assert list(sealed.glob("round-*.sealed"))  # the victim holds the round's keys, sealed
    code, stderr, _ = auditor.result(second, wait=120)
    assert code != 0 and victim in stderr and f"within the deadline of {DEADLINE_SECONDS:g} s" in stderr, (
        stderr
    )
    lan.mend(victim)
    _wait_for(lambda: f"round {second} ended FAILED" in log.read_text(), 120, interval=0.2)
    assert not list(sealed.glob("round-*.sealed"))  # plugged back, it forgot the round's keys
