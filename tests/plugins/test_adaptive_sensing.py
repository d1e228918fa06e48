"""Sense less, predict the rest: the Kalman predictor and the sensing policies in
real loops (a real gymnasium pendulum, simulated time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor
from edgeloop.runtime.graph import InputSpec
from edgeloop.runtime.node import Port, Sensor
from edgeloop.runtime.sensing import SensingSpec
from edgeloop.testing import RecordingSink, start_node

EXAMPLES = Path(__file__).parents[2] / "examples" / "adaptive-sensing"


def episode(name: str, seed: int = 0, **change: Any) -> tuple[Executor, Any]:
    graph = edgeloop.load_graph(EXAMPLES / f"{name}.yaml")
    for node_id, config in change.items():
        graph.node(node_id).config.update(config)
    executor = Executor(graph, simulated=True, seed=seed)
    return executor, executor.run(20.01)  # one 1000-step episode


def test_event_triggered_sensing_reads_far_less_for_the_same_return() -> None:
    pytest.importorskip("gymnasium")
    _, fixed = episode("fixed", seed=3)
    _, event = episode("event", seed=3)
    fixed_return = fixed.series["motor.episode_return"][0]
    event_return = event.series["motor.episode_return"][0]
    assert fixed.node("sensor").sensing["readings"] == 1001
    readings = event.node("sensor").sensing["readings"]
    assert readings < 0.5 * 1001  # the aim: at least half the readings saved
    assert abs(event_return - fixed_return) <= 0.05 * abs(fixed_return)  # within 5%
    assert event.node("sensor").sensing["skipped"] == 1001 - readings


def test_the_urgency_rate_follows_the_angle() -> None:
    pytest.importorskip("gymnasium")
    _, report = episode("adaptive", seed=0)
    sensing = report.node("sensor").sensing
    assert sensing["commands"] > 2 and sensing["clamped"] == 0
    assert sensing["readings"] < 1001
    assert sensing["rate_hz"] >= 40.0  # balanced upright at the end (20% hysteresis)
    from edgeloop.plugins.sensing_policies import UrgencyRate

    policy = start_node(UrgencyRate, {"near": 0.5, "far": 1.5, "angle": True})
    assert policy.rate_for(np.array([0.2, 0.0])) == 50.0
    assert policy.rate_for(np.array([1.0, 0.0])) == pytest.approx(27.5)
    assert policy.rate_for(np.array([np.pi, 0.0])) == 5.0
    assert policy.rate_for(np.array([2 * np.pi - 0.2, 0.0])) == 50.0  # wraps around


def test_the_pendulum_predictor_tracks_the_plant_between_readings() -> None:
    """Readings at 5 Hz, predictions at 50 Hz: against the true observation of every tick."""
    pytest.importorskip("gymnasium")
    graph = edgeloop.load_graph(EXAMPLES / "fixed.yaml")
    graph.node("sensor").rate_hz = 5.0
    graph.add_node("truth", "gym.sensor", rate_hz=50, config={"env": "Pendulum-v1"})
    graph.add_node(  # steps on the truth only, the estimate of the same tick beside it
        "sink",
        RecordingSink,
        inputs={"estimate": {"from": "predictor/obs", "trigger": False}, "truth": "truth/obs"},
    )
    executor = Executor(graph, simulated=True, seed=1)
    executor.run(6.0)
    sink = executor.node("sink")
    estimates, truths = sink.values("estimate"), sink.values("truth")
    pairs = [
        (e, t) for e, t in zip(estimates, truths, strict=False) if e is not None and t is not None
    ]
    errors = [float(np.max(np.abs(e - t))) for e, t in pairs[10:]]
    assert len(errors) > 200
    assert max(errors) < 1e-3  # the exact model: 9 of 10 ticks predicted, no drift
    notes = executor.node("predictor").ctx.notes["predictions"]
    assert notes.startswith("30 corrected")  # 5 Hz for 6 s


class MovingPoint(Sensor):
    """A point moving at 2 m/s along x, read on command."""

    outputs = (Port("position", "float64"),)
    sensing = SensingSpec(min_rate_hz=0.5, max_rate_hz=100.0)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"position": np.array([2.0 * self.ctx.now()])}


def test_constant_velocity_uncertainty_grows_between_readings_and_triggers_them() -> None:
    graph = edgeloop.LoopGraph(name="cv")
    graph.add_node("point", MovingPoint, rate_hz=10, inputs={"sensing": "trigger/command"})
    graph.add_node(
        "predictor",
        "predictor.kalman",
        rate_hz=50,
        inputs={"measurement": "point/position"},
        config={"model": "constant_velocity", "dims": 1, "dt": 0.02, "process_noise": 1e-5},
    )
    graph.add_node(
        "trigger",
        "sensing.event",
        inputs={"uncertainty": "predictor/uncertainty"},
        config={"threshold": 0.05, "floor_rate_hz": 0.5},
    )
    graph.add_node(
        "sink", RecordingSink, inputs={"state": "predictor/state", "u": "predictor/uncertainty"}
    )
    executor = Executor(graph, simulated=True)
    report = executor.run(10.0)
    sink = executor.node("sink")
    states, uncertainty = sink.values("state"), sink.values("u")
    last = states[-1]
    assert last[0] == pytest.approx(2.0 * 9.98, abs=0.1)  # position tracked
    assert last[1] == pytest.approx(2.0, abs=0.05)  # velocity learned from readings
    assert max(uncertainty[50:]) < 0.06  # kept at the threshold by readings
    readings = report.node("point").sensing["readings"]
    assert 5 < readings < 100  # event-triggered: above the 0.5 Hz floor, far below 10 Hz
    # between two readings the uncertainty only grows
    rising = np.diff(uncertainty[100:110])
    assert (rising > 0).sum() >= 5


def test_the_predictor_needs_its_step() -> None:
    graph = edgeloop.LoopGraph(name="nodt")
    graph.add_node("point", MovingPoint, rate_hz=10)
    graph.add_node(
        "predictor",
        "predictor.kalman",
        rate_hz=50,
        inputs={"measurement": "point/position"},
        config={"model": "constant_velocity"},
    )
    with pytest.raises(edgeloop.runtime.errors.GraphError, match="dt"):
        Executor(graph, simulated=True).run(1.0)


def test_a_mismatched_model_still_lands_the_swing_up() -> None:
    pytest.importorskip("gymnasium")
    _, exact = episode("event", seed=2)
    _, heavy = episode("event", seed=2, predictor={"mass": 1.3})
    a, b = exact.series["motor.episode_return"][0], heavy.series["motor.episode_return"][0]
    assert abs(b - a) <= 0.05 * abs(a)
    assert InputSpec  # the loops are wired from the example files
