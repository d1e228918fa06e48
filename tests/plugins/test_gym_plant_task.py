"""The gymnasium plant runs one task, given as numbers by attribute of ``env.unwrapped``:
written as a task space writes it (one function for both), and refused with a clear
error when a value is not a number or the env has no such attribute."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("gymnasium")

import gymnasium as gym

import edgeloop
from edgeloop import Executor, LoopGraph
from edgeloop.plugins.gym_env import set_env_attributes
from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims import load_task_space
from edgeloop.testing import RecordingSink

PENDULUM = {"env": "Pendulum-v1"}


def _plant_loop(sensor: dict, motor: dict, torque: float = 0.5) -> LoopGraph:
    graph = LoopGraph(name="plant")
    graph.add_node("sensor", "gym.sensor", rate_hz=20, config=sensor)
    graph.add_node("push", "constant", inputs={"obs": "sensor/obs"}, config={"value": [torque]})
    graph.add_node("motor", "gym.actuator", inputs={"action": "push/action"}, config=motor)
    graph.add_node("watch", RecordingSink, inputs={"obs": "sensor/obs"})
    return graph


def test_the_plant_moves_as_the_task_space_env_of_that_task():
    # The motor leaves the task out: the second node of a plant may.
    graph = _plant_loop({**PENDULUM, "task": {"m": 1.8, "l": 0.7}}, PENDULUM)
    executor = Executor(graph, simulated=True, seed=2)
    executor.run(1.0)
    seen = np.stack(executor.node("watch").values("obs"))

    env = load_task_space("pendulum").make_env([1.8, 0.7])  # mass, length
    expected = [env.reset(seed=2)[0]]
    for _ in range(len(seen) - 1):
        expected.append(env.step(np.array([0.5], dtype=np.float32))[0])
    env.close()
    np.testing.assert_array_equal(seen, np.stack(expected))

    untouched = Executor(_plant_loop(PENDULUM, {}), simulated=True, seed=2)
    untouched.run(1.0)
    assert not np.array_equal(np.stack(untouched.node("watch").values("obs")), seen)


def test_both_nodes_may_give_the_task_but_not_two_tasks():
    same = {**PENDULUM, "task": {"m": 1.8, "l": 0.7}}
    Executor(_plant_loop(same, dict(same)), simulated=True).run(0.1)

    other = {**PENDULUM, "task": {"m": 1.0, "l": 0.7}}
    with pytest.raises(edgeloop.NodeSetupError, match="made with task="):
        Executor(_plant_loop(same, other), simulated=True).run(0.1)


@pytest.mark.parametrize(
    ("task", "field", "reason"),
    [
        ({"m": "heavy"}, "nodes[0].config.task", r"'task\.m'.*valid number.*'heavy'"),
        ({"m": None}, "nodes[0].config.task", r"'task\.m'.*valid number"),
        ({"m": [1.0]}, "nodes[0].config.task", r"'task\.m'.*valid number"),
        ([1.5, 1.2], "nodes[0].config.task", r"'task'.*valid dictionary"),
        ({"m": float("nan")}, "nodes[0].config", r"task value m = nan is not a finite number"),
        ({"l": float("inf")}, "nodes[0].config", r"task value l = inf is not a finite number"),
    ],
)
def test_a_task_value_that_is_not_a_number_is_a_config_error(task, field, reason):
    graph = LoopGraph(name="checked")
    graph.add_node("sensor", "gym.sensor", rate_hz=10, config={**PENDULUM, "task": task})
    (problem,) = edgeloop.validate_graph(graph, edgeloop.PluginRegistry())
    assert problem.field == field
    assert re.search(reason, problem.message), problem.message
    assert problem.fix


@pytest.mark.parametrize(
    ("task", "fix"),
    [
        ({"m": 1.0, "max_sped": 9.0}, r"did you mean max_speed\?"),
        # Nothing close: the fix lists the numbers the env has to set.
        ({"mass": 1.0}, r"numeric ones: .*\bg, l, m, max_speed, max_torque\b"),
    ],
)
def test_an_attribute_the_env_does_not_have_fails_the_setup_with_a_fix(task, fix):
    graph = _plant_loop({**PENDULUM, "task": task}, PENDULUM)
    with pytest.raises(edgeloop.NodeSetupError) as caught:
        Executor(graph, simulated=True).run(0.1)
    message = str(caught.value)
    name = next(k for k in task if k not in ("m",))
    assert f"task: Pendulum-v1 has no attribute '{name}' to set (fix: " in message
    assert re.search(fix, message), message


def test_close_matches_ignore_case():
    graph = LoopGraph(name="acrobot")
    graph.add_node(
        "sensor", "gym.sensor", rate_hz=10, config={"env": "Acrobot-v1", "task": {"link_mas_1": 2}}
    )
    with pytest.raises(edgeloop.NodeSetupError, match=r"did you mean LINK_MASS_1"):
        Executor(graph, simulated=True).run(0.1)


def test_set_env_attributes_keeps_the_type_refreshes_derived_values_and_checks_first():
    env = gym.make("CartPole-v1")
    try:
        set_env_attributes(env, {"length": 0.9, "masspole": 0.4})
        pole = env.unwrapped
        assert (pole.length, pole.masspole) == (0.9, 0.4)
        assert pole.total_mass == pytest.approx(0.4 + pole.masscart)
        assert pole.polemass_length == pytest.approx(0.36)

        set_env_attributes(env, {"screen_width": 800.0})  # an int attribute stays an int
        assert type(pole.screen_width) is int and pole.screen_width == 800

        with pytest.raises(EdgeloopError, match=r"no attribute 'lenght'.*did you mean length"):
            set_env_attributes(env, {"masspole": 0.1, "lenght": 2.0})
        assert pole.masspole == 0.4, "nothing is written when a name is unknown"
    finally:
        env.close()


def test_task_spaces_apply_their_tasks_with_the_same_function(monkeypatch):
    import edgeloop.sims.task_space as task_space

    assert task_space.set_env_attributes is set_env_attributes
    calls = []
    monkeypatch.setattr(task_space, "set_env_attributes", lambda env, v: calls.append(dict(v)))
    load_task_space("acrobot").apply(object(), [1.0, 2.0])
    assert calls == [{"LINK_MASS_1": 1.0, "LINK_MASS_2": 2.0}]
