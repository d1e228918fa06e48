"""Fault policies: restart with backoff, hold_last, fallback, stop; non-finite and stale inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor, LoopGraph
from edgeloop.testing import CounterSensor, RecordingSink, ScriptedNode


def chain(on_fault: Any, script: dict[str, Any], *, fallback: bool = False) -> LoopGraph:
    """source (100 Hz, values 1, 2, 3...) -> scripted (x10) -> sink."""
    graph = LoopGraph(name="faulty")
    graph.add_node("source", CounterSensor, rate_hz=100, config={"start": 1})
    graph.add_node(
        "scripted",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"gain": 10, **script},
        on_fault=on_fault,
    )
    if fallback:
        graph.add_node("spare", ScriptedNode, config={"gain": -1})
    graph.add_node("sink", RecordingSink, inputs={"value": "scripted/value"})
    return graph


def run(graph: LoopGraph, duration_s: float = 0.1, **kwargs: Any) -> tuple[Executor, Any]:
    executor = Executor(graph, simulated=True, **kwargs)
    return executor, executor.run(duration_s)


def received(executor: Executor) -> list[float]:
    return [float(v[0]) for v in executor.node("sink").values("value")]


def test_restart_waits_a_doubling_backoff_then_sets_up_a_fresh_node():
    graph = chain({"restart": {"backoff_ms": 10, "max_restarts": 5}}, {"raise_on": [2, 3]})
    executor, report = run(graph)
    stats = report.node("scripted")
    # step 2 (t=20 ms) fails: down until 30 ms; the restarted node fails step 3 at 30 ms:
    # down 20 ms, so the message at 40 ms is skipped and the node is back at 50 ms
    assert stats.faults == {"exception": 2}
    assert stats.restarts == 2 and stats.skipped == 1
    assert received(executor) == [10, 20, 60, 70, 80, 90, 100]
    assert executor.node("scripted").state["setups"] == 3
    assert [f["action"] for f in report.fault_log] == ["restart", "restart"]


def test_restart_gives_up_and_stops_the_loop_after_its_maximum():
    graph = chain(
        {"restart": {"backoff_ms": 1, "max_restarts": 2}}, {"raise_on": list(range(2, 100))}
    )
    _, report = run(graph)
    assert report.node("scripted").restarts == 2
    assert report.stop_reason.startswith("node 'scripted' faulted")
    assert "after 2 restarts" in report.stop_reason
    assert report.fault_log[-1]["action"] == "stop"


def test_a_restart_whose_setup_fails_counts_as_another_fault():
    graph = chain(
        {"restart": {"backoff_ms": 5, "max_restarts": 1}}, {"raise_on": [1], "fail_setup_after": 1}
    )
    _, report = run(graph)
    assert "setup after restart" in report.stop_reason
    assert report.node("scripted").faults == {"exception": 2}


def test_hold_last_publishes_the_last_good_output_again():
    executor, report = run(chain("hold_last", {"raise_on": [3, 4]}))
    assert received(executor) == [10, 20, 30, 30, 30, 60, 70, 80, 90, 100]
    assert report.node("scripted").faults == {"exception": 2}
    assert report.stop_reason == "duration reached"


def test_fallback_steps_the_fallback_node_on_the_faulted_nodes_inputs():
    executor, report = run(chain({"fallback": "spare"}, {"raise_on": [3]}, fallback=True))
    assert received(executor) == [10, 20, 30, -4, 50, 60, 70, 80, 90, 100]
    assert report.fault_log[0]["action"] == "fallback:spare"
    assert report.node("spare").calls == 1  # stepped once, in place of the faulted node


def test_stop_ends_the_loop_cleanly_with_the_reason_in_the_report():
    events: list[tuple[str, str, str]] = []

    class Spy:
        @edgeloop.hookimpl
        def edgeloop_node_faulted(self, node_id, kind, action):
            events.append((node_id, kind, action))

    registry = edgeloop.PluginRegistry(plugins={"spy": Spy()})
    executor, report = run(chain("stop", {"raise_on": [5]}), registry=registry)
    assert received(executor) == [10, 20, 30, 40, 50]
    assert report.stop_reason == (
        "node 'scripted' faulted (exception: RuntimeError: step 5 fails by script) "
        "and its policy is stop"
    )
    assert report.duration_s == pytest.approx(0.05)
    assert report.stopped_by_fault
    assert events == [("scripted", "exception", "stop")]


def test_a_non_finite_output_is_a_fault_and_never_reaches_the_receiver():
    executor, report = run(chain("hold_last", {"nan_on": [2]}))
    values = received(executor)
    assert np.isfinite(values).all()
    assert values[:4] == [10, 20, 20, 40]
    assert report.node("scripted").faults == {"non_finite": 1}


def test_an_input_older_than_its_stale_limit_is_a_fault():
    graph = LoopGraph(name="stale")
    graph.add_node("sensor", CounterSensor, rate_hz=10)
    graph.add_node(
        "watcher",
        RecordingSink,
        rate_hz=100,
        on_fault="hold_last",
        inputs={"value": {"from": "sensor/value", "stale_ms": 55}},
    )
    executor, report = run(graph, 1.0)
    # every 100 ms the reading is fresh at 0..50 ms and stale at 60, 70, 80 and 90 ms
    assert report.node("watcher").faults == {"stale_input": 40}
    assert len(executor.node("watcher").received) == 60


def test_an_input_that_never_arrives_goes_stale_from_loop_start():
    graph = LoopGraph(name="never")
    graph.add_node("sensor", CounterSensor, rate_hz=100)
    graph.add_node(
        "silent",
        ScriptedNode,
        inputs={"value": "sensor/value"},
        config={"nan_on": list(range(100))},
        on_fault="hold_last",
    )
    graph.add_node(
        "watcher",
        RecordingSink,
        rate_hz=100,
        on_fault="stop",
        inputs={"value": {"from": "silent/value", "stale_ms": 25}},
    )
    _, report = run(graph, 1.0)
    assert report.stop_reason.startswith("node 'watcher' faulted (stale_input")
    assert report.duration_s == pytest.approx(0.03)


def test_one_node_raising_does_not_stop_the_others():
    graph = chain("hold_last", {"raise_on": list(range(100))})
    graph.add_node("other", RecordingSink, inputs={"value": "source/value"})
    _, report = run(graph)
    assert report.stop_reason == "duration reached" and not report.stopped_by_fault
    assert report.node("other").calls == 10
    assert report.node("scripted").faults == {"exception": 10}


def test_a_node_whose_setup_fails_at_start_is_a_clear_error():
    graph = chain("stop", {"fail_setup_after": 0})
    with pytest.raises(edgeloop.NodeSetupError, match="node 'scripted' failed in setup"):
        run(graph)


def test_a_fifo_message_that_crashes_a_node_is_not_fed_to_it_again():
    graph = LoopGraph(name="poison")
    graph.add_node("source", CounterSensor, rate_hz=100, config={"start": 1})

    @edgeloop.node(outputs=("value",))
    def total(value):
        """Sums a batch; the value 3 crashes it."""
        if any(v[0] == 3 for v in value):
            raise ValueError("poison")
        return np.array([sum(v[0] for v in value)])

    graph.add_node(
        "total",
        total,
        rate_hz=50,
        on_fault="hold_last",
        inputs={"value": {"from": "source/value", "queue": "fifo", "size": 8}},
    )
    graph.add_node("sink", RecordingSink, inputs={"value": "total/value"})
    executor, report = run(graph, 0.1)
    # batches: [1], [2, 3] crashes (the last good sum is held), [4, 5], [6, 7], [8, 9]
    assert received(executor) == [1, 1, 9, 13, 17]
    assert report.node("total").faults == {"exception": 1}
