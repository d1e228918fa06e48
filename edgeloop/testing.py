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
from edgeloop.runtime.hookspecs import hookimpl
from edgeloop.runtime.messages import payload_is_finite, type_problem
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

__all__ = [
    "AuditSink",
    "CounterSensor",
    "FaultyNode",
    "RecordingSink",
    "ScriptedNode",
    "check_node",
    "start_node",
]


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


# What FaultyNode can do wrong in a step, by name: the rows of the fault matrix.
STEP_FAULTS = (
    "raise",
    "system_exit",
    "keyboard_interrupt",
    "base_exception",
    "python_hang",
    "sleep_hang",
    "swallowing_hang",
    "c_hang",
    "wrong_dtype",
    "wrong_shape",
    "string",
    "nan",
    "nan_in_list",
    "not_a_mapping",
    "unknown_output",
    "long_list",
    "deep_nesting",
    "overrun",
)
SETUP_FAULTS = ("slow_setup", "failing_setup")
CLOSE_FAULTS = ("close_hang", "close_raise")


@dataclass(frozen=True)
class FaultyConfig:
    fault: str = "raise"
    """What goes wrong. In the step ``on_step``: ``raise``, ``system_exit``,
    ``keyboard_interrupt``, ``base_exception``, ``python_hang``, ``sleep_hang``,
    ``swallowing_hang``, ``c_hang``, ``wrong_dtype``, ``wrong_shape``, ``string``,
    ``nan``, ``nan_in_list``, ``not_a_mapping``, ``unknown_output``, ``long_list``
    (1,025 floats), ``deep_nesting`` (10 deep), ``overrun``. In
    every setup after a restart (the step ``on_step`` raises once to cause one):
    ``slow_setup``, ``failing_setup``. In every close: ``close_hang``, ``close_raise``."""
    on_step: int = 2
    """The step (from 0, counted across restarts) that misbehaves; a hang or an
    overrun happens once, the other faults on every step from here on."""
    typed: bool = True
    """Declare the output float64 (2,); False declares no dtype or shape."""
    seconds: float = 3.0
    """How long a slow setup or an overrun takes."""

    def __post_init__(self) -> None:
        if self.fault not in STEP_FAULTS + SETUP_FAULTS + CLOSE_FAULTS:
            known = ", ".join(STEP_FAULTS + SETUP_FAULTS + CLOSE_FAULTS)
            raise ValueError(f"unknown fault '{self.fault}' (known: {known})")


class FaultyNode(Controller):
    """Publishes ``[value, value]`` and misbehaves in one of the ways a loop must survive.

    A fake controller for reliability tests and ``benchmarks/fault_matrix.py``:
    each step publishes its input (any number or array; the first element)
    twice as float64 (2,), until step ``on_step``, where it does ``fault``:
    raises (RuntimeError, SystemExit, KeyboardInterrupt, BaseException), hangs
    (a Python loop, a sleep, a loop that swallows every exception, or a C call
    that holds the GIL), returns what its port does not declare, or overruns.
    Counters are shared by every instance with the same node id, so they carry
    across restarts.

    Faults:
        on purpose, every one of them; ``c_hang`` cannot be interrupted and ends
        the process unless the node runs in a process of its own.

    Example::

        graph.add_node("bad", FaultyNode, inputs={"value": "src/value"},
                       config={"fault": "python_hang"}, watchdog_ms=100)
    """

    inputs = (Port("value", doc="a number or array; its first element is used"),)
    outputs = (Port("value", dtype="float64", shape=(2,), doc="``[value, value]``"),)
    Config = FaultyConfig

    @classmethod
    def ports(cls, config: FaultyConfig) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        if config.typed:
            return cls.inputs, cls.outputs
        return cls.inputs, (Port("value", doc="``[value, value]``, no dtype declared"),)

    def setup(self, ctx: NodeContext) -> None:
        self.state = ctx.shared(f"faulty:{ctx.node_id}", lambda: {"steps": 0, "setups": 0})
        self.state["setups"] += 1
        if self.state["setups"] > 1 and ctx.config.fault == "slow_setup":
            time.sleep(ctx.config.seconds)
        if self.state["setups"] > 1 and ctx.config.fault == "failing_setup":
            raise RuntimeError("setup after a restart fails by script")

    def step(self, inputs: dict[str, Any]) -> Any:
        n = self.state["steps"]
        self.state["steps"] += 1
        value = inputs.get("value")
        first = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
        good = {"value": np.array([first, first])}
        fault = self.config.fault
        once, from_then_on = n == self.config.on_step, n >= self.config.on_step
        if fault in SETUP_FAULTS and once:
            raise RuntimeError("a fault to make the node restart")
        if fault in SETUP_FAULTS + CLOSE_FAULTS or not from_then_on:
            return good
        if fault in ("python_hang", "sleep_hang", "swallowing_hang", "c_hang", "overrun"):
            if once:
                _hang(fault, self.config.seconds)
            return good
        return _bad_output(fault, first)

    def close(self) -> None:
        if self.config.fault == "close_hang":
            time.sleep(3600)
        if self.config.fault == "close_raise":
            raise RuntimeError("close fails by script")


def _hang(how: str, seconds: float) -> None:
    if how == "python_hang":
        while True:
            pass
    elif how == "sleep_hang":
        time.sleep(3600)
    elif how == "swallowing_hang":
        while True:
            try:
                time.sleep(3600)
            except BaseException:  # the point: a node that will not stop
                pass
    elif how == "c_hang":  # libc's sleep called with the GIL held: nothing Python runs
        import ctypes

        ctypes.PyDLL(None).sleep(3600)
    else:  # overrun: long, but it ends
        time.sleep(seconds)


def _bad_output(fault: str, first: float) -> Any:
    if fault == "raise":
        raise RuntimeError("step fails by script")
    if fault == "system_exit":
        raise SystemExit(3)
    if fault == "keyboard_interrupt":
        raise KeyboardInterrupt
    if fault == "base_exception":
        raise BaseException("a BaseException by script")
    return {
        "wrong_dtype": {"value": np.zeros((5, 5), np.int32)},
        "wrong_shape": {"value": np.zeros(3)},
        "string": {"value": "not a number"},
        "nan": {"value": np.array([first, math.nan])},
        "nan_in_list": {"value": [first, (1.0, math.nan)]},
        "not_a_mapping": 5,
        "unknown_output": {"bogus": 1.0},
        "long_list": {"value": [first] * 1025},
        "deep_nesting": {"value": [[[[[[[[[[first]]]]]]]]]]},
    }[fault]


class AuditSink(Monitor):
    """Counts what arrives that is not a finite float64 array of shape (2,).

    A fake actuator for reliability tests: it takes inputs of any name and
    states (``ctx.note``) ``received`` and ``bad``, the count of payloads a
    well-behaved loop would never deliver, so the run report shows them.

    Faults:
        none of its own.

    Example::

        graph.add_node("motor", AuditSink, inputs={"action": "bad/value"})
    """

    accepts_any_inputs = True

    def setup(self, ctx: NodeContext) -> None:
        self.received = self.bad = 0
        ctx.note("received", "0")
        ctx.note("bad", "0")

    def step(self, inputs: dict[str, Any]) -> None:
        for data in inputs.values():
            if data is None:
                continue
            self.received += 1
            ok = (
                isinstance(data, np.ndarray)
                and data.dtype == np.float64
                and data.shape == (2,)
                and bool(np.isfinite(data).all())
            )
            self.bad += not ok
        self.ctx.note("received", str(self.received))
        self.ctx.note("bad", str(self.bad))


@hookimpl
def edgeloop_register_node_types() -> dict[str, type[Node]]:
    """``--plugin edgeloop.testing`` makes these usable from YAML, as
    ``testing.counter``, ``testing.faulty`` and ``testing.audit``."""
    return {
        "testing.counter": CounterSensor,
        "testing.faulty": FaultyNode,
        "testing.audit": AuditSink,
    }


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
    on a simulated clock; every output is a declared port, of the dtype and shape
    the port declares; outputs on float or undeclared ports are finite.

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
                    port = declared_out[name]
                    if value is None:
                        continue
                    dtype = None if port.dtype is None else np.dtype(port.dtype)
                    problem = type_problem(dtype, port.shape, value)
                    if problem is not None:
                        raise AssertionError(f"{cls.__name__} output '{name}': {problem}")
                    if (dtype is None or dtype.kind in "fc") and not payload_is_finite(value):
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
