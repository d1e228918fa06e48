"""The figures a run reports: latencies, contracts, overruns, and where sensing times come from."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor, LoopGraph, Port, RealClock
from edgeloop.testing import CounterSensor, RecordingSink, ScriptedNode


def run(graph: LoopGraph, duration_s: float = 1.0, **kwargs: Any) -> tuple[Executor, Any]:
    executor = Executor(graph, simulated=True, **kwargs)
    return executor, executor.run(duration_s)


def test_node_step_latencies_are_measured_in_wall_time():
    graph = LoopGraph(name="slow")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node(
        "slow",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"sleep_ms": 3},
        deadline_ms=2.9,
    )
    _, report = run(graph, 0.1)
    slow = report.node("slow")
    assert slow.calls == 10
    assert slow.deadline_misses == 10  # every step slept 3 ms of wall time, in simulated time
    for node in report.nodes:
        figures = [node.p50_us, node.p99_us, node.max_us]
        assert all(math.isfinite(f) and f > 0 for f in figures)
        assert sorted(figures) == figures


def test_contract_percentiles_are_exact_in_simulated_time_and_misses_reach_the_hook():
    events: list[tuple[str | None, float]] = []

    class Spy:
        @edgeloop.hookimpl
        def edgeloop_deadline_missed(self, contract, latency_s):
            events.append((contract, latency_s))

    graph = LoopGraph(name="contract")
    graph.add_node("sensor", CounterSensor, rate_hz=10)
    graph.add_node("actuator", RecordingSink, inputs={"value": "sensor/value"}, rate_hz=100)
    graph.add_contract("sense_to_act", ["sensor", "actuator"], deadline_ms=85)
    _, report = run(graph, registry=edgeloop.PluginRegistry(plugins={"spy": Spy()}))
    contract = report.contract("sense_to_act")
    # ages 0, 10, ..., 90 ms, ten times each
    assert (contract.p50_ms, contract.p99_ms, contract.max_ms) == pytest.approx((45, 90, 90))
    assert contract.deadline_misses == 10
    assert len(events) == 10
    assert all(name == "sense_to_act" and lat == pytest.approx(0.09) for name, lat in events)


def test_where_a_second_sensor_joins_a_path_the_contract_measures_from_the_older_reading():
    @edgeloop.node(outputs=("value",))
    def fuse(a, b):
        """Adds the two readings."""
        return a + (0.0 if b is None else b)

    graph = LoopGraph(name="join")
    graph.add_node("slow_sensor", CounterSensor, rate_hz=1)
    # re-published at 100 Hz, but still carrying the 1 Hz sensor's sensing time
    graph.add_node("relay", ScriptedNode, rate_hz=100, inputs={"value": "slow_sensor/value"})
    graph.add_node("fast_sensor", CounterSensor, rate_hz=10)
    graph.add_node(
        "fuse",
        fuse,
        inputs={"a": "fast_sensor/value", "b": {"from": "relay/value", "trigger": False}},
    )
    graph.add_node("sink", RecordingSink, inputs={"value": "fuse/value"})
    graph.add_contract("fast_path", ["fast_sensor", "fuse", "sink"], deadline_ms=50)
    _, report = run(graph)
    contract = report.contract("fast_path")
    assert contract.count == 10
    assert contract.max_ms == pytest.approx(900)  # the slow reading is from t = 0
    assert contract.deadline_misses == 9


def test_a_small_declared_vector_that_turns_non_finite_is_caught_on_the_fast_path():
    class Estimator(edgeloop.Model):
        """One declared output, a float vector of shape (2,)."""

        inputs = (Port("value", dtype="float64"),)
        outputs = (Port("estimate", dtype="float64", shape=(2,)),)

        def step(self, inputs):
            v = inputs["value"][0]
            return {"estimate": np.array([v, np.inf if v == 3 else v])}

    graph = LoopGraph(name="fast_nan")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node("estimator", Estimator, inputs={"value": "source/value"}, on_fault="hold_last")
    graph.add_node("sink", RecordingSink, inputs={"estimate": "estimator/estimate"})
    executor, report = run(graph, 0.1)
    received = np.stack(executor.node("sink").values("estimate"))
    assert np.isfinite(received).all()
    assert received[:, 0].tolist() == [0, 1, 2, 2, 4, 5, 6, 7, 8, 9]
    assert report.node("estimator").faults == {"non_finite": 1}


def test_a_restart_closes_the_failed_node_before_setting_up_a_fresh_one():
    events: list[str] = []

    class Flaky(ScriptedNode):
        """Records its lifecycle."""

        def setup(self, ctx):
            super().setup(ctx)
            events.append(f"setup {id(self)}")

        def close(self):
            events.append(f"close {id(self)}")

    graph = LoopGraph(name="restart")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node(
        "flaky",
        Flaky,
        inputs={"value": "source/value"},
        config={"raise_on": [2]},
        on_fault={"restart": {"backoff_ms": 5}},
    )
    run(graph, 0.1)
    first, second = (e.split()[1] for e in events if e.startswith("setup"))
    assert events == [f"setup {first}", f"close {first}", f"setup {second}", f"close {second}"]


def test_a_real_time_step_longer_than_the_period_skips_ticks_and_counts_them():
    graph = LoopGraph(name="overrun")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node("slow", ScriptedNode, inputs={"value": "source/value"}, config={"sleep_ms": 25})
    report = Executor(graph).run(0.2)
    timer = report.timers[0]
    assert timer.overruns >= 2  # each 25 ms step outlasts two 10 ms periods
    assert timer.fired == report.node("source").calls


def test_the_real_clock_never_wakes_before_the_time_asked():
    clock = RealClock()
    clock.start()
    for due in (1_000_000, 3_000_000, 4_000_000, 10_000_000):
        woke = clock.wait_until(due)
        assert woke >= due
        assert clock.now_ns() >= woke  # monotonic
    assert clock.wait_until(0) >= 10_000_000  # a time already passed returns the present
