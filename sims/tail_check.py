"""Is a task space's tail worth fixing? Specialists on ERM's worst tasks.

A robust sampler can only lift the tail where the tail can be lifted. So before a
comparison on a task space: train ERM, evaluate it on a grid, take its worst
tasks, and train a specialist on each of them alone (the ``fixed`` sampler) with
the same budget. Where the specialists do clearly better than ERM on those
tasks, the tail is learnable and a sampler has something to find; where they do
no better, the tasks are hard by nature and no sampler will fix them, so a
comparison there measures noise (Acrobot's tail, for one).

The check passes when the specialists' mean return on ERM's worst tasks beats
ERM's own by more than ``min_gain`` of ERM's spread over the grid (its best
task's return minus its worst's) and by more than two standard errors over the
evaluation episodes. A space ERM does equally well on everywhere has no tail and
fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgeloop.sims.evaluation import EVAL_SEED, evaluate
from edgeloop.sims.ppo import TrainConfig, as_policy_function, check_config, train, typed_settings
from edgeloop.sims.task_space import load_task_space


@dataclass(frozen=True)
class TailCheckConfig:
    """What the check trains and evaluates."""

    task_space: str = "pendulum"
    steps: int = 200_000
    """Environment steps of the ERM run and of each specialist."""
    worst: int = 3
    """ERM's worst grid tasks to train specialists on."""
    grid: int = 10
    """Grid points per parameter of ERM's evaluation."""
    episodes: int = 5
    """Evaluation episodes per task (from the comparisons' evaluation seed)."""
    seed: int = 0
    """Seeds ERM's run and the specialists'."""
    min_gain: float = 0.1
    """Share of ERM's spread over the grid the specialists must gain on the worst tasks."""
    train: dict[str, Any] = field(default_factory=dict)
    """Other TrainConfig settings (``gamma``, ...), the same for every run."""


@dataclass
class TailCheck:
    """The check's figures; ``passed`` is the verdict."""

    config: TailCheckConfig
    grid_returns: list[float]
    """ERM's mean return per grid task."""
    tasks: list[list[float]]
    """ERM's worst grid tasks, worst first."""
    erm: list[list[float]]
    """ERM's return in each evaluation episode (seeds from EVAL_SEED) on each of them."""
    specialists: list[list[float]]
    """Each specialist's returns on its task, the same episodes."""

    @property
    def spread(self) -> float:
        """ERM's best grid task's mean return minus its worst's."""
        return float(max(self.grid_returns) - min(self.grid_returns))

    @property
    def gain(self) -> float:
        """The specialists' mean return on the worst tasks minus ERM's."""
        return float(np.mean(self.specialists) - np.mean(self.erm))

    @property
    def noise(self) -> float:
        """Two standard errors of :attr:`gain` over the episodes (0 with one episode)."""
        erm, alone = np.ravel(self.erm), np.ravel(self.specialists)
        if len(erm) < 2:
            return 0.0
        return float(2 * np.sqrt(erm.var(ddof=1) / len(erm) + alone.var(ddof=1) / len(alone)))

    @property
    def passed(self) -> bool:
        """The specialists gain a share of ERM's spread, and more than the noise."""
        needed = max(self.config.min_gain * self.spread, self.noise)
        return self.spread > 0 and self.gain > needed

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "grid_returns": self.grid_returns,
            "tasks": self.tasks,
            "erm": self.erm,
            "specialists": self.specialists,
            "spread": self.spread,
            "gain": self.gain,
            "noise": self.noise,
            "passed": self.passed,
        }


def tail_check(config: TailCheckConfig, progress: Callable[[str], None] | None = None) -> TailCheck:
    """Train ERM and the specialists, evaluate them, and judge the tail.

    Raises:
        TrainingError: a setting the trainer refuses (checked before any training).
    """
    space = load_task_space(config.task_space)
    fixed = ("task_space", "sampler", "seed", "total_steps", "task")  # set by the check
    settings = typed_settings(config.train, fixed=fixed)
    base = TrainConfig(
        task_space=config.task_space, total_steps=config.steps, seed=config.seed, **settings
    )
    check_config(base)
    say = progress or (lambda _: None)
    say(f"ERM on {space.name}, {config.steps:,} steps")
    erm = as_policy_function(train(base))
    grid = space.grid(config.grid)
    seen = evaluate(erm, space, tasks=grid, episodes=config.episodes, seed=EVAL_SEED)
    per_task = np.asarray(seen.returns, dtype=np.float64)
    worst = grid[np.argsort(per_task, kind="stable")[: config.worst]]
    erm_episodes = _episodes(erm, space, worst, config.episodes)
    specialists = []
    for k, task in enumerate(worst.tolist()):
        say(f"specialist {k + 1}/{len(worst)} on {dict(zip(space.names, task, strict=True))}")
        fixed_task = TrainConfig(**{**asdict(base), "sampler": "fixed", "task": task})
        policy = as_policy_function(train(fixed_task))
        specialists.append(_episodes(policy, space, np.asarray([task]), config.episodes)[0])
    return TailCheck(
        config=config,
        grid_returns=per_task.tolist(),
        tasks=worst.tolist(),
        erm=erm_episodes,
        specialists=specialists,
    )


def _episodes(policy: Any, space: Any, tasks: np.ndarray, episodes: int) -> list[list[float]]:
    """Each task's return in each episode, seeds from EVAL_SEED as the grid's."""
    runs = [
        evaluate(policy, space, tasks=tasks, episodes=1, seed=EVAL_SEED + k).returns
        for k in range(episodes)
    ]
    return np.asarray(runs, dtype=np.float64).T.tolist()
