"""What the executor keeps per node, port, input, contract and timer.

Built once before a run by :mod:`edgeloop.runtime.building`. Delivery is
port-centric: an output port keeps its last message's fields (sequence
number, data, times) and writes the data straight into each receiver's inputs
mapping; a receiver learns what it missed by comparing sequence numbers when
it steps. So a delivery allocates nothing and touches one dict entry per
edge, the cheapest thing Python does.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeloop.runtime.device_tensors import on_host
from edgeloop.runtime.graph import ContractSpec, NodeSpec
from edgeloop.runtime.messages import Message
from edgeloop.runtime.metrics import LatencyRecorder
from edgeloop.runtime.node import Actuator, Node, NodeContext, Port

_log = logging.getLogger("edgeloop.executor")

NEVER = 1 << 62
DEFAULT_WATCHDOG_MS = 2000.0  # at least; else ten times the node's deadline


def watchdog_ns(spec: NodeSpec) -> int:
    """A node's step limit in ns (``NEVER`` when its ``watchdog_ms`` is ``off``)."""
    limit = spec.watchdog_ms
    if limit == "off":
        return NEVER
    if limit is None:
        limit = max(DEFAULT_WATCHDOG_MS, 10 * (spec.deadline_ms or 0))
    return int(limit * 1e6)


class OutPort:
    """The sending end of an output port (or of a timer), with its last message."""

    __slots__ = (
        "checks_finite",
        "checks_type",
        "direct",
        "edges",
        "fifo_slots",
        "host_readers",
        "is_small_vector",
        "last_created",
        "last_data",
        "last_sensed",
        "name",
        "ok_dtype",
        "ok_shape",
        "seq",
        "taps",
        "want_dtype",
        "want_shape",
    )

    def __init__(self, port: Port) -> None:
        self.name = port.name
        # The output contract: what the port declares. A message is checked in full
        # when it is not an array of the dtype and shape that passed last
        # (ok_dtype, ok_shape): on the first message and when the type changes.
        self.want_dtype = None if port.dtype is None else np.dtype(port.dtype)
        self.want_shape = port.shape
        self.checks_type = port.dtype is not None or port.shape is not None
        self.ok_dtype: Any = None
        self.ok_shape: Any = None
        # NaN/inf is a fault on float ports and on ports that declare no dtype.
        self.checks_finite = self.want_dtype is None or self.want_dtype.kind in "fc"
        self.is_small_vector = (
            self.want_dtype is not None
            and self.want_dtype.kind == "f"
            and port.shape is not None
            and len(port.shape) == 1
            and port.shape[0] is not None
            and port.shape[0] <= 64
        )
        self.seq = 0  # messages published so far; the last one has seq - 1
        self.last_data: Any = None
        self.last_created = 0.0
        self.last_sensed = 0.0
        # (receiver's inputs mapping, port name, receiver to trigger or None), one per latest slot
        self.edges: list[tuple[dict[str, Any], str, Runner | None]] = []
        # Per edge: who reads it from the host ("node 'log'"), or None for a receiver
        # that takes device tensors as they are (a model node); a device tensor's
        # host copy is counted against the first reader (runtime.device_tensors).
        self.host_readers: list[str | None] = []
        self.fifo_slots: list[Slot] = []
        self.direct: Runner | None = None  # receiver stepped right after a publish, not queued
        # Called with (data, seq, created, sensed) for every message: the recorder,
        # senders to other process groups.
        self.taps: list[Any] = []

    def last_message(self) -> Message | None:
        """The last published message, or None."""
        if not self.seq:
            return None
        return Message(self.last_data, self.seq - 1, self.last_created, self.last_sensed)

    def last_host_message(self) -> Message | None:
        """The last message with a device tensor's data copied to the host (for a
        receiver that cannot take device tensors)."""
        if not self.seq:
            return None
        data = on_host(self.last_data, "ctx.message")
        return Message(data, self.seq - 1, self.last_created, self.last_sensed)


class Slot:
    """The receiving end of one input port."""

    __slots__ = (
        "drops",
        "fifo",
        "name",
        "not_sensing",
        "pending",
        "read_seq",
        "runner",
        "size",
        "source",
        "stale_s",
        "taken_sensed",
        "trigger",
    )

    def __init__(
        self,
        runner: Runner,
        name: str,
        source: OutPort,
        *,
        fifo: bool,
        size: int,
        trigger: bool,
        stale_s: float | None,
        not_sensing: bool = False,
    ) -> None:
        self.runner = runner
        # Fed by a timer (ticks) or a feedback edge (the loop's own past actions):
        # what arrives there is not sensing, and the sensing time of outputs ignores it.
        self.not_sensing = not_sensing
        self.name = name
        self.source = source
        self.fifo = fifo
        self.size = size
        self.trigger = trigger
        self.stale_s = stale_s
        self.read_seq = 0  # source.seq when this slot was last read
        self.drops = 0
        self.pending: deque[Message] = deque(maxlen=size)
        self.taken_sensed = math.inf  # oldest sensing among the fifo messages taken last

    def take_pending(self) -> list[Any]:
        """Empty a fifo slot before a step: its payloads, oldest first. Taken
        messages are gone even if the step then faults, so a message that
        crashes a node is not fed to it again."""
        taken = self.pending
        self.taken_sensed = min((m.sensed for m in taken), default=math.inf)
        payloads = [m.data for m in taken]
        taken.clear()
        self.read_seq = self.source.seq
        return payloads

    def consume(self) -> float:
        """Mark what arrived as read (counting overwritten messages as drops);
        return the oldest sensing time among fresh messages, or inf if none."""
        source = self.source
        if self.fifo:
            sensed, self.taken_sensed = self.taken_sensed, math.inf
            return sensed
        missed = source.seq - self.read_seq
        if not missed:
            return math.inf
        if missed > 1:
            self.drops += missed - 1
        self.read_seq = source.seq
        return math.inf if self.not_sensing else source.last_sensed

    def unread_overwrites(self) -> int:
        """Latest-queue messages overwritten since the last read (drops not yet counted)."""
        return 0 if self.fifo else max(0, self.source.seq - self.read_seq - 1)


class Runner:
    """A node object plus everything the executor keeps about it."""

    __slots__ = (
        "closed",
        "cls",
        "consecutive_faults",
        "contracts",
        "ctx",
        "deadline_ns",
        "declared_inputs",
        "declared_outputs",
        "down_ns",
        "down_since",
        "down_until",
        "faults",
        "fifo_slots",
        "guarded",
        "inputs",
        "is_source",
        "latency",
        "misses",
        "node",
        "only_slot",
        "only_source",
        "out_ports",
        "queued",
        "record",
        "restart_job",
        "restarts",
        "run",
        "skipped",
        "slots",
        "spec",
        "stale_slots",
        "started",
        "step",
        "step_wrapper",
        "timer",
        "watchdog_ns",
    )

    def __init__(self, spec: NodeSpec, cls: type[Node], node: Node, ctx: NodeContext) -> None:
        self.spec = spec
        self.cls = cls
        self.node = node
        self.step = node.step
        self.ctx = ctx
        self.declared_inputs, self.declared_outputs = cls.ports(ctx.config)
        self.inputs: dict[str, Any] = {}
        self.slots: list[Slot] = []
        self.fifo_slots: list[Slot] = []
        self.stale_slots: list[Slot] = []
        self.out_ports: dict[str, OutPort] = {}
        self.contracts: list[tuple[ContractState, OutPort]] = []
        self.is_source = True  # no input but timers: its outputs are fresh sensing
        self.only_slot: Slot | None = None  # the single latest input, when that is all there is
        self.only_source: OutPort | None = None
        self.guarded = False  # True when something must be checked before each step
        self.queued = False
        self.deadline_ns = NEVER if spec.deadline_ms is None else int(spec.deadline_ms * 1e6)
        self.latency = LatencyRecorder()
        self.record = self.latency.samples.append
        self.misses = 0
        self.faults: dict[str, int] = {}
        self.restarts = 0
        self.consecutive_faults = 0
        self.down_until = 0  # ns; non-zero while a restart waits out its backoff or setup
        self.down_since = 0  # ns (clock) when it went down
        self.down_ns = 0  # total time down, backoff and restart setup
        self.restart_job: Any = None  # a restart's setup running off the loop's thread
        self.closed = False  # its node is closed (a restart's job did it): not again
        self.started = 0  # perf_counter_ns when its running step began; 0 between steps
        self.watchdog_ns = watchdog_ns(spec)  # a step running longer is interrupted
        self.skipped = 0
        self.run: Any = None  # the compiled step, set by the executor
        self.timer: Timer | None = None  # the timer of its rate_hz, if it has one
        self.step_wrapper: Any = None  # replaces node.step (a steerable sensor's counting)

    def update_guard(self) -> None:
        self.guarded = bool(self.down_until or self.stale_slots or self.fifo_slots)


class ContractState:
    """A contract's path end and its sense-to-act latency."""

    __slots__ = ("deadline_s", "latency", "misses", "record", "spec")

    def __init__(self, spec: ContractSpec) -> None:
        self.spec = spec
        self.deadline_s = spec.deadline_ms / 1e3
        self.latency = LatencyRecorder(to_ns=1e9)  # records seconds
        self.record = self.latency.samples.append
        self.misses = 0


class Timer:
    """A periodic trigger: a node's ``rate_hz``, a ``timer/..`` input (``port``) or a
    stale-input watchdog (``watched``)."""

    __slots__ = (
        "disabled",
        "due",
        "fire",
        "first_tick",
        "jitter",
        "order",
        "origin",
        "overruns",
        "period_ns",
        "port",
        "runner",
        "source",
        "ticks",
        "watched",
    )

    def __init__(
        self,
        source: str,
        period_ns: int,
        runner: Runner,
        port: OutPort | None = None,
        watched: Slot | None = None,
    ) -> None:
        self.source = source
        self.period_ns = period_ns
        self.runner = runner
        self.port = port  # publishes the tick time for a timer input
        self.watched = watched  # the input a watchdog checks for staleness
        self.ticks = 0  # grid ticks passed, fired or skipped as overruns
        self.first_tick = 0  # where a restarted process group resumed the grid
        self.origin = 0  # ns; the grid is origin + ticks * period_ns (moved by a new rate)
        self.due = 0  # when it fires next; a heap entry with another time is stale
        self.order = 0  # its place among timers due at the same time
        self.disabled = False  # a sensing command turned its sensor off
        self.fire: Any = None  # steps the node or publishes the tick; set by the executor
        self.overruns = 0
        self.jitter = LatencyRecorder()


def close_quietly(runner: Runner, node: Node | None = None, *, watched: bool = True) -> None:
    """Close ``runner``'s node (or ``node``, an instance of it); one that raises, or
    runs past ``close_timeout_ms``, is logged and counted as a ``close`` fault, never
    raised: it must not hide the report.

    ``watched``: on the loop's thread, where the step watchdog (when it runs)
    interrupts a close that overruns; a restart's thread passes False.
    """
    node = runner.node if node is None else node
    _bounded(runner, node.close, "close", watched)


def make_safe(
    runner: Runner, reason: str, node: Node | None = None, *, watched: bool = True
) -> None:
    """Have an actuator send its safe command (see :meth:`Actuator.safe`) and count
    it under ``reason`` in the report; one that raises or runs past
    ``close_timeout_ms`` is logged and counted as a ``safe`` fault, never raised.
    ``watched`` as for :func:`close_quietly`."""
    node = runner.node if node is None else node
    if not isinstance(node, Actuator):
        return
    if _bounded(runner, lambda: node.safe(reason), "safe", watched):
        runner.ctx.went_safe(reason)


def _bounded(runner: Runner, call: Callable[[], Any], what: str, watched: bool) -> Any:
    """``call()``'s result, or None when it raised or overran ``close_timeout_ms``
    (counted as a ``what`` fault and logged)."""
    limit = runner.watchdog_ns
    if watched:
        runner.watchdog_ns = int(runner.spec.close_timeout_ms * 1e6)
        runner.started = time.perf_counter_ns()
    try:
        return call()
    except BaseException as exc:  # a node's close may not end the process either
        runner.faults[what] = runner.faults.get(what, 0) + 1
        why = (  # the watchdog's StepInterrupted, named: watchdog.py imports this module
            f"{exc} (close_timeout_ms)"
            if type(exc).__name__ == "StepInterrupted"
            else f"{type(exc).__name__}: {exc}"
        )
        _log.warning("node '%s' %s: %s", runner.spec.id, what, why)
        return None
    finally:
        if watched:
            runner.started = 0
            runner.watchdog_ns = limit
