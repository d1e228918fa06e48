"""Helpers for testing node types and loops: small fake nodes and ``check_node``.

Use the fakes in a graph built in Python (``graph.add_node("src", CounterSensor, ...)``)
and read what they saw through ``Executor.node(id)`` after the run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.runtime.clocks import Clock, SimClock
from edgeloop.runtime.node import (
    Controller,
    Monitor,
    Node,
    NodeContext,
    Port,
    Sensor,
    build_config,
    new_node,
    port_list,
)
from edgeloop.runtime.node_docs import describe_node_type

if TYPE_CHECKING:
    from edgeloop.runtime.profiles import HardwareProfile

__all__ = ["CounterSensor", "RecordingSink", "ScriptedNode", "check_node", "start_node"]


@dataclass(frozen=True)
class CounterConfig:
    start: float = 0.0
    """First value."""
    increment: float = 1.0
    """Added at every step."""


class CounterSensor(Sensor):
    """Emits start, start+increment, ... as a float64 array of shape (1,).

    A fake sensor for tests: each step publishes the next count. It has no
    inputs and runs on its ``rate_hz``. The count carries over between steps;
    a restart starts again from ``start``.

    Faults:
        none of its own.

    Example::

        graph.add_node("source", CounterSensor, rate_hz=10, config={"start": 1.0})
    """

    outputs = (Port("value", dtype="float64", shape=(1,), doc="the count"),)
    Config = CounterConfig

    def setup(self, ctx: NodeContext) -> None:
        self.next_value = ctx.config.start

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        value = np.array([self.next_value])
        self.next_value += self.config.increment
        return {"value": value}


class RecordingSink(Monitor):
    """Keeps every step's clock time and inputs (any ports) in ``received``.

    A fake sink for tests: it takes inputs of any name and keeps, per step, the
    clock time (s) and a copy of the inputs mapping (``None`` for an input with
    no message yet); ``values(port)`` lists what arrived on one port. It has no
    outputs and no config. A restart starts a new, empty ``received``.

    Faults:
        none of its own.

    Example::

        graph.add_node("sink", RecordingSink, inputs={"obs": "sensor/obs"})
        executor = Executor(graph, simulated=True)
        executor.run(1.0)
        observations = executor.node("sink").values("obs")
    """

    accepts_any_inputs = True

    def setup(self, ctx: NodeContext) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []

    def step(self, inputs: dict[str, Any]) -> None:
        self.received.append((self.ctx.now(), dict(inputs)))

    def values(self, port: str) -> list[Any]:
        """What arrived on ``port``, one entry per step."""
        return [inputs[port] for _, inputs in self.received]


@dataclass(frozen=True)
class ScriptedConfig:
    gain: float = 1.0
    """``value`` out = ``value`` in * gain."""
    raise_on: list[int] = field(default_factory=list)
    """Step numbers (from 0, counted across restarts) that raise RuntimeError."""
    nan_on: list[int] = field(default_factory=list)
    """Step numbers that return NaN."""
    sleep_ms: float = 0.0
    """Wall time to sleep in every step (for deadline tests)."""
    fail_setup_after: int | None = None
    """Make ``setup`` raise once this many setups happened (for restart tests)."""


class ScriptedNode(Controller):
    """Multiplies its input by a gain, and misbehaves on the steps it is told to.

    A fake controller for fault tests: each step publishes ``value * gain`` as
    float64, after sleeping ``sleep_ms`` of wall time when set. The step and
    setup counters are shared by every instance with the same node id, so they
    keep counting across restarts.

    Faults:
        on purpose: a step numbered in ``raise_on`` raises RuntimeError (an
        ``exception`` fault), one in ``nan_on`` returns NaN (a ``non_finite``
        fault), and ``setup`` raises RuntimeError once ``fail_setup_after``
        setups have run. No output until the first value.

    Example::

        graph.add_node(
            "flaky", ScriptedNode, inputs={"value": "source/value"}, config={"raise_on": [3]}
        )
    """

    inputs = (Port("value", dtype="float64", doc="value to scale"),)
    outputs = (Port("value", dtype="float64", doc="``value * gain``, or NaN on ``nan_on`` steps"),)
    Config = ScriptedConfig

    def setup(self, ctx: NodeContext) -> None:
        self.state = ctx.shared(f"scripted:{ctx.node_id}", lambda: {"steps": 0, "setups": 0})
        self.state["setups"] += 1
        limit = ctx.config.fail_setup_after
        if limit is not None and self.state["setups"] > limit:
            raise RuntimeError(f"setup number {self.state['setups']} fails by script")

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        n = self.state["steps"]
        self.state["steps"] += 1
        if self.config.sleep_ms:
            time.sleep(self.config.sleep_ms / 1e3)
        if n in self.config.raise_on:
            raise RuntimeError(f"step {n} fails by script")
        value = inputs["value"]
        if value is None:
            return None
        if n in self.config.nan_on:
            return {"value": np.full_like(value, np.nan, dtype=np.float64)}
        return {"value": np.asarray(value, dtype=np.float64) * self.config.gain}


def start_node(
    cls: type[Node],
    config: Mapping[str, Any] | Any = None,
    *,
    node_id: str = "node",
    profile: HardwareProfile | None = None,
    clock: Clock | None = None,
) -> Node:
    """A node of type ``cls`` set up outside a loop, as the runtime would set it up.

    For unit tests, benchmarks and tools that step one node by hand::

        node = start_node(Gain, {"gain": 2.0})
        node.step({"obs": np.ones(3)})
        node.close()

    Args:
        cls: The node type.
        config: A config mapping (checked as a graph's would be), an instance of
            ``cls.Config``, or None for the defaults.
        node_id: The id the node sees as ``ctx.node_id``.
        profile: The hardware profile it sees as ``ctx.profile``.
        clock: Its clock; a fresh simulated clock by default.

    Raises:
        NodeConfigError: the config mapping does not fit ``cls.Config``.
    """
    if config is None or isinstance(config, Mapping):
        config = build_config(cls.__name__, cls.Config, config)
    ctx = NodeContext.standalone(node_id, config, profile=profile, clock=clock)
    node = new_node(cls, ctx)
    node.setup(ctx)
    return node


def check_node(
    cls: type[Node],
    config: dict[str, Any] | None = None,
    inputs: list[dict[str, Any]] | None = None,
    *,
    steps: int = 3,
) -> list[dict[str, Any] | None]:
    """Check that a node type keeps the node contract, and return its outputs.

    Checks: a docstring of its own, and a doc for every declared port and config
    field (the type's reference is generated from them: ``edgeloop plugins show``);
    ports declared as unique :class:`Port` objects or names; a frozen dataclass
    ``Config`` that builds from ``config``; ``setup``, ``step`` and ``close`` run
    on a simulated clock; every output is a declared port; float outputs are
    finite.

    Args:
        cls: The node type.
        config: Its config mapping (defaults when None).
        inputs: One inputs mapping per step; by default ``steps`` steps with
            zeros of each declared input's dtype and shape (None when undeclared).
        steps: Number of steps when ``inputs`` is not given.

    Raises:
        AssertionError: the node breaks the contract (the message says how).
    """
    if not (cls.__dict__.get("__doc__") or "").strip():  # its own, not one inherited
        raise AssertionError(f"{cls.__name__} has no docstring of its own")
    for kind in ("inputs", "outputs"):
        names = [p.name for p in port_list(getattr(cls, kind))]
        if len(set(names)) != len(names):
            raise AssertionError(f"{cls.__name__}.{kind} repeats a port name: {names}")
    if not (dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen):
        raise AssertionError(f"{cls.__name__}.Config must be a frozen dataclass")
    undocumented = describe_node_type(cls).missing_docs()
    if undocumented:
        raise AssertionError(
            f"{cls.__name__} documents no {', no '.join(undocumented)}: give each port a "
            "Port(..., doc=...) and each Config field a docstring under it"
        )
    clock = SimClock()
    built = build_config(cls.__name__, cls.Config, config)
    in_ports, out_ports = cls.ports(built)
    declared_out = {p.name: p for p in out_ports}
    if inputs is None:
        inputs = [{p.name: _sample(p) for p in in_ports} for _ in range(steps)]
    node = start_node(cls, built, node_id="checked", clock=clock)
    results: list[dict[str, Any] | None] = []
    try:
        for i, step_inputs in enumerate(inputs):
            clock.wait_until((i + 1) * 10_000_000)
            out = node.step(dict(step_inputs))
            if out is not None:
                for name, value in out.items():
                    if name not in declared_out:
                        raise AssertionError(
                            f"{cls.__name__}.step returned undeclared output "
                            f"'{name}' (declared: {', '.join(declared_out)})"
                        )
                    if declared_out[name].is_float and not _finite(value):
                        raise AssertionError(f"{cls.__name__} output '{name}' is not finite")
                out = dict(out)
            results.append(out)
    finally:
        node.close()
    return results


def _sample(port: Port) -> Any:
    if port.dtype is None:
        return None
    shape = tuple(d or 1 for d in port.shape) if port.shape is not None else (1,)
    return np.zeros(shape, dtype=port.dtype)


def _finite(value: Any) -> bool:
    try:
        return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return not (isinstance(value, float) and not math.isfinite(value))
