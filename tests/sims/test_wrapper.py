"""The task-sampling wrapper: any trainer gets tasks from a sampler and feeds returns back."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from edgeloop.sims import ErmSampler, load_task_space
from edgeloop.sims.wrapper import task_sampling_env


class Recording(ErmSampler):
    """ERM that keeps what it was told."""

    def __init__(self, space, rng):
        super().__init__(space, rng)
        self.observed: list[tuple[np.ndarray, np.ndarray]] = []

    def observe(self, tasks, risks):
        self.observed.append((tasks, risks))


def test_each_episode_runs_a_sampled_task_and_returns_go_back_in_batches():
    space = load_task_space("pendulum")
    sampler = Recording(space, np.random.default_rng(0))
    env = task_sampling_env(space, sampler, batch_size=4)
    env.action_space.seed(0)
    seen_tasks, returns = [], []
    for episode in range(8):
        _, info = env.reset(seed=episode)
        task = info["task"]
        assert space.task_of(env).tolist() == pytest.approx(task.tolist())
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
        reported_task, episode_return = info["episode_task_return"]
        assert np.array_equal(reported_task, task)
        seen_tasks.append(task)
        returns.append(episode_return)
    assert len(sampler.observed) == 2
    for k, (tasks, risks) in enumerate(sampler.observed):
        assert np.array_equal(tasks, np.stack(seen_tasks[4 * k : 4 * k + 4]))
        assert risks.tolist() == pytest.approx([-r for r in returns[4 * k : 4 * k + 4]])
    assert len({tuple(t) for t in seen_tasks}) == 8  # a new task every episode


def test_mpts_learns_through_the_wrapper_without_extra_evaluation():
    pytest.importorskip("torch")
    from edgeloop.sims import MptsSampler

    space = load_task_space("pendulum")
    sampler = MptsSampler(space, np.random.default_rng(0), warmup_iterations=1, seed=0)
    env = task_sampling_env(space, sampler, batch_size=3)
    env.action_space.seed(1)
    for episode in range(9):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    assert sampler.iteration == 3 and sampler.evaluation_steps == 0
    assert len(sampler.correlations) == 2


def test_an_unmodified_stable_baselines3_ppo_trains_with_mpts_through_the_wrapper():
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("torch")
    import runpy
    from pathlib import Path

    example = Path(__file__).parents[2] / "examples" / "sb3-mpts" / "train_sb3_ppo.py"
    main = runpy.run_path(str(example))["main"]
    sampler, grid_mean = main(steps=4_000, seed=0)
    assert sampler.iteration >= 2  # every 8 episodes the returns went back to MPTS
    assert sampler.evaluation_steps == 0
    assert np.isfinite(grid_mean)
