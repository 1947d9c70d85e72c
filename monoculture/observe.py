"""Metrics for operators: a Prometheus endpoint (prometheus-client) on the coordinator and on each
company daemon, off by default (`metrics_port = 0`) and on loopback when on.

Each process keeps its own registry (never the library's global one), so tests and the in-process
harness can run several without clashes. What is exported holds no id, no failure bit and no
list's content: counts of rounds, hops, bytes, elements, refusals and seconds, and the privacy
budget each roster has spent (which the auditor reads anyway).

Coordinator: `monoculture_rounds{phase}`, `monoculture_list_hops_done`,
`monoculture_bytes_received_total`, `monoculture_refusals_total{reason}`,
`monoculture_privacy_epsilon_spent{roster}`.
Company daemon: `monoculture_steps_total{step}`, `monoculture_step_seconds{step}` (a histogram),
`monoculture_list_hops_uploaded_total`, `monoculture_bytes_uploaded_total`,
`monoculture_elements_blinded_total` (its rate is the blinding throughput),
`monoculture_withdrawals_total`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from monoculture.core.errors import ConfigError

SnapshotFn = Callable[[], "CoordinatorSnapshot"]


@dataclass(frozen=True)
class CoordinatorSnapshot:
    """What the coordinator's gauges show, read at each scrape."""

    rounds_by_phase: dict[str, int]
    list_hops_done: int
    epsilon_by_roster: dict[str, float]


def check_metrics_address(address: str, port: int, where: str) -> None:
    """A metrics endpoint on a port 1-65535 (0 = off), on an IP address."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"metrics_port {port} is not a port (0 = off)", where=where)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ConfigError(
            f"metrics_address {address!r} is not an IP address", where=where,
            hint="127.0.0.1 (the default) serves this machine only; 0.0.0.0 every interface",
        ) from None  # fmt: skip


class _Collector:
    """The coordinator's gauges, computed from its state at scrape time."""

    def __init__(self, snapshot: SnapshotFn) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        now = self._snapshot()
        rounds = GaugeMetricFamily(
            "monoculture_rounds", "Rounds the coordinator holds, by phase", labels=["phase"]
        )
        for phase, count in sorted(now.rounds_by_phase.items()):
            rounds.add_metric([phase], count)
        yield rounds
        yield GaugeMetricFamily(
            "monoculture_list_hops_done",
            "List hops uploaded, over every round held",
            value=now.list_hops_done,
        )
        spent = GaugeMetricFamily(
            "monoculture_privacy_epsilon_spent", "Epsilon spent or reserved per roster", labels=["roster"]
        )
        for roster, epsilon in sorted(now.epsilon_by_roster.items()):
            spent.add_metric([roster], epsilon)
        yield spent


class Metrics:
    """One process's metrics and, once `serve`d, its endpoint."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.bytes_received = Counter(
            "monoculture_bytes_received", "Bytes of list chunks received", registry=self.registry
        )
        self.refusals = Counter(
            "monoculture_refusals", "Requests refused, by status", ["reason"], registry=self.registry
        )
        self.steps = Counter("monoculture_steps", "Protocol steps done", ["step"], registry=self.registry)
        self.step_seconds = Histogram(
            "monoculture_step_seconds", "Duration of protocol steps", ["step"], registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
        )  # fmt: skip
        self.hops_uploaded = Counter(
            "monoculture_list_hops_uploaded", "List hops this daemon uploaded", registry=self.registry
        )
        self.bytes_uploaded = Counter(
            "monoculture_bytes_uploaded", "Bytes of list chunks uploaded", registry=self.registry
        )
        self.elements_blinded = Counter(
            "monoculture_elements_blinded",
            "Elements blinded (hash-to-curve or re-blinding)",
            registry=self.registry,
        )
        self.withdrawals = Counter("monoculture_withdrawals", "Rounds withdrawn from", registry=self.registry)
        self._server: Any = None

    def watch_coordinator(self, snapshot: SnapshotFn) -> None:
        self.registry.register(_Collector(snapshot))

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Count a step and time it (whether it ends well or not)."""
        with self.step_seconds.labels(step).time():
            yield
        self.steps.labels(step).inc()

    def serve(self, address: str, port: int) -> int:
        """Serve /metrics on `address`:`port` (0: any free port); returns the bound port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def text(self) -> str:
        """The exposition a scrape gets (tests, and `--metrics-file`-like dumps)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


def roster_epsilons(entries: Iterable[tuple[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for roster, epsilon in entries:
        total[roster] = total.get(roster, 0.0) + epsilon
    return total
