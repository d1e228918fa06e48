"""The executor: timers, a ready queue and run-to-completion propagation.

``Executor._loop`` and its ``run_node`` are the whole per-tick path, kept in
one place on purpose. A timer fires (a periodic node or a ``timer/..``
input); the node steps; its outputs are written into the inputs of the nodes
wired to them, and the nodes they trigger join the ready queue, which drains
before the next timer. Plugins' hooks fire only on lifecycle events, deadline
misses and faults.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgeloop.runtime.clocks import Clock, RealClock, SimClock
from edgeloop.runtime.errors import EdgeloopError
from edgeloop.runtime.faults import FaultHandler
from edgeloop.runtime.graph import LoopGraph
from edgeloop.runtime.metrics import RunReport
from edgeloop.runtime.node import Node
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.validation import check_graph
from edgeloop.runtime.wiring import NEVER, CompiledLoop, ContractState, OutPort, Runner, Timer

_NO_PORT = "\x00no single output"  # a name no port has
_FOLD_EVERY = 4096  # ticks of a timer between folds of the latency recorders (a power of 2)


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
        self._stopped_by_fault = False
        self._ready: deque[Runner] = deque()
        self._resources: dict[str, Any] = {}
        self._series: dict[str, list[float]] = {}
        self._loop_parts = CompiledLoop()
        self._faults = FaultHandler(
            clock=self.clock,
            publish=self._publish,
            stop=self._stop_for_fault,
            hook=self.registry.hook.edgeloop_node_faulted,
            fallbacks=self._loop_parts.fallbacks,
        )

    # -- running ----------------------------------------------------------------

    def run(self, duration_s: float | None = None) -> RunReport:
        """Run until ``duration_s`` of clock time has passed, a ``stop`` fault,
        Ctrl-C, or nothing is left to run; return the report.

        Raises:
            GraphError: the graph is invalid (every problem listed).
            NodeSetupError: a node's ``setup`` raised.
        """
        if self.simulated and duration_s is None:
            raise EdgeloopError(
                "a simulated run needs a duration (fix: pass duration_s / --duration)"
            )
        for name, cls in self.graph.local_types.items():
            self.registry.add_node_type(name, cls)
        check_graph(self.graph, self.registry)
        self.registry.hook.edgeloop_graph_loaded(graph=self.graph)
        self._loop_parts = CompiledLoop.build(
            self.graph,
            self.registry,
            clock=self.clock,
            seed=self.seed,
            resources=self._resources,
            series=self._series,
        )
        self._faults.set_fallbacks(self._loop_parts.fallbacks)
        end_ns = NEVER if duration_s is None else int(duration_s * 1e9)
        heap = [(0, i, t) for i, t in enumerate(self._loop_parts.timers)]
        heapq.heapify(heap)
        self.registry.hook.edgeloop_loop_started(
            graph=self.graph, simulated=self.simulated, seed=self.seed
        )
        wall_start = time.perf_counter()
        self.clock.start()
        try:
            self._loop(heap, end_ns)
            if self._stop_reason is None:
                self._stop_reason = "duration reached" if heap else "nothing left to run"
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
        finally:
            self._loop_parts.close_all()
        wall_s = time.perf_counter() - wall_start
        if not self.simulated:
            duration = wall_s
        elif self._stop_reason == "duration reached":
            duration = end_ns / 1e9
        else:
            duration = self.clock.now_ns() / 1e9
        report = self._report(duration, wall_s)
        self.registry.hook.edgeloop_loop_stopped(graph=self.graph, report=report)
        return report

    def node(self, node_id: str) -> Node:
        """The live node object of ``node_id`` (during or after a run), e.g. to read
        what a test sink received. KeyError if the run has not built it."""
        return self._loop_parts.runners[node_id].node

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to end after the current step (safe from another thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def _stop_for_fault(self, reason: str) -> None:
        self._stopped_by_fault = self._stop_reason is None
        self.stop(reason)

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
        perf = time.perf_counter_ns
        fault = self._faults.handle
        guard = self._guard
        node_missed = self._node_deadline_missed
        contract_missed = self._contract_deadline_missed
        sensed_of = self._sensed
        publish = self._publish
        deliver_fifo = self._deliver_fifo
        check_outputs = self._check_outputs
        finite = _all_finite
        isfinite = math.isfinite
        fsum = math.fsum
        recorders = self._loop_parts.recorders()
        now_s = 0.0

        def compile_node(r: Runner) -> Callable[[], None]:
            """The step of one node with its fixed parts bound as closure variables."""
            inputs = r.inputs
            record = r.record
            deadline_ns = r.deadline_ns
            only_source, only_slot, is_source = r.only_source, r.only_slot, r.is_source
            contracts = tuple(r.contracts)
            # The common case, one declared output, is inlined with the port's
            # fixed facts as closure variables.
            port = next(iter(r.out_ports.values())) if len(r.out_ports) == 1 else None
            only_output = port.name if port is not None else _NO_PORT
            is_float = port is not None and port.is_float
            is_small_vector = port is not None and port.is_small_vector
            edges = tuple(port.edges) if port is not None else ()
            has_fifo = port is not None and bool(port.fifo_slots)
            direct = port.direct if port is not None else None

            def run_node() -> None:
                if r.guarded and guard(r):
                    return
                t0 = perf()
                try:
                    out = r.step(inputs)
                except Exception as exc:
                    fault(r, "exception", f"{type(exc).__name__}: {exc}")
                    return
                took = perf() - t0
                record(took)
                if took > deadline_ns:
                    node_missed(r, took)
                created = now_s if simulated else clock_now() * 1e-9
                if only_source is not None:
                    seq = only_source.seq
                    if seq - only_slot.read_seq > 1:
                        only_slot.drops += seq - only_slot.read_seq - 1
                    only_slot.read_seq = seq
                    sensed = only_source.last_sensed if seq else created
                elif is_source:
                    sensed = created
                else:
                    sensed = sensed_of(r, created)
                if r.consecutive_faults:
                    r.consecutive_faults = 0
                if contracts:
                    for state, source in contracts:
                        if source.seq:
                            latency = created - source.last_sensed
                            state.record(latency)
                            if latency > state.deadline_s:
                                contract_missed(state, latency)
                if not out:
                    return
                # Anything but the one declared output returned alone (several
                # outputs, unknown names, a None payload) goes the long way.
                data = out.get(only_output) if len(out) == 1 else None
                if data is None:
                    if check_outputs(r, out):
                        publish(r, out, created, sensed)
                    return
                if is_float:
                    if is_small_vector:
                        # Declared 1-D and small: fsum of the elements is NaN or
                        # inf exactly when one is, and cheaper than numpy.
                        try:
                            ok = isfinite(fsum(data.tolist()))
                        except Exception:  # not a 1-D array after all
                            ok = finite(data)
                    else:
                        ok = finite(data)
                    if not ok:
                        check_outputs(r, out)
                        return
                port.seq += 1
                port.last_data = data
                port.last_created = created
                port.last_sensed = sensed
                for receiver_inputs, input_name, receiver in edges:
                    receiver_inputs[input_name] = data
                    if receiver is not None and not receiver.queued:
                        receiver.queued = True
                        ready_append(receiver)
                if has_fifo:
                    deliver_fifo(port)
                if direct is not None:
                    # The one node this output triggers, and nothing else triggers
                    # it: step it now rather than through the ready queue.
                    direct.run()

            return run_node

        for r in self._loop_parts.runners.values():
            r.run = compile_node(r)

        def tick_publisher(timer: Timer) -> Callable[[], None]:
            def publish_tick() -> None:
                publish(timer.runner, {}, now_s, now_s, tick=timer.port)

            return publish_tick

        for timer in self._loop_parts.timers:
            timer.fire = timer.runner.run if timer.port is None else tick_publisher(timer)

        while heap and self._stop_reason is None:
            due, order, timer = heap[0]
            if due >= end_ns:
                break
            now = wait_until(due)
            now_s = now * 1e-9
            if not simulated:
                timer.jitter.samples.append(now - due)
            timer.fire()
            while ready:
                runner = popleft()
                runner.queued = False
                runner.run()
            # Next due time on the timer's own grid: no drift; ticks that passed
            # while we were late are skipped and counted as overruns.
            timer.ticks += 1
            next_due = timer.ticks * timer.period_ns
            if next_due <= now and not simulated:
                behind = (now - next_due) // timer.period_ns + 1
                timer.overruns += behind
                timer.ticks += behind
                next_due += behind * timer.period_ns
            heapreplace(heap, (next_due, order, timer))
            if not timer.ticks & (_FOLD_EVERY - 1):
                for recorder in recorders:
                    recorder.fold_if_large()

    def _guard(self, r: Runner) -> bool:
        """Checks before a step that most nodes skip: True means do not step now."""
        if r.down_until and not self._faults.restart(r):
            return True
        if r.stale_slots:
            now = self._now_s()
            for slot in r.stale_slots:
                # A port that never received anything counts as made at loop start.
                age = now - slot.source.last_created
                if age > slot.stale_s:
                    self._faults.handle(
                        r,
                        "stale_input",
                        f"input '{slot.name}' is {age:.3f}s old (stale_ms {slot.stale_s * 1e3:g})",
                    )
                    return True
        for slot in r.fifo_slots:
            r.inputs[slot.name] = slot.take_pending()
        return False

    def _sensed(self, r: Runner, created: float) -> float:
        """Oldest sensing time among the inputs read fresh this step (else among all held)."""
        fresh = math.inf
        for slot in r.slots:
            fresh = min(fresh, slot.consume())
        if fresh != math.inf:
            return fresh
        held = min((s.source.last_sensed for s in r.slots if s.source.seq), default=math.inf)
        return held if held != math.inf else created

    def _check_outputs(self, r: Runner, out: Mapping[str, Any]) -> bool:
        """Fault the node and return False if an output is unknown or non-finite."""
        for name, data in out.items():
            port = r.out_ports.get(name)
            if port is None:
                self._faults.handle(
                    r,
                    "exception",
                    f"step returned unknown output '{name}' "
                    f"(declared: {', '.join(r.out_ports) or 'none'})",
                )
                return False
            if port.is_float and not _all_finite(data):
                self._faults.handle(r, "non_finite", f"output '{name}' has non-finite values")
                return False
        return True

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

    def _deliver_fifo(self, port: OutPort) -> None:
        msg = port.last_message()
        for slot in port.fifo_slots:
            if len(slot.pending) == slot.size:
                slot.drops += 1  # the deque drops its oldest on append
            slot.pending.append(msg)
            if slot.trigger and not slot.runner.queued:
                slot.runner.queued = True
                self._ready.append(slot.runner)

    def _now_s(self) -> float:
        return self.clock.now_ns() * 1e-9

    def _node_deadline_missed(self, r: Runner, took_ns: int) -> None:
        r.misses += 1
        self.registry.hook.edgeloop_deadline_missed(
            node_id=r.spec.id,
            contract=None,
            latency_s=took_ns / 1e9,
            deadline_s=r.deadline_ns / 1e9,
            time_s=self._now_s(),
        )

    def _contract_deadline_missed(self, state: ContractState, latency_s: float) -> None:
        state.misses += 1
        self.registry.hook.edgeloop_deadline_missed(
            node_id=None,
            contract=state.spec.name,
            latency_s=latency_s,
            deadline_s=state.deadline_s,
            time_s=self._now_s(),
        )

    # -- report -------------------------------------------------------------------

    def _report(self, duration_s: float, wall_s: float) -> RunReport:
        loop = self._loop_parts
        return RunReport(
            graph=self.graph.name,
            simulated=self.simulated,
            seed=self.seed,
            stop_reason=self._stop_reason or "",
            stopped_by_fault=self._stopped_by_fault,
            duration_s=duration_s,
            wall_s=wall_s,
            nodes=loop.node_stats(),
            contracts=loop.contract_stats(),
            timers=loop.timer_stats(),
            series={k: list(v) for k, v in self._series.items()},
            fault_log=self._faults.log,
        )


def _all_finite(data: Any) -> bool:
    """True unless a float payload holds NaN or inf; cheap for small arrays."""
    if type(data) is np.ndarray:
        if data.dtype.kind != "f":
            return data.dtype.kind != "c" or bool(np.isfinite(data).all())
        if data.ndim == 1 and data.size <= 64:
            # fsum of Python floats is cheaper than any numpy reduction at this size;
            # it is NaN or inf exactly when an element is (overflow raises instead).
            try:
                return math.isfinite(math.fsum(data.tolist()))
            except OverflowError:
                pass
            except ValueError:  # inf and -inf together
                return False
        return bool(np.isfinite(data).all())
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
