"""deploy/: the image built from deploy/Dockerfile and the compose deployment, run with podman.

The image is built from a local Debian base made with debootstrap (no registry is reached;
shared notes, containers.md), reused when `localhost/bookworm-python:3.11` already exists.
Then compose.yaml brings up the auditor's CA step, the coordinator, three companies and the
auditor with one command, and the round's result must equal `monoculture plaintext` on the
same files. Skips, saying why, without root, podman, runc, debootstrap or podman-compose
(`.ci/run` installs them). Select them with `-m podman`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import assert_same_integers

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.core.dataset import InputSpec, load_records

pytestmark = pytest.mark.podman

ROOT = Path(__file__).resolve().parent.parent
BASE = "localhost/bookworm-python:3.11"
IMAGE = "localhost/monoculture:test"
COMPANIES = ("google", "ibm", "microsoft")
DATA = ROOT / "examples" / "api-predictions" / "digit"
# podman's defaults set rlimits and cgroup options this kind of sandbox refuses.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\npids_limit = 0\n[engine]\nruntime = "runc"\n'
ROUND_SECONDS = 300
HEALTH_GRACE_SECONDS = 90
Done = subprocess.CompletedProcess


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (podman runs rootful here; .ci/run runs as root)"
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install podman runc debootstrap; .ci/run does)"
    if _compose_command() is None:
        return "podman-compose is not installed (pip install podman-compose; the dev extra has it)"
    return None


def _compose_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "podman-compose"
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    return [found] if found else None


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    return {**os.environ, "CONTAINERS_CONF": str(conf), "PATH": f"/usr/sbin:{os.environ.get('PATH', '')}"}


def _run(
    command: Sequence[str], env: dict[str, str], timeout: float = 900, **kw
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def _checked(command: Sequence[str], env: dict[str, str], timeout: float = 900, **kw) -> str:
    done = _run(command, env, timeout, **kw)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output}"
    return done.stdout


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image, by deploy/build-image.sh (the debootstrap base unless BASE exists), one build
    at a time on this machine (xdist workers wait on a lock; a second build is all cache).
    Layers and the pip cache persist in podman's storage across runs."""
    with open("/tmp/monoculture-image-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = {**podman_env, "TMPDIR": str(tmp_path_factory.mktemp("base")), "MONOCULTURE_BASE": BASE}
        _checked(["sh", "deploy/build-image.sh", IMAGE], env, cwd=ROOT)
    return IMAGE


def test_the_image_runs_the_cli_as_a_non_root_user_on_a_read_only_root(image: str, podman_env: dict) -> None:
    run = ["podman", "run", "--rm", "--read-only", "--network", "none"]
    assert _checked([*run, image, "--help"], podman_env).startswith("usage: monoculture")
    assert _checked([*run, "--entrypoint", "id", image, "-u"], podman_env).strip() == "10001"
    inspected = json.loads(_checked(["podman", "image", "inspect", image], podman_env))[0]
    assert inspected["Config"]["User"] == "10001:10001"
    assert "monoculture health --config" in " ".join(inspected["Healthcheck"]["Test"])


def _plaintext() -> dict:
    outcomes = [load_records(InputSpec(DATA / f"{name}.csv")).as_mapping() for name in COMPANIES]
    return result_dict(plaintext_table(list(COMPANIES), outcomes))


@pytest.fixture
def deployment(image: str, podman_env: dict, tmp_path: Path) -> Iterator[tuple[list[str], dict, Path]]:
    out = tmp_path / "out"  # not made here: compose makes it, as in a fresh clone
    project = f"monoculture-test-{os.getpid()}"
    env = {**podman_env, "MONOCULTURE_IMAGE": image, "MONOCULTURE_OUT": str(out)}
    compose = [*(_compose_command() or []), "-f", str(ROOT / "deploy" / "compose.yaml"), "-p", project]
    try:
        yield compose, env, out
    finally:
        _run([*compose, "down", "-v", "-t", "2"], env, timeout=120)


def _container(compose: list[str], service: str) -> str:
    return f"{compose[-1]}_{service}_1"


def _state(env: dict, container: str) -> dict:
    return json.loads(_checked(["podman", "inspect", container], env))[0]


def _logs(env: dict, compose: list[str]) -> str:
    return "\n".join(
        f"--- {service}:\n"
        + _run(["podman", "logs", "--tail", "15", _container(compose, service)], env).stderr
        for service in ("ca", "coordinator", *COMPANIES, "auditor")
    )


def _healthy(env: dict, container: str) -> bool:
    """`podman healthcheck run` until it passes, within the check's own grace: compose.yaml
    gives a container start_period (60 s) in which failures do not count, then unhealthy
    after 3 failures in a row (30 s apart). Seen here, rarely: right after a fresh image's
    round, a company's checks found no answer within 10 s for up to half a minute."""
    deadline = time.monotonic() + HEALTH_GRACE_SECONDS
    while True:
        if _run(["podman", "healthcheck", "run", container], env, timeout=60).returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(2)


def _health_log(env: dict, container: str) -> str:
    """What the failed checks printed (podman keeps it in the container's health log)."""
    health = _state(env, container)["State"].get("Health") or {}
    return "\n".join(entry.get("Output", "") for entry in health.get("Log") or [])


def test_one_compose_command_runs_a_round_equal_to_plaintext(deployment, podman_env: dict) -> None:
    """The done criterion of issue 19: `podman-compose up` brings up the coordinator, three
    companies and the auditor; the result it writes is the plaintext computation's."""
    compose, env, out = deployment
    _checked([*compose, "up", "-d"], env, timeout=300)
    result_file = out / "result.json"
    deadline = time.monotonic() + ROUND_SECONDS
    while not result_file.exists():
        auditor = _state(env, _container(compose, "auditor"))["State"]
        if auditor["Status"] == "exited" and auditor["ExitCode"] != 0:
            pytest.fail(f"the auditor exited {auditor['ExitCode']}:\n{_logs(env, compose)}")
        assert time.monotonic() < deadline, f"no result within {ROUND_SECONDS} s:\n{_logs(env, compose)}"
        time.sleep(1)
    assert_same_integers(json.loads(result_file.read_text(encoding="utf-8")), _plaintext())
    for service in ("coordinator", *COMPANIES):
        container = _container(compose, service)
        assert _healthy(env, container), f"{service}: {_health_log(env, container)}\n{_logs(env, compose)}"
        config = _state(env, container)
        assert config["Config"]["User"] == "10001:10001", service
        assert config["HostConfig"]["ReadonlyRootfs"] is True, service
    for service in ("ca", "auditor"):
        state = _state(env, _container(compose, service))["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), f"{service}:\n{_logs(env, compose)}"
