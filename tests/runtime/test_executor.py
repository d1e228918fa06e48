"""The executor: timers, multi-rate graphs, queues, deadlines, determinism, hooks."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor, LoopGraph, Port, Sensor
from edgeloop.testing import CounterSensor, RecordingSink, ScriptedNode


def run(graph: LoopGraph, duration_s: float = 1.0, **kwargs: Any) -> tuple[Executor, Any]:
    executor = Executor(graph, simulated=True, **kwargs)
    return executor, executor.run(duration_s)


def test_timers_of_different_rates_fire_in_time_order_and_in_graph_order_when_simultaneous():
    graph = LoopGraph(name="multirate")
    graph.add_node("fast", CounterSensor, rate_hz=100)
    graph.add_node("slow", CounterSensor, rate_hz=30, config={"start": 1000})
    graph.add_node("sink", RecordingSink, inputs={"fast": "fast/value", "slow": "slow/value"})
    executor, report = run(graph)

    assert report.node("fast").calls == 100
    # 1e9/30 rounds to 33,333,333 ns, so the 31st tick (at 0.99999999 s) is inside the second
    assert report.node("slow").calls == 31
    sink = executor.node("sink")
    times = [t for t, _ in sink.received]
    assert times == sorted(times)
    assert len(sink.received) == 131  # each firing drains the ready queue before the next
    first, second = sink.received[0][1], sink.received[1][1]
    assert first["fast"][0] == 0 and first["slow"] is None  # 'fast' is first in the graph
    assert second["slow"][0] == 1000
    fast_values = [inputs["fast"][0] for _, inputs in sink.received]
    assert fast_values == sorted(fast_values) and fast_values[-1] == 99


def test_a_timer_input_triggers_its_node_with_the_tick_time():
    graph = LoopGraph(name="timer_input")
    graph.add_node("sink", RecordingSink, inputs={"tick": "timer/20ms"})
    executor, report = run(graph, 0.5)
    ticks = executor.node("sink").values("tick")
    assert len(ticks) == 25
    assert ticks[:3] == pytest.approx([0.0, 0.02, 0.04])
    assert report.timers[0].source == "timer/20ms" and report.timers[0].fired == 25


def test_a_latest_input_read_slower_than_it_is_written_keeps_the_newest_and_counts_drops():
    graph = LoopGraph(name="latest")
    graph.add_node("producer", CounterSensor, rate_hz=100)
    graph.add_node("consumer", RecordingSink, inputs={"value": "producer/value"}, rate_hz=10)
    executor, report = run(graph)
    values = [v[0] for v in executor.node("consumer").values("value")]
    assert values == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    # 9 overwritten before each read after the first, and 8 of the 9 written after the
    # last read (the newest is unread, not dropped): the same count a fifo of 1 gives
    assert report.node("consumer").drops == {"value": 89}


def test_a_fifo_input_delivers_everything_up_to_its_bound_and_drops_the_oldest():
    graph = LoopGraph(name="fifo")
    graph.add_node("producer", CounterSensor, rate_hz=100)
    graph.add_node(
        "consumer",
        RecordingSink,
        rate_hz=10,
        inputs={"value": {"from": "producer/value", "queue": "fifo", "size": 3}},
    )
    executor, report = run(graph)
    batches = [[v[0] for v in batch] for batch in executor.node("consumer").values("value")]
    assert batches[0] == [0]
    assert batches[1] == [8, 9, 10]
    assert all(len(b) == 3 for b in batches[1:])
    # 10 arrive per read and 3 are kept: 7 drops for each of 9 reads, then 6 more as
    # messages 91..99 arrive after the last read
    assert report.node("consumer").drops == {"value": 69}


def test_an_event_driven_fifo_input_sees_each_message_once():
    graph = LoopGraph(name="fifo_events")
    graph.add_node("producer", CounterSensor, rate_hz=100)
    graph.add_node(
        "consumer",
        RecordingSink,
        inputs={"value": {"from": "producer/value", "queue": "fifo", "size": 4}},
    )
    executor, report = run(graph, 0.1)
    batches = executor.node("consumer").values("value")
    assert [[v[0] for v in b] for b in batches] == [[float(i)] for i in range(10)]
    assert report.node("consumer").drops == {"value": 0}


def test_a_feedback_edge_delivers_without_triggering():
    @edgeloop.node(outputs=("value",))
    def mix(value, echo):
        """Adds the echo of its last output, when there is one."""
        return value + (0.0 if echo is None else echo)

    graph = LoopGraph(name="feedback")
    graph.add_node("source", CounterSensor, rate_hz=10, config={"start": 1, "increment": 0})
    graph.add_node(
        "mix",
        mix,
        inputs={"value": "source/value", "echo": {"from": "delay/value", "feedback": True}},
    )
    graph.add_node("delay", ScriptedNode, inputs={"value": "mix/value"})
    graph.add_node("sink", RecordingSink, inputs={"value": "mix/value"})
    executor, report = run(graph, 0.4)
    assert report.node("mix").calls == 4 and report.node("delay").calls == 4
    assert [v[0] for v in executor.node("sink").values("value")] == [1.0, 2.0, 3.0, 4.0]


def test_a_slow_node_misses_its_deadline_and_the_hook_hears_of_it():
    events: list[dict[str, Any]] = []

    class Spy:
        @edgeloop.hookimpl
        def edgeloop_deadline_missed(self, node_id, contract, latency_s, deadline_s):
            events.append(
                {
                    "node_id": node_id,
                    "contract": contract,
                    "latency_s": latency_s,
                    "deadline_s": deadline_s,
                }
            )

    graph = LoopGraph(name="slow")
    graph.add_node("source", CounterSensor, rate_hz=100)
    graph.add_node(
        "slow",
        ScriptedNode,
        inputs={"value": "source/value"},
        config={"sleep_ms": 3},
        deadline_ms=1,
    )
    registry = edgeloop.PluginRegistry(plugins={"spy": Spy()})
    _, report = run(graph, 0.05, registry=registry)
    assert report.node("slow").deadline_misses == 5
    assert len(events) == 5 and all(e["node_id"] == "slow" for e in events)
    assert all(e["deadline_s"] == 0.001 and e["contract"] is None for e in events)


def test_a_contract_measures_sense_to_act_latency_in_clock_time_and_counts_misses():
    graph = LoopGraph(name="contract")
    graph.add_node("sensor", CounterSensor, rate_hz=10)
    graph.add_node("actuator", RecordingSink, inputs={"value": "sensor/value"}, rate_hz=100)
    graph.add_contract("sense_to_act", ["sensor", "actuator"], deadline_ms=5)
    _, report = run(graph)
    contract = report.contract("sense_to_act")
    assert contract.count == 100
    assert contract.deadline_misses == 90  # held readings are 10..90 ms old
    assert contract.max_ms == pytest.approx(90, abs=0.01)


def test_the_same_seed_gives_bit_identical_runs_and_another_seed_does_not():
    class NoisySensor(Sensor):
        """Gaussian noise from the node's seeded generator."""

        outputs = (Port("noise", dtype="float64", shape=(4,)),)

        def step(self, inputs):
            return {"noise": self.ctx.rng.normal(size=4)}

    def recording(seed: int) -> np.ndarray:
        graph = LoopGraph(name="noise")
        graph.add_node("noise", NoisySensor, rate_hz=100)
        graph.add_node("gain", ScriptedNode, inputs={"value": "noise/noise"}, config={"gain": 3})
        graph.add_node("sink", RecordingSink, inputs={"value": "gain/value"})
        executor, _ = run(graph, 0.5, seed=seed)
        return np.stack(executor.node("sink").values("value"))

    first, again, other = recording(7), recording(7), recording(8)
    assert first.shape == (50, 4)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


def test_lifecycle_hooks_fire_in_order_with_the_report():
    calls: list[str] = []
    reports: list[edgeloop.RunReport] = []

    class Spy:
        @edgeloop.hookimpl
        def edgeloop_graph_loaded(self, graph):
            calls.append(f"loaded {graph.name}")

        @edgeloop.hookimpl
        def edgeloop_loop_started(self, graph, simulated, seed):
            calls.append(f"started simulated={simulated} seed={seed}")

        @edgeloop.hookimpl
        def edgeloop_loop_stopped(self, graph, report):
            calls.append("stopped")
            reports.append(report)

    graph = LoopGraph(name="hooks")
    graph.add_node("source", CounterSensor, rate_hz=10)
    run(graph, 0.2, seed=3, registry=edgeloop.PluginRegistry(plugins={"spy": Spy()}))
    assert calls == ["loaded hooks", "started simulated=True seed=3", "stopped"]
    assert reports[0].node("source").calls == 2


def test_a_function_node_made_with_the_decorator_runs_with_its_config():
    @edgeloop.node(outputs=("value",))
    def scale(value, *, k: float = 2.0):
        """Scales its input."""
        return value * k

    graph = LoopGraph(name="function")
    graph.add_node("source", CounterSensor, rate_hz=10, config={"start": 1})
    graph.add_node("scale", scale, inputs={"value": "source/value"}, config={"k": 3.0})
    graph.add_node("sink", RecordingSink, inputs={"value": "scale/value"})
    executor, _ = run(graph, 0.3)
    assert [v[0] for v in executor.node("sink").values("value")] == [3.0, 6.0, 9.0]


def test_a_real_time_run_measures_timer_jitter_and_stops_when_asked():
    graph = LoopGraph(name="realtime")
    graph.add_node("source", CounterSensor, rate_hz=200)
    executor = Executor(graph)
    stopper = threading.Timer(0.2, executor.stop, args=("test asked",))
    stopper.start()
    report = executor.run()  # no duration: runs until stopped
    stopper.join()
    assert report.stop_reason == "test asked"
    assert not report.simulated
    timer = report.timers[0]
    assert timer.fired >= 1 and timer.fired == report.node("source").calls
    jitter = [timer.jitter_p50_us, timer.jitter_p99_us, timer.jitter_max_us]
    assert all(math.isfinite(j) for j in jitter) and sorted(jitter) == jitter  # measured


def test_a_simulated_run_without_a_duration_is_refused_with_a_clear_error():
    graph = LoopGraph(name="endless")
    graph.add_node("source", CounterSensor, rate_hz=10)
    with pytest.raises(edgeloop.EdgeloopError, match="needs a duration"):
        Executor(graph, simulated=True).run()


def test_a_long_run_keeps_percentiles_within_a_percent_after_folding():
    from edgeloop.runtime.metrics import LatencyRecorder

    recorder = LatencyRecorder()
    values = np.random.default_rng(0).lognormal(mean=8, sigma=1, size=200_000).astype(int) + 1
    for v in values:
        recorder.samples.append(int(v))
        recorder.fold_if_large()
    p50, p99, worst = recorder.summary_ns()
    assert recorder.count == len(values)
    assert p50 == pytest.approx(np.percentile(values, 50), rel=0.015)
    assert p99 == pytest.approx(np.percentile(values, 99), rel=0.015)
    assert worst == values.max()


def test_a_none_payload_sends_no_message_and_several_outputs_all_arrive():
    @edgeloop.node(outputs=("even", "odd"))
    def split(value):
        """Routes even counts to one port and odd ones to the other."""
        return (value, None) if value[0] % 2 == 0 else (None, value)

    graph = LoopGraph(name="split")
    graph.add_node("source", CounterSensor, rate_hz=10)
    graph.add_node("split", split, inputs={"value": "source/value"})
    graph.add_node("evens", RecordingSink, inputs={"value": "split/even"})
    graph.add_node("odds", RecordingSink, inputs={"value": "split/odd"})
    executor, _ = run(graph, 0.6)
    assert [v[0] for v in executor.node("evens").values("value")] == [0, 2, 4]
    assert [v[0] for v in executor.node("odds").values("value")] == [1, 3, 5]


def test_a_node_can_read_the_message_behind_each_input():
    class LatencyAwareActuator(edgeloop.Actuator):
        """Notes the sense-to-act latency of each action it applies."""

        inputs = (Port("action", dtype="float64"),)

        def setup(self, ctx):
            self.latencies: list[tuple[int, float]] = []

        def step(self, inputs):
            msg = self.ctx.message("action")
            self.latencies.append((msg.seq, self.ctx.now() - msg.sensed))

    graph = LoopGraph(name="latency")
    graph.add_node("sensor", CounterSensor, rate_hz=10)
    graph.add_node("actuator", LatencyAwareActuator, rate_hz=40, inputs={"action": "sensor/value"})
    executor, _ = run(graph, 0.1)
    latencies = executor.node("actuator").latencies
    assert [seq for seq, _ in latencies] == [0, 0, 0, 0]
    assert [lat for _, lat in latencies] == pytest.approx([0.0, 0.025, 0.05, 0.075])
