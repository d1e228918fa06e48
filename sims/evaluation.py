"""Evaluating a policy over a task space: mean return and CVaR on a fixed grid.

A policy is any function from an observation to an action (deterministic for
evaluation). A policy with a ``batched`` form (``as_policy_function`` gives
one) runs all episodes side by side in a vector of environments, optionally one
process each. Each grid task runs ``episodes`` episodes from fixed seeds; the
per-task mean return feeds the mean and CVaR_alpha over tasks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.sims.risk import cvar
from edgeloop.sims.task_space import TaskSpace

Policy = Callable[[np.ndarray, np.ndarray], Any]
"""policy(observation, task) -> action; the task lets task-aware policies see it."""

ALPHAS = (0.5, 0.7, 0.9)

EVAL_SEED = 10_000
"""First episode seed of final evaluations: ``edgeloop compare`` evaluates every run
from it, and ``edgeloop evaluate`` does by default, so the two give the same figures."""


@dataclass
class Evaluation:
    """Per-task returns over a grid and the tail figures over tasks."""

    space: str
    tasks: np.ndarray
    """The grid tasks (n, d), physical values."""
    returns: np.ndarray
    """Mean return per task (n,)."""
    env_steps: int
    mean: float = field(init=False)
    cvar: dict[float, float] = field(init=False)

    def __post_init__(self) -> None:
        self.mean = float(self.returns.mean())
        self.cvar = {alpha: cvar(self.returns, alpha) for alpha in ALPHAS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "mean": self.mean,
            "cvar": {str(a): v for a, v in self.cvar.items()},
            "env_steps": self.env_steps,
            "tasks": self.tasks.tolist(),
            "returns": self.returns.tolist(),
        }


def run_episode(env: Any, policy: Policy, task: np.ndarray, seed: int) -> tuple[float, int]:
    """One episode's return and length."""
    obs, _ = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(np.asarray(obs), task))
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return total, steps


def evaluate(
    policy: Policy,
    space: TaskSpace,
    *,
    per_axis: int = 10,
    episodes: int = 2,
    seed: int = 0,
    tasks: Sequence[Sequence[float]] | None = None,
    ood: bool = False,
    processes: bool = False,
) -> Evaluation:
    """Run ``policy`` on every task of a grid (or on ``tasks``), ``episodes`` each.

    Args:
        policy: ``policy(obs, task) -> action``, deterministic.
        space: The task space (its OOD ranges with ``ood=True``).
        per_axis: Grid points per parameter (per_axis ** d tasks).
        episodes: Episodes per task, from seeds ``seed, seed + 1, ...``.
        seed: First episode seed.
        tasks: Tasks to use instead of the grid.
        ood: Evaluate over the out-of-distribution ranges.
        processes: Run the episodes in parallel processes (gymnasium's
            ``AsyncVectorEnv``); needs a policy with a ``batched`` form.
    """
    if per_axis < 1 or episodes < 1:
        raise ValueError(f"per_axis and episodes must be at least 1, got {per_axis}, {episodes}")
    target = space.ood() if ood else space
    grid = np.asarray(tasks, dtype=np.float64) if tasks is not None else target.grid(per_axis)
    batched = getattr(policy, "batched", None)
    if batched is not None:
        return _evaluate_batched(batched, space, target.name, grid, episodes, seed, processes)
    env = space.make_env()
    returns = np.empty(len(grid))
    steps = 0
    try:
        for i, task in enumerate(grid):
            space.apply(env, task, ood=True)
            results = [run_episode(env, policy, task, seed + k) for k in range(episodes)]
            returns[i] = np.mean([r for r, _ in results])
            steps += sum(n for _, n in results)
    finally:
        env.close()
    return Evaluation(target.name, grid, returns, steps)


def _evaluate_batched(
    act: Any,
    space: TaskSpace,
    name: str,
    grid: np.ndarray,
    episodes: int,
    seed: int,
    processes: bool,
    width: int = 64,
) -> Evaluation:
    """All (task, episode) pairs side by side in a vector of environments."""
    from edgeloop.sims.task_env import TaskVector, episode_returns

    if processes:  # one process per environment: no more than the machine has cores
        width = min(width, os.cpu_count() or 1)
    jobs = np.repeat(grid, episodes, axis=0)
    seeds = [seed + k for _ in grid for k in range(episodes)]
    with TaskVector(space, min(width, len(jobs)), processes=processes) as vector:
        returns, steps = episode_returns(vector, act, jobs, seeds)
    return Evaluation(name, grid, returns.reshape(len(grid), episodes).mean(axis=1), steps)
