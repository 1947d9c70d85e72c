"""`monoculture simulate`: a real multi-party round on one machine.

Starts one coordinator process and one company daemon process per company on
127.0.0.1 with OS-assigned ports, opens a round through the auditor API exactly
as `monoculture round open` does, waits for it and returns the result. The
daemons' config files, and the examples in deploy/ (`deploy_examples`, written by
scripts/gen-deploy.py), are rendered from the config dataclasses of the two roles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from monoculture.analysis.budget import DEFAULT_MAX_EPSILON_PER_ROSTER, round_cost
from monoculture.analysis.groups import group_round_cost
from monoculture.analysis.release import ReleasePolicy
from monoculture.auditor import AuditorClient
from monoculture.client.config import ClientConfig, client_sections
from monoculture.client.sources import load_records
from monoculture.coordinator.config import (
    CoordinatorConfig,
    Limits,
    coordinator_sections,
)
from monoculture.core.config import render_toml
from monoculture.core.dataset import InputSpec
from monoculture.core.errors import MonocultureError, RoundFailed
from monoculture.core.identity import Identity, Role, public_key_fingerprint
from monoculture.core.messages import Status
from monoculture.memory import peak_rss_bytes
from monoculture.pki import local_deployment, tls_files
from monoculture.transport import TlsFiles

STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class CompanyInput:
    name: str
    spec: InputSpec  # a file, or a SQL query (its password from the environment or a file)

    def resolved(self) -> CompanyInput:
        """The same input, a file named by its absolute path (a daemon reads it from another folder)."""
        if self.spec.path is None:
            return self
        return CompanyInput(self.name, replace(self.spec, path=self.spec.path.resolve()))


@dataclass
class SimulationRun:
    result: dict[str, Any]
    wall_seconds: float  # round open -> result
    operation_counts: list[dict[str, Any]] = field(default_factory=list)
    coordinator_peak_rss_bytes: int = 0
    workdir: Path | None = None


def _spawn(args: list[str], log_path: Path, stack: ExitStack) -> subprocess.Popen[bytes]:
    """Start `python -P ARGS` with its output in `log_path`; stopped when `stack` closes. `-P`:
    the current folder is not put on the module path, so a checkout's own monoculture/ folder
    (started from the repository's root) cannot shadow the installed package."""
    log_file: IO[bytes] = stack.enter_context(log_path.open("ab"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-P", *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
    )
    stack.callback(stop_process, process)
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a daemon, and kill it if it has not exited within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _insecure_flag(tls: TlsFiles | None) -> list[str]:
    return ["--insecure"] if tls is None else []


def start_coordinator(
    workdir: Path,
    stack: ExitStack,
    *,
    tls: TlsFiles | None = None,
    record_dir: Path | None = None,
    limits: Limits | None = None,
    release: ReleasePolicy | None = None,
    program: list[str] | None = None,
    listen: str = "127.0.0.1:0",
    started: list[subprocess.Popen[bytes]] | None = None,
    max_epsilon_per_roster: float | None = None,
    dummy_epsilon: float = 0.0,
    metrics_port: int = 0,
) -> str:
    """Start `monoculture coordinator serve` on port 0; returns its address.

    `tls` None: --insecure; `record_dir`, `limits`, `release`, `max_epsilon_per_roster`: those keys
    of the config (defaults otherwise; the default cap is raised to the policy's epsilon, so a
    simulated round of any epsilon runs); `program`: another Python entry point taking the same
    --config (tests); `listen`: a fixed address (a restart on the same port).
    """
    workdir = workdir.resolve()  # the file's relative paths would be read from its own folder
    port_file = workdir / "coordinator.port"
    port_file.unlink(missing_ok=True)
    settings = CoordinatorConfig(
        listen=listen,
        port_file=port_file,
        record_dir=record_dir.resolve() if record_dir else None,
        tls=tls,
        limits=limits or Limits(),
        release=release or ReleasePolicy(),
        max_epsilon_per_roster=(
            max(DEFAULT_MAX_EPSILON_PER_ROSTER, round_cost(release or ReleasePolicy()).epsilon)
            if max_epsilon_per_roster is None
            else max_epsilon_per_roster
        ),
        dummy_epsilon=dummy_epsilon,
        metrics_port=metrics_port,
    )
    config = workdir / "coordinator.toml"
    config.write_text(render_toml(coordinator_sections(settings), comments=False), encoding="utf-8")
    log_path = workdir / "coordinator.log"
    entry = program or ["-m", "monoculture", "coordinator", "serve"]
    process = _spawn([*entry, "--config", str(config), *_insecure_flag(tls)], log_path, stack)
    if started is not None:
        started.append(process)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not port_file.exists():
        if process.poll() is not None:
            raise MonocultureError(f"the coordinator exited at start:\n{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise MonocultureError("the coordinator did not start within a minute", where=str(log_path))
        time.sleep(0.05)
    return f"127.0.0.1:{int(port_file.read_text())}"


def start_company(
    company: CompanyInput,
    address: str,
    workdir: Path,
    stack: ExitStack,
    rounds: int = 1,
    tls: TlsFiles | None = None,
    chunk_elements: int | None = None,
    workers: int = 1,
    peers: Mapping[str, str] | None = None,
    program: list[str] | None = None,
    metrics_port: int = 0,
) -> subprocess.Popen[bytes]:
    """Start `monoculture client run` for one company (`tls` None: --insecure).

    `chunk_elements` None: the default; `workers`: blinding processes, 1 by default, since
    here every company shares one machine. `peers`: its [peers]; None pins every company
    certificate beside its own (a one-machine deployment, where one folder holds them all).
    `program`: another Python entry point taking the same arguments (tests: a cheating daemon).
    """
    workdir = workdir.resolve()  # the file's relative paths would be read from its own folder
    settings = ClientConfig(
        company=company.name,
        coordinator=address,
        data=company.resolved().spec,
        tls=tls,
        poll_seconds=2.0,
        stats_file=workdir / "operations.jsonl",
        exit_after_rounds=rounds,
        chunk_elements=chunk_elements or ClientConfig.chunk_elements,
        state_dir=company_state_dir(workdir, company.name),
        workers=workers,
        peers=local_peers(tls.cert_file.parent) if peers is None and tls is not None else (peers or {}),
        metrics_port=metrics_port,
    )
    config = workdir / f"client-{company.name}.toml"
    config.write_text(render_toml(client_sections(settings), comments=False), encoding="utf-8")
    entry = program or ["-m", "monoculture"]
    args = [*entry, "client", "run", "--config", str(config), *_insecure_flag(tls)]
    return _spawn(args, workdir / f"client-{company.name}.log", stack)


def company_state_dir(workdir: Path, company: str) -> Path:
    """Where a simulated company's daemon keeps its state (and its progress file)."""
    return workdir.resolve() / f"client-state-{company}"


def local_peers(folder: Path) -> dict[str, str]:
    """[peers] for a one-machine deployment: the fingerprint of every company certificate in
    `folder` (company-NAME.pem, as `certs issue` and `certs sign` name them)."""
    return {
        path.stem.removeprefix("company-"): public_key_fingerprint(path.read_bytes())
        for path in sorted(folder.glob("company-*.pem"))
    }


def check_inputs(
    companies: list[CompanyInput], groups_from: str = "", group_labels: Sequence[str] = ()
) -> None:
    """Refuse bad input before any process starts (the daemons check again): with groups, the
    groups company's labels too, each one declared."""
    names = [c.name for c in companies]
    if len(set(names)) != len(names):
        raise MonocultureError("a company is named twice", hint="give every --company a distinct NAME")
    for company in companies:
        try:
            records = load_records(company.spec, groups=company.name == groups_from)
            if records.groups is not None:
                records.groups.round_codes(group_labels, where=company.spec.origin)
        except MonocultureError as exc:
            raise exc.for_party(company.name) from None


def run_round(
    companies: list[CompanyInput],
    workdir: Path,
    *,
    timeout: float = 3600.0,
    on_status: Callable[[Status], None] | None = None,
    release: ReleasePolicy | None = None,
    insecure: bool = False,
    groups_from: str = "",
    group_labels: Sequence[str] = (),
    dummy_epsilon: float = 0.0,
    rerandomise: bool = False,
) -> SimulationRun:
    """Run one round with real processes; raises RoundFailed naming the party at fault.

    mTLS with certificates made for this run in `workdir`/certs, unless `insecure`.
    `groups_from`, `group_labels`: a round with groups (that company's spec names its group column).
    `rerandomise`: re-randomised failure tags.
    """
    check_inputs(companies, groups_from, group_labels)
    workdir.mkdir(parents=True, exist_ok=True)
    certs = workdir / "certs"
    if not insecure:
        local_deployment(certs, [c.name for c in companies])

    def tls(role: Role, name: str) -> TlsFiles | None:
        return None if insecure else tls_files(certs, Identity(role, name))

    with ExitStack() as stack:
        coordinator: list[subprocess.Popen[bytes]] = []
        # A round with groups costs twice its policy's epsilon (analysis/groups.py): raise the cap as
        # start_coordinator does for the policy's own epsilon, so a simulated round of any epsilon runs.
        cost = group_round_cost(round_cost(release or ReleasePolicy()), bool(group_labels))
        address = start_coordinator(
            workdir,
            stack,
            tls=tls(Role.COORDINATOR, ""),
            release=release,
            started=coordinator,
            max_epsilon_per_roster=max(DEFAULT_MAX_EPSILON_PER_ROSTER, cost.epsilon),
            dummy_epsilon=dummy_epsilon,
        )
        clients = [
            start_company(c, address, workdir, stack, tls=tls(Role.COMPANY, c.name)) for c in companies
        ]
        with AuditorClient(address, tls(Role.AUDITOR, "auditor")) as auditor:
            started = time.perf_counter()
            status = auditor.open_round(
                [c.name for c in companies],
                groups_from=groups_from,
                group_labels=group_labels,
                rerandomise=rerandomise,
            )

            def watch(current: Status) -> None:
                for company, process in zip(companies, clients, strict=True):
                    if process.poll() not in (None, 0):
                        raise RoundFailed(
                            f"the daemon of {company.name} exited with status {process.returncode}:\n"
                            + _log_tail(workdir / f"client-{company.name}.log"),
                            where=company.name,
                        )
                if on_status is not None:
                    on_status(current)

            auditor.wait(status.round_id, timeout, watch)
            result = auditor.result(status.round_id)
            wall = time.perf_counter() - started
            coordinator_peak = peak_rss_bytes(coordinator[0].pid)
        for process in clients:  # they exit after their one round
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
    counts = _read_counts(workdir / "operations.jsonl")
    return SimulationRun(result, wall, counts, coordinator_peak_rss_bytes=coordinator_peak, workdir=workdir)


def _read_counts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
