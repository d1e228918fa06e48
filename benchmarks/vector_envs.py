"""Rollouts in one process against one process per environment (gymnasium's vector envs).

Times full episodes of 16 task-space environments stepped together, as the
trainer and the evaluator run them: ``TaskVector`` in-process (SyncVectorEnv)
and with ``processes=True`` (AsyncVectorEnv), same tasks and seeds, and checks
that both give the same returns. Prints microseconds per vector step and the
ratio. Cheap classic-control steps (microseconds) lose to the inter-process
round trip; a costly simulator gains from the processes.

    python benchmarks/vector_envs.py [--space pendulum] [--envs 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgeloop.sims.task_env import TaskVector, episode_returns
from edgeloop.sims.task_space import load_task_space


def timed(space_name: str, envs: int, repeats: int, processes: bool) -> tuple[float, np.ndarray]:
    space = load_task_space(space_name)
    tasks = space.sample(envs, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    best = float("inf")
    with TaskVector(space, envs, processes=processes) as vector:
        sample = vector.envs.single_action_space

        def act(obs: np.ndarray, _tasks: np.ndarray) -> np.ndarray:
            if vector.discrete:
                return rng.integers(0, sample.n, len(obs))
            return rng.uniform(sample.low, sample.high, (len(obs), *sample.shape))

        for _ in range(repeats):
            rng = np.random.default_rng(1)
            start = time.perf_counter()
            returns, steps = episode_returns(vector, act, tasks, list(range(envs)))
            vector_steps = steps / envs
            best = min(best, (time.perf_counter() - start) / vector_steps * 1e6)
    return best, returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="pendulum")
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    here, returns_here = timed(args.space, args.envs, args.repeats, processes=False)
    apart, returns_apart = timed(args.space, args.envs, args.repeats, processes=True)
    assert np.allclose(returns_here, returns_apart), "the two vector kinds disagree"
    print(f"{args.envs} x {args.space}, best of {args.repeats} (same returns both ways)")
    print(f"  one process (SyncVectorEnv):        {here:8.1f} us per vector step")
    print(f"  a process each (AsyncVectorEnv):    {apart:8.1f} us per vector step")
    print(f"  ratio processes / one process:      {apart / here:8.2f}")


if __name__ == "__main__":
    main()
