"""Trust and the cascade guard: injected noise bursts, a stuck sensor and dropouts
against the predictor's innovation gate, and the guard's transitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor
from edgeloop.runtime.graph import InputSpec
from edgeloop.runtime.node import Controller, Port
from edgeloop.testing import RecordingSink

pytest.importorskip("gymnasium")

EXAMPLES = Path(__file__).parents[2] / "examples" / "adaptive-sensing"


def pendulum(name: str, corruption: dict[str, Any] | None, seed: int = 0) -> tuple[Executor, Any]:
    graph = edgeloop.load_graph(EXAMPLES / f"{name}.yaml")
    if corruption is not None:
        graph.add_node("corrupt", "inject", inputs={"in": "sensor/obs"}, config=corruption)
        graph.node("predictor").inputs["measurement"] = InputSpec.model_validate(
            {"from": "corrupt/out"}
        )
    graph.add_node(
        "watch",
        RecordingSink,
        inputs={"mode": "guard/mode", "trust": {"from": "predictor/trust", "trigger": False}}
        if name == "guarded"
        else {"trust": "predictor/trust"},
    )
    executor = Executor(graph, simulated=True, seed=seed)
    return executor, executor.run(20.01)


BURSTS = {"mode": "noise", "scale": 0.5, "every_s": 2.0, "duty": 0.3}


def test_the_guard_keeps_the_return_where_the_unguarded_loop_fails() -> None:
    _, clean = pendulum("event", None, seed=1)
    _, unguarded = pendulum("event", BURSTS, seed=1)
    _, guarded = pendulum("guarded", BURSTS, seed=1)
    clean_return = clean.series["motor.episode_return"][0]
    assert unguarded.series["motor.episode_return"][0] < clean_return - 500  # it fails
    assert guarded.series["motor.episode_return"][0] >= clean_return - 0.1 * abs(clean_return) - 1
    # The guard tripped in bursts and recovered after each: transitions in pairs.
    trips, recoveries = guarded.series["guard.trip_s"], guarded.series["guard.recover_s"]
    assert len(trips) >= 8 and len(recoveries) in (len(trips), len(trips) - 1)
    assert all(t < r for t, r in zip(trips, recoveries, strict=False))
    for t in trips:  # every trip falls in (or right after) a corrupted window
        assert (t % 2.0) >= 1.4 - 1e-9
    assert int(guarded.node("corrupt").notes["corrupted"]) > 0
    notes = guarded.node("predictor").notes["predictions"]
    assert int(notes.split(", ")[-1].split()[0]) > 100  # readings rejected


def test_full_sensing_while_guarded_then_back_to_events() -> None:
    executor, report = pendulum("guarded", BURSTS, seed=0)
    modes = [int(m[0]) for m in executor.node("watch").values("mode")]
    assert 0 in modes and 1 in modes
    _, events = pendulum("event", None, seed=0)
    readings = report.node("sensor").sensing["readings"]
    assert readings > events.node("sensor").sensing["readings"]  # full rate while guarded
    assert readings < 1001  # and event-triggered otherwise


@pytest.mark.parametrize(
    ("corruption", "low_trust"),
    [
        # stuck while the pendulum swings up (stuck while it rests upright agrees
        # with every prediction, and is rightly trusted)
        ({"mode": "stuck", "windows": [[0.5, 2.5]]}, True),
        ({"mode": "offset", "scale": 0.3, "windows": [[0.5, 2.5]]}, True),
        ({"mode": "dropout", "windows": [[0.5, 2.5]]}, False),
    ],
)
def test_trust_falls_for_a_stuck_or_offset_sensor_not_for_a_dropout(
    corruption: dict[str, Any], low_trust: bool
) -> None:
    graph = edgeloop.load_graph(EXAMPLES / "fixed.yaml")
    graph.add_node("corrupt", "inject", inputs={"in": "sensor/obs"}, config=corruption)
    graph.node("predictor").inputs["measurement"] = InputSpec.model_validate(
        {"from": "corrupt/out"}
    )
    # as in guarded.yaml: a confident model, so the gate is tight
    graph.node("predictor").config.update(
        {"gate": 11.3, "max_rejections": 200, "process_noise": 1e-5}
    )
    graph.add_node("watch", RecordingSink, inputs={"trust": "predictor/trust"})
    executor = Executor(graph, simulated=True, seed=4)
    executor.run(4.0)
    trust = np.array([float(t) for t in executor.node("watch").values("trust")])
    t = np.arange(trust.size) * 0.02
    before, during, after = trust[t < 0.5], trust[(t > 1.0) & (t < 2.5)], trust[t > 3.8]
    assert before.min() > 0.9
    assert bool(during.max() < 0.2) is low_trust
    assert after[-1] > 0.9  # trust returns with good readings


class Script(Controller):
    """Publishes the trust and the actions of a script: trust by time window."""

    inputs = (Port("tick"),)
    outputs = (Port("trust"), Port("action"), Port("safe"))

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        now = self.ctx.now()
        trust = 0.1 if 1.0 <= now < 2.0 else 1.0
        return {"trust": trust, "action": np.array([1.0]), "safe": np.array([0.0])}


def test_guard_transitions_with_hysteresis_and_the_safe_controller() -> None:
    graph = edgeloop.LoopGraph(name="guard")
    graph.add_node("script", Script, inputs={"tick": "timer/100ms"})
    graph.add_node(
        "guard",
        "guard",
        inputs={
            "action": "script/action",
            "safe_action": {"from": "script/safe", "trigger": False},
            "trust": {"from": "script/trust", "trigger": False},
        },
        config={"low": 0.5, "high": 0.8, "trip_after": 3, "recover_after": 5},
    )
    graph.add_node("sink", RecordingSink, inputs={"action": "guard/action", "mode": "guard/mode"})
    executor = Executor(graph, simulated=True)
    report = executor.run(3.0)
    assert report.series["guard.trip_s"] == pytest.approx([1.2])  # 3rd low step
    assert report.series["guard.recover_s"] == pytest.approx([2.4])  # 5th good step
    sink = executor.node("sink")
    actions = [float(a[0]) for a in sink.values("action")]
    modes = [int(m[0]) for m in sink.values("mode")]
    assert modes[12:24] == [1] * 12 and modes[:12] == [0] * 12
    assert actions[12:24] == [0.0] * 12  # the safe controller while guarded
    assert set(actions[:12] + actions[25:]) == {1.0}


def test_missed_deadlines_trip_the_guard() -> None:
    graph = edgeloop.load_graph(EXAMPLES / "guarded.yaml")
    graph.node("guard").config.update({"deadline_ms": 300, "trip_after": 2})
    graph.node("trigger").config.update({"threshold": 10.0})  # never reads: starved
    report = Executor(graph, simulated=True).run(5.0)
    assert report.series["guard.trip_s"][0] == pytest.approx(0.34)  # 2nd action past 300 ms
    assert report.node("sensor").sensing["rate_hz"] == 50.0  # back to full sensing


def test_a_delayed_sensor_misses_deadlines_and_trips_the_guard() -> None:
    """Readings delayed by 300 ms from 5 s to 8 s: the actions made on them miss
    their 100 ms sense-to-act deadline; the guard trips, then recovers."""
    graph = edgeloop.load_graph(EXAMPLES / "fixed.yaml")
    graph.add_node(
        "lag",
        "inject",
        rate_hz=50,
        inputs={"in": "sensor/obs"},
        config={"mode": "delay", "scale": 0.3, "windows": [[5.0, 8.0]]},
    )
    graph.node("predictor").inputs["measurement"] = InputSpec.model_validate({"from": "lag/out"})
    graph.add_node(
        "guard",
        "guard",
        inputs={
            "action": "controller/action",
            "trust": {"from": "predictor/trust", "trigger": False},
        },
        config={"deadline_ms": 100, "trip_after": 3, "recover_after": 10},
    )
    graph.node("safety").inputs["action"] = InputSpec.model_validate({"from": "guard/action"})
    report = Executor(graph, simulated=True, seed=0).run(10.0)
    trips, recoveries = report.series["guard.trip_s"], report.series["guard.recover_s"]
    assert len(trips) == 1 and 5.0 < trips[0] < 5.5
    assert len(recoveries) == 1 and 8.0 < recoveries[0] < 8.6
    assert report.node("lag").notes["corrupted"] == "150"  # 3 s of 50 Hz readings
