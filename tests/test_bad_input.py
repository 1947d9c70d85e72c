"""Bad input (Must show 4): a clear message naming the file, line or party, a
non-zero exit, no traceback, and nothing half-sent."""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import example, stored_chunks, write_csv

from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec
from monoculture.core.errors import RoundFailed
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator


def monoculture(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monoculture", *args], capture_output=True, text=True, timeout=timeout
    )


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "empty.csv").write_text("")
    return {
        "missing column": (
            write_csv(tmp / "nocol.csv", [("a", 1)], header="id,outcome"),
            "has no column 'failed'",
        ),
        "bad failure value": (
            write_csv(tmp / "value.csv", [("a", 1), ("b", "maybe")]),
            "value.csv:3: column 'failed' is 'maybe'",
        ),
        "duplicate ids": (example("command", "google"), "6418 distinct ids in 64727 rows"),
        "empty file": (tmp / "empty.csv", "is empty"),
        "missing file": (tmp / "absent.csv", "file not found"),
        "unreadable file": (Path("/proc/self/mem"), "cannot be read"),
        "folder": (tmp, "is a folder"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing column",
        "bad failure value",
        "duplicate ids",
        "empty file",
        "missing file",
        "unreadable file",
        "folder",
    ],
)
def test_simulate_refuses_bad_input_before_starting_anything(tmp_path: Path, case: str) -> None:
    bad, message = _bad_files(tmp_path)[case]
    workdir = tmp_path / "work"
    done = monoculture(
        "simulate",
        "--workdir",
        str(workdir),
        "--company",
        f"good={example('digit', 'google')}",
        "--company",
        f"bad={bad}",
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    assert "company bad" in done.stderr and message in done.stderr
    assert not (workdir / "coordinator.toml").exists()  # no process was started


def test_duplicates_with_an_explicit_policy_run(tmp_path: Path) -> None:
    done = monoculture(
        "simulate",
        "--duplicates",
        "drop-conflicting",
        "--company",
        f"google={example('command', 'google')}",
        "--company",
        f"microsoft={example('command', 'microsoft')}",
    )
    assert done.returncode == 0, done.stderr
    assert "shared individuals" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate"], "give either --company"),
        (["simulate", "--company", "a=x.csv"], "at least two"),
        (["simulate", "--parties", "3"], "both --parties and --individuals"),
        (["simulate", "--parties", "3", "--individuals", "10", "--failure-rate", "0.1,0.2"], "one rate or 3"),
        (["round", "status", "--insecure", "--coordinator", "127.0.0.1:1", "r-x"], "unreachable"),
        (["round", "status", "--certs", "/nonexistent", "r-x"], "/nonexistent/ca.pem: cannot read"),
        (["round", "status", "--insecure", "--coordinator", "10.1.2.3:1", "r-x"], "loopback only"),
        (["round", "open", "--insecure", "--companies", "a,b", "--deadline-seconds", "0"], "seconds > 0"),
    ],
)
def test_cli_usage_errors_are_explained(args: list[str], message: str) -> None:
    done = monoculture(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            '[client]\ncompany = "a"\ncoordinator = "x:1"\ncolour = 1\n[data]\npath = "a.csv"\n',
            "unknown key 'colour' in [client]",
        ),
        (
            '[client]\ncompany = "a"\ncoordinator = "x:1"\n',
            "[data] give path (a CSV or Parquet file) or url and query",
        ),
        ('[client]\ncompany = "A B"\ncoordinator = "x:1"\n[data]\npath = "a.csv"\n', "company name"),
        (
            '[client]\ncompany = "a"\ncoordinator = "x:1"\n[data]\npath = "a.csv"\nduplicates = "x"\n',
            "is not a policy",
        ),
        (
            '[client]\ncompany = "a"\ncoordinator = "x:1"\n[data]\nurl = "postgresql+psycopg://r@h/d"\n'
            'query = "SELECT 1"\npassword_env = "MONO_UNSET_PASSWORD"\n',
            "password_env names MONO_UNSET_PASSWORD, which is not set",
        ),
        ("[client\n", "is not valid TOML"),
        ("[extra]\n", "unknown section [extra]"),
    ],
)
def test_client_config_errors(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "client.toml"
    path.write_text(config)
    insecure = [] if "[tls]" in message else ["--insecure"]
    done = monoculture("client", "run", "--config", str(path), *insecure, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_coordinator_needs_certificates_or_an_explicit_insecure(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.toml"
    path.write_text('[coordinator]\nlisten = "0.0.0.0:0"\n')
    done = monoculture("coordinator", "serve", "--config", str(path), timeout=60)
    assert done.returncode == 2 and "no [tls] files" in done.stderr and "--insecure" in done.stderr
    done = monoculture("coordinator", "serve", "--config", str(path), "--insecure", timeout=60)
    assert done.returncode == 2 and "loopback only" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
def test_a_daemon_with_bad_input_withdraws_and_sends_nothing(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [("a", 1), ("b", 7)])
    record_dir = tmp_path / "recorded"
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, record_dir=record_dir)
        good = CompanyInput("google", InputSpec(example("digit", "google")))
        good_second = CompanyInput("ibm", InputSpec(example("digit", "ibm")))
        daemons = [
            start_company(good, address, tmp_path, stack, rounds=2),
            start_company(good_second, address, tmp_path, stack, rounds=2),
            start_company(CompanyInput("broken", InputSpec(bad)), address, tmp_path, stack),
        ]
        with AuditorClient(address, None) as auditor:
            first = auditor.open_round(["google", "broken", "ibm"])
            with pytest.raises(RoundFailed) as failed:
                auditor.wait(first.round_id, timeout=120)
            assert failed.value.where == "broken"
            status = auditor.status(first.round_id)
            assert "broken withdrew" in status.failure_reason
            # The reason crossing to the coordinator names no file and no line.
            assert "bad.csv" not in status.failure_reason and "'7'" not in status.failure_reason
            # The coordinator keeps serving: a new round with the good companies completes.
            second = auditor.open_round(["google", "ibm"])
            auditor.wait(second.round_id, timeout=120)
            assert auditor.result(second.round_id)["shared_individuals"] == 2000
        assert daemons[2].wait(timeout=30) == 0  # the broken company's daemon did not crash
    log = (tmp_path / "client-broken.log").read_text()
    assert "bad.csv:3: column 'failed' is '7'" in log and "Traceback" not in log
    stored = stored_chunks((record_dir / "stored.bin").read_bytes())
    assert stored and not any(c.sender == "broken" or c.list_owner == "broken" for c in stored)
