"""A gymnasium wrapper that lets any trainer learn with a task sampler.

Each episode's task comes from the sampler on ``reset``; when an episode ends
its return goes back to the sampler (as risk = -return), a batch at a time.
So an unmodified trainer (stable-baselines3's PPO, say) trains with MPTS or a
baseline by wrapping its environments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeloop.sims.samplers import Sampler
from edgeloop.sims.task_space import TaskSpace, _gymnasium


def _make_wrapper_class() -> type:
    # Built on first use: gymnasium is imported only when a wrapper is made.
    gym = _gymnasium()

    class TaskSampling(gym.Wrapper):
        """Draw each episode's task from ``sampler``; report returns back in batches.

        Args:
            env: An environment of ``space``'s ``env_id``.
            space: The task space the sampler works in.
            sampler: Any :class:`~edgeloop.sims.samplers.Sampler`.
            batch_size: Tasks proposed at once, and episodes per ``observe`` call.

        ``info["task"]`` holds the episode's task after ``reset``; ``info["episode_task_return"]``
        holds (task, return) on the step that ends an episode.
        """

        def __init__(self, env: Any, space: TaskSpace, sampler: Sampler, batch_size: int = 16):
            super().__init__(env)
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size}")
            self.space = space
            self.sampler = sampler
            self.batch_size = batch_size
            self._queue: list[np.ndarray] = []
            self._done_tasks: list[np.ndarray] = []
            self._done_returns: list[float] = []
            self.task: np.ndarray | None = None
            self._return = 0.0

        def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
            if not self._queue:
                self._queue = list(self.sampler.propose(self.batch_size))
            self.task = self._queue.pop(0)
            self.space.apply(self.env, self.task)
            self._return = 0.0
            obs, info = self.env.reset(**kwargs)
            return obs, {**info, "task": self.task.copy()}

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
            obs, reward, terminated, truncated, info = self.env.step(action)
            self._return += float(reward)
            if terminated or truncated:
                info = {**info, "episode_task_return": (self.task.copy(), self._return)}
                self._done_tasks.append(self.task)
                self._done_returns.append(self._return)
                if len(self._done_tasks) == self.batch_size:
                    self.sampler.observe(
                        np.stack(self._done_tasks), -np.asarray(self._done_returns)
                    )
                    self._done_tasks, self._done_returns = [], []
            return obs, reward, terminated, truncated, info

    return TaskSampling


def task_sampling_env(
    space: TaskSpace, sampler: Sampler, batch_size: int = 16, **make_kwargs: Any
) -> Any:
    """An environment of ``space`` whose every episode is a task from ``sampler``."""
    return _make_wrapper_class()(space.make_env(**make_kwargs), space, sampler, batch_size)
