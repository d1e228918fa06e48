"""The gymnasium plant runs one task of a task space: applied as the task space applies
it, and refused with a clear config error when it is not a task of that space."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("gymnasium")

import edgeloop
from edgeloop import Executor, LoopGraph
from edgeloop.sims import load_task_space
from edgeloop.testing import RecordingSink

PENDULUM_TASK = {"env": "Pendulum-v1", "task_space": "pendulum"}


def _plant_loop(sensor: dict, motor: dict, torque: float = 0.5) -> LoopGraph:
    graph = LoopGraph(name="plant")
    graph.add_node("sensor", "gym.sensor", rate_hz=20, config=sensor)
    graph.add_node("push", "constant", inputs={"obs": "sensor/obs"}, config={"value": [torque]})
    graph.add_node("motor", "gym.actuator", inputs={"action": "push/action"}, config=motor)
    graph.add_node("watch", RecordingSink, inputs={"obs": "sensor/obs"})
    return graph


@pytest.mark.parametrize("task", [{"mass": 1.8, "length": 0.7}, {"m": 1.8, "l": 0.7}])
def test_the_plant_moves_as_the_task_space_env_of_that_task(task):
    graph = _plant_loop({**PENDULUM_TASK, "task": task}, {"env": "Pendulum-v1"})
    executor = Executor(graph, simulated=True, seed=2)
    executor.run(1.0)
    seen = np.stack(executor.node("watch").values("obs"))

    env = load_task_space("pendulum").make_env([1.8, 0.7])
    expected = [env.reset(seed=2)[0]]
    for _ in range(len(seen) - 1):
        expected.append(env.step(np.array([0.5], dtype=np.float32))[0])
    env.close()
    np.testing.assert_array_equal(seen, np.stack(expected))

    untouched = Executor(_plant_loop({"env": "Pendulum-v1"}, {}), simulated=True, seed=2)
    untouched.run(1.0)
    assert not np.array_equal(np.stack(untouched.node("watch").values("obs")), seen)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"env": "Pendulum-v1", "task": {"mass": 1.0}}, "task needs task_space"),
        (
            {**PENDULUM_TASK, "task": {"mas": 1.0, "length": 1.0}},
            r"task space pendulum has no parameter 'mas'; did you mean mass",
        ),
        ({**PENDULUM_TASK, "task": {"mass": 1.0}}, "task leaves out length"),
        (
            {**PENDULUM_TASK, "task": {"mass": 3.0, "length": 1.0}},
            r"mass = 3 is outside \[0.3, 2.5\], the widest \(out-of-distribution\) range",
        ),
        (
            {**PENDULUM_TASK, "task": {"mass": 1.0, "m": 1.0, "length": 1.0}},
            "task gives mass twice",
        ),
        (
            {"env": "CartPole-v1", "task_space": "pendulum", "task": {"mass": 1, "length": 1}},
            "task space pendulum is over Pendulum-v1, not CartPole-v1",
        ),
        ({**PENDULUM_TASK, "task_space": "pendulm"}, "unknown task space 'pendulm'"),
    ],
)
def test_a_task_that_is_not_one_of_the_space_is_a_config_error(config, reason):
    graph = LoopGraph(name="checked")
    graph.add_node("sensor", "gym.sensor", rate_hz=10, config=config)
    (problem,) = edgeloop.validate_graph(graph, edgeloop.PluginRegistry())
    assert problem.field == "nodes[0].config"
    assert problem.message.startswith("config of node type 'gym.sensor': ")
    assert re.search(reason, problem.message), problem.message


def test_the_second_node_of_a_plant_may_not_ask_for_another_task():
    sensor = {**PENDULUM_TASK, "task": {"mass": 1.8, "length": 0.7}}
    motor = {**PENDULUM_TASK, "task": {"mass": 1.0, "length": 0.7}}
    with pytest.raises(edgeloop.NodeSetupError, match="made with task="):
        Executor(_plant_loop(sensor, motor), simulated=True).run(0.1)
