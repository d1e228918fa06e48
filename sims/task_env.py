"""Vectors of task-space environments: one episode per environment, each on its own task.

The trainer and the evaluator run many episodes side by side through
gymnasium's vector API, in one process (``SyncVectorEnv``) or one process per
environment (``AsyncVectorEnv``). Every episode is reset
explicitly with its task and seed, and an environment whose episode has ended
idles (its steps and the vector's own resets return the last observation and
cost nothing) until the others finish. Importing this module imports gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from edgeloop.sims.task_space import TaskSpace


class TaskEnv(gym.Wrapper):
    """Environment ``index`` of a vector: ``reset(options={"tasks": (n, d)})`` applies
    row ``index``; after its episode ends it idles until the next such reset (the
    vector's autoresets, which carry no tasks, are ignored)."""

    def __init__(self, space: TaskSpace, index: int) -> None:
        super().__init__(space.make_env())
        self.space = space
        self.index = index
        self._done = False
        self._last: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if not options or "tasks" not in options:
            return self._last, {}
        self.space.apply(self.env, options["tasks"][self.index], ood=True)
        obs, info = self.env.reset(seed=seed)
        self._done, self._last = False, obs
        return obs, info

    def step(self, action: Any) -> Any:
        if self._done:
            return self._last, 0.0, True, False, {}
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._done, self._last = bool(terminated or truncated), obs
        return obs, reward, terminated, truncated, info


class TaskVector:
    """``size`` environments of ``space`` run as a batch.

    Args:
        space: The task space.
        size: Environments side by side.
        processes: Step each environment in its own process (gymnasium's
            ``AsyncVectorEnv``); pays off when a step costs more than the
            inter-process round trip (tens of microseconds).
    """

    def __init__(self, space: TaskSpace, size: int, *, processes: bool = False) -> None:
        fns = [lambda i=i: TaskEnv(space, i) for i in range(size)]
        kind = gym.vector.AsyncVectorEnv if processes else gym.vector.SyncVectorEnv
        # Set, not left to the gymnasium version's default: a finished environment is
        # reset on the vector's next step, which TaskEnv ignores (no task), so it
        # idles until the next explicit reset and its steps count for nothing.
        self.envs = kind(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        self.space = space
        self.size = size
        space_ = self.envs.single_action_space
        self.discrete = hasattr(space_, "n")
        self.low = None if self.discrete else np.asarray(space_.low)
        self.high = None if self.discrete else np.asarray(space_.high)

    def reset(self, tasks: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Start one episode per task (at most ``size``); the rest of the vector idles.

        Returns:
            The first observations (size, obs_dim) and the live mask (size,).
        """
        k = len(tasks)
        if not 0 < k <= self.size:
            raise ValueError(f"{k} tasks for a vector of {self.size} environments")
        padded = np.concatenate([tasks, np.repeat(tasks[:1], self.size - k, axis=0)])
        seeds = list(seeds) + [int(seeds[0])] * (self.size - k)
        obs, _ = self.envs.reset(seed=seeds, options={"tasks": padded})
        live = np.zeros(self.size, dtype=bool)
        live[:k] = True
        return np.asarray(obs, dtype=np.float32).reshape(self.size, -1), live

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every environment (actions clipped to the action space).

        Returns:
            observations (size, obs_dim), rewards, terminated, truncated.
        """
        if not self.discrete:
            actions = np.clip(actions, self.low, self.high)
        obs, rewards, terminated, truncated, _ = self.envs.step(actions)
        return (
            np.asarray(obs, dtype=np.float32).reshape(self.size, -1),
            np.asarray(rewards, dtype=np.float64),
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
        )

    def close(self) -> None:
        self.envs.close()

    def __enter__(self) -> TaskVector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BatchPolicy = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""act(observations (n, obs_dim), tasks (n, d)) -> actions (n, ...)."""


def episode_returns(
    vector: TaskVector, act: BatchPolicy, tasks: np.ndarray, seeds: list[int]
) -> tuple[np.ndarray, int]:
    """One episode per task (any number, run ``vector.size`` at a time) with ``act``.

    Returns:
        Each episode's return (n,) and the environment steps taken.
    """
    tasks = np.atleast_2d(np.asarray(tasks, dtype=np.float64))
    returns = np.zeros(len(tasks))
    steps = 0
    for start in range(0, len(tasks), vector.size):
        chunk = tasks[start : start + vector.size]
        obs, live = vector.reset(chunk, seeds[start : start + len(chunk)])
        padded = np.concatenate([chunk, np.repeat(chunk[:1], vector.size - len(chunk), axis=0)])
        total = np.zeros(vector.size)
        while live.any():
            obs, rewards, terminated, truncated = vector.step(act(obs, padded))
            total += np.where(live, rewards, 0.0)
            steps += int(live.sum())
            live &= ~(terminated | truncated)
        returns[start : start + len(chunk)] = total[: len(chunk)]
    return returns, steps
