"""Built-in node types: conformance, the gymnasium plant, PID, clamp, constant, log."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import can_files
import numpy as np
import onnx_models
import pytest
import video_files

import edgeloop
from edgeloop import Executor, LoopGraph
from edgeloop.plugins.control import Pid
from edgeloop.testing import CounterSensor, RecordingSink, check_node

PENDULUM = Path(__file__).parents[2] / "examples" / "pendulum" / "loop.yaml"


def _recording(folder: Path) -> dict[str, str]:
    """A three-message recording of a node 'cam' (needs the record extra)."""
    pytest.importorskip("mcap")
    from edgeloop.runtime.recording import Recorder

    recorder = Recorder(folder / "r.mcap")
    for k in range(3):
        recorder.write("/cam/obs", np.full(3, k, np.float32), k, k * 0.02, k * 0.02)
    recorder.close()
    return {"recording": str(folder / "r.mcap"), "node": "cam"}


_PTYS: list[int] = []  # kept open for the session: the other end of each pty a node opens


def _pty(folder: Path) -> dict[str, str]:
    """A pseudo-terminal standing in for a serial device (needs the serial extra)."""
    pytest.importorskip("serial")
    master, slave = os.openpty()
    _PTYS.extend((master, slave))
    return {"port": os.ttyname(slave)}


# Node types that need a config to exist at all, and how to make one in a test folder.
def _ros2() -> dict:
    pytest.importorskip("zenoh")
    link = {"mode": "peer", "connect": [], "listen": ["tcp/127.0.0.1:0"]}
    return {"topic": "/check", "type": "geometry_msgs/msg/Twist", **link}


REQUIRED_CONFIG = {
    "onnx.model": lambda folder: {"model": str(onnx_models.make_mlp(folder / "mlp.onnx"))},
    "replay": _recording,
    "camera": lambda folder: {"source": str(video_files.write_video(folder / "v.mkv"))},
    "video.file": lambda folder: {"path": str(video_files.write_video(folder / "v.mkv"))},
    "can.sensor": lambda folder: {
        "dbc": str(can_files.write_dbc(folder)),
        "signals": ["left"],
        "interface": "virtual",
        "channel": "check-node",
    },
    "can.actuator": lambda folder: {
        "dbc": str(can_files.write_dbc(folder)),
        "message": "MotorCommand",
        "signals": ["torque"],
        "interface": "virtual",
        "channel": "check-node",
    },
    "serial.sensor": _pty,
    "serial.actuator": _pty,
    "predictor.kalman": lambda folder: {"dt": 0.02},
    "ros2.publish": lambda folder: _ros2(),
    "ros2.subscribe": lambda folder: _ros2(),
    "fusion": lambda folder: {"streams": ["a"]},
    "board.limits": lambda folder: {"temp_c": 85, "variant": "small"},
    "snn.torch": lambda folder: (
        pytest.importorskip("snntorch"),
        {"network": "spiking_nets:tiny", "kwargs": {"n_in": 1}},  # the sample input: 1 value
    )[1],
    "world": lambda folder: {
        "env": "edgeloop.sims.sensing_field:SensingField",
        "agents": ["robot_0", "robot_1"],
    },
}


@pytest.mark.parametrize("name", sorted(edgeloop.PluginRegistry().node_types))
def test_every_registered_node_type_keeps_the_node_contract(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # node types that write files write them here
    info = edgeloop.PluginRegistry().node_type(name)
    assert info.description, f"{name} needs a one-line description"
    config = REQUIRED_CONFIG[name](tmp_path) if name in REQUIRED_CONFIG else None
    check_node(info.cls, config)


def test_the_pendulum_loop_swings_up_and_balances_in_simulated_time():
    graph = edgeloop.load_graph(PENDULUM)
    graph.add_node("watch", RecordingSink, inputs={"obs": "sensor/obs"})
    executor = Executor(graph, simulated=True, seed=0)
    report = executor.run(20.0)
    cos_theta = np.array([obs[0] for obs in executor.node("watch").values("obs")])
    assert len(cos_theta) == 1000
    assert (cos_theta[-250:] > 0.95).all(), "upright for the last 5 s"
    assert report.contract("sense_to_act").deadline_misses == 0
    assert report.series["motor.episode_return"][0] > -400  # one 1000-step episode


def test_the_plant_resets_at_episode_end_and_reports_each_return():
    graph = edgeloop.load_graph(PENDULUM)
    for node_id in ("sensor", "motor"):
        graph.node(node_id).config["max_episode_steps"] = 100
    report = Executor(graph, simulated=True).run(10.0)
    returns = report.series["motor.episode_return"]
    assert len(returns) == 5
    assert all(math.isfinite(r) and r < 0 for r in returns)


def test_the_pendulum_loop_runs_in_real_time_too():
    report = Executor(edgeloop.load_graph(PENDULUM)).run(0.2)
    assert report.stop_reason == "duration reached"
    assert report.node("sensor").calls >= 1 and report.node("motor").calls >= 1
    assert not report.simulated and report.timers[0].fired == report.node("sensor").calls


def test_two_plants_with_the_same_name_but_different_envs_are_refused():
    graph = edgeloop.load_graph(PENDULUM)
    graph.node("motor").config["env"] = "CartPole-v1"
    with pytest.raises(edgeloop.NodeSetupError, match="plant 'plant' is Pendulum-v1"):
        Executor(graph, simulated=True).run(1.0)


def test_pid_drives_a_first_order_plant_to_its_setpoint():
    pid = Pid(kp=2.0, ki=1.0, kd=0.0, limit=5.0)
    x, dt = 0.0, 0.01
    for _ in range(2000):
        x += dt * (pid.update(1.0 - x, dt) - x)
    assert x == pytest.approx(1.0, abs=1e-3)


def test_pid_stops_integrating_while_saturated():
    pid = Pid(kp=1.0, ki=10.0, kd=0.0, limit=1.0)
    for _ in range(100):
        assert pid.update(5.0, 0.01) == 1.0
    assert pid.integral == 0.0


def test_the_pid_node_uses_clock_time_and_its_index():
    outputs = check_node(
        edgeloop.PluginRegistry().node_type("pid").cls,
        {"kp": 2.0, "index": 1, "setpoint": 1.0},
        [{"measurement": np.array([9.0, 0.25]), "setpoint": None}],
    )
    assert outputs[0]["action"] == pytest.approx([1.5])


def test_the_clamp_node_limits_value_and_rate():
    clamp = edgeloop.PluginRegistry().node_type("clamp").cls
    out = check_node(
        clamp,
        {"low": -1, "high": 1, "max_rate": 10.0},
        [{"action": np.array([5.0])}, {"action": np.array([-5.0])}],
    )
    assert out[0]["action"] == pytest.approx([1.0])
    assert out[1]["action"] == pytest.approx([0.9])  # 10/s over the 10 ms between steps


@pytest.mark.parametrize(
    ("node_type", "config", "reason"),
    [
        ("clamp", {"low": 1, "high": -1}, "low (1.0) is above high (-1.0)"),
        ("clamp", {"max_rate": 0}, "max_rate must be positive"),
        ("constant", {"dtype": "float33"}, "'float33' is not a numpy dtype"),
        ("log", {"every": 0}, "every must be >= 1"),
    ],
)
def test_config_checks_across_fields_are_reported_when_the_graph_is_validated(
    node_type, config, reason
):
    graph = LoopGraph(name="checked")
    graph.add_node("node", node_type, rate_hz=10, config=config)
    (problem,) = edgeloop.validate_graph(graph, edgeloop.PluginRegistry())
    assert problem.field == "nodes[0].config"
    assert problem.message.startswith(f"config of node type '{node_type}': {reason}")


def test_the_log_node_writes_json_lines(tmp_path):
    graph = LoopGraph(name="log")
    graph.add_node("source", CounterSensor, rate_hz=10)
    path = tmp_path / "log.jsonl"
    graph.add_node(
        "log", "log", inputs={"value": "source/value"}, config={"every": 2, "path": str(path)}
    )
    Executor(graph, simulated=True).run(1.0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["inputs"]["value"] for line in lines] == [[0.0], [2.0], [4.0], [6.0], [8.0]]
    assert lines[1]["t"] == pytest.approx(0.2)


def test_the_constant_node_emits_its_value_with_its_dtype():
    out = check_node(
        edgeloop.PluginRegistry().node_type("constant").cls, {"value": [1, 2], "dtype": "float64"}
    )
    assert out[0]["action"].dtype == np.float64 and out[0]["action"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("pid", {"measurement": np.array([np.nan]), "setpoint": None}),
        ("pendulum.swing_up", {"obs": np.array([np.nan, 0.0, 0.0], dtype=np.float32)}),
        ("clamp", {"action": np.array([np.inf])}),
    ],
)
def test_controllers_refuse_non_finite_inputs_rather_than_act_on_them(name, inputs):
    cls = edgeloop.PluginRegistry().node_type(name).cls
    with pytest.raises(ValueError, match="non-finite"):
        check_node(cls, inputs=[inputs])


def test_the_second_node_of_a_plant_may_not_contradict_how_it_was_made():
    graph = edgeloop.load_graph(PENDULUM)
    graph.node("motor").config["dt"] = 0.05
    with pytest.raises(edgeloop.NodeSetupError, match=r"made with dt=0\.02"):
        Executor(graph, simulated=True).run(1.0)


def test_the_pendulum_loop_is_bit_identical_for_a_seed_and_differs_across_seeds():
    def observations(seed: int) -> bytes:
        graph = edgeloop.load_graph(PENDULUM)
        graph.add_node("watch", RecordingSink, inputs={"obs": "sensor/obs"})
        executor = Executor(graph, simulated=True, seed=seed)
        executor.run(3.0)
        return np.stack(executor.node("watch").values("obs")).tobytes()

    assert observations(1) == observations(1)
    assert observations(1) != observations(2)
