"""Prometheus metrics, scraped from a live coordinator and a live company daemon during and after
a real round: off by default, on loopback, and holding no id."""

from __future__ import annotations

import socket
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import example

from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec, load_records
from monoculture.core.errors import ConfigError
from monoculture.observe import check_metrics_address
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator

NAMES = ["google", "microsoft", "ibm"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


@pytest.mark.e2e
def test_metrics_are_scraped_from_a_live_coordinator_and_daemon(tmp_path: Path) -> None:
    coordinator_port, google_port = _free_port(), _free_port()
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, metrics_port=coordinator_port)
        for name in NAMES:
            port = google_port if name == "google" else 0
            start_company(CompanyInput(name, InputSpec(example("digit", name))), address, tmp_path, stack,
                          rounds=2, metrics_port=port)  # fmt: skip
        with AuditorClient(address, None) as auditor:
            round_id = auditor.open_round(NAMES).round_id
            auditor.wait(round_id, timeout=120)
            coordinator = _scrape(coordinator_port)
            company = _scrape(google_port)
            page = urllib.request.urlopen(f"http://127.0.0.1:{google_port}/metrics", timeout=10).read()
    assert coordinator['monoculture_rounds{phase="COMPLETE"}'] == 1
    assert coordinator["monoculture_list_hops_done"] == 9
    assert coordinator["monoculture_bytes_received_total"] > 2000 * 3 * 3 * 33  # points alone
    assert coordinator['monoculture_privacy_epsilon_spent{roster="google,ibm,microsoft"}'] == 0.0
    assert company['monoculture_steps_total{step="blind_list"}'] == 3
    assert company["monoculture_list_hops_uploaded_total"] == 3
    assert company["monoculture_elements_blinded_total"] == 3 * 2000
    assert company["monoculture_bytes_uploaded_total"] > 0
    assert company['monoculture_step_seconds_count{step="join_round"}'] == 1
    ids = load_records(InputSpec(example("digit", "google"))).id_list()[:50]
    assert not any(record_id.encode() in page for record_id in ids)  # no id in what is exported


def test_a_metrics_address_is_checked() -> None:
    check_metrics_address("127.0.0.1", 9464, "[client]")
    with pytest.raises(ConfigError, match="not an IP address"):
        check_metrics_address("localhost:9464", 9464, "[client]")
    with pytest.raises(ConfigError, match="not a port"):
        check_metrics_address("127.0.0.1", 70000, "[coordinator]")


def test_json_logs_are_one_object_a_line(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    args = [
        sys.executable,
        "-m",
        "monoculture",
        "--log-format",
        "json",
        "simulate",
        "--insecure",  # the auditor side then logs its warning
        "--out",
        str(tmp_path / "r.json"),
    ]
    for name in NAMES:
        args += ["--company", f"{name}={example('digit', name)}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
