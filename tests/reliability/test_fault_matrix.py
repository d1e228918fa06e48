"""Every way a node can misbehave, under every fault policy: handled, counted, never
delivered, never the end of the loop (issue 13).

The loop is always ``src (100 Hz) -> bad -> motor``: ``bad`` is a
:class:`~edgeloop.testing.FaultyNode` doing one fault from its step 2 on, and
``motor`` an :class:`~edgeloop.testing.AuditSink` that counts anything it
receives that a well-behaved loop would never deliver. These cells run in this
process on the simulated clock (hangs are wall time: the watchdog works the
same there); ``test_hangs.py`` has the ones that need a process of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor, LoopGraph
from edgeloop.testing import AuditSink, CounterSensor, FaultyNode

POLICIES = ("restart", "hold_last", "fallback", "stop")
HANG_WATCHDOG_MS = 300  # well past any honest step here, even on a loaded machine

# fault -> (fault kind counted, happens once (a hang) rather than on every step)
KIND = {
    "raise": ("exception", False),
    "system_exit": ("exception", False),
    "base_exception": ("exception", False),
    "not_a_mapping": ("exception", False),
    "unknown_output": ("exception", False),
    "python_hang": ("hung", True),
    "sleep_hang": ("hung", True),
    "wrong_dtype": ("wrong_type", False),
    "wrong_shape": ("wrong_type", False),
    "string": ("wrong_type", False),
    "nan": ("non_finite", False),
    "nan_in_list": ("wrong_type", False),  # a list on a port declared float64 (2,)
}
UNTYPED_KIND = {"nan": "non_finite", "nan_in_list": "non_finite", "string": None}


def faulty_loop(fault: str, policy: str, **config: Any) -> LoopGraph:
    graph = LoopGraph(name="faulty")
    graph.add_node("src", CounterSensor, rate_hz=100)
    on_fault: Any = policy
    if policy == "fallback":
        graph.add_node("spare", FaultyNode, config={"on_step": 10**9})
        on_fault = {"fallback": "spare"}
    graph.add_node(
        "bad",
        FaultyNode,
        inputs={"value": "src/value"},
        config={"fault": fault, **config},
        on_fault=on_fault,
    )
    graph.nodes[-1].watchdog_ms = HANG_WATCHDOG_MS
    graph.add_node("motor", AuditSink, inputs={"action": "bad/value"})
    return graph


def run(graph: LoopGraph, duration_s: float = 0.3) -> Any:
    return Executor(graph, simulated=True).run(duration_s)


def never_delivered_anything_bad(report: Any) -> None:
    notes = report.node("motor").notes
    assert notes["bad"] == "0", notes
    assert int(notes["received"]) >= 2  # the good steps before the fault came through


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("fault", sorted(KIND))
def test_a_fault_is_counted_under_its_policy_and_nothing_bad_is_delivered(fault, policy):
    kind, once = KIND[fault]
    report = run(faulty_loop(fault, policy))
    bad = report.node("bad")
    never_delivered_anything_bad(report)
    assert kind in bad.faults, (bad.faults, report.stop_reason)
    assert next(f["kind"] for f in report.fault_log if f["node"] == "bad") == kind
    received = int(report.node("motor").notes["received"])
    if policy == "stop":
        assert report.stopped_by_fault and "node 'bad' faulted" in report.stop_reason
        assert bad.faults == {kind: 1} and received == 2
    elif policy == "restart" and not once:  # it faults again after every restart
        assert bad.restarts == 3 and "after 3 restarts" in report.stop_reason
    else:  # the loop runs its whole time, the motor fed all along
        assert report.stop_reason == "duration reached", report.stop_reason
        assert received > 20
        if policy == "restart":
            assert bad.restarts == 1 and bad.faults == {kind: 1}


@pytest.mark.parametrize("fault", sorted(UNTYPED_KIND))
def test_a_port_without_dtype_still_refuses_nan_anywhere_in_the_payload(fault):
    report = run(faulty_loop(fault, "stop", typed=False))
    kind = UNTYPED_KIND[fault]
    if kind is None:  # a string on an untyped port is a string: delivered, and the audit sees it
        assert report.node("bad").faults == {}
        assert report.node("motor").notes["bad"] != "0"
    else:
        assert report.node("bad").faults == {kind: 1}
        never_delivered_anything_bad(report)


def test_keyboard_interrupt_from_a_node_is_a_clean_stop_with_the_report():
    report = run(faulty_loop("keyboard_interrupt", "restart"))
    assert report.stop_reason == "interrupted" and not report.stopped_by_fault
    # Steps 0 and 1 went well; step 2 raised, and is in the figures too.
    assert report.node("src").calls == 3 and report.node("bad").calls == 3


def test_a_type_mismatch_names_node_port_expected_and_got():
    report = run(faulty_loop("wrong_dtype", "stop"))
    (entry,) = report.fault_log
    assert entry["node"] == "bad" and entry["kind"] == "wrong_type"
    assert entry["error"] == "output 'value': expected float64 (2,), got int32 (5, 5)"


def test_an_overrun_shorter_than_the_watchdog_is_a_deadline_miss_not_a_fault():
    graph = faulty_loop("overrun", "stop", seconds=0.05)
    graph.nodes[1].deadline_ms = 20
    report = run(graph)
    bad = report.node("bad")
    assert bad.faults == {} and bad.deadline_misses == 1
    assert report.stop_reason == "duration reached"


def test_the_watchdog_defaults_to_ten_deadlines_and_can_be_turned_off():
    from edgeloop.runtime.wiring import Runner

    graph = faulty_loop("raise", "stop")
    spec = graph.nodes[1]
    spec.watchdog_ms, spec.deadline_ms = None, 500
    runner = Runner(spec, FaultyNode, FaultyNode(), _ctx())
    assert runner.watchdog_ns == 5_000_000_000
    spec.deadline_ms = 1
    assert Runner(spec, FaultyNode, FaultyNode(), _ctx()).watchdog_ns == 2_000_000_000
    spec.watchdog_ms = "off"
    assert Runner(spec, FaultyNode, FaultyNode(), _ctx()).watchdog_ns == 1 << 62


def test_a_hang_with_the_watchdog_off_is_left_alone():
    # One short sleep stands in for the hang: nothing interrupts it, it is no fault.
    graph = faulty_loop("overrun", "stop", seconds=HANG_WATCHDOG_MS * 1.5e-3)
    graph.nodes[1].watchdog_ms = "off"
    report = run(graph)
    assert report.node("bad").faults == {} and report.stop_reason == "duration reached"


def _ctx() -> Any:
    from edgeloop.runtime.node import NodeContext

    return NodeContext.standalone("bad", FaultyNode.Config())


class TwoOutputs(edgeloop.Node):
    """Publishes ``value`` (float64 (2,)) and ``count`` (int64), the count wrong from step 2."""

    inputs = (edgeloop.Port("value", doc="anything; it triggers the step"),)
    outputs = (
        edgeloop.Port("value", dtype="float64", shape=(2,), doc="two zeros"),
        edgeloop.Port("count", dtype="int64", doc="steps so far"),
    )

    def setup(self, ctx):
        self.steps = 0

    def step(self, inputs):
        self.steps += 1
        count = np.int64(self.steps) if self.steps < 3 else float(self.steps)
        return {"value": np.zeros(2), "count": count}


def test_every_port_of_a_node_with_several_outputs_keeps_its_contract():
    graph = LoopGraph(name="two")
    graph.add_node("src", CounterSensor, rate_hz=100)
    graph.add_node("two", TwoOutputs, inputs={"value": "src/value"}, on_fault="stop")
    graph.add_node("motor", AuditSink, inputs={"action": "two/value"})
    report = run(graph)
    (entry,) = report.fault_log
    assert entry["kind"] == "wrong_type"
    assert entry["error"] == "output 'count': expected int64, got a Python float"
    assert report.node("motor").notes == {"received": "2", "bad": "0"}


PAYLOADS = {
    "1,025 floats": [0.5] * 1025,
    "10 deep": [[[[[[[[[[1.0]]]]]]]]]],
    "an object": {"thing": object()},
    "a 70,000 character string": "x" * 70_000,
    "a string array": np.array(["a", "b"]),
}


@dataclass(frozen=True)
class PublishesConfig:
    payload: str = "10 deep"
    """Which of PAYLOADS it publishes."""


class Publishes(edgeloop.Node):
    """Publishes one of ``PAYLOADS`` on an undeclared port, each step."""

    inputs = (edgeloop.Port("value", doc="anything; it triggers the step"),)
    outputs = (edgeloop.Port("value", doc="the payload"),)
    Config = PublishesConfig

    def step(self, inputs):
        return {"value": PAYLOADS[self.config.payload]}


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("1,025 floats", "more than 1024 entries"),
        ("10 deep", "nested deeper than 8"),
        ("an object", "a object has no wire form"),
        ("a 70,000 character string", "more than 65,536"),
        ("a string array", "arrays of <U1 have no wire form"),
    ],
)
def test_a_payload_that_could_not_travel_between_processes_is_refused_in_one_too(payload, why):
    graph = LoopGraph(name="limits")
    graph.add_node("src", CounterSensor, rate_hz=100)
    graph.add_node(
        "pub",
        Publishes,
        inputs={"value": "src/value"},
        config={"payload": payload},
        on_fault="stop",
    )
    report = run(graph)
    (entry,) = report.fault_log
    assert entry["kind"] == "payload" and why in entry["error"], entry
