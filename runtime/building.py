"""Building a loop from a graph: set up every node, wire ports, make timers.

The result, :class:`CompiledLoop`, is what the executor runs, and what it asks
for the figures of the run report.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeloop.runtime.clocks import Clock
from edgeloop.runtime.errors import GraphError, GraphProblem, NodeSetupError
from edgeloop.runtime.graph import LoopGraph, timer_period_ns
from edgeloop.runtime.metrics import ContractStats, LatencyRecorder, NodeStats, TimerStats
from edgeloop.runtime.node import NodeContext, Port, build_config, new_node
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.profiles import graph_profile
from edgeloop.runtime.sensing import SensingControl, SensingState
from edgeloop.runtime.validation import node_class
from edgeloop.runtime.wiring import (
    ContractState,
    OutPort,
    Runner,
    Slot,
    Timer,
    close_quietly,
    make_safe,
)

_MAX_DIRECT_DEPTH = 100  # nested direct calls before one goes through the ready queue


class CompiledLoop:
    """A graph made ready to run: node objects set up, ports wired, timers made.

    Build with :meth:`build`; the executor runs it and asks it for the stats.
    """

    def __init__(self) -> None:
        self.runners: dict[str, Runner] = {}
        self.timers: list[Timer] = []
        self.contracts: list[ContractState] = []
        self.fallbacks: dict[str, Runner] = {}  # node id -> its fallback's runner
        self.sensing: dict[str, SensingState] = {}  # steerable sensors' settings by node id
        # Set by the executor: moves a timer to a new rate (None: stops it).
        self.replan: Callable[[Timer, float | None], None] | None = None

    @classmethod
    def build(
        cls,
        graph: LoopGraph,
        registry: PluginRegistry,
        *,
        clock: Clock,
        seed: int,
        resources: dict[str, Any],
        series: dict[str, list[float]],
    ) -> CompiledLoop:
        """Set up every node (in graph order) and wire the graph.

        Raises:
            NodeSetupError: a node's ``setup`` raised; those set up are closed.
        """
        loop = cls()
        profile = graph_profile(graph)
        try:
            for index, spec in enumerate(graph.nodes):
                node_type = node_class(graph, registry, spec)
                ctx = NodeContext(
                    node_id=spec.id,
                    config=build_config(spec.type, node_type.Config, spec.config),
                    clock=clock,
                    rng=np.random.default_rng([seed, zlib.crc32(spec.id.encode())]),
                    seed=seed,
                    profile=profile,
                    resources=resources,
                    metrics=series,
                    deadline_ms=spec.deadline_ms,
                )
                node = new_node(node_type, ctx)
                try:
                    node.setup(ctx)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # SystemExit too: a node may not end the process
                    line = graph.line_of(("nodes", index))
                    where = f"{graph.file}:{line}" if graph.file and line else ""
                    raise NodeSetupError(spec.id, exc, where) from exc
                loop.runners[spec.id] = Runner(spec, node_type, node, ctx)
        except BaseException:
            loop.close_all()
            raise
        for runner in loop.runners.values():
            runner.out_ports = {p.name: OutPort(p) for p in runner.declared_outputs}
        for runner in loop.runners.values():
            loop._wire_inputs(runner)
        for runner in loop.runners.values():
            if runner.cls.sensing is not None:
                loop._make_steerable(runner)
        for contract in graph.contracts:
            state = ContractState(contract)
            loop.contracts.append(state)
            end = loop.runners[contract.path[-1]]
            inp = next(
                i
                for i in end.spec.inputs.values()
                if not i.is_timer and i.node == contract.path[-2]
            )
            end.contracts.append((state, loop.runners[inp.node].out_ports[inp.port]))
        loop._find_direct_calls()
        for spec in graph.nodes:
            if spec.on_fault.fallback is not None and spec.on_fault.action == "fallback":
                loop.fallbacks[spec.id] = loop.runners[spec.on_fault.fallback]
        return loop

    def _wire_inputs(self, runner: Runner) -> None:
        spec = runner.spec
        rate_driven = spec.rate_hz is not None
        for name, inp in spec.inputs.items():
            if name == "sensing" and runner.cls.sensing is not None:
                continue  # commands: wired by _make_steerable
            if inp.is_timer:
                source = OutPort(Port(name))
                period = timer_period_ns(inp.source)
                if period is None:  # the schema refuses these; a graph changed after loading
                    raise GraphError(
                        [GraphProblem(f"bad timer '{inp.source}'", field=f"{spec.id}.inputs")]
                    )
                self.timers.append(Timer(inp.source, period, runner, port=source))
            else:
                runner.is_source = False
                source = self.runners[inp.node].out_ports[inp.port]
            trigger = inp.is_timer or (not rate_driven and inp.trigger and not inp.feedback)
            slot = Slot(
                runner,
                name,
                source,
                fifo=inp.queue == "fifo",
                size=inp.size,
                trigger=trigger,
                stale_s=None if inp.stale_ms is None else inp.stale_ms / 1e3,
                not_sensing=inp.is_timer or inp.feedback,
            )
            runner.slots.append(slot)
            takes_device = runner.cls.takes_device_tensors
            runner.ctx._messages[name] = (
                source.last_message if takes_device else source.last_host_message
            )
            runner.inputs[name] = [] if slot.fifo else None
            if slot.fifo:
                runner.fifo_slots.append(slot)
                source.fifo_slots.append(slot)
            else:
                source.edges.append((runner.inputs, name, runner if trigger else None))
                source.host_readers.append(None if takes_device else f"node '{spec.id}'")
            if slot.stale_s is not None:
                runner.stale_slots.append(slot)
                if not rate_driven:  # it might never step, so never notice by itself
                    period = max(1, int(slot.stale_s * 1e9) // 2)
                    watchdog = Timer(
                        f"{spec.id}.{name} stale watchdog", period, runner, watched=slot
                    )
                    self.timers.append(watchdog)
        for port in runner.declared_inputs:  # declared but not wired: always None
            runner.inputs.setdefault(port.name, None)
        only = runner.slots[0] if len(runner.slots) == 1 else None
        if only is not None and not only.fifo and not only.not_sensing and not runner.is_source:
            runner.only_slot = runner.slots[0]
            runner.only_source = runner.only_slot.source
        runner.update_guard()
        if rate_driven:
            period = round(1e9 / spec.rate_hz)
            runner.timer = Timer(f"{spec.id}@{spec.rate_hz:g}Hz", period, runner)
            self.timers.append(runner.timer)

    def _make_steerable(self, runner: Runner) -> None:
        """A sensor that takes sensing commands: its settings as ``ctx.sensing``, a
        step that counts readings and their cost, and its ``sensing`` input wired to
        a :class:`SensingControl` that applies each command as it arrives."""
        spec = runner.spec
        bounds = spec.sensing.model_dump(exclude_none=True) if spec.sensing else {}
        profile = runner.ctx.profile
        if "cost_per_reading" not in bounds and profile is not None:
            if spec.type in profile.sensing_costs:  # the device's figure for this sensor
                bounds["cost_per_reading"] = profile.sensing_costs[spec.type]
        full = bounds.get("max_rate_hz") or spec.rate_hz or math.inf
        state = SensingState(
            runner.cls.sensing_spec(runner.ctx.config).narrowed(bounds),  # type: ignore[union-attr]
            rate_hz=spec.rate_hz,
            full_rate_hz=full,
        )
        runner.ctx.sensing = state
        self.sensing[spec.id] = state

        def sensing_step(inputs: dict[str, Any]) -> Any:
            state.readings += 1
            state.cost += state.reading_cost()
            return runner.node.step(inputs)  # the node of now: a restart makes a new one

        runner.step = runner.step_wrapper = sensing_step
        inp = spec.inputs.get("sensing")
        if inp is None:
            return
        timer = runner.timer
        loop = self
        clock = runner.ctx.clock
        last_read = [-1]

        def replan(rate_hz: float | None) -> None:
            if timer is not None and loop.replan is not None:
                loop.replan(timer, rate_hz)

        def read_now() -> None:
            # One reading on demand per instant: a policy fed by the sensor that asks
            # again at once would otherwise loop within one instant.
            now = clock.now_ns()
            if now != last_read[0]:
                last_read[0] = now
                runner.run()

        control = SensingControl(state, runner.inputs, replan, read_now, timed=timer is not None)
        source = self.runners[inp.node].out_ports[inp.port]
        runner.inputs["sensing"] = None
        runner.ctx._messages["sensing"] = source.last_message
        source.edges.append((runner.inputs, "sensing", control))  # type: ignore[arg-type]
        source.host_readers.append(f"node '{runner.spec.id}'")

    def _find_direct_calls(self) -> None:
        """Mark ports whose one triggered receiver nothing else triggers: it is
        stepped right after the publish instead of going through the ready queue."""
        for runner in self.runners.values():
            for port in runner.out_ports.values():
                triggered = [rc for _, _, rc in port.edges if rc is not None]
                if (
                    len(triggered) == 1
                    and isinstance(triggered[0], Runner)  # not a sensing command's receiver
                    and not port.fifo_slots
                    and sum(1 for s in triggered[0].slots if s.trigger) == 1
                ):
                    port.direct = triggered[0]
                    port.edges = [(inputs, name, None) for inputs, name, _ in port.edges]
        # Each direct call nests a Python frame: past a depth, go through the queue.
        called = {p.direct for r in self.runners.values() for p in r.out_ports.values()}
        roots = [(r, 0) for r in self.runners.values() if r not in called]
        while roots:
            runner, depth = roots.pop()
            for port in runner.out_ports.values():
                receiver = port.direct
                if receiver is None:
                    continue
                if depth + 1 > _MAX_DIRECT_DEPTH:
                    port.direct = None
                    triggering = {sl.name for sl in receiver.slots if sl.trigger}
                    port.edges = [
                        (
                            inputs,
                            name,
                            receiver if inputs is receiver.inputs and name in triggering else None,
                        )
                        for inputs, name, _ in port.edges
                    ]
                    roots.append((receiver, 0))
                else:
                    roots.append((receiver, depth + 1))

    def close_all(self) -> None:
        """Close every node, each within its ``close_timeout_ms`` (a restart under way
        gets its ``setup_timeout_ms`` to finish, and what it set up is closed); an
        actuator sends its safe command first."""
        for runner in self.runners.values():
            job = runner.restart_job
            if job is not None:
                runner.restart_job = None
                job.wait()
                if job.running():
                    job.abandon()
                elif job.node is not None:
                    make_safe(runner, "stop", job.node)
                    close_quietly(runner, job.node)
            if not runner.closed:
                make_safe(runner, "stop")
                runner.closed = True
                close_quietly(runner)

    def recorders(self) -> list[LatencyRecorder]:
        """Every latency recorder, for periodic folding."""
        return (
            [r.latency for r in self.runners.values()]
            + [t.jitter for t in self.timers]
            + [c.latency for c in self.contracts]
        )

    def node_stats(self, duration_s: float = 0.0, now_ns: int = 0) -> list[NodeStats]:
        stats = []
        for r in self.runners.values():
            down_ns = r.down_ns + max(0, now_ns - r.down_since if r.down_since else 0)
            p50, p99, worst = r.latency.summary_ns()
            stats.append(
                NodeStats(
                    id=r.spec.id,
                    type=r.spec.type,
                    calls=r.latency.count,
                    p50_us=p50 / 1e3,
                    p99_us=p99 / 1e3,
                    max_us=worst / 1e3,
                    deadline_ms=r.spec.deadline_ms,
                    deadline_misses=r.misses,
                    drops={s.name: s.drops + s.unread_overwrites() for s in r.slots},
                    faults=dict(r.faults),
                    restarts=r.restarts,
                    skipped=r.skipped,
                    down_s=down_ns / 1e9,
                    notes=dict(r.ctx.notes),
                    role=r.cls.role,
                    safe_states=dict(r.ctx.safe_states),
                    sensing=(
                        self.sensing[r.spec.id].figures(duration_s)
                        if r.spec.id in self.sensing
                        else None
                    ),
                )
            )
        return stats

    def contract_stats(self) -> list[ContractStats]:
        stats = []
        for c in self.contracts:
            p50, p99, worst = c.latency.summary_ns()
            stats.append(
                ContractStats(
                    name=c.spec.name,
                    path=list(c.spec.path),
                    deadline_ms=c.spec.deadline_ms,
                    count=c.latency.count,
                    p50_ms=p50 / 1e6,
                    p99_ms=p99 / 1e6,
                    max_ms=worst / 1e6,
                    deadline_misses=c.misses,
                )
            )
        return stats

    def timer_stats(self) -> list[TimerStats]:
        stats = []
        for t in self.timers:
            p50, p99, worst = t.jitter.summary_ns()
            stats.append(
                TimerStats(
                    source=t.source,
                    period_ms=t.period_ns / 1e6,
                    fired=t.ticks - t.overruns - t.first_tick,
                    jitter_p50_us=p50 / 1e3,
                    jitter_p99_us=p99 / 1e3,
                    jitter_max_us=worst / 1e3,
                    overruns=t.overruns,
                )
            )
        return stats
