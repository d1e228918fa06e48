"""The step watchdog: one thread that stops a node's code running past its limit.

Per step the executor only writes the step's start time on the runner and
clears it after: no timer is armed per step (``setitimer`` arm and clear were
measured at 1.3 us a step, a third of a whole 4-node tick). The thread looks
at those start times a few times per limit and, when a step (or a ``close``)
overruns its ``watchdog_ms``, sends the loop's thread a signal whose handler
raises :class:`StepInterrupted` there, if that same step is still running.
The step then faults as ``hung`` under the node's policy.

A step still running at twice its limit is a *hard hang*, ended with the
process. Where Python still runs (the step ignores or swallows the interrupt,
or blocks in C with the GIL released), this thread prints every thread's
stack, hands the report of the run so far to ``on_hard_hang`` (the CLI writes
and prints it) and ends the process with exit code :data:`HUNG_EXIT` (70). A
step stuck in C code that holds the GIL leaves this thread no chance to run:
for that it keeps a dead man's switch, a process alarm (``SIGALRM``) pushed
forward on every look. If the alarm fires, :mod:`faulthandler` prints every
thread's stack to stderr and the process is killed by ``SIGALRM`` (exit
status 142 in a shell, -14 from Python's ``subprocess``), without a report.
A node that may hang in C belongs in a process of its own (``isolate:
process``), where the process group's policy restarts it and the loop goes on.

While a loop runs it owns ``SIGUSR2`` (the interrupt) and ``SIGALRM`` (the
alarm); their handlers are given back when it ends. Interrupts and the alarm
need the loop to run in the main thread (signals are delivered there). An
executor in another thread only counts overruns as deadline misses, and none
of this runs under a debugger (``sys.gettrace()``).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from edgeloop.runtime.wiring import NEVER, Runner

INTERRUPT_SIGNAL = signal.SIGUSR2
HUNG_EXIT = 70  # sysexits' EX_SOFTWARE: the process ended because a node hung for good
_MIN_POLL_S, _MAX_POLL_S = 0.005, 0.25
_ALARM_GRACE_NS = 1_000_000_000
# The alarm while no step is seen overrunning: it fires only if this thread is
# starved that long, which a loaded machine must not make happen to a healthy loop.
_MIN_IDLE_ALARM_NS = 2_000_000_000
_log = logging.getLogger("edgeloop.watchdog")


class StepInterrupted(BaseException):
    """Raised in the loop's thread inside a step that ran past its ``watchdog_ms``.

    A BaseException, so that a node's ``except Exception`` does not swallow it.
    """


def _stderr_with_fd() -> Any:
    """Where faulthandler can write: stderr, or the process's own when it is captured."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            stream.fileno()
            return stream
        except (AttributeError, OSError, ValueError):
            continue
    return None


class StepWatchdog:
    """Watches the steps of ``runners`` from a thread of its own.

    Args:
        runners: What to watch; each runner's ``started`` is its running step's
            ``perf_counter_ns`` start (0 when not stepping), ``watchdog_ns`` its limit.
        hard_hang_exit: End the process on a hard hang (off for a loop inside a
            host process that must not be ended, e.g. a notebook).
        on_hard_hang: Called from this thread with the runner and how long its
            step has run (ns) just before a hard hang ends the process.
    """

    def __init__(
        self,
        runners: Iterable[Runner],
        *,
        hard_hang_exit: bool = True,
        on_hard_hang: Callable[[Runner, int], None] | None = None,
    ) -> None:
        # Stand-ins for nodes elsewhere (another process group) never step here.
        self._runners = [r for r in runners if r.watchdog_ns < NEVER and not r.cls.external]
        self._hard_hang_exit = hard_hang_exit
        self._on_hard_hang = on_hard_hang
        self._stderr: Any = None
        self._target: tuple[Runner, int] | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._main_ident = 0
        self._previous: dict[int, Any] = {}
        self._warned: tuple[Runner, int] | None = None

    def start(self) -> bool:
        """Start watching; False (and nothing started) where interrupts are impossible."""
        if (
            not self._runners
            or threading.current_thread() is not threading.main_thread()
            or sys.gettrace() is not None
        ):
            return False
        self._main_ident = threading.get_ident()
        self._previous[INTERRUPT_SIGNAL] = signal.signal(INTERRUPT_SIGNAL, self._on_interrupt)
        stderr = self._stderr = _stderr_with_fd()
        self._hard_hang_exit = self._hard_hang_exit and stderr is not None
        if self._hard_hang_exit:
            self._previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, signal.SIG_DFL)
            # On the alarm: every thread's stack to stderr, then the default action.
            faulthandler.register(signal.SIGALRM, file=stderr, all_threads=True, chain=True)
        shortest = min(r.watchdog_ns for r in self._runners) / 1e9
        poll_s = min(max(shortest / 4, _MIN_POLL_S), _MAX_POLL_S)
        longest = max(r.watchdog_ns for r in self._runners)
        self._thread = threading.Thread(
            target=self._watch, args=(poll_s, longest), name="edgeloop-watchdog", daemon=True
        )
        self._arm(max(2 * longest + int(poll_s * 1e9), _MIN_IDLE_ALARM_NS))
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop watching and give back the signals (safe to call twice)."""
        if self._thread is None:
            return
        self._done.set()
        self._thread.join()
        self._thread = None
        if self._hard_hang_exit:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.unregister(signal.SIGALRM)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _watch(self, poll_s: float, longest_ns: int) -> None:
        idle_ns = max(2 * longest_ns + int(poll_s * 1e9), _MIN_IDLE_ALARM_NS)
        while not self._done.wait(poll_s):
            now = time.perf_counter_ns()
            alarm_at = now + idle_ns  # nothing running long: the switch only guards this thread
            for r in self._runners:
                started = r.started
                if not started or now - started <= r.watchdog_ns:
                    continue
                hard_at = started + 2 * r.watchdog_ns  # the hard-hang limit of this step
                if now >= hard_at and self._hard_hang_exit:
                    self._end_process(r, now - started)
                # The alarm is for when this thread cannot run at all: a little later.
                alarm_at = hard_at + _ALARM_GRACE_NS
                if self._warned != (r, started):  # once a step: it may ignore the first
                    self._warned = (r, started)
                    _log.warning(
                        "node '%s' has run for %.0f ms (limit %.0f ms): interrupting it",
                        r.spec.id,
                        (now - started) / 1e6,
                        r.watchdog_ns / 1e6,
                    )
                self._target = (r, started)
                signal.pthread_kill(self._main_ident, INTERRUPT_SIGNAL)
            self._arm(alarm_at - now)

    def _end_process(self, r: Runner, ran_ns: int) -> None:
        """A hard hang where Python still runs: stacks, the report, exit. Never returns."""
        self._arm(5_000_000_000)  # should the report hang too, the alarm still ends it
        try:
            sys.stdout.flush()
            print(
                f"edgeloop: node '{r.spec.id}' has run one step for {ran_ns / 1e9:.1f} s and "
                f"ignores interrupts; ending the process (exit {HUNG_EXIT}). Its stacks:",
                file=self._stderr,
                flush=True,
            )
            faulthandler.dump_traceback(file=self._stderr, all_threads=True)
            if self._on_hard_hang is not None:
                self._on_hard_hang(r, ran_ns)
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException as exc:  # the exit below must happen whatever this raised
            _log.error("writing the report of a hung loop: %s: %s", type(exc).__name__, exc)
        finally:
            os._exit(HUNG_EXIT)

    def _arm(self, in_ns: int) -> None:
        if self._hard_hang_exit:
            signal.setitimer(signal.ITIMER_REAL, max(in_ns, 1_000_000) / 1e9)

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        # Runs in the loop's thread, so the check below cannot race the step's end.
        target = self._target
        if target is not None and target[0].started == target[1]:
            self._target = None
            runner = target[0]
            raise StepInterrupted(f"still running after {runner.watchdog_ns / 1e6:g} ms")
