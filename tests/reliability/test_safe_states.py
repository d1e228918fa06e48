"""Safe states: an actuator sends its safe command when the loop stops and when it
faults (a silent upstream makes its input stale), once per run of faults, and each
one is in the report. The serial actuator's own cases (a replug, a real pty
device) are in tests/plugins/test_serial_device.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from edgeloop import Actuator, Executor, LoopGraph, Port
from edgeloop.testing import CounterSensor, ScriptedNode

pytest.importorskip("gymnasium")


def pendulum(actuator_fault: Any = "hold_last", **scripted: Any) -> LoopGraph:
    graph = LoopGraph(name="safe-pendulum")
    plant = {"env": "Pendulum-v1", "dt": 0.02}
    graph.add_node("sensor", "gym.sensor", rate_hz=50, config=plant)
    graph.add_node("swing", "pendulum.swing_up", inputs={"obs": "sensor/obs"})
    graph.add_node(  # the controller that falls silent: down for a minute after its fault
        "brain",
        ScriptedNode,
        inputs={"value": "swing/action"},
        config=scripted,
        on_fault={"restart": {"backoff_ms": 60_000, "max_backoff_ms": 60_000}},
    )
    graph.add_node(
        "motor",
        "gym.actuator",
        inputs={"action": {"from": "brain/value", "stale_ms": 100}},
        config={**plant, "safe": [0.0]},
        on_fault=actuator_fault,
    )
    return graph


def test_a_silent_controller_makes_the_plant_safe_once_and_the_stop_makes_it_safe_again():
    executor = Executor(pendulum(raise_on=[20]), simulated=True)
    report = executor.run(2.0)
    motor = report.node("motor")
    assert motor.safe_states == {"stale_input": 1, "stop": 1}
    assert motor.faults["stale_input"] > 1  # stale on every check, safe only the first time
    plant = executor.node("motor").plant
    assert plant.episode_steps == 20 + 2  # every action the brain made, then two safe ones


def test_without_a_safe_state_nothing_is_sent_or_counted():
    graph = pendulum(raise_on=[20])
    graph.nodes[-1].config.pop("safe")
    executor = Executor(graph, simulated=True)
    report = executor.run(2.0)
    assert report.node("motor").safe_states == {}
    assert executor.node("motor").plant.episode_steps == 20


@dataclass(frozen=True)
class BrakeConfig:
    fail: bool = False
    """Make ``safe`` raise."""


class Brake(Actuator):
    """Counts its commands and the safe calls it gets, by reason."""

    inputs = (Port("value"),)
    Config = BrakeConfig

    def setup(self, ctx):
        self.calls = ctx.shared(f"brake:{ctx.node_id}", lambda: [])

    def step(self, inputs):
        if inputs["value"] is not None and inputs["value"][0] == 5.0:
            raise RuntimeError("the brake's own fault")

    def safe(self, reason):
        self.calls.append(reason)
        if self.config.fail:
            raise OSError("the brake line is cut")
        return True


def brake_loop(fail: bool, on_fault: Any) -> LoopGraph:
    graph = LoopGraph(name="brake")
    graph.add_node("src", CounterSensor, rate_hz=10)
    graph.add_node(
        "brake", Brake, inputs={"value": "src/value"}, config={"fail": fail}, on_fault=on_fault
    )
    return graph


def test_an_actuator_that_faults_is_made_safe_before_its_policy_restarts_it():
    executor = Executor(brake_loop(False, "restart"), simulated=True)
    report = executor.run(1.0)
    assert executor.node("brake").calls == ["exception", "stop"]
    assert report.node("brake").safe_states == {"exception": 1, "stop": 1}
    assert report.node("brake").restarts == 1


def test_a_safe_command_that_fails_is_a_counted_fault_and_the_loop_goes_on():
    executor = Executor(brake_loop(True, "hold_last"), simulated=True)
    report = executor.run(1.0)
    assert executor.node("brake").calls == ["exception", "stop"]
    brake = report.node("brake")
    assert brake.safe_states == {}  # none was sent
    assert brake.faults == {"exception": 1, "safe": 2}
    assert not report.stopped_by_fault
    assert report.node("brake").calls == report.node("src").calls - 1 == 9  # all but the fault
