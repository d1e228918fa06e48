"""Independent jobs on a Ray cluster: comparison runs, and grid cells of an evaluation.

Ray is the optional ``cluster`` extra. Jobs are plain module-level functions of
plain data; their results come back in order. Files they read or write (run
folders) must be on a filesystem every node sees at the same path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.errors import MissingDependencyError, TrainingError


def ray_map(
    job: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    address: str,
    report: Callable[[Any], None] | None = None,
) -> list[Any]:
    """``[job(*a) for a in args]`` as Ray tasks of one CPU each on the cluster at
    ``address`` ("local" starts one here); ``report`` sees each result as it lands."""
    ray = _ray()
    started_here = connect(address)
    try:
        remote = ray.remote(num_cpus=1)(job)
        pending = {remote.remote(*a): i for i, a in enumerate(args)}
        results: list[Any] = [None] * len(args)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                results[i] = ray.get(ref)
                if report is not None:
                    report(results[i])
        return results
    finally:
        if started_here:
            ray.shutdown()


def connect(address: str, **options: Any) -> bool:
    """Connect to the Ray cluster at ``address`` ("local" starts one here) unless this
    process is connected already; True when this call connected (the caller shuts
    it down).

    A local cluster runs its jobs at normal priority: Ray starts workers at nice 15
    by default, which on a busy machine made a 3 s job take minutes (issue 12); the
    jobs are the work here, not background.

    Raises:
        TrainingError: the cluster cannot be reached.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    if address == "local":
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise TrainingError(
            f"cannot reach the Ray cluster at {address}: {exc}",
            fix="check the address that `ray start --head` printed, or use 'local'",
        ) from None
    return True


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "cluster", "--ray") from None
    return ray


def evaluate_chunk(
    run: str, tasks: list[list[float]], episodes: int, seed: int
) -> tuple[list[float], int]:
    """Per-task mean returns of the run's policy on ``tasks`` (one Ray job)."""
    from edgeloop.sims.evaluation import evaluate
    from edgeloop.sims.ppo import as_policy_function
    from edgeloop.sims.runs import load_run
    from edgeloop.sims.task_space import load_task_space
    from edgeloop.sims.torch_support import one_thread

    with one_thread():
        result = load_run(run)
        space = load_task_space(result.config.task_space)
        e = evaluate(as_policy_function(result), space, tasks=tasks, episodes=episodes, seed=seed)
    return e.returns.tolist(), e.env_steps


def evaluate_run_on_ray(
    run: str | Path,
    *,
    per_axis: int,
    episodes: int,
    seed: int = 0,
    ood: bool = False,
    address: str,
    chunks: int = 16,
) -> Any:
    """:func:`~edgeloop.sims.evaluation.evaluate` of a run folder, its grid split into
    ``chunks`` Ray jobs. Same tasks, seeds and figures as evaluating here."""
    from edgeloop.sims.evaluation import Evaluation
    from edgeloop.sims.runs import read_config
    from edgeloop.sims.task_space import load_task_space

    folder = str(Path(run).resolve())
    space = load_task_space(read_config(folder).task_space)
    target = space.ood() if ood else space
    grid = target.grid(per_axis)
    parts = [p.tolist() for p in np.array_split(grid, min(chunks, len(grid))) if len(p)]
    results = ray_map(evaluate_chunk, [(folder, p, episodes, seed) for p in parts], address)
    returns = np.concatenate([np.asarray(r) for r, _ in results])
    return Evaluation(target.name, grid, returns, sum(steps for _, steps in results))
