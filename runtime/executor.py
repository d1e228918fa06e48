"""The executor: timers, a ready queue and run-to-completion propagation.

``Executor._loop`` is the per-tick path; what happens around each node's own
``step`` is generated for that node when the loop starts
(:mod:`edgeloop.runtime.dispatch`). A timer fires (a periodic node, a ``timer/..`` input or
a stale-input watchdog); the node steps; its outputs are written into the
inputs of the nodes wired to them, and the nodes they trigger run next (at
once when nothing else triggers them, else through the ready queue, which
drains before the next timer). Plugins' hooks fire only on lifecycle events,
deadline misses and faults, and a plugin's exception never ends the loop.
"""

from __future__ import annotations

import functools
import heapq
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from edgeloop.runtime.building import CompiledLoop
from edgeloop.runtime.clocks import Clock, RealClock, SimClock
from edgeloop.runtime.device_tensors import DeviceTensor
from edgeloop.runtime.dispatch import LoopCalls, compile_steps
from edgeloop.runtime.errors import UsageError
from edgeloop.runtime.faults import FaultHandler
from edgeloop.runtime.graph import LoopGraph
from edgeloop.runtime.limits import MAX_DURATION_S
from edgeloop.runtime.messages import Message, payload_is_finite, payload_problem
from edgeloop.runtime.metrics import ReportBuilder, RunReport, run_duration
from edgeloop.runtime.node import Node
from edgeloop.runtime.plugins import PluginRegistry, fire_hook
from edgeloop.runtime.realtime import Realtime
from edgeloop.runtime.validation import check_graph
from edgeloop.runtime.watchdog import StepInterrupted, StepWatchdog
from edgeloop.runtime.wiring import NEVER, ContractState, OutPort, Runner, Timer, make_safe

_WAKE_MARGIN_S = 0.0005  # a wait for a wake ends this early; the clock's own wait does the rest
_FOLD_EVERY = 4096  # ticks of a timer between folds of the latency recorders (a power of 2)
_log = logging.getLogger("edgeloop.executor")


class Executor:
    """Runs a loop graph in one process.

    Args:
        graph: The loop graph; validated against ``registry`` when the run starts.
        registry: Node types and plugins; by default, everything installed.
        simulated: Use the simulated clock (deterministic, as fast as possible).
        seed: Seed of every node's ``ctx.rng`` and of simulated plants.
        clock: A clock to use instead of the default for ``simulated``.
        recorder: Record every message into it (``edgeloop.runtime.recording``);
            the caller closes it after the run.
        bridge: Links to the other process groups of a graph split across
            processes (``edgeloop.runtime.processes.bridge``): it sends what local nodes
            publish to remote ones, hands in what arrives, and decides when the
            run ends. Set by the group worker, not by users.
        hard_hang_exit: End the process when a step hangs where it cannot be
            interrupted (:mod:`edgeloop.runtime.watchdog`); False in a host process
            that must live on, e.g. a notebook (the loop then waits for the step).
        on_hard_hang: Called with the report of the run so far before such an end,
            where Python can still run (the step ignores interrupts but leaves the
            GIL free): to write it, print it, close a recording. From the
            watchdog's thread.
    """

    def __init__(
        self,
        graph: LoopGraph,
        *,
        registry: PluginRegistry | None = None,
        simulated: bool = False,
        seed: int = 0,
        clock: Clock | None = None,
        recorder: Any = None,
        bridge: Any = None,
        hard_hang_exit: bool = True,
        on_hard_hang: Callable[[RunReport], None] | None = None,
    ) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise UsageError(f"seed must be a whole number >= 0, got {seed!r}", fix="pass one")
        self.graph = graph
        self.registry = registry if registry is not None else PluginRegistry()
        self.clock: Clock = clock or (SimClock() if simulated else RealClock())
        self.simulated = self.clock.simulated
        self.seed = seed
        self._stop_reason: str | None = None
        self._stopped_by_fault = False
        self._started = False
        self._ready: deque[Runner] = deque()
        self._woken: deque[Runner] = deque()  # nodes a thread of theirs asked to step (ctx.wake)
        self._wake_event = threading.Event()
        self._wakeable = False  # some node may wake the loop: wait on the event, not a sleep
        self._resources: dict[str, Any] = {}
        self._series: dict[str, list[float]] = {}
        self._fault_log: list[dict[str, Any]] = []
        self._loop_parts = CompiledLoop()
        self._recorder = recorder
        self._bridge = bridge
        self._hard_hang_exit = hard_hang_exit
        self._on_hard_hang = on_hard_hang
        self._heap: list[tuple[int, int, Timer]] = []
        self._realtime = Realtime(graph.realtime, None, None)  # replaced at run
        self._group = bridge.plan.name if bridge is not None else "main"
        self._firing: Timer | None = None
        self._replanned = False  # a timer moved since the bridge was last told

    # -- running ----------------------------------------------------------------

    def run(self, duration_s: float | None = None) -> RunReport:
        """Run until ``duration_s`` of clock time has passed, a ``stop`` fault,
        Ctrl-C, or nothing is left to run; return the report. An executor runs once.

        Raises:
            GraphError: the graph is invalid (every problem listed).
            NodeSetupError: a node's ``setup`` raised.
            EdgeloopError: a bad duration, or a second run of this executor.
        """
        if self._started:
            raise UsageError("this Executor has run already", fix="make a new one per run")
        if duration_s is None and self.simulated:
            raise UsageError("a simulated run needs a duration", fix="pass duration_s / --duration")
        if duration_s is not None and not (0 < duration_s <= MAX_DURATION_S):
            raise UsageError(
                f"the duration must be a positive number of seconds up to {MAX_DURATION_S:g} "
                f"(ten years), got {duration_s:g}",
                fix="e.g. duration_s=10",
            )
        self._started = True
        check_graph(self.graph, self.registry)
        self._event("edgeloop_graph_loaded", graph=self.graph)
        try:
            self._loop_parts = CompiledLoop.build(
                self.graph,
                self.registry,
                clock=self.clock,
                seed=self.seed,
                resources=self._resources,
                series=self._series,
            )
            self._attach_taps()
        except BaseException:  # nodes set up so far are closed; what they shared too
            self._loop_parts.close_all()
            self._close_resources()
            raise
        self._faults = FaultHandler(
            clock=self.clock,
            publish=self._publish,
            stop=self._stop_for_fault,
            hook=lambda **kw: self._event("edgeloop_node_faulted", **kw),
            fallbacks=self._loop_parts.fallbacks,
            log=self._fault_log,
        )
        periods = [t.period_ns for t in self._loop_parts.timers]
        self._realtime = Realtime(
            self.graph.realtime,
            self.clock if isinstance(self.clock, RealClock) else None,
            min(periods) if periods else None,
        )
        try:  # after setup: what setup allocated is locked, models load unprioritised
            self._realtime.apply()
        except BaseException:
            self._loop_parts.close_all()
            self._close_resources()
            raise
        end_ns = NEVER if duration_s is None else int(duration_s * 1e9)
        self._enable_wakes()
        resume_ns = self._bridge.resume_ns if self._bridge is not None else 0
        for i, timer in enumerate(self._loop_parts.timers):
            timer.ticks = timer.first_tick = -(-resume_ns // timer.period_ns)
            timer.due, timer.order = timer.ticks * timer.period_ns, i
        heap = [(t.due, t.order, t) for t in self._loop_parts.timers]
        self._heap = heap
        self._loop_parts.replan = self._replan
        heapq.heapify(heap)
        wall_start = time.perf_counter()
        watchdog = StepWatchdog(
            self._loop_parts.runners.values(),
            hard_hang_exit=self._hard_hang_exit,
            on_hard_hang=lambda r, ns: self._hung_for_good(r, ns, duration_s, wall_start),
        )
        # From here a Ctrl-C (or SIGTERM, under a service) at any point still closes
        # the nodes and ends with a report.
        try:
            self._event(
                "edgeloop_loop_started", graph=self.graph, simulated=self.simulated, seed=self.seed
            )
            _log.info("loop '%s' started: %d nodes", self.graph.name, len(self.graph.nodes))
            wall_start = time.perf_counter()
            self.clock.start()
            watchdog.start()
            self._loop(heap, end_ns)
            if self._stop_reason is None:
                if self._bridge is not None:
                    self._stop_reason = self._bridge.stop_reason
                else:
                    ran_on = heap or self._wakeable  # a node's thread could still wake it
                    self._stop_reason = "duration reached" if ran_on else "nothing left to run"
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
        finally:
            wall_s = time.perf_counter() - wall_start  # the loop's time, not its closing
            reached_ns = self.clock.now_ns()
            self._realtime.restore()  # closing nodes is not real-time work
            try:
                self._loop_parts.close_all()  # each close bounded: the watchdog still runs
            finally:
                watchdog.stop()
            self._close_resources()
            if self._bridge is not None:
                self._bridge.close()
        report = self._report(duration_s, wall_s, reached_ns / 1e9)
        _log.info("loop '%s' stopped after %.1f s: %s", self.graph.name, wall_s, self._stop_reason)
        self._event("edgeloop_loop_stopped", graph=self.graph, report=report)
        return report

    def busy_s(self) -> float:
        """How long the step running now has been running (0.0 between steps): for a
        thread outside the loop that checks it is alive, e.g. the systemd watchdog."""
        started = [r.started for r in self._loop_parts.runners.values() if r.started]
        return (time.perf_counter_ns() - min(started)) / 1e9 if started else 0.0

    def node(self, node_id: str) -> Node:
        """The live node object of ``node_id`` (during or after a run), e.g. to read
        what a test sink received. KeyError if the run has not built it."""
        return self._loop_parts.runners[node_id].node

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to end once the current timer firing's work is done
        (safe from another thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._wake_event.set()  # a loop waiting for a wake looks now

    def _attach_taps(self) -> None:
        """Give every output port (and timer tick) what must see its messages: the
        recorder, and the bridge's senders to other process groups."""
        loop = self._loop_parts
        if self._recorder is not None:
            flush = getattr(self._recorder, "flush", None)
            for runner in loop.runners.values():  # an episode's end reaches the file at once
                runner.ctx._on_record = flush
            write = self._recorder.write
            ports = [(r.spec.id, p) for r in loop.runners.values() for p in r.out_ports.values()]
            ports += [(t.runner.spec.id, t.port) for t in loop.timers if t.port is not None]
            for node_id, port in ports:
                if not getattr(loop.runners[node_id].node, "external", False):
                    port.taps.append(functools.partial(write, f"/{node_id}/{port.name}"))
        if self._bridge is not None:
            self._bridge.attach(loop, self.clock)

    def _enable_wakes(self) -> None:
        """Let the nodes that step on their own thread's data (``wakes``, no
        ``rate_hz``) wake the loop: in real time, in one process."""
        can_wake = not self.simulated and self._bridge is None
        for runner in self._loop_parts.runners.values():
            if not runner.cls.wakes or runner.spec.rate_hz is not None:
                continue
            if can_wake:
                runner.ctx._on_wake = functools.partial(self._wake, runner)
                self._wakeable = True
            else:  # said in the report, and logged: it will not step at all
                why = "simulated time" if self.simulated else "a process group"
                said = f"never: in {why} nothing wakes it; give it rate_hz"
                runner.ctx.note("steps", said)
                _log.warning("node '%s' steps %s", runner.spec.id, said)

    def _wake(self, runner: Runner) -> None:
        self._woken.append(runner)  # deque appends are atomic: any thread may call this
        self._wake_event.set()

    def _replan(self, timer: Timer, rate_hz: float | None) -> None:
        """Move ``timer`` to ``rate_hz`` from now, its next tick one new period away,
        or stop it (None): a sensing command's doing."""
        self._replanned = True
        if rate_hz is None:
            timer.disabled = True
            timer.due = NEVER  # its heap entry is stale now, dropped when it comes up
            return
        period = max(1, round(1e9 / rate_hz))
        now = self.clock.now_ns()
        timer.period_ns = period
        timer.disabled = False
        if timer is self._firing:  # the loop reschedules it after this firing, a tick on
            timer.origin = now + period - (timer.ticks + 1) * period
            return
        timer.origin = now + period - timer.ticks * period
        timer.due = now + period
        heapq.heappush(self._heap, (timer.due, timer.order, timer))

    def _hung_for_good(self, r: Runner, ns: int, asked_s: float | None, wall_start: float) -> None:
        """The watchdog's last word on a step that ignores its interrupts: count it,
        and hand the report of the run so far to ``on_hard_hang`` (from the
        watchdog's thread, while the step still runs; the process ends after)."""
        r.faults["hung"] = r.faults.get("hung", 0) + 1
        r.record(ns)  # the step still running is in the figures
        for other in self._loop_parts.runners.values():  # every other device, safe first
            if other is not r and not other.closed:
                make_safe(other, "hung", watched=False)
        self._stopped_by_fault = True
        self._stop_reason = (
            f"node '{r.spec.id}' hung: its step ran {ns / 1e9:.1f} s and ignored every "
            "interrupt, so the process ended"
        )
        if self._on_hard_hang is not None:
            wall_s = time.perf_counter() - wall_start
            self._on_hard_hang(self._report(asked_s, wall_s, self.clock.now_ns() / 1e9))

    def _stop_for_fault(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stopped_by_fault = True
        self.stop(reason)

    def _event(self, hook: str, **kwargs: Any) -> None:
        """Fire a lifecycle or event hook; a plugin raising is logged, never fatal."""
        time_s = self.clock.now_ns() / 1e9
        fire_hook(self.registry, hook, kwargs, fault_log=self._fault_log, time_s=time_s)

    def _close_resources(self) -> None:
        """Close what nodes shared through ``ctx.shared`` (a plant's environment, say),
        once every node is closed: the loop owns them, not any one node."""
        for resource in self._resources.values():
            close = getattr(resource, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    _log.warning("closing a shared resource raised %s: %s", type(exc).__name__, exc)

    def _loop(self, heap: list[tuple[int, int, Timer]], end_ns: int) -> None:
        # Everything a node's run touches is a local or closure variable:
        # attribute lookups cost more than the work of a small node.
        clock_now = self.clock.now_ns
        wait_until = self.clock.wait_until
        simulated = self.simulated
        ready = self._ready
        ready_append = ready.append
        popleft = ready.popleft
        heapreplace = heapq.heapreplace
        publish = self._publish
        recorders = self._loop_parts.recorders()
        bridge = self._bridge
        collect_between_ticks = self._realtime.collect_between_ticks
        gc_between_ticks = self._realtime.gc_between_ticks
        now_s = 0.0

        compile_steps(
            list(self._loop_parts.runners.values()),
            LoopCalls(
                guard=self._guard,
                step_failed=self._step_failed,
                node_missed=self._node_deadline_missed,
                contract_missed=self._contract_deadline_missed,
                sensed_of=self._sensed,
                publish=publish,
                deliver_fifo=self._deliver_fifo,
                check_outputs=self._faults.check_outputs,
                fault=self._faults.handle,
                finite=payload_is_finite,
                payload_problem=payload_problem,
                ready_append=ready_append,
                perf=time.perf_counter_ns,
                clock=self.clock,
                simulated=simulated,
            ),
        )

        def tick_publisher(timer: Timer) -> Callable[[], None]:
            def publish_tick() -> None:
                publish(timer.runner, {}, now_s, now_s, tick=timer.port)

            return publish_tick

        for timer in self._loop_parts.timers:
            if timer.watched is not None:
                timer.fire = self._faults.watchdog(timer.runner, timer.watched)
            elif timer.port is not None:
                timer.fire = tick_publisher(timer)
            else:
                timer.fire = timer.runner.run

        def deliver(messages: list[tuple[Runner, str, Any, float, float]]) -> bool:
            """Messages from other processes, each published by the node standing in
            for its sender here; then everything they trigger, run to completion
            (so the outputs of one remote step arrive together, as in one process).
            True when that moved a timer (a sensing command: the next due changed)
            or stopped the loop (a fault under a ``stop`` policy): the loop looks again."""
            nonlocal now_s
            now_s = clock_now() * 1e-9
            self._replanned = False
            for runner, port, data, created, sensed in messages:
                publish(runner, {port: data}, created, sensed)
            while ready:
                receiver = popleft()
                receiver.queued = False
                receiver.run()
            if gc_between_ticks:
                collect_between_ticks()
            replanned, self._replanned = self._replanned, False
            return replanned or self._stop_reason is not None

        wakeable = self._wakeable
        woken, wake_event = self._woken, self._wake_event

        def wait_or_wake(due: int) -> bool:
            """Sleep until shortly before ``due``; True if a node asked for a step (or
            ``stop`` was called) first."""
            if woken:
                return True
            ahead_s = min((due - clock_now()) * 1e-9 - _WAKE_MARGIN_S, 3600.0)
            return ahead_s > 0 and wake_event.wait(ahead_s)

        def run_woken() -> None:
            wake_event.clear()  # before taking: a wake from now on sets it again
            while woken:
                runner = woken.popleft()
                if not runner.queued:
                    runner.queued = True
                    ready_append(runner)
            while ready:
                runner = popleft()
                runner.queued = False
                runner.run()
            if gc_between_ticks:
                collect_between_ticks()

        timers_only = bridge is None and not wakeable
        while self._stop_reason is None:
            if timers_only:  # the common case first
                if not heap:
                    break
                due, order, timer = heap[0]
                if due != timer.due:  # a timer moved to a new rate
                    heapq.heappop(heap)
                    continue
                if due >= end_ns:
                    break
                now = wait_until(due)
            elif heap and heap[0][0] != heap[0][2].due:
                heapq.heappop(heap)
                continue
            elif wakeable:  # a node's thread may ask for a step before the next timer
                due, order, timer = heap[0] if heap else (end_ns, -1, None)
                if due >= end_ns:
                    due, timer = end_ns, None
                if wait_or_wake(due):
                    run_woken()
                    continue
                if timer is None:
                    break
                now = wait_until(due)
            else:  # the bridge ends the run; until then, messages come in between timers
                due, order, timer = heap[0] if heap else (NEVER, -1, None)
                if due >= end_ns and not simulated:  # the supervisor ends the run
                    due, order, timer = NEVER, -1, None
                now = bridge.wait(due, order, deliver)
                if now is None:
                    break
                if now < 0 or timer is None:  # a timer moved: look at the heap again
                    continue
            now_s = now * 1e-9
            if not simulated:
                timer.jitter.samples.append(now - due)
            self._firing = timer
            timer.fire()
            while ready:
                runner = popleft()
                runner.queued = False
                runner.run()
            self._firing = None
            if gc_between_ticks:
                collect_between_ticks()
            if timer.disabled:  # a sensing command turned its sensor off meanwhile
                heapq.heappop(heap)
                continue
            # Next due time on the timer's own grid: no drift. In real time, the
            # ticks that passed while we were late are skipped and counted.
            timer.ticks += 1
            next_due = timer.origin + timer.ticks * timer.period_ns
            if not simulated:
                now = clock_now()
                if next_due <= now:
                    behind = (now - next_due) // timer.period_ns + 1
                    timer.overruns += behind
                    timer.ticks += behind
                    next_due += behind * timer.period_ns
            timer.due = next_due
            heapreplace(heap, (next_due, order, timer))
            if not timer.ticks & (_FOLD_EVERY - 1):
                for recorder in recorders:
                    recorder.fold_if_large()

    def _step_failed(self, r: Runner, exc: BaseException) -> None:
        # What the step was given is spent: a message that crashed the node is
        # neither fed to it again nor later counted as a drop.
        r.started = 0
        for slot in r.slots:
            slot.consume()
        r.ctx._sensed_at = None
        if isinstance(exc, StepInterrupted):
            self._faults.handle(r, "hung", f"step {exc} (watchdog_ms)")
        else:
            self._faults.handle(r, "exception", f"{type(exc).__name__}: {exc}")

    def _guard(self, r: Runner) -> bool:
        """Checks before a step that most nodes skip: True means do not step now."""
        if r.down_until and not self._faults.restart(r):
            return True
        for slot in r.stale_slots:
            if self._faults.is_stale(r, slot):
                return True
        for slot in r.fifo_slots:
            r.inputs[slot.name] = slot.take_pending()
        return False

    def _sensed(self, r: Runner, created: float) -> float:
        """Oldest sensing time among the inputs read fresh this step (else among all
        held); timer ticks are not sensing and do not count."""
        fresh = math.inf
        for slot in r.slots:
            fresh = min(fresh, slot.consume())
        if fresh != math.inf:
            return fresh
        held = min(
            (s.source.last_sensed for s in r.slots if s.source.seq and not s.not_sensing),
            default=math.inf,
        )
        return held if held != math.inf else created

    def _publish(
        self,
        r: Runner,
        out: Mapping[str, Any],
        created: float,
        sensed: float,
        tick: OutPort | None = None,
    ) -> None:
        """Deliver outputs (or a timer's tick) off the single-output fast path."""
        if tick is not None:
            items = [(tick, created)]
        else:  # a None payload means no message on that port
            items = [(r.out_ports[k], v) for k, v in out.items() if v is not None]
        for port, data in items:
            port.seq += 1
            port.last_data = data
            port.last_created = created
            port.last_sensed = sensed
            if type(data) is DeviceTensor:
                self._hand_on_device(port, data, created, sensed)
            else:
                for tap in port.taps:
                    tap(data, port.seq - 1, created, sensed)
                for inputs, input_name, receiver in port.edges:
                    inputs[input_name] = data
                    if receiver is not None and not receiver.queued:
                        receiver.queued = True
                        self._ready.append(receiver)
            if port.fifo_slots:
                self._deliver_fifo(port)
            if port.direct is not None and not port.direct.queued:
                port.direct.queued = True
                self._ready.append(port.direct)

    def _hand_on_device(
        self, port: OutPort, data: DeviceTensor, created: float, sensed: float
    ) -> None:
        """A device tensor to the taps and latest-value inputs: itself to model nodes,
        one host copy to the rest (the rule of :mod:`edgeloop.runtime.device_tensors`)."""
        if port.taps:
            host = data.host("recorder or another process")
            for tap in port.taps:
                tap(host, port.seq - 1, created, sensed)
        readers = port.host_readers
        for (inputs, input_name, receiver), reader in zip(port.edges, readers, strict=True):
            inputs[input_name] = data if reader is None else data.host(reader)
            if receiver is not None and not receiver.queued:
                receiver.queued = True
                self._ready.append(receiver)

    def _deliver_fifo(self, port: OutPort) -> None:
        msg = port.last_message()
        on_device = msg is not None and type(msg.data) is DeviceTensor
        for slot in port.fifo_slots:
            if len(slot.pending) == slot.size:
                slot.drops += 1  # the deque drops its oldest on append
            if on_device and not slot.runner.cls.takes_device_tensors:
                data = msg.data.host(f"node '{slot.runner.spec.id}'")
                slot.pending.append(Message(data, msg.seq, msg.created, msg.sensed))
            else:
                slot.pending.append(msg)
            if slot.trigger and not slot.runner.queued:
                slot.runner.queued = True
                self._ready.append(slot.runner)

    def _node_deadline_missed(self, r: Runner, took_ns: int) -> None:
        r.misses += 1
        self._event(
            "edgeloop_deadline_missed",
            node_id=r.spec.id,
            contract=None,
            latency_s=took_ns / 1e9,
            deadline_s=r.deadline_ns / 1e9,
            time_s=self.clock.now_ns() / 1e9,
        )

    def _contract_deadline_missed(self, state: ContractState, latency_s: float) -> None:
        state.misses += 1
        self._event(
            "edgeloop_deadline_missed",
            node_id=None,
            contract=state.spec.name,
            latency_s=latency_s,
            deadline_s=state.deadline_s,
            time_s=self.clock.now_ns() / 1e9,
        )

    # -- report -------------------------------------------------------------------

    def _report(self, asked_s: float | None, wall_s: float, reached_s: float) -> RunReport:
        loop = self._loop_parts
        figures_s = run_duration(  # sensing figures count against the time that ran
            simulated=self.simulated,
            stop_reason=self._stop_reason or "",
            asked_s=asked_s,
            reached_s=reached_s,
            wall_s=wall_s,
        )
        builder = ReportBuilder(self.graph, simulated=self.simulated, seed=self.seed)
        builder.add(
            nodes=loop.node_stats(figures_s, int(reached_s * 1e9)),
            contracts=loop.contract_stats(),
            timers=loop.timer_stats(),
            series=self._series,
            fault_log=self._fault_log,
            reached_s=reached_s,
            realtime={self._group: self._realtime.figures(wall_s)},
        )
        return builder.build(
            stop_reason=self._stop_reason or "",
            stopped_by_fault=self._stopped_by_fault,
            asked_s=asked_s,
            wall_s=wall_s,
            recording=self._recorder.summary() if self._recorder is not None else None,
        )
