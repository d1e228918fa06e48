"""The compact PPO trainer: it learns, it charges every step, it refuses a budget too small."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims import evaluate, load_task_space
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


def test_drm_pays_for_its_evaluations_out_of_the_same_budget():
    result = train(TrainConfig(sampler="drm", total_steps=19_200, seed=1))
    # each iteration: 16 training episodes of 200 steps + 32 evaluation episodes
    assert result.steps == [9_600, 19_200]


def test_mpts_trains_and_logs_its_risk_correlation():
    result = train(TrainConfig(sampler="mpts", total_steps=16_000, seed=2, update_epochs=1))
    assert len(result.steps) == 5 and result.steps[-1] == 16_000
    assert len(result.correlations) == 4  # from the second observed batch on


def test_a_budget_smaller_than_one_iteration_is_refused():
    with pytest.raises(EdgeloopError, match="less than one iteration"):
        train(TrainConfig(total_steps=1_000))


def test_an_unknown_sampler_is_refused():
    with pytest.raises(EdgeloopError, match="unknown sampler 'mptss'"):
        train(TrainConfig(sampler="mptss", total_steps=3_200))


def test_train_and_evaluate_from_the_command_line(tmp_path):
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

    trained = edgeloop("train", "--sampler", "gdrm", "--steps", "19200", "-o", "run")
    assert trained.returncode == 0, trained.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["steps"] == [9_600, 19_200]  # GDRM's evaluations are charged
    evaluated = edgeloop("evaluate", "run", "--grid", "2", "--episodes", "1", "--json", "e.json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert len(report["in range"]["returns"]) == 4
    assert report["out of distribution"]["space"] == "pendulum-ood"
    missing = edgeloop("evaluate", "nowhere")
    assert missing.returncode == 2 and "is not a training run" in missing.stderr
    assert "Traceback" not in missing.stderr
