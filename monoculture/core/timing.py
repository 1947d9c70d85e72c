"""Time and retries, injected: the one clock and the one backoff policy of every role.

Stateful classes (the coordinator's `RoundBook` and `RoundStore`, the company's
`CompanyDaemon`, the auditor's client) take a `Clock` instead of calling
`time` themselves, so tests run deadlines, retries and restarts on a clock
they move by hand. Every retry loop waits by one `Backoff` policy.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")

# Jitter spreads retries of many parties apart; it needs no secrecy, but it
# comes from the operating system anyway (nothing here seeds a generator).
_SYSTEM_RANDOM = random.SystemRandom()


class Clock(Protocol):
    """What a role needs of time."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (deadlines, audit records)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (how long to keep retrying)."""
        ...

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait `seconds`, or until `stop` is set; True when stopped."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(0.0, seconds))
            return False
        return stop.wait(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits about initial * multiplier^(n-1),
    at most `maximum`, times a factor drawn uniformly from [1 - jitter, 1 + jitter]."""

    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, unit: Callable[[], float] = _SYSTEM_RANDOM.random) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, ...)."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        # Cap the exponent so the power cannot overflow however long a party retries.
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt - 1, 64))
        return base * (1 - self.jitter + 2 * self.jitter * unit())


# The coordinator is unreachable: how the company daemon and the auditor's client wait.
RECONNECT_BACKOFF = Backoff(initial=0.2, maximum=10.0)
# A company polling for work while the coordinator is down waits longer between tries.
POLL_BACKOFF = Backoff(initial=0.4, maximum=30.0)


def retry(
    call: Callable[[], T],
    *,
    retryable: Callable[[Exception], bool],
    give_up_at: float,
    clock: Clock = SYSTEM_CLOCK,
    backoff: Backoff = RECONNECT_BACKOFF,
    stop: threading.Event | None = None,
    on_retry: Callable[[int, Exception, float], None] | None = None,
    named_delay: Callable[[Exception], float | None] | None = None,
) -> T:
    """Run `call`; while it raises a retryable error, wait by `backoff` and try again.

    Gives up (re-raises) on an error that is not retryable, once `clock.monotonic()`
    has passed `give_up_at`, or when `stop` is set. `on_retry(attempt, error, delay)`
    is told before each wait (to log it, or to open a fresh connection). `named_delay`: the
    wait an error itself names (a rate refusal), waited out before calling again, as long as
    the call is then still before `give_up_at`.
    """
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            stopped = stop is not None and stop.is_set()
            named = named_delay(exc) if named_delay is not None else None
            if named is not None and not stopped and clock.monotonic() + named < give_up_at:
                clock.sleep(named, stop)
                continue
            if not retryable(exc) or clock.monotonic() >= give_up_at or stopped:
                raise
            attempt += 1
            delay = backoff.delay(attempt)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            clock.sleep(delay, stop)
