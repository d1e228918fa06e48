"""Comparing samplers: train every (sampler, seed) at the same budget, evaluate, report.

Each job trains one run into ``OUT/runs/SAMPLER-seedS`` (checkpointed, so a
stopped comparison resumes where it was) and evaluates it on a fixed grid, in
range and out of distribution. Jobs run in this process, in a pool of local
processes, or on a Ray cluster. The report (:mod:`edgeloop.sims.compare_report`)
gives mean and CVaR with standard errors across seeds, the regret tail, paired
differences against ERM, and how many steps each sampler needs to reach DRM's
final tail.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from edgeloop.runtime.errors import TrainingError
from edgeloop.sims.evaluation import EVAL_SEED
from edgeloop.sims.ppo import (
    SAMPLERS,
    TrainConfig,
    check_config,
    takes_mpts_settings,
    typed_settings,
)
from edgeloop.sims.torch_support import import_torch, one_thread


@dataclass(frozen=True)
class CompareConfig:
    """What a comparison runs."""

    task_space: str = "pendulum"
    samplers: tuple[str, ...] = ("erm", "drm", "gdrm", "mpts")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    total_steps: int = 400_000
    """Environment-step budget of every run (DRM/GDRM evaluations included)."""
    grid: int = 10
    """Evaluation grid points per parameter."""
    episodes: int = 2
    """Evaluation episodes per grid task."""
    train: dict[str, Any] = field(default_factory=dict)
    """Other :class:`TrainConfig` settings, the same for every run."""

    def __post_init__(self) -> None:
        if len(set(self.samplers)) != len(self.samplers) or len(set(self.seeds)) != len(self.seeds):
            raise TrainingError("a sampler or seed is named twice", fix="name each once")
        if self.grid < 1 or self.episodes < 1:
            raise TrainingError("--grid and --episodes must be at least 1")
        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if unknown:
            raise TrainingError(
                f"unknown sampler {', '.join(unknown)}", fix=f"choose from {', '.join(SAMPLERS)}"
            )
        if not self.samplers or not self.seeds:
            raise TrainingError("a comparison needs at least one sampler and one seed")
        fixed = ("task_space", "sampler", "seed", "total_steps")  # set per run by the comparison
        object.__setattr__(self, "train", typed_settings(self.train, fixed=fixed))
        for sampler in self.samplers:
            check_config(self.run_config(sampler, self.seeds[0]))

    def run_config(self, sampler: str, seed: int) -> TrainConfig:
        """One run's config: ``mpts.*`` settings go to the MPTS samplers only."""
        train = {k: v for k, v in self.train.items() if k != "mpts" or takes_mpts_settings(sampler)}
        return TrainConfig(
            task_space=self.task_space,
            sampler=sampler,
            seed=seed,
            total_steps=self.total_steps,
            **train,
        )

    def jobs(self) -> list[tuple[str, int]]:
        return [(s, seed) for s in self.samplers for seed in self.seeds]


def run_job(config: dict[str, Any], folder: str, grid: int, episodes: int) -> dict[str, Any]:
    """Train one run (or resume it, or reuse it when finished) and evaluate it.

    Module-level and plain-data in and out, so process pools and Ray can ship it
    (an error too: every edgeloop error pickles with its attributes).
    """
    with one_thread():  # jobs run side by side; small networks gain nothing from more
        return _run_job(config, folder, grid, episodes)


def _run_job(config: dict[str, Any], folder: str, grid: int, episodes: int) -> dict[str, Any]:
    from edgeloop.sims.evaluation import evaluate
    from edgeloop.sims.ppo import as_policy_function
    from edgeloop.sims.runs import train_run
    from edgeloop.sims.task_space import load_task_space

    path = Path(folder)
    done = path / "evaluation.json"
    settings = {"grid": grid, "episodes": episodes, "seed": EVAL_SEED}
    if done.exists():
        saved = json.loads(done.read_text())
        if saved.get("settings") == settings and saved.get("config") == config:
            return saved
    train_config = TrainConfig(**config)
    result = train_run(train_config, path, resume=True)
    space = load_task_space(train_config.task_space)
    policy = as_policy_function(result)
    in_range = evaluate(policy, space, per_axis=grid, episodes=episodes, seed=EVAL_SEED)
    ood = evaluate(policy, space, per_axis=grid, episodes=episodes, seed=EVAL_SEED, ood=True)
    summary = {
        "config": config,
        "settings": settings,
        "sampler": train_config.sampler,
        "seed": train_config.seed,
        "history": result.history(),
        "in_range": in_range.to_dict(),
        "ood": ood.to_dict(),
    }
    done.write_text(json.dumps(summary))
    return summary


def run_compare(
    config: CompareConfig,
    out: str | Path,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every job of ``config`` into ``out/runs`` and return their summaries.

    Args:
        config: The comparison.
        out: Its folder (runs go in ``out/runs``; finished runs there are reused).
        workers: Local processes (default: one per CPU; 1 runs in this process).
        ray_address: Run the jobs on this Ray cluster instead ("local" starts one
            here); needs the ``cluster`` extra, and ``out`` on a filesystem every
            node sees at the same path.
        progress: Called with each job's summary as it finishes.
    """
    import_torch()  # a clear error here rather than one per job
    out = Path(out).resolve()  # Ray workers may start elsewhere (they need this path shared)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    args = [
        (
            dataclasses.asdict(config.run_config(sampler, seed)),
            str(out / "runs" / f"{sampler}-seed{seed}"),
            config.grid,
            config.episodes,
        )
        for sampler, seed in config.jobs()
    ]
    report = progress or (lambda summary: None)
    if ray_address is not None:
        from edgeloop.sims.cluster import ray_map

        return ray_map(run_job, args, ray_address, report)
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(args) == 1:
        results = []
        for a in args:
            results.append(run_job(*a))
            report(results[-1])
        return results
    # spawn: a fresh interpreter per worker, never a fork of a parent holding threads
    pool = ProcessPoolExecutor(min(workers, len(args)), mp_context=get_context("spawn"))
    try:
        futures = {pool.submit(run_job, *a): i for i, a in enumerate(args)}
        results: list[Any] = [None] * len(args)
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            report(results[i])
    except BaseException:  # a failed job or Ctrl-C: start nothing more
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results
