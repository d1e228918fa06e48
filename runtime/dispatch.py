"""Each node's step as straight-line Python, generated when the loop starts.

What the executor does around a node's own ``step`` (timing it, its deadline,
drop counting, sensing provenance, the output contract and the NaN check,
handing the output on, the contracts that end at it) is written out as source
for that node: its ports' fixed facts become constants, the parts it does not
need are left out, and a receiver that only this output triggers is stepped
further down the same function, its step timed from the sender's closing clock
reading (one reading between consecutive steps). The runtime stays pure Python:
the source is compiled with ``compile`` when the loop starts, and each function
keeps it as ``source`` for reading.

Nodes with several outputs, or none, hand them on through the executor's general
``publish``; the single-output case is the common one and the one written out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.runtime.clocks import RealClock
from edgeloop.runtime.wiring import NEVER, OutPort, Runner

_MAX_INLINE = 16
"""Receivers stepped inline in one function; the next one is called."""


@dataclass(frozen=True)
class LoopCalls:
    """The executor's parts a generated step calls (bound methods, locals of its loop)."""

    guard: Callable[[Runner], bool]
    step_failed: Callable[[Runner, BaseException], None]
    node_missed: Callable[[Runner, int], None]
    contract_missed: Callable[[Any, float], None]
    sensed_of: Callable[[Runner, float], float]
    publish: Callable[..., None]
    deliver_fifo: Callable[[OutPort], None]
    check_outputs: Callable[[Runner, Mapping[str, Any]], bool]
    fault: Callable[..., None]
    finite: Callable[[Any], bool]
    payload_problem: Callable[[Any], Any]
    ready_append: Callable[[Runner], None]
    perf: Callable[[], int]
    clock: Any
    simulated: bool


def compile_steps(runners: list[Runner], calls: LoopCalls) -> None:
    """Set each runner's ``run`` to its generated step."""
    for runner in runners:
        runner.run = _compile(runner, calls)


def _compile(first: Runner, calls: LoopCalls) -> Callable[[], None]:
    source = _Source(calls)
    source.line("def run():")
    source.indent += 1
    if calls.simulated:  # one time for the whole chain: simulated time stands still
        source.line("created = clock._now_ns * 1e-9")
    source.line("t0 = perf()")
    chain: list[Runner] = []
    runner: Runner | None = first
    sender: OutPort | None = None  # the port whose publish steps this block
    while runner is not None:
        chain.append(runner)
        runner, sender = source.block(runner, len(chain) - 1, sender, chain)
    text = "\n".join(source.lines) + "\n"
    names = " > ".join(r.spec.id for r in chain)
    code = compile(text, f"<edgeloop step {names}>", "exec")
    namespace = dict(source.constants)
    exec(code, namespace)
    run = namespace["run"]
    run.source = text
    return run


class _Source:
    """The lines of one generated function and the constants they name."""

    def __init__(self, calls: LoopCalls) -> None:
        self.lines: list[str] = []
        self.indent = 0
        self.calls = calls
        self.constants: dict[str, Any] = {
            "Mapping": Mapping,
            "ndarray": np.ndarray,
            "isfinite": math.isfinite,
            **{name: getattr(calls, name) for name in LoopCalls.__dataclass_fields__},
        }

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def const(self, name: str, value: Any) -> str:
        self.constants[name] = value
        return name

    def block(
        self, r: Runner, k: int, sender: OutPort | None, chain: list[Runner]
    ) -> tuple[Runner | None, OutPort | None]:
        """Write runner ``r``'s step as block ``k`` (``sender``: the port published
        just above, whose receiver it is); return the receiver to write next in the
        same function (its direct receiver) and its port, or Nones."""
        line = self.line
        rk = self.const(f"r{k}", r)
        inputs = self.const(f"inputs{k}", r.inputs)
        record = self.const(f"record{k}", r.record)
        line(f"# {r.spec.id}")
        line(f"if {rk}.guarded and guard({rk}):")
        line("    return")
        line(f"{rk}.started = t0")  # for the step watchdog and busy_s
        line("try:")
        line(f"    out = {rk}.step({inputs})")
        line("except KeyboardInterrupt:  # Ctrl-C, or a node asking for it: a clean stop")
        line(f"    {rk}.started = 0")
        line(f"    {record}(perf() - t0)")
        line("    raise")
        line("except BaseException as exc:  # SystemExit and the watchdog's too: a fault")
        line(f"    step_failed({rk}, exc)")
        line("    return")
        line("t1 = perf()")
        line(f"{rk}.started = 0")
        line(f"{record}(t1 - t0)")
        if r.deadline_ns != NEVER:
            line(f"if t1 - t0 > {r.deadline_ns}:")
            line(f"    node_missed({rk}, t1 - t0)")
        if isinstance(self.calls.clock, RealClock):  # its time is perf_counter's: t1 is now
            line("created = (t1 - clock._start_ns) * 1e-9")
        elif not self.calls.simulated:
            line("created = clock.now_ns() * 1e-9")
        self._provenance(r, k, fused=sender is not None and r.only_source is sender)
        ctx = self.const(f"ctx{k}", r.ctx)
        line(f"if {ctx}._sensed_at is not None:  # the node said when its data was sensed")
        line(f"    sensed, {ctx}._sensed_at = {ctx}._sensed_at, None")
        port = next(iter(r.out_ports.values())) if len(r.out_ports) == 1 else None
        if getattr(r.node, "device_outputs", None):
            port = None  # device tensors: one host copy for those who need it (publish)
        if port is None:  # several outputs, or none, or device tensors: the general path
            self._general_outputs(r, k)
            return None, None
        # The one declared output alone, the common case, is written out; anything
        # else (None, several outputs, unknown names, a None payload) goes the
        # general way.
        got = f"(data := out.get({port.name!r}))"
        line(f"if type(out) is not dict or len(out) != 1 or {got} is None:")
        self.indent += 1
        self._general_outputs(r, k)
        line("return")
        self.indent -= 1
        self._checks(port, rk, k)
        self._hand_on(port, k)
        self._tail(r, k)
        receiver = port.direct
        if receiver is None:
            return None, None
        if len(chain) < _MAX_INLINE and receiver not in chain:
            line("t0 = t1")
            return receiver, port
        line(f"{self.const(f'direct{k}', receiver)}.run()")
        return None, None

    def _general_outputs(self, r: Runner, k: int) -> None:
        """Whatever the step returned, through the executor's checks and ``publish``."""
        line = self.line
        line("if out is not None:")
        line("    if type(out) is not dict and not isinstance(out, Mapping):")
        line(f"        fault(r{k}, 'exception', f'step returned {{type(out).__name__}}: '")
        line("              'return a mapping of output port to payload, or None')")
        line("        return")
        line("    if out:")
        line(f"        if not check_outputs(r{k}, out):")
        line("            return")
        line(f"        publish(r{k}, out, created, sensed)")
        self._tail(r, k)

    def _provenance(self, r: Runner, k: int, *, fused: bool) -> None:
        """``sensed``: when the data this step used was sensed; drops counted."""
        line = self.line
        senses = r.cls.role == "sensor"  # its outputs are fresh sensing, inputs or not
        if r.only_source is not None:
            slot = self.const(f"slot{k}", r.only_slot)
            if not fused:  # else ``seq`` and ``sensed`` are the sender's, just published
                source = self.const(f"source{k}", r.only_source)
                line(f"seq = {source}.seq")
            line(f"if seq - {slot}.read_seq > 1:")
            line(f"    {slot}.drops += seq - {slot}.read_seq - 1")
            line(f"{slot}.read_seq = seq")
            if senses:
                line("sensed = created")
            elif not fused:
                line(f"sensed = {source}.last_sensed if seq else created")
        elif r.is_source:
            line("sensed = created")
        else:
            line(f"sensed = sensed_of(r{k}, created)  # marks the inputs read")
            if senses:
                line("sensed = created")

    def _checks(self, port: OutPort, rk: str, k: int) -> None:
        """The output contract and the NaN check of ``data``; a fault returns."""
        line = self.line
        p = self.const(f"port{k}", port)
        if not port.checks_type:  # undeclared: the wire's limits and NaN, each time
            line("if payload_problem(data) is not None:")
            line(f"    check_outputs({rk}, out)")
            line("    return")
            return
        line(f"if type(data) is not ndarray or data.dtype is not {p}.ok_dtype "
             f"or data.shape != {p}.ok_shape:")  # fmt: skip
        line("    # the first message, or a new type: checked in full")
        line(f"    if not check_outputs({rk}, out):")
        line("        return")
        if not port.checks_finite:
            return
        if port.is_small_vector:
            # Declared 1-D, float and small: the sum of the elements is finite
            # exactly when they all are, unless it overflows: then numpy decides.
            line("elif not isfinite(sum(data.tolist())) and not finite(data):")
        else:
            line("elif not finite(data):")
        line(f"    check_outputs({rk}, out)")
        line("    return")

    def _hand_on(self, port: OutPort, k: int) -> None:
        """Publish ``data`` on the port: its last message, taps, receivers."""
        line = self.line
        p = f"port{k}"
        line(f"seq = {p}.seq + 1")
        line(f"{p}.seq = seq")
        line(f"{p}.last_data = data")
        line(f"{p}.last_created = created")
        line(f"{p}.last_sensed = sensed")
        for j, tap in enumerate(port.taps):  # the recorder, senders to other processes
            line(f"{self.const(f'tap{k}_{j}', tap)}(data, seq - 1, created, sensed)")
        for j, (inputs, name, receiver) in enumerate(port.edges):
            line(f"{self.const(f'edge{k}_{j}', inputs)}[{name!r}] = data")
            if receiver is not None:
                rec = self.const(f"receiver{k}_{j}", receiver)
                line(f"if not {rec}.queued:")
                line(f"    {rec}.queued = True")
                line(f"    ready_append({rec})")
        if port.fifo_slots:
            line(f"deliver_fifo({p})")

    def _tail(self, r: Runner, k: int) -> None:
        """After a step that faulted nothing: the fault run ends, contracts record."""
        line = self.line
        line(f"if r{k}.consecutive_faults:")
        line(f"    r{k}.consecutive_faults = 0")
        for j, (state, source) in enumerate(r.contracts):
            s = self.const(f"contract{k}_{j}", state)
            src = self.const(f"contract_source{k}_{j}", source)
            rec = self.const(f"contract_record{k}_{j}", state.record)
            line(f"if {src}.seq:")
            line(f"    latency = created - {src}.last_sensed")
            line(f"    {rec}(latency)")
            line(f"    if latency > {state.deadline_s!r}:")
            line(f"        contract_missed({s}, latency)")
