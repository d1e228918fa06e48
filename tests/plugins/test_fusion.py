"""Multi-rate fusion: late samples dropped, held or interpolated; untrusted streams
gated out. Streams at different rates, a dropout injected by turning a sensor off."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor
from edgeloop.runtime.node import Controller, Port, Sensor
from edgeloop.runtime.sensing import SensingSpec
from edgeloop.testing import RecordingSink


class Ramp(Sensor):
    """Reads the value ``slope * t`` (a steerable sensor, so it can be cut off)."""

    outputs = (Port("value", "float64"),)
    sensing = SensingSpec(min_rate_hz=0.1, max_rate_hz=1000.0)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"value": np.array([2.0 * self.ctx.now()])}


class CutOff(Controller):
    """Turns the slow sensor off at t = 1 s: a dropout."""

    inputs = (Port("tick"),)
    outputs = (Port("command"),)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if abs(self.ctx.now() - 1.0) < 1e-9:
            return {"command": {"enabled": False}}
        return None


def fuse(late: str, duration: float = 2.0, **config: Any) -> tuple[list, list, dict, Any]:
    graph = edgeloop.LoopGraph(name="fuse")
    graph.add_node("slow", Ramp, rate_hz=5, inputs={"sensing": "cut/command"})
    graph.add_node("fast", Ramp, rate_hz=50)
    graph.add_node("cut", CutOff, inputs={"tick": "timer/100ms"})
    graph.add_node(
        "fusion",
        "fusion",
        rate_hz=50,
        inputs={"slow": "slow/value", "fast": "fast/value"},
        config={"streams": ["slow", "fast"], "max_skew_ms": 30, "late": late, **config},
    )
    graph.add_node("sink", RecordingSink, inputs={"fused": "fusion/fused", "valid": "fusion/valid"})
    executor = Executor(graph, simulated=True)
    report = executor.run(duration)
    sink = executor.node("sink")
    counts = json.loads(report.node("fusion").notes["streams"])
    return sink.values("fused"), sink.values("valid"), counts, report


def times(n: int) -> np.ndarray:
    return np.arange(n) * 0.02


def slow_fresh(n: int) -> np.ndarray:
    """Ticks (50 Hz) within 30 ms of a slow (5 Hz) reading, before the cut at 1 s."""
    k = np.arange(n)
    return (k % 10 <= 1) & (k <= 51)


def test_hold_keeps_the_last_sample_of_a_slow_stream() -> None:
    fused, valid, counts, _ = fuse("hold")
    slow = np.array([f[0] for f in fused])
    expected = 2.0 * np.floor(times(len(fused)) / 0.2 + 1e-9) * 0.2  # the last 5 Hz reading
    expected[times(len(fused)) > 1.0] = 2.0  # cut off after its reading at 1.0 s
    assert np.allclose(slow, expected)
    assert all(v[0] for v in valid)
    # fresh: at each of its 6 readings and 20 ms later (within the 30 ms skew)
    assert counts["slow"]["fresh"] == 12 and counts["slow"]["held"] == 88
    assert counts["fast"] == {"fresh": 100, "held": 0, "interpolated": 0, "dropped": 0}


def test_interpolate_extends_the_last_two_samples_to_now() -> None:
    fused, _, counts, _ = fuse("interpolate")
    slow = np.array([f[0] for f in fused])
    t = times(len(fused))
    late = (t >= 0.2) & ~slow_fresh(len(fused))
    # Late samples, from the second slow reading on and through the dropout: the
    # linear signal recovered exactly.
    assert np.allclose(slow[late], 2.0 * t[late])
    assert counts["slow"]["interpolated"] == late.sum() == 80


def test_drop_leaves_a_late_stream_out() -> None:
    fused, valid, counts, _ = fuse("drop")
    t = times(len(fused))
    fresh = slow_fresh(len(t))
    slow_valid = np.array([v[0] for v in valid])
    assert np.array_equal(slow_valid, fresh)
    assert all(f[0] == 0.0 for f, v in zip(fused, valid, strict=True) if not v[0])
    assert counts["slow"]["dropped"] == sum(not v[0] for v in valid)


def test_untrusted_streams_are_gated_out() -> None:
    graph = edgeloop.LoopGraph(name="trust")
    graph.add_node("a", Ramp, rate_hz=50)
    graph.add_node("b", Ramp, rate_hz=50)
    graph.add_node("doubt", "constant", rate_hz=50, config={"value": [0.2]})
    graph.add_node(
        "fusion",
        "fusion",
        rate_hz=50,
        inputs={"a": "a/value", "b": "b/value", "b_trust": "doubt/action"},
        config={"streams": ["a", "b"]},
    )
    graph.add_node("sink", RecordingSink, inputs={"valid": "fusion/valid"})
    executor = Executor(graph, simulated=True)
    report = executor.run(1.0)
    assert all(v.tolist() == [True, False] for v in executor.node("sink").values("valid")[1:])
    assert json.loads(report.node("fusion").notes["streams"])["b"]["dropped"] >= 49


def test_bad_fusion_config_is_named() -> None:
    graph = edgeloop.LoopGraph(name="bad")
    graph.add_node("a", Ramp, rate_hz=50)
    graph.add_node(
        "fusion",
        "fusion",
        rate_hz=50,
        inputs={"a": "a/value"},
        config={"streams": ["a"], "late": "guess"},
    )
    with pytest.raises(edgeloop.runtime.errors.GraphError, match="late policy 'guess'"):
        Executor(graph, simulated=True).run(1.0)


def delayed_fusion(late: str) -> tuple[list, list, dict]:
    graph = edgeloop.LoopGraph(name="delayed")
    graph.add_node("fast", Ramp, rate_hz=50)
    graph.add_node(
        "lag",
        "inject",
        rate_hz=100,
        inputs={"in": "fast/value"},
        config={"mode": "delay", "scale": 0.1, "windows": [[0.0, 100.0]]},
    )
    graph.add_node(
        "fusion",
        "fusion",
        rate_hz=50,
        inputs={"lagged": "lag/out"},
        config={"streams": ["lagged"], "max_skew_ms": 30, "late": late},
    )
    graph.add_node("sink", RecordingSink, inputs={"fused": "fusion/fused", "valid": "fusion/valid"})
    executor = Executor(graph, simulated=True)
    report = executor.run(2.0)
    sink = executor.node("sink")
    return (
        sink.values("fused"),
        sink.values("valid"),
        json.loads(report.node("fusion").notes["streams"]),
    )


def test_a_delayed_stream_is_late_and_each_policy_handles_it() -> None:
    """Every sample arrives 100 ms after it was sensed: beyond the 30 ms skew."""
    held, _, counts = delayed_fusion("hold")
    assert counts["lagged"]["fresh"] == 0 and counts["lagged"]["held"] == len(held)
    assert np.allclose(
        [f[0] for f in held], [2.0 * (0.1 + 0.02 * k - 0.1) for k in range(len(held))]
    )
    interpolated, _, counts = delayed_fusion("interpolate")
    t = 0.1 + 0.02 * np.arange(len(interpolated))
    assert np.allclose([f[0] for f in interpolated][1:], 2.0 * t[1:])  # the delay undone
    _, valid, counts = delayed_fusion("drop")
    assert not any(v[0] for v in valid)
    assert counts["lagged"]["dropped"] == 100  # 5 steps before the first sample: no output
    assert len(valid) == 95
