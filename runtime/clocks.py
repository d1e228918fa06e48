"""Two clocks behind one interface: real monotonic time and simulated lockstep time.

The executor asks a clock for the time and to wait until the next timer is
due. Times are integer nanoseconds since the loop started, so periodic timers
never drift from float rounding.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the executor needs from a clock."""

    simulated: bool
    """True when time advances only when the executor says so."""

    def start(self) -> None:
        """Make now time 0; the executor calls it as the first timer is about to fire."""
        ...

    def now_ns(self) -> int:
        """Nanoseconds since the loop started."""
        ...

    def wait_until(self, due_ns: int) -> int:
        """Block until ``due_ns`` (or jump there, when simulated); return the time then."""
        ...


class SimClock:
    """Simulated time: jumps straight to the next due timer, so runs are
    deterministic and as fast as the CPU allows."""

    simulated = True

    def __init__(self) -> None:
        self._now_ns = 0

    def start(self) -> None:
        self._now_ns = 0

    def now_ns(self) -> int:
        return self._now_ns

    def wait_until(self, due_ns: int) -> int:
        if due_ns > self._now_ns:
            self._now_ns = due_ns
        return self._now_ns


class RealClock:
    """Monotonic wall time. Sleeps until shortly before a deadline, then spins
    the last ``spin_us`` microseconds, because ``time.sleep`` overshoots by
    tens to hundreds of microseconds on a loaded Linux box.

    Args:
        spin_us: How long before a deadline to stop sleeping and spin (0 = never spin).
    """

    simulated = False

    def __init__(self, spin_us: float = 200.0) -> None:
        self.spin_ns = int(spin_us * 1000)
        self.spun_ns = 0
        """Time spent spinning: the CPU the spin window costs."""
        self.busy_limit_ns = 0
        """When set (under a real-time priority), a wait after this long without a
        sleep sleeps ``min_sleep_ns`` even when late, so the loop cannot starve the
        machine."""
        self.min_sleep_ns = 0
        self.sleeps = 0
        self._slept_at = 0
        self._start_ns = time.perf_counter_ns()
        self.epoch_ns: int | None = None
        """When set, ``start`` makes this ``perf_counter_ns`` instant time 0: the
        process groups of one run share it (the clock is system-wide on Linux)."""

    def start(self) -> None:
        # Not at construction: setting up nodes (making environments, loading
        # models) takes a while and would show as lateness of the first timers.
        self._start_ns = self.epoch_ns if self.epoch_ns is not None else time.perf_counter_ns()

    def now_ns(self) -> int:
        return time.perf_counter_ns() - self._start_ns

    def wait_until(self, due_ns: int) -> int:
        now = self.now_ns()
        remaining = due_ns - now - self.spin_ns
        if self.busy_limit_ns and now - self._slept_at >= self.busy_limit_ns:
            remaining = max(remaining, self.min_sleep_ns)
        if remaining > 0:
            time.sleep(remaining / 1e9)
            now = self.now_ns()
            self._slept_at = now
            self.sleeps += 1
        if now < due_ns:
            spin_from = now
            while now < due_ns:
                now = self.now_ns()
            self.spun_ns += now - spin_from
        return now
