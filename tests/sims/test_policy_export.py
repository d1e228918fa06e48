"""A training run exported to an ONNX bundle and run on the loop: the bundle computes
what the torch policy does, and in closed loop on the gymnasium plant it earns the
return that a plain gymnasium evaluation of the same policy earns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")
pytest.importorskip("onnxscript")

import onnxruntime as ort
import torch

import edgeloop
from edgeloop import Executor, LoopGraph
from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims import load_task_space
from edgeloop.sims.evaluation import run_episode
from edgeloop.sims.policy_export import export_run
from edgeloop.sims.ppo import TrainConfig, as_policy_function, train
from edgeloop.sims.runs import load_run, save_run

EXAMPLE = Path(__file__).parents[2] / "examples" / "pendulum-mpts" / "loop.yaml"
PROFILE = "jetson-orin-nano-8gb"


def _tiny_run(folder: Path, task_space: str, horizon: int) -> Path:
    """One PPO iteration on two tasks, saved as a run. A policy that young acts near
    zero (its last layer starts at gain 0.01); larger last-layer weights make its
    actions, the clamp and the task's effect on them large enough to see."""
    result = train(
        TrainConfig(
            task_space=task_space,
            total_steps=2 * horizon,
            num_tasks=2,
            update_epochs=1,
            hidden=16,
            seed=0,
        )
    )
    last = result.policy.actor[-1]
    with torch.no_grad():
        noise = torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(1))
        last.weight.copy_(3.0 * noise)
    return save_run(result, folder)


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory) -> tuple[Path, Path]:
    """A pendulum run and its bundle, exported for the Orin Nano profile."""
    root = tmp_path_factory.mktemp("pendulum")
    run = _tiny_run(root / "run", "pendulum", 200)
    export_run(run, root / "bundle", profile=PROFILE)
    return run, root / "bundle"


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> tuple[Path, Path]:
    """A cartpole run (discrete actions, log-scale task parameters) and its bundle."""
    root = tmp_path_factory.mktemp("cartpole")
    run = _tiny_run(root / "run", "cartpole", 500)
    export_run(run, root / "bundle", profile=PROFILE)
    return run, root / "bundle"


def _torch_actions(run: Path, obs: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    result = load_run(run)
    units = load_task_space(result.config.task_space).normalise(tasks)
    x = torch.as_tensor(np.concatenate([obs, units], axis=1), dtype=torch.float32)
    with torch.no_grad():
        return result.policy(x).numpy()


def _onnx_actions(bundle: Path, obs: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"obs": obs.astype(np.float32), "task": tasks.astype(np.float32)}
    return session.run(["action"], feed)[0]


def _random_case(space_name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    space = load_task_space(space_name)
    rng = np.random.default_rng(5)
    env = space.make_env()
    obs = np.stack([env.observation_space.sample() for _ in range(n)]).astype(np.float32)
    env.close()
    return obs, space.ood().sample(n, rng)


def test_the_bundle_takes_obs_and_physical_task_and_computes_the_torch_policy(pendulum):
    run, bundle = pendulum
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [(t["name"], t["dtype"], t["shape"]) for t in manifest["inputs"]] == [
        ("obs", "float32", ["batch", 3]),
        ("task", "float32", ["batch", 2]),
    ]
    assert [(t["name"], t["dtype"]) for t in manifest["outputs"]] == [("action", "float32")]
    assert manifest["profile"] == PROFILE and manifest["precheck"]["passed"]
    assert manifest["parity"]["max_abs_error"] <= manifest["parity"]["tolerance"]
    constants = manifest["constants"]
    assert [p["name"] for p in constants["task"]] == ["mass", "length"]
    assert constants["action"] == {"low": [-2.0], "high": [2.0]}

    obs, tasks = _random_case("pendulum", 64)
    expected = _torch_actions(run, obs, tasks)
    got = _onnx_actions(bundle, obs, tasks)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(expected).max() == 2.0, "the clamp is exercised"
    assert (np.abs(expected) < 2.0).any()


def test_log_scale_task_parameters_and_discrete_actions_export_too(cartpole):
    run, bundle = cartpole
    space = load_task_space("cartpole")
    assert [p.log for p in space.parameters] == [True, True, False]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [(t["name"], t["dtype"], t["shape"]) for t in manifest["outputs"]] == [
        ("action", "int64", ["batch"])
    ]
    assert manifest["constants"]["action"] == {"discrete": 2}

    obs, tasks = _random_case("cartpole", 256)
    expected = _torch_actions(run, obs, tasks)
    got = _onnx_actions(bundle, obs, tasks)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    assert 0 < expected.mean() < 1, "both actions are taken"


def _gymnasium_return(run: Path, task: list[float], seed: int) -> float:
    """The plain gymnasium evaluation of the run's torch policy: one episode."""
    result = load_run(run)
    space = load_task_space(result.config.task_space)
    env = space.make_env(task)
    try:
        total, _ = run_episode(env, as_policy_function(result), np.asarray(task), seed)
    finally:
        env.close()
    return total


def test_the_example_loop_runs_the_bundle_and_earns_the_gymnasium_return(pendulum):
    run, bundle = pendulum
    task, seed = [1.8, 1.3], 3
    graph = edgeloop.load_graph(EXAMPLE)
    graph.node("policy").config["model"] = str(bundle)
    graph.node("sensor").config["task"] = {"m": task[0], "l": task[1]}  # Pendulum-v1's
    graph.node("task").config["value"] = task
    report = Executor(graph, simulated=True, seed=seed).run(10.0)  # 200 steps at 20 Hz

    assert report.node("policy").calls == 200
    (loop_return,) = report.series["motor.episode_return"]
    expected = _gymnasium_return(run, task, seed)
    assert loop_return == pytest.approx(expected, rel=1e-4, abs=1e-3)
    # The task matters: told another task (or on another plant) the return differs.
    other = _gymnasium_return(run, [0.6, 0.6], seed)
    assert abs(other - expected) > 1.0


def _cartpole_loop(bundle: Path, values: list[float]) -> LoopGraph:
    """The plant's task by env attribute, as the bundle's manifest names them."""
    constants = json.loads((bundle / "manifest.json").read_text())["constants"]
    task = {p["attribute"]: v for p, v in zip(constants["task"], values, strict=True)}
    plant = {"env": constants["env"], "task": task}
    graph = LoopGraph(name="cartpole-policy")
    graph.add_node("task", "constant", rate_hz=1, config={"value": values})
    graph.add_node("sensor", "gym.sensor", rate_hz=50, config=plant)
    graph.add_node(
        "policy",
        "onnx.model",
        inputs={"obs": "sensor/obs", "task": {"from": "task/action", "trigger": False}},
        config={"model": str(bundle)},
    )
    graph.add_node("motor", "gym.actuator", inputs={"action": "policy/action"}, config=plant)
    return graph


def test_a_discrete_policy_in_the_loop_earns_the_gymnasium_return_on_a_log_scale_task(cartpole):
    run, bundle = cartpole
    values, seed = [1.5, 0.05, 5.0], 4  # a long, light pole: an episode of some length
    graph = _cartpole_loop(bundle, values)
    plant_task = graph.node("sensor").config["task"]
    assert plant_task == {"length": 1.5, "masspole": 0.05, "force_mag": 5.0}
    report = Executor(graph, simulated=True, seed=seed).run(10.0)
    loop_return = report.series["motor.episode_return"][0]
    assert loop_return == _gymnasium_return(run, values, seed)
    assert loop_return != _gymnasium_return(run, [0.25, 0.5, 15.0], seed)


def test_a_folder_that_is_not_a_finished_run_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(EdgeloopError, match="nowhere is not a training run: no such folder"):
        export_run(tmp_path / "nowhere", tmp_path / "bundle")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeloopError, match=r"is not a training run: config\.json is missing"):
        export_run(tmp_path / "empty", tmp_path / "bundle")
    (tmp_path / "empty" / "config.json").write_text("{}")
    (tmp_path / "empty" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(EdgeloopError, match="a run still in training"):
        export_run(tmp_path / "empty", tmp_path / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_an_existing_bundle_is_kept_unless_overwrite_is_asked_for(pendulum):
    run, bundle = pendulum
    before = (bundle / "manifest.json").read_text()
    with pytest.raises(EdgeloopError, match="exists"):
        export_run(run, bundle)
    assert (bundle / "manifest.json").read_text() == before
