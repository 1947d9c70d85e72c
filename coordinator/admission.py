"""Admission control: how much of the coordinator one party may hold at once.

Every call a company (or the auditor) makes passes a gate keyed by its authenticated
name before it does any work: at most `max_calls` of its calls in flight, at most
`max_polls` of them long polls (PollWork, which wait for work and hold a worker
thread while they wait), and a token bucket of `rate` calls a second with bursts of
`burst`. A call over a limit is refused at once (RESOURCE_EXHAUSTED, naming the party
and the limit), so a flood from one party holds at most `max_calls` of the server's
threads and never delays the others. Pure: no gRPC, and the clock is injectable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from monoculture.core.errors import LimitExceeded

PRUNE_ABOVE = 1024  # parties remembered before idle ones (nothing in flight, bucket full) are forgotten


@dataclass(frozen=True)
class Quota:
    """One party's share of the coordinator; the `_key`s name the keys of [limits] that set it."""

    max_calls: int
    max_polls: int
    rate: float
    burst: int
    calls_key: str = "max_calls_per_company"
    polls_key: str = "max_polls_per_company"
    rate_key: str = "calls_per_second_per_company"


@dataclass
class _Usage:
    calls: int
    polls: int
    tokens: float
    stamp: float


class AdmissionGate:
    """Calls in flight, long polls in flight and a call rate, per party. Thread-safe."""

    def __init__(
        self, quota: Quota, kind: str = "company", clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`kind` names the parties in refusals ("company cheat has ..."); `clock`: monotonic seconds."""
        self.quota = quota
        self._kind = kind
        self._clock = clock
        self._lock = threading.Lock()
        self._usage: dict[str, _Usage] = {}

    @contextmanager
    def admit(self, party: str, *, long_poll: bool = False) -> Iterator[None]:
        """Hold one of `party`'s call slots (and a long-poll slot) for the `with` block;
        raises LimitExceeded, taking nothing, when a limit would be exceeded."""
        self.enter(party, long_poll=long_poll)
        try:
            yield
        finally:
            self.leave(party, long_poll=long_poll)

    def enter(self, party: str, *, long_poll: bool = False) -> None:
        """Take a slot (see `admit`); every successful `enter` needs one `leave`."""
        quota = self.quota
        who = f"{self._kind} {party}"
        with self._lock:
            now = self._clock()
            usage = self._usage.get(party)
            if usage is None:
                if len(self._usage) >= PRUNE_ABOVE:
                    self._prune(now)
                usage = self._usage[party] = _Usage(0, 0, float(quota.burst), now)
            usage.tokens = min(float(quota.burst), usage.tokens + (now - usage.stamp) * quota.rate)
            usage.stamp = now
            if usage.calls >= quota.max_calls:
                raise LimitExceeded(
                    f"{who} already has {usage.calls} calls in flight, the most "
                    f"[limits] {quota.calls_key} = {quota.max_calls} allows",
                    where=party,
                    hint="wait for a call to end before making another (one daemon per company)",
                )
            if long_poll and usage.polls >= quota.max_polls:
                raise LimitExceeded(
                    f"{who} already has {usage.polls} long polls (PollWork) waiting, the most "
                    f"[limits] {quota.polls_key} = {quota.max_polls} allows",
                    where=party,
                    hint="poll once at a time and wait for the answer (one daemon per company)",
                )
            if usage.tokens < 1.0:
                wait = (1.0 - usage.tokens) / quota.rate
                raise LimitExceeded(
                    f"{who} calls faster than [limits] {quota.rate_key} = {quota.rate:g} "
                    f"(bursts of {quota.burst}) allows",
                    where=party,
                    hint=f"slow down: retry in {wait:.2f} s or later",
                    retry_after=wait,
                )
            usage.tokens -= 1.0
            usage.calls += 1
            if long_poll:
                usage.polls += 1

    def leave(self, party: str, *, long_poll: bool = False) -> None:
        """Give back the slot `enter` took."""
        with self._lock:
            usage = self._usage[party]
            usage.calls -= 1
            if long_poll:
                usage.polls -= 1

    def in_flight(self, party: str) -> tuple[int, int]:
        """`party`'s calls and long polls in flight now."""
        with self._lock:
            usage = self._usage.get(party)
            return (usage.calls, usage.polls) if usage else (0, 0)

    def _prune(self, now: float) -> None:
        refill = self.quota.burst / self.quota.rate
        for party, usage in list(self._usage.items()):
            if usage.calls == 0 and now - usage.stamp >= refill:
                del self._usage[party]
