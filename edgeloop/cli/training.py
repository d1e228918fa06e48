"""``edgeloop train``, ``evaluate``, ``compare`` and ``tailcheck``: robust policies with MPTS."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.table import Table

from edgeloop.cli._common import (
    add_allow_import,
    add_json,
    check_writable,
    err,
    out,
    whole_number,
    write_text,
)
from edgeloop.runtime.errors import ProblemsError, UsageError
from edgeloop.runtime.imports import import_policy, restrict_imports
from edgeloop.sims.evaluation import EVAL_SEED
from edgeloop.sims.samplers import SAMPLERS


def register(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train a policy on a task space with a task sampler (PPO)",
        description="Train a task-aware policy with PPO on tasks drawn by a sampler until an "
        "environment-step budget is spent (DRM/GDRM evaluation steps count). Writes "
        "config.json at the start, checkpoint.pt as it goes, and policy.pt and history.json "
        "at the end; Ctrl-C keeps the last checkpoint, and --resume RUN continues it exactly "
        "where it stopped. Needs the 'train' extra.",
    )
    train.add_argument("--task-space", help="built-in name or YAML file (default: pendulum)")
    train.add_argument(
        "--sampler",
        choices=SAMPLERS,
        help="erm, drm, gdrm, mpts, or mpts with the diversity term (+div) and/or the "
        "regret risk (+regret) (default: mpts)",
    )
    train.add_argument(
        "--steps", type=whole_number(1), help="environment-step budget (default: 200000)"
    )
    train.add_argument("--seed", type=whole_number(0), help="default: 0")
    train.add_argument(
        "--processes",
        action="store_true",
        help="step each environment in its own process (gymnasium AsyncVectorEnv)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=whole_number(1),
        metavar="N",
        help="iterations between checkpoints (default: 10)",
    )
    _add_set(train)
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--out", type=Path, metavar="RUN", help="run folder to write")
    where.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in this folder")
    add_allow_import(train, "task space")
    train.set_defaults(handler=_under_policy(train_command))

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a trained run on a task grid: mean and CVaR",
        description="Run a trained policy deterministically on a grid over its task space "
        "(and its out-of-distribution ranges) and print mean return and CVaR_0.5/0.7/0.9. "
        f"Episodes start from seed {EVAL_SEED} by default, as in edgeloop compare, so the "
        "same --grid and --episodes give a comparison's figures of the run.",
    )
    evaluate.add_argument("run", type=Path, help="run folder from edgeloop train")
    _add_grid(evaluate)
    evaluate.add_argument(
        "--seed",
        type=whole_number(0),
        default=EVAL_SEED,
        metavar="S",
        help=f"first episode seed: episodes run from seeds S, S+1, ... (default {EVAL_SEED})",
    )
    add_json(evaluate, "the figures and per-task returns")
    evaluate.add_argument(
        "--processes",
        action="store_true",
        help="run the episodes in parallel processes (gymnasium AsyncVectorEnv)",
    )
    evaluate.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="split the grid into jobs on this Ray cluster ('local' starts one); the run "
        "folder must be on a filesystem the nodes share; needs the cluster extra",
    )
    add_allow_import(evaluate, "run's task space")
    evaluate.set_defaults(handler=_under_policy(evaluate_command))

    compare = commands.add_parser(
        "compare",
        help="train and evaluate several samplers over seeds; write a comparison report",
        description="Train every sampler with every seed at the same environment-step budget, "
        "evaluate each run on a grid (in range and out of distribution), and write "
        "report.json, report.md and PNG plots (learning curves, returns over the task grid, "
        "the risk learner's correlation) into the output folder. Runs are kept in OUT/runs "
        "and reused, so an interrupted comparison continues where it stopped.",
    )
    compare.add_argument("--task-space", default="pendulum", help="built-in name or YAML file")
    compare.add_argument(
        "--samplers",
        default="erm,drm,gdrm,mpts",
        help="comma-separated, from: " + ", ".join(SAMPLERS),
    )
    compare.add_argument(
        "--seeds", type=whole_number(1), default=5, help="seeds per sampler (0 .. N-1)"
    )
    compare.add_argument(
        "--steps", type=whole_number(1), default=400_000, help="budget of every run"
    )
    _add_grid(compare)
    _add_set(compare)
    compare.add_argument(
        "--workers",
        type=whole_number(1),
        default=None,
        help="local processes (default: one per CPU)",
    )
    compare.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the jobs on this Ray cluster ('local' starts one); needs the cluster extra",
    )
    compare.add_argument(
        "-o", "--out", type=Path, required=True, metavar="REPORT", help="report folder"
    )
    add_allow_import(compare, "task space")
    compare.set_defaults(handler=_under_policy(compare_command))

    tailcheck = commands.add_parser(
        "tailcheck",
        help="is a task space's tail worth fixing? specialists on ERM's worst tasks",
        description="Train ERM on the task space, evaluate it on a grid, train a specialist "
        "on each of its worst tasks alone with the same budget, and compare: the tail is "
        "learnable (PASS) when the specialists beat ERM there by at least --min-gain of "
        "ERM's spread over the grid. Run it before a comparison: where the specialists do "
        "no better, no sampler can lift the tail.",
    )
    tailcheck.add_argument("--task-space", default="pendulum", help="built-in name or YAML file")
    tailcheck.add_argument(
        "--steps", type=whole_number(1), default=200_000, help="budget of ERM and each specialist"
    )
    tailcheck.add_argument(
        "--worst", type=whole_number(1), default=3, help="ERM's worst tasks to specialise on"
    )
    _add_grid(tailcheck)
    tailcheck.add_argument("--seed", type=whole_number(0), default=0, help="training seed")
    tailcheck.add_argument(
        "--min-gain",
        type=float,
        default=0.1,
        help="share of ERM's spread over the grid the specialists must gain (default 0.1)",
    )
    _add_set(tailcheck)
    add_json(tailcheck, "the figures and the verdict")
    add_allow_import(tailcheck, "task space")
    tailcheck.set_defaults(handler=_under_policy(tailcheck_command), episodes=5)


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting, e.g. --set gamma=0.99 --set vf_coef=0.5 (repeatable; "
        "the settings are the fields of edgeloop.sims.ppo.TrainConfig)",
    )


def _add_grid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grid", type=whole_number(1), default=10, help="evaluation points per parameter"
    )
    parser.add_argument(
        "--episodes", type=whole_number(1), default=2, help="evaluation episodes per task"
    )


def _settings(pairs: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs, values read as YAML scalars (numbers, booleans, strings),
    by the reader of graph files, within its bounds on nesting and length."""
    from edgeloop.runtime.yaml_files import parse_with_lines

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE", fix="e.g. --set gamma=0.99")
        try:
            parsed, _, _ = parse_with_lines(value, "--set", ProblemsError)
        except ProblemsError as exc:  # not YAML, or nested past the bound (issue 13, item 6)
            raise UsageError(
                exc.problems[0].message,
                fix="a setting is a number, true/false, text or a short list",
                where=f"--set {key.strip()}",
            ) from None
        settings[key.strip()] = parsed
    return settings


# -- train ----------------------------------------------------------------------------------


def _under_policy(handler: Any) -> Any:
    """Run ``handler`` under the import policy of its task space: a gymnasium id
    ``pkg.mod:Env`` a task space (a file, or a run folder's) names is made only when
    ``pkg`` is installed, allowed, or beside the task space file."""

    def run(args: argparse.Namespace) -> int:
        space = getattr(args, "task_space", None)
        file = space if space and Path(space).suffix in (".yaml", ".yml") else None
        policy = import_policy(allow=args.allow_import, file=file, source="the task space")
        with restrict_imports(policy):
            return handler(args)

    return run


def train_command(args: argparse.Namespace) -> int:
    from edgeloop.sims.ppo import TrainConfig, check_config, typed_settings
    from edgeloop.sims.runs import CHECKPOINT, read_config, train_run
    from edgeloop.sims.task_space import load_task_space

    options = {
        "task_space": args.task_space,
        "sampler": args.sampler,
        "total_steps": args.steps,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "processes": args.processes or None,
    }
    given = {k: v for k, v in options.items() if v is not None}
    settings = typed_settings(_settings(args.set), fixed=options)
    if args.resume is not None:
        if given or settings:
            dropped = [f"--{k.replace('_', '-')}" for k in given] + ["--set"] * bool(settings)
            raise UsageError(
                "--resume goes on with the run's own settings", fix=f"drop {', '.join(dropped)}"
            )
        folder, config = args.resume, read_config(args.resume)
    else:
        folder = args.out
        defaults = {"task_space": "pendulum", "sampler": "mpts", "total_steps": 200_000}
        config = TrainConfig(**{**defaults, **settings, **given})
        load_task_space(config.task_space)  # an unknown space is a clear error first
    check_config(config)
    label = f"{config.sampler} on {config.task_space}"
    try:
        with _step_progress(label, config.total_steps) as show:
            result = train_run(config, folder, resume=args.resume is not None, progress=show)
    except KeyboardInterrupt:
        kept = (Path(folder) / CHECKPOINT).exists()
        err.print(
            "interrupted; "
            + (f"continue with: edgeloop train --resume {folder}" if kept else "no checkpoint yet"),
            highlight=False,
        )
        return 130
    curve = result.curve[-1] if result.curve else None
    grid = (
        f"; on a {config.curve_grid}-per-axis grid mean {curve['mean']:.1f}, "
        f"CVaR_0.9 {curve['cvar_0.9']:.1f}"
        if curve
        else ""
    )
    out.print(
        f"trained {label} for {result.steps[-1]:,} steps in {result.seconds:.0f} s{grid}; "
        f"run written to {folder} (evaluate it with: edgeloop evaluate {folder})",
        highlight=False,
    )
    return 0


@contextmanager
def _step_progress(label: str, total: int) -> Any:
    """A progress bar over environment steps showing the training figures; yields the
    callback the trainer calls after each iteration."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=total, status="")

        def show(result: Any) -> None:
            status = (
                f"mean return {result.mean_returns[-1]:.0f}, CVaR_0.9 "
                f"{result.tail_returns[-1]:.0f} (training tasks)"
            )
            if result.curve:
                status += f"; grid CVaR_0.9 {result.curve[-1]['cvar_0.9']:.0f}"
            progress.update(task, completed=result.steps[-1], status=status)

        yield show


# -- evaluate -------------------------------------------------------------------------------


def evaluate_command(args: argparse.Namespace) -> int:
    from edgeloop.sims.evaluation import evaluate
    from edgeloop.sims.ppo import as_policy_function
    from edgeloop.sims.runs import load_run
    from edgeloop.sims.task_space import load_task_space

    if args.json is not None:
        check_writable(args.json)
    result = load_run(args.run)
    space = load_task_space(result.config.task_space)
    policy = as_policy_function(result)
    seeds = (
        f"{args.seed}" if args.episodes == 1 else f"{args.seed}..{args.seed + args.episodes - 1}"
    )
    table = Table(
        title=f"evaluation of {args.run} ({result.config.sampler}, {result.steps[-1]:,} steps): "
        f"{args.episodes} episode(s) per task from seeds {seeds}",
        title_justify="left",
    )
    for col in ("tasks", "count", "mean", "CVaR_0.5", "CVaR_0.7", "CVaR_0.9"):
        table.add_column(col, justify="left" if col == "tasks" else "right")
    report: dict[str, Any] = {"seed": args.seed, "episodes": args.episodes, "grid": args.grid}
    for label, ood in (("in range", False), ("out of distribution", True)):
        if args.ray is not None:
            from edgeloop.sims.cluster import evaluate_run_on_ray

            e = evaluate_run_on_ray(
                args.run,
                per_axis=args.grid,
                episodes=args.episodes,
                seed=args.seed,
                ood=ood,
                address=args.ray,
            )
        else:
            e = evaluate(
                policy,
                space,
                per_axis=args.grid,
                episodes=args.episodes,
                seed=args.seed,
                ood=ood,
                processes=args.processes,
            )
        table.add_row(
            label,
            f"{len(e.tasks)}",
            f"{e.mean:.1f}",
            f"{e.cvar[0.5]:.1f}",
            f"{e.cvar[0.7]:.1f}",
            f"{e.cvar[0.9]:.1f}",
        )
        report[label] = e.to_dict()
    out.print(table)
    if args.json is not None:
        write_text(args.json, json.dumps(report, indent=2))
    return 0


# -- compare --------------------------------------------------------------------------------


def compare_command(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from edgeloop.sims.compare import CompareConfig, run_compare
    from edgeloop.sims.compare_report import build_report, table_rows, write_report
    from edgeloop.sims.task_space import load_task_space

    load_task_space(args.task_space)
    config = CompareConfig(
        task_space=str(args.task_space),
        samplers=tuple(s.strip() for s in args.samplers.split(",") if s.strip()),
        seeds=tuple(range(args.seeds)),
        total_steps=args.steps,
        grid=args.grid,
        episodes=args.episodes,
        train=_settings(args.set),
    )
    with Progress(
        TextColumn("[bold]comparing on {task.fields[space]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs; last: {task.fields[last]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        bar = progress.add_task("", total=len(config.jobs()), space=config.task_space, last="-")

        def done(summary: dict[str, Any]) -> None:
            e = summary["in_range"]
            progress.update(
                bar,
                advance=1,
                last=f"{summary['sampler']} seed {summary['seed']}: mean {e['mean']:.0f}, "
                f"CVaR_0.9 {e['cvar']['0.9']:.0f}",
            )

        try:
            results = run_compare(
                config, args.out, workers=args.workers, ray_address=args.ray, progress=done
            )
        except KeyboardInterrupt:
            err.print(
                "interrupted; finished runs are kept and unfinished ones checkpointed: run the "
                "same command again to continue",
                highlight=False,
            )
            return 130
    report = build_report(dataclasses.asdict(config), results)
    command = "edgeloop " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "edgeloop compare"
    paths = write_report(report, args.out, command)
    header, rows = table_rows(report)
    table = Table(
        title=f"{config.task_space}: {len(config.seeds)} seeds x {config.total_steps:,} steps "
        f"(mean ± s.e. across seeds; evaluation episodes from seed {EVAL_SEED})",
        title_justify="left",
    )
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    flat = report["erm_flat_at"]
    out.print(
        (f"ERM's CVaR_0.9 curve flat from {flat:,.0f} steps; " if flat is not None else "")
        + f"training took {report['training_core_hours']:.2f} core-hours",
        highlight=False,
    )
    out.print(f"report: {', '.join(str(p) for p in paths)}", highlight=False, soft_wrap=True)
    return 0


# -- tailcheck ------------------------------------------------------------------------------


def tailcheck_command(args: argparse.Namespace) -> int:
    import numpy as np

    from edgeloop.sims.tail_check import TailCheckConfig, tail_check

    if args.json is not None:
        check_writable(args.json)
    config = TailCheckConfig(
        task_space=str(args.task_space),
        steps=args.steps,
        worst=args.worst,
        grid=args.grid,
        episodes=args.episodes,
        seed=args.seed,
        min_gain=args.min_gain,
        train=_settings(args.set),
    )
    with err.status("") as status:
        result = tail_check(config, progress=lambda what: status.update(f"training {what}"))
    table = Table(
        title=f"{config.task_space}: ERM's {config.worst} worst of {config.grid}-per-axis grid "
        f"tasks, {config.steps:,} steps each run, {config.episodes} episode(s) per task from "
        f"seed {EVAL_SEED}",
        title_justify="left",
    )
    for col in ("task", "ERM", "specialist", "gain"):
        table.add_column(col, justify="left" if col == "task" else "right")
    space_names = _names(config.task_space)
    for task, erm, alone in zip(result.tasks, result.erm, result.specialists, strict=True):
        where = ", ".join(f"{n} {v:.4g}" for n, v in zip(space_names, task, strict=True))
        gain = np.mean(alone) - np.mean(erm)
        table.add_row(where, f"{np.mean(erm):.1f}", f"{np.mean(alone):.1f}", f"{gain:+.1f}")
    out.print(table)
    if result.passed:
        verdict = "PASS: the tail is learnable"
    elif result.spread == 0:
        verdict = "FAIL: no tail (ERM does as well on every grid task)"
    else:
        verdict = "FAIL: the tail is not learnable at this budget"
    out.print(
        f"{verdict}: specialists {result.gain:+.1f} on the worst tasks; needed more than "
        f"{config.min_gain:g} x ERM's spread {result.spread:.1f} = "
        f"{config.min_gain * result.spread:.1f} and than the noise, 2 s.e. = {result.noise:.1f}",
        highlight=False,
    )
    if args.json is not None:
        write_text(args.json, json.dumps(result.to_dict(), indent=2))
    return 0


def _names(task_space: str) -> list[str]:
    from edgeloop.sims.task_space import load_task_space

    return list(load_task_space(task_space).names)
