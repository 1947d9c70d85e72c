"""deploy/systemd/: the units pass `systemd-analyze verify` without a warning and score "OK" in
`systemd-analyze security --offline=yes`; their configs load and keep every path the daemons
write inside the unit's StateDirectory and every key file in its LoadCredential directory;
and, inside the units' sandbox emulated without systemd (namespaces, setpriv, prctl and the
units' own seccomp filter), a real round runs and the coordinator serves from its unit's layout.

About 1 s, and the two sandboxed runs: 10 s of CPU, 20 to 45 s on 2 cores shared with other work.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from monoculture.client.config import load_client_config
from monoculture.coordinator.config import load_coordinator_config

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_SCRIPT = "/opt/monoculture/bin/monoculture"  # ExecStart in the units as shipped
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
CONSOLE_SCRIPT = Path(sys.executable).parent / "monoculture"
COORDINATOR_UNIT = "monoculture-coordinator.service"
COMPANY_TEMPLATE = "monoculture-company@.service"
COMPANY_INSTANCE = "monoculture-company@google.service"
MAX_EXPOSURE = 3.0  # systemd-analyze security: below 3.0 is "OK"; our units score 1.1

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is missing (Debian package systemd): units not verified"
)


def unit_settings(path: Path, instance: str = "") -> dict[str, list[str]]:
    """A unit file's [Service] and [Unit] settings, each key's values in order, %i expanded."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip().replace("%i", instance))
    return settings


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """Copies of the units whose ExecStart is this environment's console script.

    `systemd-analyze verify` refuses a unit whose ExecStart binary does not exist.
    """
    script = Path(sys.executable).parent / "monoculture"
    assert script.exists(), f"{script}: the console script of this install is missing"
    for unit in (COORDINATOR_UNIT, COMPANY_TEMPLATE):
        text = (UNITS / unit).read_text(encoding="utf-8")
        assert INSTALLED_SCRIPT in text, f"{unit}: ExecStart does not start {INSTALLED_SCRIPT}"
        (tmp_path / unit).write_text(text.replace(INSTALLED_SCRIPT, str(script)), encoding="utf-8")
    return tmp_path


@needs_systemd_analyze
@pytest.mark.parametrize("unit", [COORDINATOR_UNIT, COMPANY_TEMPLATE, COMPANY_INSTANCE])
def test_systemd_analyze_verify_prints_nothing(unit_dir: Path, unit: str) -> None:
    """verify exits 0 even on unknown keys and bad values; any line it prints is a failure."""
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit_dir / unit)], capture_output=True, text=True, timeout=60
    )
    printed = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and not printed, f"systemd-analyze verify {unit}:\n{printed}"


@needs_systemd_analyze
def test_systemd_analyze_verify_catches_a_bad_setting(unit_dir: Path) -> None:
    """The check above can fail: a misspelt value and an unknown key are printed."""
    assert SYSTEMD_ANALYZE is not None
    unit = unit_dir / COORDINATOR_UNIT
    text = unit.read_text(encoding="utf-8")
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strictly\nProtectSytem=yes"))
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "strictly" in done.stderr and "ProtectSytem" in done.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", [COORDINATOR_UNIT, COMPANY_INSTANCE])
def test_systemd_analyze_security_scores_ok(unit_dir: Path, unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", str(unit_dir / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 and "offline" in done.stderr:
        pytest.skip(f"this systemd-analyze has no --offline (systemd >= 250 has): {done.stderr.strip()}")
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", done.stdout)
    assert found, f"no overall exposure in:\n{done.stdout}{done.stderr}"
    exposure, verdict = float(found.group(1)), found.group(2)
    print(f"{unit}: exposure {exposure} {verdict}")
    assert exposure < MAX_EXPOSURE and verdict == "OK", done.stdout


@pytest.mark.parametrize("unit", [COORDINATOR_UNIT, COMPANY_TEMPLATE])
def test_units_hardening(unit: str) -> None:
    """The settings issue 19 asks for, present with the values meant (verify accepts them absent)."""
    settings = unit_settings(UNITS / unit)
    expected = {
        "DynamicUser": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
        "Restart": ["on-failure"],
        "RestartSec": ["5s"],
        "UMask": ["0077"],
    }
    for key, values in expected.items():
        assert settings.get(key) == values, f"{unit}: {key}={settings.get(key)}, expected {values}"
    assert settings["SystemCallFilter"][0] == "@system-service"
    assert "ReadWritePaths" not in settings, "the state directory is the only writable place"


def _credentials(settings: dict[str, list[str]], unit: str) -> dict[str, str]:
    """LoadCredential= ids, as the paths the service reads them at."""
    return {
        f"/run/credentials/{unit}/{entry.split(':')[0]}": entry.split(":", 1)[1]
        for entry in settings["LoadCredential"]
    }


def _config_argument(settings: dict[str, list[str]]) -> Path:
    (exec_start,) = settings["ExecStart"]
    words = exec_start.split()
    assert words[0] == INSTALLED_SCRIPT and "--config" in words, exec_start
    config = Path(words[words.index("--config") + 1])
    (configuration,) = settings["ConfigurationDirectory"]
    assert config.parent == Path("/etc") / configuration, f"{config} is not in /etc/{configuration}"
    return config


def test_coordinator_unit_and_config_agree() -> None:
    """The config it starts with is deploy/systemd/coordinator.toml; SQLite and the sealing key
    (written beside it) are in the state directory; the TLS files are its credentials."""
    settings = unit_settings(UNITS / COORDINATOR_UNIT)
    config_path = _config_argument(settings)
    assert settings["ExecStart"][0].split()[1:3] == ["coordinator", "serve"]
    config = load_coordinator_config(UNITS / config_path.name)
    (state,) = settings["StateDirectory"]
    assert config.database.parent == Path("/var/lib") / state
    assert config.tls is not None
    credentials = _credentials(settings, COORDINATOR_UNIT)
    assert {str(p) for p in (config.tls.ca_file, config.tls.cert_file, config.tls.key_file)} == set(
        credentials
    )
    assert all(source.startswith("/etc/monoculture/certs/") for source in credentials.values())
    assert config.port_file is None and config.record_dir is None


def test_company_unit_and_config_agree(caplog: pytest.LogCaptureFixture) -> None:
    """Instance google starts deploy/systemd/company-google.toml, whose state_dir (sealed round
    keys, privacy ledger) and data are in the instance's state directory and whose TLS files
    are its credentials, loaded from the files `certs request` names company-google.*."""
    settings = unit_settings(UNITS / COMPANY_TEMPLATE, instance="google")
    config_path = _config_argument(settings)
    assert settings["ExecStart"][0].split()[1:3] == ["client", "run"]
    config = load_client_config(UNITS / config_path.name)
    assert config.company == "google"
    (state,) = settings["StateDirectory"]
    assert config.state_dir.is_relative_to(Path("/var/lib") / state)
    assert config.data.path.is_relative_to(Path("/var/lib") / state)
    assert config.stats_file is None
    assert config.tls is not None
    credentials = _credentials(settings, COMPANY_INSTANCE)
    assert {str(p) for p in (config.tls.ca_file, config.tls.cert_file, config.tls.key_file)} == set(
        credentials
    )
    assert sorted(Path(source).name for source in credentials.values()) == [
        "ca.pem",
        "company-google.key",
        "company-google.pem",
    ]


SYSTEM_PYTHON = "/usr/bin/python3"  # has libseccomp's bindings (Debian package python3-seccomp)
NOBODY = 65534


def _can_sandbox() -> str:
    """Why the sandbox emulation cannot run here ("" when it can)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (a mount namespace, then a drop to an unprivileged user)"
    for tool in ("unshare", "setpriv", SYSTEMD_ANALYZE, SYSTEM_PYTHON):
        if tool is None or shutil.which(tool) is None:
            return f"{tool or 'systemd-analyze'} is missing (util-linux, systemd, python3)"
    if not Path("/srv").is_dir():
        return "/srv, where the state directory is mounted as in the unit, is missing"
    probe = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "true"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"unshare --mount --pid is refused here: {probe.stderr.strip()}"
    return ""


def _syscall_groups() -> dict[str, list[str]]:
    """systemd's system call groups (@system-service, ...), as this systemd defines them."""
    assert SYSTEMD_ANALYZE is not None
    listing = subprocess.run(
        [SYSTEMD_ANALYZE, "syscall-filter"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current = ""
    for line in listing.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif current and line.strip() and not line.lstrip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        calls |= _expand(groups[name], groups) if name.startswith("@") else {name}
    return calls


def unit_syscalls(settings: dict[str, list[str]]) -> set[str]:
    """The system calls a unit's SystemCallFilter= lines allow (an allow list, then ~ removals;
    systemd always adds @default to an allow list)."""
    groups = _syscall_groups()
    first, *more = settings["SystemCallFilter"]
    assert not first.startswith("~"), "the first SystemCallFilter= line is an allow list"
    allowed = _expand(["@default", *first.split()], groups)
    for line in more:
        names = _expand(line.removeprefix("~").split(), groups)
        allowed = allowed - names if line.startswith("~") else allowed | names
    return allowed


# Run by the system's python3 as the unprivileged user: the kernel's MemoryDenyWriteExecute
# (PR_SET_MDWE, Linux >= 6.3) and the unit's seccomp filter (SystemCallFilter=,
# RestrictAddressFamilies=, SystemCallErrorNumber=), each proved to hold, then exec the command.
_SANDBOX = """
import ctypes, errno, json, mmap, os, socket, sys
spec = json.loads(sys.argv[1])
try:
    import seccomp
except ImportError:
    sys.exit("SKIP: libseccomp's Python bindings are missing (Debian package python3-seccomp)")
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"SKIP: prctl(PR_SET_MDWE) refused (errno {ctypes.get_errno()}; Linux >= 6.3 has it)")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable and executable mapping was allowed under PR_SET_MDWE")
except OSError:
    pass
rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(spec["errno"]))
for name in spec["syscalls"]:
    if name != "socket":
        try:
            rules.add_rule(seccomp.ALLOW, name)
        except RuntimeError:
            pass  # not a system call of this architecture
for family in spec["families"]:
    rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
rules.load()
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    sys.exit("a netlink socket was allowed by the filter")
except PermissionError:
    pass
if os.getuid() == 0 or os.access("/usr", os.W_OK) or os.access("/", os.W_OK):
    sys.exit("the sandbox is not in effect: root, or / writable")
os.execve(spec["command"][0], spec["command"], spec["environment"])
"""

# Inside new mount and PID namespaces, as root: /proc as ProcSubset=pid and ProtectProc=invisible
# leave it, the test's folder at /srv, [the unit's layout,] empty /root and /home (ProtectHome), a
# private /tmp, and everything else read-only (ProtectSystem=strict); then the unprivileged
# user, without new privileges or capabilities (DynamicUser, NoNewPrivileges,
# CapabilityBoundingSet=). PY_PREFIX: the Python installation of this test's venv when it lives
# in a home directory (pyenv), shown alone there, as if installed elsewhere as the docs require.
_PROC_AND_SRV = """set -e
mount --make-rprivate /
mount -t proc -o subset=pid,hidepid=invisible proc /proc
test ! -e /proc/meminfo || { echo "/proc subset=pid not in effect" >&2; exit 1; }
mount --bind "$0" /srv
"""
_HOMES_TMP_READ_ONLY = """[ -z "$PY_PREFIX" ] || mount --bind "$PY_PREFIX" "$0/prefix"
for home in /root /home; do mount -t tmpfs -o mode=0755 tmpfs "$home"; done
[ -z "$PY_PREFIX" ] || { mkdir -p "$PY_PREFIX" && mount --move "$0/prefix" "$PY_PREFIX"; }
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -o remount,bind,ro /
cd /srv
"""
_UNPRIVILEGED = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs"]
_UNPRIVILEGED += ["--inh-caps=-all", "--bounding-set=-all"]
_NAMESPACES = _PROC_AND_SRV + _HOMES_TMP_READ_ONLY + 'exec "$@"\n'

# The coordinator unit's layout: its StateDirectory, its credentials (read-only) and, in a
# network namespace of its own, the host name its certificate names. Then the auditor, outside
# the sandbox, lists the rounds until the coordinator answers, and stops it.
_COORDINATOR_LAYOUT = """ip link set lo up
mount --bind "$0/hosts" /etc/hosts
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mkdir /var/lib/monoculture-coordinator
mount --bind "$0/state" /var/lib/monoculture-coordinator
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/credentials/monoculture-coordinator.service
mount --bind "$0/credentials" /run/credentials/monoculture-coordinator.service
mount -o remount,bind,ro /run/credentials/monoculture-coordinator.service
"""
_SERVE_AND_ASK = """"$@" &
server=$!
up=""
for attempt in $(seq 240); do
  if "$MONOCULTURE" round list --coordinator coordinator.example.org:50051 --certs /srv/auditor \\
      >/srv/rounds.txt 2>/srv/list.err; then up=1; break; fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.25
done
kill -TERM "$server" 2>/dev/null || true
status=0; wait "$server" || status=$?
echo "coordinator exit status $status"
[ -n "$up" ] || { echo "the coordinator never answered:" >&2; cat /srv/list.err >&2; exit 1; }
"""


def sandbox_section(unit: str) -> str:
    text = (UNITS / unit).read_text(encoding="utf-8")
    return text[text.index("# Sandbox.") :]


def test_both_units_have_the_same_sandbox() -> None:
    """So the sandboxed round below, run once, stands for both."""
    assert sandbox_section(COORDINATOR_UNIT) == sandbox_section(COMPANY_TEMPLATE)


def _sandbox_spec(command: list[str]) -> str:
    """What sandbox.py applies, from the coordinator unit (both units' sandboxes are the same)."""
    settings = unit_settings(UNITS / COORDINATOR_UNIT)
    environment = dict(word.split("=", 1) for word in settings["Environment"][0].split())
    environment["PATH"] = "/usr/bin:/bin"
    (errno_name,) = settings["SystemCallErrorNumber"]
    families = settings["RestrictAddressFamilies"][0].split()
    return json.dumps(
        {
            "syscalls": sorted(unit_syscalls(settings)),
            "families": [getattr(socket, name) for name in families],
            "errno": getattr(errno, errno_name),
            "command": command,
            "environment": environment,
        }
    )


def _run_sandboxed(folder: Path, script: str, command: list[str], unshare: list[str]) -> str:
    """Run `script` in new namespaces with `folder` at /srv and `command` sandboxed; its stdout."""
    reason = _can_sandbox()
    if reason:
        pytest.skip(f"sandboxed run skipped: {reason}")
    (folder / "sandbox.py").write_text(_SANDBOX, encoding="utf-8")
    (folder / "prefix").mkdir()
    prefix = Path(sys.base_prefix).resolve()
    in_home = any(prefix.is_relative_to(home) for home in ("/root", "/home"))
    os.chown(folder, NOBODY, NOBODY)
    folder.chmod(0o700)
    sandboxed = [*_UNPRIVILEGED, SYSTEM_PYTHON, "/srv/sandbox.py", _sandbox_spec(command)]
    done = subprocess.run(
        ["unshare", *unshare, "--fork", "sh", "-c", script, str(folder), *sandboxed],
        capture_output=True,
        text=True,
        timeout=180,
        env={
            **os.environ,
            "PY_PREFIX": str(prefix) if in_home else "",
            "MONOCULTURE": str(CONSOLE_SCRIPT),
        },
    )
    if done.returncode != 0 and "SKIP:" in done.stderr:
        pytest.skip(done.stderr.strip().split("SKIP: ", 1)[1])
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.e2e
def test_a_round_runs_in_the_units_sandbox(tmp_path: Path) -> None:
    """`simulate` (a coordinator and three daemons with blinding workers, real gRPC between
    processes) completes inside the units' sandbox, emulated without systemd: their seccomp
    filter and address families, read from the unit, MemoryDenyWriteExecute, ProcSubset=pid,
    ProtectSystem=strict with one folder writable, PrivateTmp, ProtectHome, an unprivileged user
    without capabilities or new privileges, and their Environment=. Not emulated: PrivateUsers,
    PrivateDevices and the Protect* settings on kernel interfaces, which the daemons do not use."""
    command = [str(CONSOLE_SCRIPT), "simulate", "--parties", "3", "--individuals", "300"]
    command += ["--timeout", "120", "--workdir", "/srv/w", "--out", "/srv/result.json"]
    stdout = _run_sandboxed(tmp_path, _NAMESPACES, command, ["--mount", "--pid"])
    assert "pattern table identical: yes" in stdout
    assert json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))


def _coordinator_files(folder: Path) -> None:
    """The CA's files as the unit's credentials and the auditor's folder; the host name."""
    ca = folder / "ca"
    for role in (["--coordinator", "coordinator.example.org"], ["--auditor"]):
        subprocess.run([str(CONSOLE_SCRIPT), "certs", "issue", "--dir", str(ca), *role], check=True)
    for name, files in (
        ("credentials", ["ca.pem", "coordinator.pem", "coordinator.key"]),
        ("auditor", ["ca.pem", "auditor.pem", "auditor.key"]),
    ):
        (folder / name).mkdir()
        for file in files:
            shutil.copyfile(ca / file, folder / name / file)
    for file in (folder / "credentials").iterdir():  # as LoadCredential leaves them
        os.chown(file, NOBODY, NOBODY)
        file.chmod(0o400)
    (folder / "state").mkdir(mode=0o700)
    os.chown(folder / "state", NOBODY, NOBODY)
    (folder / "hosts").write_text("127.0.0.1 localhost coordinator.example.org\n", encoding="utf-8")


@pytest.mark.e2e
def test_the_coordinator_serves_from_its_units_layout(tmp_path: Path) -> None:
    """deploy/systemd/coordinator.toml, started as the unit's ExecStart starts it, in its sandbox,
    with its state directory and credentials where systemd puts them: it answers the auditor
    over mTLS, writes its database and sealing key in the state directory (the key 0600), and
    stops cleanly on SIGTERM."""
    if _can_sandbox():
        pytest.skip(f"sandboxed run skipped: {_can_sandbox()}")
    subprocess.run([str(CONSOLE_SCRIPT), "certs", "init", "--dir", str(tmp_path / "ca")], check=True)
    _coordinator_files(tmp_path)
    shutil.copyfile(UNITS / "coordinator.toml", tmp_path / "coordinator.toml")
    (exec_start,) = unit_settings(UNITS / COORDINATOR_UNIT)["ExecStart"]
    command = [str(CONSOLE_SCRIPT), *exec_start.split()[1:]]
    command[command.index("--config") + 1] = "/srv/coordinator.toml"
    script = _PROC_AND_SRV + _COORDINATOR_LAYOUT + _HOMES_TMP_READ_ONLY + _SERVE_AND_ASK
    stdout = _run_sandboxed(tmp_path, script, command, ["--mount", "--pid", "--net"])
    assert "coordinator exit status 0" in stdout
    state = tmp_path / "state"
    assert sorted(p.name for p in state.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "coordinator.sqlite",
        "coordinator.sqlite.key",
    ]
    assert (state / "coordinator.sqlite.key").stat().st_mode & 0o777 == 0o600
    assert (state / "coordinator.sqlite").stat().st_uid == NOBODY
