"""Hosts on one LAN, each in a network namespace of its own: a test's stand-in for machines.

`Lan(["coordinator", "alpha", ...])` makes, as root:
- one namespace per host and one for the LAN's switch: a bridge `br0`;
- a veth pair per host, `eth0` in the host's namespace and `port-N` on the switch, the host at
  10.231.X.N/24 (X drawn per run: a leftover or parallel run does not clash; every address lives in
  the private namespaces, none in the root namespace's routing);
- `/etc/netns/NS/hosts` per host, which `ip netns exec NS` mounts over /etc/hosts: every host's
  address under its full name (`NAME.monoculture.test`) and its short name.

Processes run in a host's namespace (`Lan.spawn`); `Lan.cut(host)` takes the host's switch port
down, as a pulled cable does: the host's `eth0` loses its carrier, and nothing it sends arrives nor
anything sent to it, with no error on either end; `Lan.mend(host)` brings it back. Everything made
is removed when the `Lan` closes, also when a test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from monoculture.research.simulate import stop_process

DOMAIN = "monoculture.test"
NETNS_ETC = Path("/etc/netns")


def netns_unavailable() -> str:
    """Why namespaces cannot be made here ("" when they can): not root, no `ip`, or the kernel
    or sandbox refuses `ip netns add`."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add): run the suite as root to include this test"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is missing; apt-get install iproute2 (.ci/run does)"
    probe = f"mcprobe-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is refused in this sandbox: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    alias: str  # short name, e.g. coordinator
    netns: str
    address: str
    port: str  # its port on the switch, in the LAN's namespace

    @property
    def name(self) -> str:
        return f"{self.alias}.{DOMAIN}"


class Lan:
    def __init__(self, aliases: Sequence[str]) -> None:
        run = secrets.token_hex(3)
        subnet = f"10.231.{secrets.randbelow(256)}"
        self.switch = f"mc-{run}-lan"
        self.hosts = {
            alias: Host(alias, f"mc-{run}-{alias}", f"{subnet}.{i}", f"port-{i}")
            for i, alias in enumerate(aliases, start=1)
        }
        self._made: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Lan:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        self._add_netns(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            self._add_netns(host.netns)
            _ip("-n", self.switch, "link", "add", host.port, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
            _ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            self._write_hosts_file(host)

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)

    def _write_hosts_file(self, host: Host) -> None:
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
        lines += [f"{h.address} {h.name} {h.alias}" for h in self.hosts.values()]
        folder = NETNS_ETC / host.netns
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def spawn(
        self, alias: str, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `args` on host `alias` (in its namespace, with its /etc/hosts), output in `log_path`;
        stopped when the LAN closes."""
        log_file = log_path.open("ab")
        self._logs.append(log_file)
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.hosts[alias].netns, *args],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self._processes.append(process)
        return process

    def run(self, alias: str, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `args` on host `alias` to its end."""
        return subprocess.run(
            ["ip", "netns", "exec", self.hosts[alias].netns, *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def cut(self, alias: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[alias].port, "down")

    def mend(self, alias: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[alias].port, "up")

    def close(self) -> None:
        for process in reversed(self._processes):
            stop_process(process)
        self._processes.clear()
        for log_file in self._logs:
            log_file.close()
        self._logs.clear()
        for name in reversed(self._made):  # a namespace takes its veth ends with it
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        self._made.clear()
