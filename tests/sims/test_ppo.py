"""The compact PPO trainer: it learns, it charges every step, it refuses a budget too small."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims import evaluate, load_task_space
from edgeloop.sims.checkpoint import changed_settings
from edgeloop.sims.ppo import TrainConfig, as_policy_function, train


def test_a_short_training_run_beats_a_random_policy_on_the_task_grid():
    result = train(TrainConfig(total_steps=64_000, seed=0))
    assert result.steps[-1] == 64_000 and len(result.steps) == 20
    space = load_task_space("pendulum")
    trained = evaluate(as_policy_function(result), space, per_axis=3, episodes=1, seed=7)
    rng = np.random.default_rng(0)
    random = evaluate(
        lambda obs, task: rng.uniform(-2, 2, 1).astype(np.float32),
        space,
        per_axis=3,
        episodes=1,
        seed=7,
    )
    assert trained.mean > random.mean + 150
    assert np.mean(result.mean_returns[-3:]) > np.mean(result.mean_returns[:3]) + 150


def test_every_sampler_pays_for_every_episode_it_runs_out_of_the_same_budget():
    # Pendulum's episodes are 200 steps; B = 16 tasks an iteration.
    drm = train(TrainConfig(sampler="drm", total_steps=12_800, seed=1, update_epochs=1))
    assert drm.steps == [6_400, 12_800]  # 2B rollouts each, the worst B trained on
    assert len(drm.mean_returns) == 2
    gdrm = train(TrainConfig(sampler="gdrm", total_steps=6_400, seed=1, update_epochs=1))
    assert gdrm.steps == [3_200, 6_400]  # B rollouts, no evaluation: only its loss differs
    old = train(TrainConfig(sampler="drm-eval", total_steps=19_200, seed=1, update_epochs=1))
    assert old.steps == [9_600, 19_200]  # 2B evaluation episodes, then B training ones


def test_gdrm_weights_only_the_policy_loss_and_with_weight_0_is_plain_ppo():
    import gymnasium
    import torch

    from edgeloop.sims.ppo import _ppo_update, make_policy

    rng = np.random.default_rng(0)
    trajectories = [
        {
            "obs": list(rng.normal(size=(20, 5)).astype(np.float32)),
            "actions": list(rng.normal(size=(20, 1)).astype(np.float32)),
            "logp": list(rng.normal(size=20) - 1.0),
            "values": list(rng.normal(size=20)),
            "rewards": list(rng.normal(size=20) - k),  # episodes of different returns
            "terminal": True,
            "last_obs": None,
        }
        for k in range(4)
    ]
    config = TrainConfig(update_epochs=2, minibatch_size=16)
    space = gymnasium.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def updated(weight):
        torch.manual_seed(0)
        policy = make_policy(5, space, 8)
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
        _ppo_update(torch, policy, optimizer, trajectories, config, gdro_weight=weight)
        return torch.cat([p.detach().flatten() for p in policy.parameters()])

    plain = updated(None)
    assert torch.allclose(updated(0.0), plain, atol=1e-6)  # uniform weights: the mean
    assert not torch.allclose(updated(2.0), plain, atol=1e-4)


def test_mpts_trains_and_logs_its_risk_correlation():
    result = train(TrainConfig(sampler="mpts", total_steps=16_000, seed=2, update_epochs=1))
    assert len(result.steps) == 5 and result.steps[-1] == 16_000
    assert len(result.correlations) == 4  # from the second observed batch on


def test_a_budget_smaller_than_one_iteration_is_refused():
    with pytest.raises(EdgeloopError, match="less than one iteration"):
        train(TrainConfig(total_steps=1_000))
    with pytest.raises(EdgeloopError, match=r"less than one iteration of drm \(6,400 steps"):
        train(TrainConfig(sampler="drm", total_steps=6_000))
    with pytest.raises(EdgeloopError, match=r"of drm-eval \(9,600 steps"):
        train(TrainConfig(sampler="drm-eval", total_steps=9_000))


def test_no_sampler_ever_spends_more_than_its_budget():
    expected = {"erm": [3_200, 6_400, 9_600], "drm": [6_400], "gdrm-eval": [9_600]}
    for sampler, steps in expected.items():
        result = train(TrainConfig(sampler=sampler, total_steps=12_000, update_epochs=1))
        assert result.steps == steps  # DRM's next iteration could cost 6,400 more


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("seed", -1, "seed = -1"), ("checkpoint_every", 0, "checkpoint_every = 0")],
)
def test_settings_out_of_bounds_are_refused_before_any_work(field, value, message):
    with pytest.raises(EdgeloopError, match=message):
        train(TrainConfig(total_steps=3_200, **{field: value}))


def test_a_run_folder_with_other_settings_is_refused(tmp_path):
    from edgeloop.sims.runs import train_run

    train_run(TrainConfig(total_steps=3_200, curve_points=0), tmp_path / "run")
    with pytest.raises(EdgeloopError, match="other settings \\(total_steps differ"):
        train_run(TrainConfig(total_steps=6_400, curve_points=0), tmp_path / "run", resume=True)


def test_an_unknown_sampler_is_refused():
    with pytest.raises(EdgeloopError, match="unknown sampler 'mptss'"):
        train(TrainConfig(sampler="mptss", total_steps=3_200))


def test_train_and_evaluate_from_the_command_line(tmp_path, capsys, monkeypatch):
    import json
    import subprocess
    import sys

    def edgeloop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeloop", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )

    trained = edgeloop(
        "train", "--sampler", "gdrm-eval", "--steps", "19200", "--set", "vf_coef=0.25", "-o", "run"
    )
    assert trained.returncode == 0, trained.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["steps"] == [9_600, 19_200]  # gdrm-eval's evaluations are charged
    assert json.loads((tmp_path / "run" / "config.json").read_text())["vf_coef"] == 0.25
    from edgeloop.cli import main

    monkeypatch.chdir(tmp_path)  # evaluating: the same CLI, in this process
    assert main(["evaluate", "run", "--grid", "2", "--episodes", "1", "--json", "e.json"]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert len(report["in range"]["returns"]) == 4
    assert report["out of distribution"]["space"] == "pendulum-ood"
    assert main(["evaluate", "nowhere"]) == 2
    assert "is not a training run" in capsys.readouterr().err


class Interrupted(Exception):
    pass


def stop_after(iterations: int):
    def progress(result) -> None:
        if len(result.steps) == iterations:
            raise Interrupted

    return progress


@pytest.mark.parametrize("sampler", ["mpts+div+regret", "mpts+ref", "drm"])
def test_a_resumed_run_is_bit_identical_to_one_that_never_stopped(tmp_path, sampler):
    import torch

    config = TrainConfig(
        sampler=sampler,
        total_steps=32_000,
        seed=3,
        update_epochs=2,
        checkpoint_every=1,
        curve_points=3,
        curve_grid=2,
    )
    whole = train(config)
    with pytest.raises(Interrupted):
        train(config, stop_after(2), checkpoint=tmp_path / "ck.pt")
    resumed = train(config, checkpoint=tmp_path / "ck.pt", resume=True)
    assert resumed.history() | {"seconds": 0} == whole.history() | {"seconds": 0}
    weights = zip(
        whole.policy.state_dict().values(), resumed.policy.state_dict().values(), strict=True
    )
    assert all(torch.equal(a, b) for a, b in weights)


def test_a_checkpoint_from_other_settings_is_refused(tmp_path):
    config = TrainConfig(total_steps=6_400, checkpoint_every=1, curve_points=0)
    train(config, checkpoint=tmp_path / "ck.pt")
    other = TrainConfig(total_steps=6_400, checkpoint_every=1, curve_points=0, gamma=0.99)
    with pytest.raises(EdgeloopError, match="other settings \\(gamma differ"):
        train(other, checkpoint=tmp_path / "ck.pt", resume=True)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeloopError, match="cannot read the checkpoint"):
        train(config, checkpoint=tmp_path / "bad.pt", resume=True)


def test_environments_in_their_own_processes_give_the_same_run():
    config = TrainConfig(
        task_space="cartpole",
        num_tasks=3,
        total_steps=3_000,
        update_epochs=1,
        curve_points=1,
        curve_grid=2,
    )
    here = train(config)
    apart = train(TrainConfig(**{**config.__dict__, "processes": True}))
    assert apart.history() | {"seconds": 0} == here.history() | {"seconds": 0}
    assert here.steps[-1] <= 3_000  # cart-pole episodes end early; steps are counted as taken


def test_the_learning_curve_is_measured_on_a_fixed_grid_at_evenly_spread_points():
    result = train(TrainConfig(total_steps=16_000, update_epochs=1, curve_points=2, curve_grid=2))
    assert [point["steps"] for point in result.curve] == [9_600, 16_000]  # first past 8,000
    assert all(point["cvar_0.9"] <= point["mean"] for point in result.curve)


def test_batched_and_one_by_one_evaluation_agree():
    result = train(TrainConfig(total_steps=3_200, curve_points=0))
    policy = as_policy_function(result)
    space = load_task_space("pendulum")
    batched = evaluate(policy, space, per_axis=2, episodes=2, seed=5)
    one_by_one = evaluate(
        lambda obs, task: policy(obs, task), space, per_axis=2, episodes=2, seed=5
    )
    assert np.allclose(batched.returns, one_by_one.returns, atol=1e-3)
    assert batched.env_steps == one_by_one.env_steps == 4 * 2 * 200


def test_ctrl_c_keeps_a_checkpoint_and_resume_finishes_the_same_run(tmp_path, capsys, monkeypatch):
    import json
    import signal
    import subprocess
    import sys
    import time

    from edgeloop.cli import main

    args = ["train", "--sampler", "mpts", "--steps", "9600", "--checkpoint-every", "1"]
    run = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", *args, "-o", "run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    while not checkpoint.exists() and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "continue with: edgeloop train --resume run" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "run" / "policy.pt").exists()
    monkeypatch.chdir(tmp_path)  # the same CLI, in this process: no second start-up
    assert main(["train", "--resume", "run"]) == 0, capsys.readouterr().err
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    whole = train(TrainConfig(sampler="mpts", total_steps=9_600, checkpoint_every=1))
    assert len(whole.steps) == 3 and history["steps"] == whole.steps
    assert history["mean_returns"] == whole.mean_returns and history["curve"] == whole.curve
    assert not checkpoint.exists()  # a finished run keeps only its results
    capsys.readouterr()
    assert main(["train", "--steps", "3200", "-o", "run"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", "run", "--steps", "9"]) == 2
    assert "drop --total-steps" in capsys.readouterr().err


def test_the_loss_coefficients_are_settings_that_change_the_update():
    # One iteration of 16 Pendulum episodes learns nothing (the learning rate anneals
    # to 0 over the budget); two learn in the first.
    one = TrainConfig(total_steps=3_200, seed=0)
    two = dataclasses.replace(one, total_steps=6_400)

    trained: dict[TrainConfig, dict] = {}  # each configuration trained once

    def weights(config: TrainConfig, part: str) -> list:
        if config not in trained:
            trained[config] = train(config).policy.state_dict()
        return [v.clone() for k, v in trained[config].items() if k.startswith(part)]

    def same(a: list, b: list) -> bool:
        return all(bool((x == y).all()) for x, y in zip(a, b, strict=True))

    # vf_coef 0: the critic gets no gradient, so a second iteration leaves it where the
    # first did (Adam moves nothing without one); with the default it learns.
    critic = "critic."
    no_value = dataclasses.replace
    assert same(
        weights(no_value(one, vf_coef=0.0), critic), weights(no_value(two, vf_coef=0.0), critic)
    )
    assert not same(weights(one, critic), weights(two, critic))
    # An entropy bonus widens the Gaussian policy: it moves log_std (its only input).
    wider = weights(no_value(two, ent_coef=0.05), "log_std")[0]
    assert bool((wider > weights(two, "log_std")[0]).all())


def test_a_checkpoint_saved_before_a_setting_existed_still_resumes():
    saved = dataclasses.asdict(TrainConfig())
    del saved["vf_coef"], saved["ent_coef"]  # as a run of an older version saved it
    assert changed_settings(saved, TrainConfig()) == []
    assert changed_settings(saved, TrainConfig(vf_coef=0.25)) == ["vf_coef"]


def test_the_vector_environments_autoreset_mode_is_set_not_left_to_the_default():
    import gymnasium as gym

    from edgeloop.sims.task_env import TaskVector

    with TaskVector(load_task_space("pendulum"), 2) as vector:
        assert vector.envs.autoreset_mode == gym.vector.AutoresetMode.NEXT_STEP


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--set", "vf_coeff=0.5", "-o", "other"], "unknown or fixed training setting vf_coeff"),
        (["--set", "seed=3", "-o", "other"], "setting seed"),  # --seed is the option for it
        (["--set", "gamma", "-o", "other"], "expected KEY=VALUE"),
        (["--resume", "run", "--set", "gamma=0.9"], "drop --set"),
    ],
)
def test_train_refuses_settings_it_cannot_take(args, says, tmp_path, capsys, monkeypatch):
    from edgeloop.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert says in " ".join(err.split()) and "Traceback" not in err
