"""Real-time options for a loop's process: CPU affinity, a real-time scheduling
priority, locked memory, garbage-collector control, and the timer's spin window.

:class:`Realtime` applies a graph's ``realtime:`` section after the nodes are set
up (so setup's allocations are locked in, and a model's loading is not run at a
real-time priority) and undoes it when the loop ends, so a library caller (a
test, a notebook) gets its process back as it was. Whatever the OS refuses is
an error naming the limit and how to raise it, or, with ``best_effort``, a line
under ``refused`` in the report: never silently ignored.

Linux only for affinity, priority and locking; the garbage-collector control
and the spin window work everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import logging
import os
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop.runtime.errors import RealtimeError

if TYPE_CHECKING:
    from edgeloop.runtime.clocks import RealClock
    from edgeloop.runtime.graph import RealtimeSpec

_log = logging.getLogger("edgeloop.realtime")
MCL_CURRENT = 1
MIN_SLEEP_NS = 50_000
"""Under a real-time priority, the loop sleeps at least this long once per period
of busy time (late or not), so a loop that overruns cannot starve the machine."""

_RT_FIX = (
    "run as root, give Python CAP_SYS_NICE (sudo setcap cap_sys_nice+ep "
    "$(readlink -f $(which python3))), or raise the process's rtprio limit "
    "(ulimit -r 99 in a root shell; '@realtime - rtprio 95' in /etc/security/limits.conf; "
    "LimitRTPRIO=95 in a systemd unit)"
)
_LOCK_FIX = (
    "raise the locked-memory limit (ulimit -l unlimited in a root shell; "
    "'@realtime - memlock unlimited' in /etc/security/limits.conf; LimitMEMLOCK=infinity "
    "in a systemd unit), or give Python CAP_IPC_LOCK"
)


class GcWatch:
    """Counts garbage collections and times their pauses (through ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.collections = 0
        self.total_ns = 0
        self.max_ns = 0
        self._start_ns = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start_ns = time.perf_counter_ns()
            return
        pause = time.perf_counter_ns() - self._start_ns
        self.collections += 1
        self.total_ns += pause
        self.max_ns = max(self.max_ns, pause)


class Realtime:
    """One loop's real-time settings: applied by :meth:`apply`, undone by :meth:`restore`.

    Args:
        spec: The graph's ``realtime:`` section (with the process group's CPUs).
        clock: The loop's real-time clock, whose spin window and sleeps this sets;
            None in simulated time, where only the garbage-collector control applies.
        shortest_period_ns: The loop's shortest timer period: the spin window is
            held under half of it, and under a real-time priority the loop sleeps
            once per such period of busy time.
    """

    def __init__(
        self, spec: RealtimeSpec, clock: RealClock | None, shortest_period_ns: int | None
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.shortest_period_ns = shortest_period_ns
        self.refused: list[str] = []
        self.applied: dict[str, Any] = {}
        self.gc_watch = GcWatch()
        self.gc_between_ticks = spec.gc == "between_ticks"
        self._undo: list[Any] = []

    # -- applying -------------------------------------------------------------------

    def apply(self) -> None:
        """Apply every option; raise :class:`RealtimeError` for the first the OS
        refuses (after undoing the others), unless ``best_effort``."""
        try:
            for option in (self._spin, self._affinity, self._memory, self._gc, self._priority):
                try:
                    option()
                except RealtimeError as refused:
                    if not self.spec.best_effort:
                        raise
                    self.refused.append(str(refused))
                    _log.warning("refused, running without it: %s", refused)
        except BaseException:
            self.restore()
            raise
        gc.callbacks.append(self.gc_watch)  # the loop's collections, not setup's
        self._undo.append(lambda: gc.callbacks.remove(self.gc_watch))

    def _spin(self) -> None:
        if self.clock is None:
            return
        # The graph's window when it sets one; else the clock's own (a caller's RealClock)
        spin_ns = self.clock.spin_ns
        if "spin_us" in self.spec.model_fields_set:
            spin_ns = int(self.spec.spin_us * 1000)
        if self.shortest_period_ns is not None and spin_ns > self.shortest_period_ns // 2:
            spin_ns = self.shortest_period_ns // 2  # a spin never fills a period
        self.clock.spin_ns = spin_ns
        self.applied["spin_window_us"] = spin_ns / 1000

    def _affinity(self) -> None:
        cpus = self.spec.cpus
        if cpus is None or self.clock is None:
            return
        if not hasattr(os, "sched_setaffinity"):
            raise RealtimeError("CPU affinity is not available on this OS", fix="leave out cpus")
        threads = _threads()
        before = {tid: os.sched_getaffinity(tid) for tid in threads}
        allowed = os.sched_getaffinity(0)
        try:
            for tid in threads:  # every thread: ONNX Runtime's pool, node threads
                os.sched_setaffinity(tid, cpus)
        except OSError as exc:
            for tid, mask in before.items():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, mask)
            if exc.errno == errno.EINVAL:
                named = f"CPUs {_cpu_list(cpus)} are" if len(cpus) > 1 else f"CPU {cpus[0]} is"
                raise RealtimeError(
                    f"{named} not among those this process may use "
                    f"({_cpu_list(allowed)} of {os.cpu_count()})",
                    fix="pick cpus from that list (a container or cgroup may hide the others)",
                    where="realtime.cpus",
                ) from None
            raise RealtimeError(
                f"setting CPU affinity failed: {exc.strerror}", where="realtime.cpus"
            ) from None

        def undo() -> None:
            for tid, mask in before.items():
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    os.sched_setaffinity(tid, mask)

        self._undo.append(undo)
        self.applied["cpus"] = sorted(cpus)

    def _memory(self) -> None:
        if not self.spec.lock_memory or self.clock is None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(MCL_CURRENT) != 0:
            code = ctypes.get_errno()
            soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
            limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft / 2**20:g} MiB"
            raise RealtimeError(
                f"locking memory refused ({os.strerror(code)}): the process maps "
                f"{_status_mib('VmSize'):.0f} MiB and may lock {limit} "
                "without CAP_IPC_LOCK",
                fix=_LOCK_FIX,
                where="realtime.lock_memory",
            )
        self._undo.append(libc.munlockall)
        self.applied["locked_mib"] = round(_status_mib("VmLck"), 1)

    def _gc(self) -> None:
        if self.spec.gc == "default":
            return
        was_enabled = gc.isenabled()
        gc.collect()  # setup's garbage goes now, not in the first ticks
        gc.freeze()  # what setup made is never scanned again
        gc.disable()

        def undo() -> None:
            gc.unfreeze()
            if was_enabled:
                gc.enable()

        self._undo.append(undo)

    def _priority(self) -> None:
        if self.spec.priority is None or self.clock is None:
            return
        policy = os.SCHED_FIFO if self.spec.policy == "fifo" else os.SCHED_RR
        name = f"SCHED_{self.spec.policy.upper()} {self.spec.priority}"
        try:  # pid 0 is this thread: the loop's, not the nodes' own threads
            before = os.sched_getscheduler(0), os.sched_getparam(0)
            os.sched_setscheduler(0, policy, os.sched_param(self.spec.priority))
        except OSError as exc:
            soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
            raise RealtimeError(
                f"{name} refused ({exc.strerror}): this process lacks CAP_SYS_NICE and "
                f"may take real-time priorities up to {soft} (RLIMIT_RTPRIO)",
                fix=_RT_FIX,
                where="realtime.priority",
            ) from None
        self._undo.append(lambda: os.sched_setscheduler(0, *before))
        if self.clock is not None and self.shortest_period_ns is not None:
            self.clock.busy_limit_ns = self.shortest_period_ns
            self.clock.min_sleep_ns = MIN_SLEEP_NS
        self.applied["scheduler"] = name

    # -- while the loop runs ------------------------------------------------------

    def collect_between_ticks(self) -> None:
        """A collection when one is due, called by the loop after a tick's steps."""
        count, thresholds = gc.get_count(), gc.get_threshold()
        if count[0] < thresholds[0]:
            return
        generation = 2 if count[2] >= thresholds[2] else 1 if count[1] >= thresholds[1] else 0
        gc.collect(generation)

    # -- ending -------------------------------------------------------------------

    def restore(self) -> None:
        """Undo what was applied, last first (the loop's thread calls it)."""
        while self._undo:
            with contextlib.suppress(OSError):
                self._undo.pop()()

    def figures(self, wall_s: float) -> dict[str, Any]:
        """What the report shows: the options in force, what was refused, the
        garbage collections and their pauses, and the CPU the spin cost."""
        figures: dict[str, Any] = {**self.applied, "gc": self.spec.gc.replace("_", " ")}
        watch = self.gc_watch
        figures["gc_collections"] = watch.collections
        figures["gc_pause_max_ms"] = round(watch.max_ns / 1e6, 3)
        figures["gc_pause_total_ms"] = round(watch.total_ns / 1e6, 3)
        if self.clock is not None and wall_s > 0:
            figures["spin_cpu_percent"] = round(100 * self.clock.spun_ns / 1e9 / wall_s, 2)
        if self.refused:
            figures["refused"] = list(self.refused)
        return figures


def _threads() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _cpu_list(cpus: Any) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` size (VmSize, VmLck, VmRSS) in MiB; 0 when absent."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0
