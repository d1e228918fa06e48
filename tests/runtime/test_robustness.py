"""Misbehaving nodes, plugins and inputs never take the loop down or skew its figures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor, LoopGraph, Port
from edgeloop.testing import CounterSensor, RecordingSink, ScriptedNode


def run(graph: LoopGraph, duration_s: float = 0.1, **kwargs: Any) -> tuple[Executor, Any]:
    executor = Executor(graph, simulated=True, **kwargs)
    return executor, executor.run(duration_s)


def test_a_step_returning_something_other_than_a_mapping_is_a_fault():
    class Sloppy(edgeloop.Controller):
        """Returns its input array itself instead of a mapping."""

        inputs = (Port("value"),)
        outputs = (Port("value"),)

        def step(self, inputs):
            return inputs["value"]

    graph = LoopGraph(name="sloppy")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node("sloppy", Sloppy, inputs={"value": "source/value"}, on_fault="hold_last")
    _, report = run(graph)
    assert report.stop_reason == "duration reached"
    assert report.node("sloppy").faults == {"exception": 10}
    assert "step returned ndarray" in report.fault_log[0]["error"]


def test_two_nodes_stopping_in_one_firing_still_count_as_stopped_by_a_fault():
    graph = LoopGraph(name="two_stops")
    graph.add_node("source", CounterSensor, rate_hz=100)
    for node_id in ("a", "b"):
        graph.add_node(
            node_id,
            ScriptedNode,
            inputs={"value": "source/value"},
            config={"raise_on": [0]},
            on_fault="stop",
        )
    _, report = run(graph)
    assert report.stopped_by_fault
    assert report.stop_reason.startswith("node 'a' faulted")


def test_a_node_faulting_thousands_of_times_in_a_row_keeps_its_backoff_bounded():
    graph = LoopGraph(name="many_faults")
    graph.add_node("source", CounterSensor, rate_hz=10_000)
    graph.add_node(
        "scripted",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"raise_on": list(range(5000))},
        on_fault={
            "restart": {"max_restarts": 100_000, "backoff_ms": 0.0001, "max_backoff_ms": 0.0001}
        },
    )
    _, report = run(graph, 0.25)
    assert report.stop_reason == "duration reached"
    assert report.node("scripted").faults["exception"] > 1100


def test_the_restart_backoff_doubles_for_non_finite_outputs_too():
    graph = LoopGraph(name="nan_backoff")
    graph.add_node("source", CounterSensor, rate_hz=1000)
    graph.add_node(
        "scripted",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"nan_on": list(range(100))},
        on_fault={"restart": {"max_restarts": 10, "backoff_ms": 10}},
    )
    _, report = run(graph, 0.1)
    times = [round(f["time_s"] * 1e3) for f in report.fault_log]
    assert times == [0, 10, 30, 70]  # waits of 10, 20, 40 ms


def test_a_timer_tick_is_not_mistaken_for_a_fresh_sensor_reading():
    graph = LoopGraph(name="ticked")
    graph.add_node("sensor", CounterSensor, rate_hz=10)
    graph.add_node(
        "actuator",
        RecordingSink,
        inputs={"value": {"from": "sensor/value", "trigger": False}, "tick": "timer/20ms"},
    )
    graph.add_contract("sense_to_act", ["sensor", "actuator"], deadline_ms=50)
    _, report = run(graph, 1.0)
    contract = report.contract("sense_to_act")
    assert contract.max_ms == pytest.approx(80)
    assert contract.deadline_misses == 20  # 60 and 80 ms old, twice per 100 ms


def test_a_fallback_that_returns_nan_stops_the_loop_instead_of_passing_it_on():
    graph = LoopGraph(name="bad_fallback")
    graph.add_node("source", CounterSensor, rate_hz=100, config={"start": 1})
    graph.add_node(
        "scripted",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"raise_on": [2]},
        on_fault={"fallback": "spare"},
    )
    graph.add_node("spare", ScriptedNode, config={"nan_on": [0]})
    graph.add_node("sink", RecordingSink, inputs={"value": "scripted/value"})
    executor, report = run(graph)
    values = [v[0] for v in executor.node("sink").values("value")]
    assert np.isfinite(values).all()
    assert report.stopped_by_fault
    assert "fallback 'spare' of 'scripted' failed too (non_finite" in report.stop_reason


def test_a_plugin_hook_that_raises_is_logged_and_the_loop_goes_on():
    class BrokenPlugin:
        @edgeloop.hookimpl
        def edgeloop_node_faulted(self, node_id):
            raise RuntimeError("plugin bug")

        @edgeloop.hookimpl
        def edgeloop_loop_started(self):
            raise RuntimeError("plugin bug at start")

    stopped: list[str] = []

    class Listener:
        @edgeloop.hookimpl
        def edgeloop_loop_stopped(self, report):
            stopped.append(report.stop_reason)

    graph = LoopGraph(name="hooks")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node(
        "scripted",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"raise_on": [1]},
        on_fault="hold_last",
    )
    registry = edgeloop.PluginRegistry(plugins={"broken": BrokenPlugin(), "ear": Listener()})
    _, report = run(graph, registry=registry)
    assert report.node("source").calls == 10
    assert stopped == ["duration reached"]
    hook_errors = [f["error"] for f in report.fault_log if f["kind"] == "hook_error"]
    assert any("edgeloop_loop_started" in e for e in hook_errors)
    assert any("edgeloop_node_faulted" in e for e in hook_errors)


def test_two_different_node_classes_with_one_name_are_refused():
    def make_gain(k: float) -> type[edgeloop.Node]:
        class Gain(ScriptedNode):
            """A gain."""

            def step(self, inputs):
                return {"value": inputs["value"] * k}

        return Gain

    graph = LoopGraph(name="twins")
    graph.add_node("source", CounterSensor, rate_hz=10)
    graph.add_node("one", make_gain(1.0), inputs={"value": "source/value"})
    with pytest.raises(edgeloop.GraphError, match="another node class is already called 'Gain'"):
        graph.add_node("thousand", make_gain(1000.0), inputs={"value": "source/value"})


def test_one_registry_serves_two_executors_of_graphs_with_python_classes():
    registry = edgeloop.PluginRegistry()
    for _ in range(2):
        graph = LoopGraph(name="reuse")
        graph.add_node("source", CounterSensor, rate_hz=10)
        _, report = run(graph, 0.2, registry=registry)
        assert report.node("source").calls == 2


@pytest.mark.parametrize("duration", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_duration_that_is_not_a_positive_number_is_refused(duration):
    graph = LoopGraph(name="bad_duration")
    graph.add_node("source", CounterSensor, rate_hz=10)
    with pytest.raises(edgeloop.EdgeloopError, match="positive number of seconds"):
        Executor(graph, simulated=True).run(duration)


def test_a_negative_seed_is_refused():
    graph = LoopGraph(name="bad_seed")
    with pytest.raises(edgeloop.EdgeloopError, match="seed must be a whole number >= 0"):
        Executor(graph, seed=-1)


def test_an_executor_refuses_a_second_run():
    graph = LoopGraph(name="once")
    graph.add_node("source", CounterSensor, rate_hz=10)
    executor, _ = run(graph)
    with pytest.raises(edgeloop.EdgeloopError, match="has run already"):
        executor.run(1.0)


def test_a_message_that_crashed_a_step_is_not_counted_as_a_drop():
    graph = LoopGraph(name="crash_drop")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node(
        "scripted",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"raise_on": [3]},
        on_fault="hold_last",
    )
    _, report = run(graph)
    assert report.node("scripted").drops == {"value": 0}


def test_an_event_driven_node_notices_when_its_input_falls_silent():
    graph = LoopGraph(name="silence")
    graph.add_node("sensor", CounterSensor, rate_hz=100)
    graph.add_node(
        "gate",
        ScriptedNode,
        inputs={"value": "sensor/value"},
        config={"nan_on": list(range(5, 1000))},
        on_fault="hold_last",
    )
    graph.add_node(
        "controller",
        ScriptedNode,
        on_fault="stop",
        inputs={"value": {"from": "gate/value", "stale_ms": 30}},
    )
    _, report = run(graph, 1.0)
    # 'gate' last published at 40 ms and then faults (held output keeps its 40 ms
    # age); the watchdog, every 15 ms, sees it at 75 ms, 35 ms old
    assert report.stop_reason.startswith("node 'controller' faulted (stale_input")
    assert report.duration_s == pytest.approx(0.075)


def test_held_outputs_keep_their_age_so_a_stale_check_downstream_still_fires():
    graph = LoopGraph(name="held")
    graph.add_node("sensor", CounterSensor, rate_hz=100)
    graph.add_node(
        "model",
        ScriptedNode,
        inputs={"value": "sensor/value"},
        config={"raise_on": list(range(3, 1000))},
        on_fault="hold_last",
    )
    graph.add_node(
        "controller",
        ScriptedNode,
        on_fault="stop",
        inputs={"value": {"from": "model/value", "stale_ms": 25}},
    )
    _, report = run(graph, 1.0)
    assert report.stop_reason.startswith("node 'controller' faulted (stale_input")


def test_a_declared_input_that_is_not_wired_reads_as_none():
    graph = LoopGraph(name="unwired")
    graph.add_node("pid", "pid", rate_hz=10)
    _, report = run(graph, 0.5)
    assert report.node("pid").calls == 5
    assert report.node("pid").faults == {}


def test_shared_resources_are_closed_by_the_loop_after_every_node():
    closed: list[str] = []

    class Resource:
        def close(self):
            closed.append("resource")

    class User(edgeloop.Sensor):
        """Uses a shared resource."""

        outputs = (Port("value"),)

        def setup(self, ctx):
            self.resource = ctx.shared("thing", Resource)

        def step(self, inputs):
            return {"value": 1}

        def close(self):
            closed.append(self.ctx.node_id)

    graph = LoopGraph(name="shared")
    graph.add_node("a", User, rate_hz=10)
    graph.add_node("b", User, rate_hz=10)
    run(graph, 0.2)
    assert closed == ["a", "b", "resource"]


def test_a_chain_longer_than_python_allows_nested_calls_still_runs():
    graph = LoopGraph(name="long_chain")
    graph.add_node("n0", CounterSensor, rate_hz=10)
    for i in range(1, 1500):
        graph.add_node(f"n{i}", ScriptedNode, inputs={"value": f"n{i - 1}/value"})
    _, report = run(graph, 0.2)
    assert report.node("n1499").calls == 2
