"""Sensing commands: a controller changes how a sensor senses, through the executor.

Real executors in simulated time (exact counts), a real gymnasium plant, and the
real CLI for recording and replaying commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor
from edgeloop.runtime.errors import GraphError, PluginError
from edgeloop.runtime.node import Controller, NodeContext, Port, Sensor
from edgeloop.runtime.sensing import SensingSpec, sensing_command
from edgeloop.runtime.validation import validate_graph
from edgeloop.testing import RecordingSink


class Camera(Sensor):
    """A steerable test sensor: publishes the time and its settings."""

    outputs = (Port("frame"),)
    sensing = SensingSpec(
        min_rate_hz=1.0,
        max_rate_hz=100.0,
        resolutions=((8, 8), (4, 4)),
        region=True,
        grid=(8, 8),
        cost_per_reading=2.0,
    )

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        s = self.ctx.sensing
        return {"frame": {"t": self.ctx.now(), "rate": s.rate_hz, "region": s.region}}


class Commander(Controller):
    """Sends the command scheduled for each tick time (seconds, rounded to ms)."""

    inputs = (Port("tick"),)
    outputs = (Port("command"),)

    @dataclass(frozen=True)
    class Config:
        schedule: dict[str, Any] = field(default_factory=dict)

    def setup(self, ctx: NodeContext) -> None:
        self.schedule = {round(float(k), 3): v for k, v in ctx.config.schedule.items()}

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        command = self.schedule.get(round(self.ctx.now(), 3))
        return None if command is None else {"command": command}


def camera_loop(schedule: dict[str, Any], rate_hz: float = 10.0, **sensing: Any) -> Any:
    graph = edgeloop.LoopGraph(name="steer")
    graph.add_node(
        "camera",
        Camera,
        rate_hz=rate_hz,
        inputs={"sensing": "commander/command"},
        **({"sensing": sensing} if sensing else {}),
    )
    graph.add_node(
        "commander", Commander, inputs={"tick": "timer/100ms"}, config={"schedule": schedule}
    )
    graph.add_node("sink", RecordingSink, inputs={"frame": "camera/frame"})
    return graph


def run(graph: Any, duration: float = 3.0) -> tuple[Executor, Any]:
    executor = Executor(graph, simulated=True)
    return executor, executor.run(duration)


def frame_times(executor: Executor) -> list[float]:
    return [round(m["t"], 6) for m in executor.node("sink").values("frame")]


def test_a_rate_command_replans_the_timer_from_now() -> None:
    executor, report = run(camera_loop({"1.0": {"rate_hz": 50.0}}))
    times = frame_times(executor)
    before = [t for t in times if t <= 1.0]
    after = [t for t in times if t > 1.0]
    assert before == pytest.approx([0.1 * k for k in range(11)])  # 10 Hz up to the command
    assert after[0] == pytest.approx(1.02)  # the next reading one new period on
    assert np.allclose(np.diff(after), 0.02)
    assert len(after) == 99  # 1.02 .. 2.98
    sensing = report.node("camera").sensing
    assert sensing["readings"] == len(times) == 110
    assert sensing["rate_hz"] == 50.0 and sensing["commands"] == 1
    assert sensing["skipped"] == 0  # against its own 10 Hz: it read more, not less
    assert sensing["cost"] == pytest.approx(110 * 2.0)


def test_out_of_bounds_and_malformed_commands_are_counted_never_fatal() -> None:
    schedule = {
        "0.5": {"rate_hz": 1e6},  # clamped to 100
        "1.0": {"rate_hz": -3.0},  # rejected
        "1.5": {"zoom": 2},  # unknown field
        "2.0": "faster please",  # not a mapping
        "2.5": {"resolution": [5, 5]},  # not offered
        "2.6": {"rate_hz": 10**400},  # overflows a float
        "2.7": {"region": [0, 0, "wide", 3]},  # not a number (inf would be a non_finite fault)
        "2.8": {"mask": np.ones((3, 3), bool)},  # not the 8x8 grid
    }
    executor, report = run(camera_loop(schedule))
    sensing = report.node("camera").sensing
    assert sensing["clamped"] == 1 and sensing["rate_hz"] == 100.0
    assert sensing["rejected"] == {
        "rate_hz": 2,
        "zoom": 1,
        "not a mapping": 1,
        "resolution": 1,
        "region": 1,
        "mask": 1,
    }
    assert "mask" in sensing["last_problem"]
    assert report.stop_reason == "duration reached" and not report.fault_log
    assert np.allclose(np.diff([t for t in frame_times(executor) if t > 0.5]), 0.01)


def test_off_on_and_read_now() -> None:
    schedule = {
        "0.5": {"enabled": False},
        "1.0": {"read": True},  # one reading while off: event-triggered sensing
        "1.5": {"enabled": True, "rate_hz": 20.0},
    }
    executor, report = run(camera_loop(schedule), duration=2.0)
    times = frame_times(executor)
    assert [t for t in times if 0.5 < t < 1.5] == [1.0]
    assert [t for t in times if t >= 1.5] == pytest.approx([1.55 + 0.05 * k for k in range(9)])
    assert report.node("camera").sensing["enabled"] is True


def test_a_command_from_the_sensors_own_cascade() -> None:
    """A policy fed by the sensor slows it down in the same instant: the timer
    moves while it is firing."""

    class Slower(Controller):
        inputs = (Port("frame"),)
        outputs = (Port("command"),)

        def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
            if inputs["frame"]["t"] >= 1.0 and inputs["frame"]["rate"] == 10.0:
                return {"command": sensing_command(rate_hz=2.0)}
            return None

    graph = edgeloop.LoopGraph(name="own")
    graph.add_node("camera", Camera, rate_hz=10.0, inputs={"sensing": "policy/command"})
    graph.add_node("policy", Slower, inputs={"frame": "camera/frame"})  # no cycle: a command
    graph.add_node("sink", RecordingSink, inputs={"frame": "camera/frame"})
    executor, report = run(graph, duration=3.0)
    times = frame_times(executor)
    assert [t for t in times if t >= 1.0] == pytest.approx([1.0, 1.5, 2.0, 2.5])
    assert report.timers[0].fired == len(times) == 14


def test_region_and_mask_scale_the_cost() -> None:
    mask = np.zeros((8, 8), bool)
    mask[:2, :] = True  # a quarter of the cells
    schedule = {"0.9": {"region": [0, 0, 4, 4], "resolution": [4, 4]}, "1.9": {"mask": mask}}
    executor, report = run(camera_loop(schedule), duration=3.0)
    cost = report.node("camera").sensing["cost"]
    # 10 full readings, then 10 at a quarter region x a quarter resolution, then 10
    # with a quarter of the cells at a quarter resolution.
    assert cost == pytest.approx(2.0 * (10 + 10 / 16 + 10 / 16))
    assert executor.node("sink").values("frame")[12]["region"] == (0, 0, 4, 4)


def test_graph_bounds_narrow_the_type_and_set_the_cost() -> None:
    _, report = run(
        camera_loop(
            {"0.5": {"rate_hz": 90.0}}, min_rate_hz=5.0, max_rate_hz=40.0, cost_per_reading=0.5
        )
    )
    sensing = report.node("camera").sensing
    assert sensing["rate_hz"] == 40.0 and sensing["clamped"] == 1
    assert sensing["full_rate_hz"] == 40.0
    assert sensing["skipped"] == 120 - sensing["readings"]
    assert sensing["cost"] == pytest.approx(0.5 * sensing["readings"])


def test_validation_names_misplaced_sensing() -> None:
    graph = camera_loop({}, rate_hz=500.0)
    with pytest.raises(GraphError, match="outside the sensing bounds"):
        run(graph)
    graph = edgeloop.LoopGraph(name="bad")
    graph.add_node("commander", Commander, inputs={"tick": "timer/100ms"})
    graph.add_node(
        "sink", RecordingSink, inputs={"frame": "commander/command"}, sensing={"max_rate_hz": 3}
    )
    with pytest.raises(GraphError, match="takes no sensing commands"):
        run(graph)


@pytest.mark.parametrize(
    "rates",
    [
        {"max_rate_hz": 1e9},
        {"max_rate_hz": math.inf},
        {"max_rate_hz": math.nan},
        {"min_rate_hz": 0.0},
        {"min_rate_hz": 1e-300},
        {"min_rate_hz": -1.0},
    ],
    ids=["1e9 Hz", "infinite", "NaN", "a minimum of 0", "a minimum of 1e-300", "negative"],
)
def test_a_sensor_type_promising_a_rate_the_executor_cannot_run_is_refused_where_declared(
    rates: dict[str, float],
) -> None:
    with pytest.raises(PluginError) as refused:
        SensingSpec(**rates)  # the line the error names

    (name,) = rates
    assert f"SensingSpec {name} must be a number from 1e-06 to 1,000,000 Hz" in str(refused.value)
    line = refused.value.__traceback__.tb_lineno
    assert refused.value.where == f"{__file__}:{line}"


def test_a_sensor_type_may_allow_exactly_the_graphs_rate_bounds() -> None:
    spec = SensingSpec(min_rate_hz=1e-6, max_rate_hz=1_000_000)

    assert (spec.min_rate_hz, spec.max_rate_hz) == (1e-6, 1_000_000)


def test_graph_bounds_that_leave_no_rate_are_a_validation_problem_not_a_plugin_error() -> None:
    graph = camera_loop({}, max_rate_hz=1e-9)  # below the type's 1 Hz

    problems = validate_graph(graph, edgeloop.PluginRegistry())

    assert [p.field for p in problems] == ["nodes[0].sensing"]
    assert "rate bounds 1..1e-09 Hz are empty" in problems[0].message


def test_the_gym_sensor_senses_less_on_command() -> None:
    pytest.importorskip("gymnasium")
    graph = edgeloop.load_graph(Path(__file__).parents[2] / "examples" / "pendulum" / "loop.yaml")
    graph.nodes[0].inputs["sensing"] = edgeloop.runtime.graph.InputSpec.model_validate(
        {"from": "slow/command"}
    )
    graph.add_node(
        "slow",
        Commander,
        inputs={"tick": "timer/1s"},
        config={"schedule": {"2.0": {"rate_hz": 10.0}}},
    )
    _, report = run(graph, duration=4.0)
    sensing = report.node("sensor").sensing
    assert sensing["readings"] == 100 + 20  # 50 Hz for 2 s, then 10 Hz
    assert sensing["skipped"] == 200 - 120  # against the loop's own 50 Hz


def test_sensing_bounds_survive_yaml(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    graph = edgeloop.load_graph(Path(__file__).parents[2] / "examples" / "pendulum" / "loop.yaml")
    graph.nodes[0].sensing = edgeloop.runtime.graph.SensingBounds(
        max_rate_hz=60, cost_per_reading=3
    )
    graph.write(tmp_path / "g.yaml")
    again = edgeloop.load_graph(tmp_path / "g.yaml")
    assert again == graph
    assert again.nodes[0].sensing.cost_per_reading == 3


def test_commands_are_recorded_and_replayed_bit_exact(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    pytest.importorskip("mcap")
    import subprocess
    import sys

    from edgeloop.runtime.recording import read_recording

    loop = Path(__file__).parents[2] / "examples" / "adaptive-sensing" / "event.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "edgeloop", "run", str(loop), "--sim", "--duration", "5",
         "--record", "ev.mcap", "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    topics = [topic for topic, _, _ in read_recording(tmp_path / "ev.mcap")]
    assert topics.count("/trigger/command") > 10  # the commands are messages like any other
    replay = subprocess.run(
        [sys.executable, "-m", "edgeloop", "replay", "ev.mcap", "--graph", str(loop)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert "bit-exact" in replay.stdout


def test_a_restarted_sensor_keeps_counting_its_readings() -> None:
    class Flaky(Camera):
        def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
            if abs(self.ctx.now() - 0.5) < 1e-9:
                raise RuntimeError("glitch")
            return super().step(inputs)

    graph = camera_loop({})
    graph.nodes[0].type = "Flaky"
    graph._local_types["Flaky"] = Flaky
    _, report = run(graph, duration=2.0)
    camera = report.node("camera")
    assert camera.restarts == 1
    assert camera.sensing["readings"] == 20  # every step counted, before and after
