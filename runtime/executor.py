"""The executor: timers, a ready queue and run-to-completion propagation.

This file is the whole per-tick path, kept in one place on purpose. A timer
fires (a periodic node or a ``timer/..`` input); the node steps; its outputs
are delivered to the input slots of the nodes wired to them, and those that
the message triggers join the ready queue; the queue drains before the next
timer. Plugins' hooks fire only on lifecycle events and faults.
"""

from __future__ import annotations

import heapq
import math
import time
import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeloop.runtime.clocks import Clock, RealClock, SimClock
from edgeloop.runtime.errors import EdgeloopError
from edgeloop.runtime.graph import LoopGraph, NodeSpec, timer_period_ns
from edgeloop.runtime.messages import Message
from edgeloop.runtime.metrics import (
    ContractStats,
    LatencyRecorder,
    NodeStats,
    RunReport,
    TimerStats,
)
from edgeloop.runtime.node import Node, NodeContext, Port, build_config, port_list
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.validation import check_graph, node_class

_NEVER = 1 << 62
_FOLD_EVERY = 4096  # timer firings between folds of the latency recorders


class NodeSetupError(EdgeloopError):
    """Raised when a node's ``setup`` fails before the loop starts."""

    def __init__(self, node_id: str, error: BaseException) -> None:
        self.node_id = node_id
        super().__init__(f"node '{node_id}' failed in setup: {type(error).__name__}: {error}")


class _Slot:
    """The receiving end of one input port."""

    __slots__ = ("drops", "fifo", "msg", "name", "pending", "runner", "sensed", "size",
                 "stale_s", "trigger", "unread")

    def __init__(self, runner: _Runner, name: str, fifo: bool, size: int, trigger: bool,
                 stale_s: float | None) -> None:
        self.runner = runner
        self.name = name
        self.fifo = fifo
        self.size = size
        self.trigger = trigger
        self.stale_s = stale_s
        self.msg: Message | None = None
        self.pending: deque[Message] = deque(maxlen=size)
        self.unread = False
        self.sensed = math.inf  # oldest sensing among unread messages (or of the last one)
        self.drops = 0


class _OutPort:
    __slots__ = ("edges", "is_float", "last", "name", "seq")

    def __init__(self, port: Port) -> None:
        self.name = port.name
        self.is_float = port.is_float
        self.edges: list[_Slot] = []
        self.seq = 0
        self.last: Message | None = None


class _Runner:
    """A node object plus everything the executor keeps about it."""

    __slots__ = ("cls", "consecutive_faults", "contracts", "ctx", "deadline_ns", "down_until",
                 "fifo_slots", "inputs", "is_source", "latency", "misses", "node", "out_ports",
                 "queued", "restarts", "skipped", "slots", "spec", "stale_slots", "step",
                 "faults")

    def __init__(self, spec: NodeSpec, cls: type[Node], node: Node, ctx: NodeContext) -> None:
        self.spec = spec
        self.cls = cls
        self.node = node
        self.step = node.step
        self.ctx = ctx
        self.inputs: dict[str, Any] = {}
        self.slots: list[_Slot] = []
        self.fifo_slots: list[_Slot] = []
        self.stale_slots: list[_Slot] = []
        self.out_ports: dict[str, _OutPort] = {}
        self.contracts: list[tuple[_ContractState, _Slot]] = []
        self.is_source = True
        self.queued = False
        self.deadline_ns = _NEVER if spec.deadline_ms is None else int(spec.deadline_ms * 1e6)
        self.latency = LatencyRecorder()
        self.misses = 0
        self.faults: dict[str, int] = {}
        self.restarts = 0
        self.consecutive_faults = 0
        self.down_until = 0  # ns; non-zero while a restart waits out its backoff
        self.skipped = 0


class _ContractState:
    __slots__ = ("deadline_s", "latency", "misses", "spec")

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.deadline_s = spec.deadline_ms / 1e3
        self.latency = LatencyRecorder()
        self.misses = 0


class _Timer:
    __slots__ = ("fired", "jitter", "overruns", "period_ns", "runner", "slot", "source", "start_ns",
                 "ticks")

    def __init__(self, source: str, period_ns: int, runner: _Runner, slot: _Slot | None) -> None:
        self.source = source
        self.period_ns = period_ns
        self.runner = runner
        self.slot = slot
        self.ticks = 0
        self.start_ns = 0
        self.fired = 0
        self.overruns = 0
        self.jitter = LatencyRecorder()


class Executor:
    """Runs a loop graph in one process.

    Args:
        graph: The loop graph; validated against ``registry`` when the run starts.
        registry: Node types and plugins; by default, everything installed.
        simulated: Use the simulated clock (deterministic, as fast as possible).
        seed: Seed of every node's ``ctx.rng`` and of simulated plants.
        clock: A clock to use instead of the default for ``simulated``.
    """

    def __init__(
        self,
        graph: LoopGraph,
        *,
        registry: PluginRegistry | None = None,
        simulated: bool = False,
        seed: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.graph = graph
        self.registry = registry if registry is not None else PluginRegistry()
        self.clock: Clock = clock or (SimClock() if simulated else RealClock())
        self.simulated = self.clock.simulated
        self.seed = seed
        self._stop_reason: str | None = None
        self._ready: deque[_Runner] = deque()
        self._now_s = 0.0
        self._runners: dict[str, _Runner] = {}
        self._timers: list[_Timer] = []
        self._contracts: list[_ContractState] = []
        self._resources: dict[str, Any] = {}
        self._series: dict[str, list[float]] = {}
        self._fault_log: list[dict[str, Any]] = []
        self._fallbacks: dict[str, _Runner] = {}

    # -- building ---------------------------------------------------------------

    def _build(self) -> None:
        for name, cls in self.graph.local_types.items():
            self.registry.add_node_type(name, cls)
        check_graph(self.graph, self.registry)
        self.registry.hook.edgeloop_graph_loaded(graph=self.graph)
        try:
            for spec in self.graph.nodes:
                self._runners[spec.id] = self._make_runner(spec)
        except BaseException:
            self._close_all()
            raise
        for runner in self._runners.values():
            self._wire(runner)
        for spec in self.graph.contracts:
            state = _ContractState(spec)
            self._contracts.append(state)
            end = self._runners[spec.path[-1]]
            slot = next(s for s in end.slots if _source_of(end, s) == spec.path[-2])
            end.contracts.append((state, slot))
        for spec in self.graph.nodes:
            if spec.on_fault.action == "fallback":
                self._fallbacks[spec.id] = self._runners[spec.on_fault.fallback]

    def _make_runner(self, spec: NodeSpec) -> _Runner:
        cls = node_class(self.graph, self.registry, spec)
        ctx = NodeContext(
            node_id=spec.id,
            config=build_config(spec.type, cls.Config, spec.config),
            clock=self.clock,
            rng=np.random.default_rng([self.seed, zlib.crc32(spec.id.encode())]),
            seed=self.seed,
            profile=self.graph.profile,
            resources=self._resources,
            metrics=self._series,
        )
        node = cls()
        try:
            node.setup(ctx)
        except Exception as exc:
            raise NodeSetupError(spec.id, exc) from exc
        return _Runner(spec, cls, node, ctx)

    def _wire(self, runner: _Runner) -> None:
        spec = runner.spec
        runner.out_ports = {p.name: _OutPort(p) for p in port_list(runner.cls.outputs)}
        rate_driven = spec.rate_hz is not None
        for name, inp in spec.inputs.items():
            slot = _Slot(runner, name, inp.queue == "fifo", inp.size,
                         trigger=not rate_driven and inp.trigger and not inp.feedback,
                         stale_s=None if inp.stale_ms is None else inp.stale_ms / 1e3)
            runner.slots.append(slot)
            runner.inputs[name] = [] if slot.fifo else None
            if slot.fifo:
                runner.fifo_slots.append(slot)
            if slot.stale_s is not None:
                runner.stale_slots.append(slot)
            if inp.is_timer:
                period = timer_period_ns(inp.source)
                assert period is not None  # checked by the schema
                slot.trigger = True
                self._timers.append(_Timer(inp.source, period, runner, slot))
            else:
                runner.is_source = False
                self._runners[inp.node].out_ports[inp.port].edges.append(slot)
        if rate_driven:
            period = round(1e9 / spec.rate_hz)
            self._timers.append(_Timer(f"{spec.id}@{spec.rate_hz:g}Hz", period, runner, None))

    # -- running ----------------------------------------------------------------

    def run(self, duration_s: float | None = None) -> RunReport:
        """Run until ``duration_s`` of clock time has passed, a ``stop`` fault,
        Ctrl-C, or nothing is left to run; return the report.

        Raises:
            GraphError: the graph is invalid (every problem listed).
            NodeSetupError: a node's ``setup`` raised.
        """
        if self.simulated and duration_s is None:
            raise EdgeloopError("a simulated run needs a duration (fix: pass duration_s / --duration)")
        self._build()
        end_ns = _NEVER if duration_s is None else int(duration_s * 1e9)
        heap = [(0, i, t) for i, t in enumerate(self._timers)]
        heapq.heapify(heap)
        self.registry.hook.edgeloop_loop_started(graph=self.graph, simulated=self.simulated,
                                                 seed=self.seed)
        wall_start = time.perf_counter()
        try:
            self._loop(heap, end_ns)
            if self._stop_reason is None:
                self._stop_reason = "duration reached" if heap else "nothing left to run"
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
        finally:
            self._close_all()
        wall_s = time.perf_counter() - wall_start
        duration = min(self.clock.now_ns(), end_ns) / 1e9 if self.simulated else wall_s
        report = self._report(duration, wall_s)
        self.registry.hook.edgeloop_loop_stopped(graph=self.graph, report=report)
        return report

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to end after the current step (safe from another thread)."""
        self._stop_reason = reason

    def _loop(self, heap: list[tuple[int, int, _Timer]], end_ns: int) -> None:
        clock = self.clock
        simulated = self.simulated
        ready = self._ready
        run_node = self._run_node
        deliver = self._deliver
        recorders = self._recorders()
        firings = 0
        while heap and self._stop_reason is None:
            due, order, timer = heap[0]
            if due >= end_ns:
                break
            now = clock.wait_until(due)
            self._now_s = now * 1e-9
            if not simulated:
                timer.jitter.samples.append(now - due)
            timer.fired += 1
            runner = timer.runner
            if timer.slot is None:
                run_node(runner)
            else:
                deliver(timer.slot, Message(self._now_s, timer.fired - 1, self._now_s, self._now_s))
            while ready:
                runner = ready.popleft()
                runner.queued = False
                run_node(runner)
            # Next due time on the timer's own grid: no drift; ticks that passed
            # while we were late are skipped and counted as overruns.
            timer.ticks += 1
            next_due = timer.start_ns + timer.ticks * timer.period_ns
            if next_due <= now and not simulated:
                behind = (now - next_due) // timer.period_ns + 1
                timer.overruns += behind
                timer.ticks += behind
                next_due += behind * timer.period_ns
            heapq.heapreplace(heap, (next_due, order, timer))
            firings += 1
            if firings % _FOLD_EVERY == 0:
                for recorder in recorders:
                    recorder.fold_if_large()

    def _run_node(self, r: _Runner) -> None:
        if r.down_until and not self._restart(r):
            return
        for slot in r.stale_slots:
            # A port that never received anything counts as made at loop start.
            age = self._current_s() - (slot.msg.created if slot.msg is not None else 0.0)
            if age > slot.stale_s:
                self._fault(r, "stale_input", f"input '{slot.name}' is {age:.3f}s old "
                            f"(stale_ms {slot.stale_s * 1e3:g})")
                return
        for slot in r.fifo_slots:
            r.inputs[slot.name] = [m.data for m in slot.pending]
            slot.pending.clear()
        t0 = time.perf_counter_ns()
        try:
            out = r.step(r.inputs)
        except Exception as exc:
            self._fault(r, "exception", f"{type(exc).__name__}: {exc}")
            return
        t1 = time.perf_counter_ns()
        r.latency.samples.append(t1 - t0)
        if t1 - t0 > r.deadline_ns:
            self._node_deadline_missed(r, t1 - t0)
        created = self._now_s if self.simulated else self._current_s()
        sensed = created if r.is_source else self._sensed(r, created)
        if out and not self._publish(r, out, created, sensed):
            return
        r.consecutive_faults = 0
        for state, slot in r.contracts:
            if slot.msg is not None:
                latency = created - slot.msg.sensed
                state.latency.samples.append(round(latency * 1e9))
                if latency > state.deadline_s:
                    self._contract_deadline_missed(state, latency)

    def _sensed(self, r: _Runner, created: float) -> float:
        """Oldest sensing time among the inputs read fresh this step (else among all held)."""
        fresh = held = math.inf
        for slot in r.slots:
            if slot.unread:
                slot.unread = False
                if slot.sensed < fresh:
                    fresh = slot.sensed
            elif slot.sensed < held:
                held = slot.sensed
        if fresh != math.inf:
            return fresh
        return held if held != math.inf else created

    def _publish(self, r: _Runner, out: Mapping[str, Any], created: float, sensed: float) -> bool:
        ports = r.out_ports
        for name, data in out.items():
            port = ports.get(name)
            if port is None:
                self._fault(r, "exception", f"step returned unknown output '{name}' "
                            f"(declared: {', '.join(ports)})")
                return False
            if port.is_float and not _all_finite(data):
                self._fault(r, "non_finite", f"output '{name}' has non-finite values")
                return False
        deliver = self._deliver
        for name, data in out.items():
            port = ports[name]
            msg = Message(data, port.seq, created, sensed)
            port.seq += 1
            port.last = msg
            for slot in port.edges:
                deliver(slot, msg)
        return True

    def _deliver(self, slot: _Slot, msg: Message) -> None:
        if slot.fifo:
            if len(slot.pending) == slot.size:
                slot.drops += 1  # the deque drops its oldest on append
            slot.pending.append(msg)
        else:
            if slot.unread:
                slot.drops += 1
            slot.runner.inputs[slot.name] = msg.data
        slot.msg = msg
        if slot.unread:
            if msg.sensed < slot.sensed:
                slot.sensed = msg.sensed
        else:
            slot.sensed = msg.sensed
            slot.unread = True
        if slot.trigger:
            dst = slot.runner
            if not dst.queued:
                dst.queued = True
                self._ready.append(dst)

    def _current_s(self) -> float:
        return self._now_s if self.simulated else self.clock.now_ns() * 1e-9

    # -- deadlines and faults (off the per-tick path) -------------------------------

    def _node_deadline_missed(self, r: _Runner, took_ns: int) -> None:
        r.misses += 1
        self.registry.hook.edgeloop_deadline_missed(
            node_id=r.spec.id, contract=None, latency_s=took_ns / 1e9,
            deadline_s=r.deadline_ns / 1e9, time_s=self._current_s())

    def _contract_deadline_missed(self, state: _ContractState, latency_s: float) -> None:
        state.misses += 1
        self.registry.hook.edgeloop_deadline_missed(
            node_id=None, contract=state.spec.name, latency_s=latency_s,
            deadline_s=state.deadline_s, time_s=self._current_s())

    def _fault(self, r: _Runner, kind: str, error: str) -> None:
        r.faults[kind] = r.faults.get(kind, 0) + 1
        r.consecutive_faults += 1
        policy = r.spec.on_fault
        action = policy.action
        if action == "restart":
            if r.restarts >= policy.restart.max_restarts:
                action = "stop"
                error += f" (after {r.restarts} restarts)"
            else:
                backoff_ms = min(policy.restart.backoff_ms * 2 ** (r.consecutive_faults - 1),
                                 policy.restart.max_backoff_ms)
                r.down_until = self.clock.now_ns() + int(backoff_ms * 1e6)
                _close_quietly(r.node)
        elif action == "hold_last":
            held = {name: port.last.data for name, port in r.out_ports.items() if port.last}
            if held:
                sensed = min(port.last.sensed for port in r.out_ports.values() if port.last)
                self._publish(r, held, self._current_s(), sensed)
        elif action == "fallback":
            action = self._run_fallback(r)
        time_s = self._current_s()
        self._fault_log.append({"node": r.spec.id, "kind": kind, "error": error,
                                "action": action if action != "fallback" else
                                f"fallback:{policy.fallback}", "time_s": time_s})
        if action == "stop":
            self._stop_reason = f"node '{r.spec.id}' faulted ({kind}: {error}) and its policy is stop"
        self.registry.hook.edgeloop_node_faulted(
            node_id=r.spec.id, kind=kind, error=error, action=self._fault_log[-1]["action"],
            time_s=time_s)

    def _run_fallback(self, r: _Runner) -> str:
        fb = self._fallbacks[r.spec.id]
        inputs = {name: r.inputs.get(name) for name in (p.name for p in port_list(fb.cls.inputs))}
        try:
            out = fb.step(inputs)
        except Exception as exc:
            fb.faults["exception"] = fb.faults.get("exception", 0) + 1
            self._stop_reason = (f"fallback '{fb.spec.id}' of '{r.spec.id}' failed too: "
                                 f"{type(exc).__name__}: {exc}")
            return "stop"
        if out:
            now = self._current_s()
            sensed = self._sensed(r, now) if not r.is_source else now
            self._publish(r, {k: v for k, v in out.items() if k in r.out_ports}, now, sensed)
        return "fallback"

    def _restart(self, r: _Runner) -> bool:
        """Bring a node back after its backoff; False while it must still wait."""
        if self.clock.now_ns() < r.down_until:
            r.skipped += 1
            return False
        r.down_until = 0
        r.restarts += 1
        node = r.cls()
        try:
            node.setup(r.ctx)
        except Exception as exc:
            r.node = node
            self._fault(r, "exception", f"setup after restart: {type(exc).__name__}: {exc}")
            return False
        r.node = node
        r.step = node.step
        return True

    def _close_all(self) -> None:
        for r in self._runners.values():
            if not r.down_until:
                _close_quietly(r.node)

    # -- report -------------------------------------------------------------------

    def _recorders(self) -> list[LatencyRecorder]:
        return ([r.latency for r in self._runners.values()] + [t.jitter for t in self._timers]
                + [c.latency for c in self._contracts])

    def _report(self, duration_s: float, wall_s: float) -> RunReport:
        nodes = []
        for r in self._runners.values():
            p50, p99, worst = r.latency.summary_ns()
            nodes.append(NodeStats(
                id=r.spec.id, type=r.spec.type, calls=r.latency.count, p50_us=p50 / 1e3,
                p99_us=p99 / 1e3, max_us=worst / 1e3, deadline_ms=r.spec.deadline_ms,
                deadline_misses=r.misses, drops={s.name: s.drops for s in r.slots},
                faults=dict(r.faults), restarts=r.restarts, skipped=r.skipped))
        contracts = []
        for c in self._contracts:
            p50, p99, worst = c.latency.summary_ns()
            contracts.append(ContractStats(
                name=c.spec.name, path=list(c.spec.path), deadline_ms=c.spec.deadline_ms,
                count=c.latency.count, p50_ms=p50 / 1e6, p99_ms=p99 / 1e6, max_ms=worst / 1e6,
                deadline_misses=c.misses))
        timers = []
        for t in self._timers:
            p50, p99, worst = t.jitter.summary_ns()
            timers.append(TimerStats(
                source=t.source, period_ms=t.period_ns / 1e6, fired=t.fired,
                jitter_p50_us=p50 / 1e3, jitter_p99_us=p99 / 1e3, jitter_max_us=worst / 1e3,
                overruns=t.overruns))
        return RunReport(
            graph=self.graph.name, simulated=self.simulated, seed=self.seed,
            stop_reason=self._stop_reason or "", duration_s=duration_s, wall_s=wall_s,
            nodes=nodes, contracts=contracts, timers=timers,
            series={k: list(v) for k, v in self._series.items()}, fault_log=self._fault_log)


def _source_of(runner: _Runner, slot: _Slot) -> str:
    inp = runner.spec.inputs[slot.name]
    return "" if inp.is_timer else inp.node


def _close_quietly(node: Node) -> None:
    try:
        node.close()
    except Exception:  # a failing close must not hide the report
        pass


_ZEROS: dict[tuple[int, Any], np.ndarray] = {}


def _all_finite(data: Any) -> bool:
    """True unless a float payload holds NaN or inf (cheap for small arrays)."""
    if type(data) is np.ndarray:
        kind = data.dtype.kind
        if kind != "f":
            return kind != "c" or bool(np.isfinite(data).all())
        if data.size > 256:
            return bool(np.isfinite(data).all())
        # 0*x is 0 for every finite x and NaN otherwise; a dot product is the
        # cheapest reduction numpy has for small arrays.
        key = (data.size, data.dtype)
        zeros = _ZEROS.get(key)
        if zeros is None:
            zeros = _ZEROS[key] = np.zeros(data.size, dtype=data.dtype)
        return math.isfinite(data.reshape(-1).dot(zeros))
    if type(data) is float:
        return math.isfinite(data)
    if isinstance(data, (int, np.integer, str, bytes)) or data is None:
        return True
    if isinstance(data, Mapping):
        return all(_all_finite(v) for v in data.values())
    try:
        return bool(np.isfinite(np.asarray(data, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return True
