"""The ``edgeloop`` command line.

User errors (a bad graph, an unknown node type, a missing file) print one
clear message without a traceback and exit with code 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from edgeloop.runtime.errors import EdgeloopError
from edgeloop.runtime.executor import Executor
from edgeloop.runtime.graph import LoopGraph
from edgeloop.runtime.graph_yaml import load_graph
from edgeloop.runtime.metrics import RunReport
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.processes.placement import groups_of
from edgeloop.runtime.validation import load_and_check

USER_ERROR = 2

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)
if not _out.is_terminal:  # piped or redirected: no terminal width to fit tables into
    _out.width = 160


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeloop",
        description="Run sensing-to-action loops described as YAML graphs, and inspect them.",
        epilog="Quick start: edgeloop run examples/pendulum/loop.yaml --sim --duration 20",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a loop graph and print its report",
        description="Run a loop graph in real time (default) or in simulated time (--sim), "
        "then print per-node latency, drops and faults, contract latency and "
        "deadline misses, and timer jitter.",
    )
    run.add_argument("graph", type=Path, help="loop graph YAML file")
    run.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="seconds of clock time to run (default: until Ctrl-C; 10 with --sim)",
    )
    run.add_argument(
        "--sim",
        action="store_true",
        help="simulated clock: deterministic and as fast as the CPU allows",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed for node random generators and simulated plants (default 0)",
    )
    run.add_argument(
        "--stats",
        nargs="?",
        const=DEFAULT_STATS,
        metavar="ENDPOINT",
        help=f"publish live stats and messages for edgeloop top/echo/hz (default {DEFAULT_STATS})",
    )
    run.add_argument(
        "--record",
        type=Path,
        metavar="FILE.mcap",
        help="record every message (topic /NODE/PORT) into an MCAP file Foxglove opens; "
        "needs the record extra",
    )
    run.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the report as JSON to FILE",
    )
    run.add_argument(
        "--one-process",
        action="store_true",
        help="run every node in this process, whatever its group (by default each "
        "process group of the graph runs in a process of its own)",
    )
    run.add_argument("--quiet", action="store_true", help="print no progress bar and no table")
    run.add_argument("-v", "--verbose", action="store_true", help="log node messages (INFO)")

    validate = sub.add_parser(
        "validate",
        help="check a loop graph and list every problem",
        description="Check a graph's schema, node types, config, wiring, cycles and contracts. "
        "Prints every problem with file:line and field; exits 2 if there are any.",
    )
    validate.add_argument("graph", type=Path, help="loop graph YAML file")

    sub.add_parser(
        "plugins",
        help="list registered node types and plugins that failed to load",
        description="List every node type registered through the 'edgeloop' "
        "entry-point group, and plugins that failed to load with why.",
    )

    profiles = sub.add_parser(
        "profiles",
        help="list hardware profiles, or show one",
        description="List the hardware profiles edgeloop ships (devices it deploys to), or "
        "print one with the source of each figure. A graph names one with 'profile:'.",
    )
    profiles_sub = profiles.add_subparsers(dest="profiles_command", metavar="show")
    show = profiles_sub.add_parser(
        "show", help="print one profile", description="Print a profile file, sources included."
    )
    show.add_argument("name", help="a profile name (see `edgeloop profiles`) or a file path")

    export = sub.add_parser(
        "export",
        help="export a torch model or a trained run to an ONNX bundle checked against a profile",
        description="Export a torch.nn.Module, or the policy of a run from edgeloop train, to a "
        "bundle folder (model.onnx + manifest.json) at an opset the target profile's TensorRT "
        "accepts, and check ONNX Runtime against torch on the sample inputs and random "
        "batches. A run's bundle takes the raw observation 'obs' and the physical task 'task' "
        "and returns 'action': the task normalisation and the action clamp are in the graph. "
        "Needs the 'train' extra.",
        epilog="examples: edgeloop export runs/pendulum-mpts --profile jetson-orin-nano-8gb "
        "-o bundle; edgeloop export mypkg.policies:make_policy --input obs=1x3 "
        "--output action --profile jetson-orin-nano-8gb -o policy_bundle",
    )
    export.add_argument(
        "factory",
        metavar="MODULE:FACTORY|RUN",
        help="import path of a torch.nn.Module or of a function returning one, or a run folder",
    )
    export.add_argument(
        "--input",
        action="append",
        metavar="NAME=SHAPE",
        help="a model input and its example shape, e.g. obs=1x3 (repeatable; not for a run)",
    )
    export.add_argument(
        "--output",
        action="append",
        metavar="NAME",
        help="a model output name (repeatable, in the model's order; not for a run)",
    )
    export.add_argument(
        "-o", "--out", type=Path, required=True, metavar="DIR", help="bundle folder to create"
    )
    export.add_argument("--profile", metavar="NAME", help="target hardware profile name or file")
    export.add_argument(
        "--opset", type=int, help="opset (default: the profile's limit, at most 18)"
    )
    export.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="a state_dict saved with torch.save, loaded (weights only) first",
    )
    export.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest torch/ONNX Runtime difference allowed (default 1e-4)",
    )
    export.add_argument(
        "--fp16",
        action="store_true",
        help="also write an fp16 variant (fp32 inputs and outputs), checked for parity too",
    )
    export.add_argument(
        "--static-batch",
        action="store_true",
        help="keep the example batch size instead of a dynamic one",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing folder")

    precheck = sub.add_parser(
        "precheck",
        help="check an ONNX model or bundle against a hardware profile",
        description="Check a model against a profile before it reaches the board: ONNX checker "
        "and shape inference, opset against the profile's TensorRT, every op against that "
        "TensorRT's ONNX parser, dynamic dimensions, memory against the budget, compute, and "
        "latency on this host. Exits 1 if a check fails (with --strict, also on warnings).",
    )
    precheck.add_argument("model", type=Path, help=".onnx file or bundle folder")
    precheck.add_argument(
        "--profile", required=True, metavar="NAME", help="hardware profile name or file"
    )
    precheck.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    precheck.add_argument("--strict", action="store_true", help="fail on warnings too")

    train_cmd = sub.add_parser(
        "train",
        help="train a policy on a task space with a task sampler (PPO)",
        description="Train a task-aware policy with PPO on tasks drawn by a sampler until an "
        "environment-step budget is spent (DRM/GDRM evaluation steps count). Writes "
        "config.json at the start, checkpoint.pt as it goes, and policy.pt and history.json "
        "at the end; Ctrl-C keeps the last checkpoint, and --resume RUN continues it exactly "
        "where it stopped. Needs the 'train' extra.",
    )
    train_cmd.add_argument("--task-space", help="built-in name or YAML file (default: pendulum)")
    train_cmd.add_argument(
        "--sampler",
        choices=list(_SAMPLERS),
        help="erm, drm, gdrm, mpts, or mpts with the diversity term (+div) and/or the "
        "regret risk (+regret) (default: mpts)",
    )
    train_cmd.add_argument("--steps", type=int, help="environment-step budget (default: 200000)")
    train_cmd.add_argument("--seed", type=int, help="default: 0")
    train_cmd.add_argument(
        "--processes",
        action="store_true",
        help="step each environment in its own process (gymnasium AsyncVectorEnv)",
    )
    train_cmd.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="iterations between checkpoints (default: 10)",
    )
    where = train_cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--out", type=Path, metavar="RUN", help="run folder to write")
    where.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in this folder")

    compare = sub.add_parser(
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
        help="comma-separated, from: " + ", ".join(_SAMPLERS),
    )
    compare.add_argument("--seeds", type=int, default=5, help="seeds per sampler (0 .. N-1)")
    compare.add_argument("--steps", type=int, default=400_000, help="budget of every run")
    compare.add_argument("--grid", type=int, default=10, help="evaluation points per parameter")
    compare.add_argument("--episodes", type=int, default=2, help="evaluation episodes per task")
    compare.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting for every run, e.g. --set gamma=0.99 (repeatable)",
    )
    compare.add_argument(
        "--workers", type=int, default=None, help="local processes (default: one per CPU)"
    )
    compare.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the jobs on this Ray cluster ('local' starts one); needs the cluster extra",
    )
    compare.add_argument(
        "-o", "--out", type=Path, required=True, metavar="REPORT", help="report folder"
    )

    evaluate_cmd = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on a task grid: mean and CVaR",
        description="Run a trained policy deterministically on a grid over its task space "
        "(and its out-of-distribution ranges) and print mean return and CVaR_0.5/0.7/0.9.",
    )
    evaluate_cmd.add_argument("run", type=Path, help="run folder from edgeloop train")
    evaluate_cmd.add_argument("--grid", type=int, default=10, help="points per parameter")
    evaluate_cmd.add_argument("--episodes", type=int, default=2, help="episodes per task")
    evaluate_cmd.add_argument("--json", type=Path, metavar="FILE", help="also write JSON")
    evaluate_cmd.add_argument(
        "--processes",
        action="store_true",
        help="run the episodes in parallel processes (gymnasium AsyncVectorEnv)",
    )
    evaluate_cmd.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="split the grid into jobs on this Ray cluster ('local' starts one); the run "
        "folder must be on a filesystem the nodes share; needs the cluster extra",
    )

    top = sub.add_parser(
        "top",
        help="live rates, step times, drops and faults per node of a running loop",
        description="Show the stats a loop started with edgeloop run --stats publishes, "
        "refreshed every second, until Ctrl-C.",
    )
    top.add_argument("endpoint", nargs="?", default=DEFAULT_STATS, help="the loop's --stats")
    top.add_argument("--once", action="store_true", help="print one table and exit")
    top.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a loop")
    echo = sub.add_parser(
        "echo",
        help="print the messages of one port of a running loop",
        description="Print each message NODE/PORT publishes in a loop started with "
        "edgeloop run --stats.",
    )
    echo.add_argument("port", metavar="NODE/PORT")
    echo.add_argument("--endpoint", default=DEFAULT_STATS, help="the loop's --stats")
    echo.add_argument("-n", type=int, default=0, help="stop after N messages (0: never)")
    echo.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one")
    hz = sub.add_parser(
        "hz",
        help="measure the rate of one port of a running loop",
        description="Count the messages NODE/PORT publishes in a loop started with "
        "edgeloop run --stats, and print the rate each window.",
    )
    hz.add_argument("port", metavar="NODE/PORT")
    hz.add_argument("--endpoint", default=DEFAULT_STATS, help="the loop's --stats")
    hz.add_argument("--window", type=float, default=1.0, help="seconds per measurement")
    hz.add_argument("--count", type=int, default=0, help="stop after N windows (0: never)")

    sim = sub.add_parser(
        "sim",
        help="run a multi-agent scenario: a world and an agent loop per agent, as processes",
        description="Run a scenario: a world process (any PettingZoo parallel env) and N "
        "agent loops, each agent a process of its own talking over ZeroMQ. Simulated time "
        "runs every process in lockstep, deterministic from the seed; --realtime runs them "
        "on the wall clock. Prints per agent: return, sensing energy, sense-to-act latency "
        "and deadline misses, plus the messages and bytes exchanged.",
        epilog="example: edgeloop sim examples/field-search/scenario.yaml --agents 8 --plot t.png",
    )
    sim.add_argument("scenario", type=Path, help="scenario YAML file")
    sim.add_argument(
        "--agents", type=int, default=None, metavar="N", help="agents (default: the file's)"
    )
    sim.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default 0)")
    sim.add_argument("--realtime", action="store_true", help="run on the wall clock")
    sim.add_argument(
        "--duration", type=float, default=None, metavar="S", help="seconds (default: the file's)"
    )
    sim.add_argument(
        "--record", type=Path, metavar="FILE.mcap", help="record every message into MCAP"
    )
    sim.add_argument(
        "--json", type=Path, metavar="FILE", help="write the metrics and report as JSON"
    )
    sim.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="plot the agents' trajectories into a PNG"
    )
    sim.add_argument(
        "--one-process", action="store_true", help="every agent in this process (no ZeroMQ)"
    )
    sim.add_argument("--quiet", action="store_true", help="print no table")

    replay = sub.add_parser(
        "replay",
        help="run a graph again on a recording's sensor data; compare the outputs",
        description="Play the recorded source nodes (sensors) back at the times they "
        "published, run every other node again in simulated time, and compare each of "
        "their outputs with the recording. With nothing replaced a deterministic loop is "
        "bit-exact; --replace NODE=TYPE swaps in another node type to see what it would "
        "have done on the same inputs.",
    )
    replay.add_argument("recording", type=Path, help="an MCAP file from edgeloop run --record")
    replay.add_argument("--graph", type=Path, help="the loop graph (default: the one recorded)")
    replay.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NODE=TYPE",
        help="run NODE as another node type, with its config (repeatable)",
    )
    replay.add_argument("--duration", type=float, help="seconds (default: the recorded run's)")
    replay.add_argument("--seed", type=int, help="seed (default: the recorded run's)")

    keys = sub.add_parser(
        "keys",
        help="make a CURVE key pair for encrypted, authenticated links between machines",
        description="Write DIR/NAME.key (public: copy it to the peers that must trust this "
        "machine, into their allowed-keys folder) and DIR/NAME.key_secret (secret: stays here, "
        "mode 600). Existing keys are never overwritten.",
    )
    keys.add_argument("name", help="a name for this machine or process group")
    keys.add_argument("-o", "--out", type=Path, default=Path("keys"), help="folder (default: keys)")

    warmup = sub.add_parser(
        "warmup",
        help="build a model's sessions (and TensorRT engines) ahead of time",
        description="Build the ONNX Runtime session for a model or bundle with a profile's "
        "execution providers, run it, and keep what can be cached (TensorRT engines go to the "
        "profile's trt_engine_cache_path). On a Jetson the first engine build takes minutes; "
        "do it here rather than at the first loop start. Prints the provider that runs.",
    )
    warmup.add_argument("model", type=Path, help=".onnx file or bundle folder")
    warmup.add_argument(
        "--profile",
        required=True,
        metavar="NAME",
        help="hardware profile name or file (its providers and options are used)",
    )
    warmup.add_argument("--variant", metavar="NAME", help="a bundle's other model, e.g. fp16")
    warmup.add_argument(
        "--runs",
        type=int,
        default=20,
        metavar="N",
        help="inferences after the first, timed (default 20)",
    )

    graph = sub.add_parser(
        "graph",
        help="print a loop graph as text or Mermaid",
        description="Print the nodes and wiring of a graph, as indented "
        "text or (--mermaid) as a Mermaid flowchart.",
    )
    graph.add_argument("graph", type=Path, help="loop graph YAML file")
    graph.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgeloop`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except EdgeloopError as exc:  # GraphError and every other user error
        _err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return USER_ERROR


def _registry() -> PluginRegistry:
    registry = PluginRegistry()
    for failure in registry.failures:
        _err.print(
            f"[yellow]warning:[/] plugin '{failure.name}' failed to load: {escape(failure.error)}",
            highlight=False,
        )
    return registry


def _cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    registry = _registry()
    graph = load_and_check(args.graph, registry)
    duration = args.duration if args.duration is not None or not args.sim else 10.0
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise EdgeloopError(
            f"--duration must be a positive number of seconds, got {duration:g} "
            "(fix: e.g. --duration 10)"
        )
    if args.seed < 0:
        raise EdgeloopError(f"--seed must be >= 0, got {args.seed} (fix: e.g. --seed 0)")
    if args.json is not None:
        _check_writable(args.json)
    if len(groups_of(graph)) > 1 and not args.one_process:
        report = _run_groups(args, graph, duration)
    else:
        report = _run_here(args, graph, registry, duration)
    if args.json is not None:
        try:
            args.json.write_text(report.to_json())
        except OSError as exc:
            raise EdgeloopError(
                f"cannot write the report to {args.json}: {exc.strerror} (fix: choose another path)"
            ) from None
        if not args.quiet:
            _out.print(f"report written to {args.json}")
    return 1 if report.stopped_by_fault else 0


def _run_metadata(args: argparse.Namespace, duration: float | None) -> dict[str, Any]:
    """Facts a recording keeps for ``edgeloop replay``."""
    return {"graph": Path(args.graph).resolve(), "seed": args.seed, "simulated": args.sim} | (
        {"duration": duration} if duration is not None else {}
    )


def _run_groups(args: argparse.Namespace, graph: LoopGraph, duration: float | None) -> RunReport:
    """Each process group in a process of its own, under a supervisor."""
    from edgeloop.runtime.processes.supervisor import Supervisor
    from edgeloop.runtime.report_table import print_report

    if args.stats is not None:
        raise EdgeloopError(
            "--stats watches one process; this graph has several process groups "
            "(fix: add --one-process to watch it in one)"
        )
    if args.record is not None:
        from edgeloop.runtime.recording import mcap_module

        mcap_module()  # the record extra is there, before any process starts
    supervisor = Supervisor(
        graph,
        simulated=args.sim,
        seed=args.seed,
        record=args.record,
        metadata=_run_metadata(args, duration),
    )
    if not args.quiet:
        names = ", ".join(groups_of(graph))
        clock = "simulated time (lockstep)" if args.sim else "real time"
        _err.print(f"running {graph.name} as processes {names} in {clock}", highlight=False)
    report = supervisor.run(duration)
    if not args.quiet:
        print_report(report, _out)
    recording = report.recording
    if recording is not None:
        line = f"recorded {recording['written']:,} messages to {args.record}"
        if recording["failed"]:
            _err.print(
                f"[bold red]{line}; {recording['failed']:,} could not be written[/]",
                highlight=False,
            )
        elif not args.quiet:
            _out.print(line, highlight=False)
    return report


def _run_here(
    args: argparse.Namespace, graph: LoopGraph, registry: PluginRegistry, duration: float | None
) -> RunReport:
    """Every node in this process."""
    from edgeloop.runtime.report_table import print_report

    recorder = stats = None
    if args.record is not None:
        from edgeloop.runtime.recording import Recorder

        recorder = Recorder(args.record)
    if args.stats is not None:
        from edgeloop.runtime.processes.introspection import StatsPublisher

        stats = StatsPublisher(args.stats)
    sinks = [s for s in (recorder, stats) if s is not None]
    if len(sinks) > 1:
        from edgeloop.runtime.recording import Tee

        sink: Any = Tee(*sinks)
    else:
        sink = sinks[0] if sinks else None
    executor = Executor(graph, registry=registry, simulated=args.sim, seed=args.seed, recorder=sink)
    if stats is not None:
        stats.watch(executor)
        _err.print(f"stats on {args.stats} (edgeloop top {args.stats})", highlight=False)
    try:
        report = _run_with_progress(executor, duration, show=not args.quiet)
    finally:
        if stats is not None:
            stats.close()
        if recorder is not None:
            recorder.add_metadata(_run_metadata(args, duration))
            recorder.close()
    if not args.quiet:
        print_report(report, _out)
    if recorder is not None:
        line = f"recorded {recorder.written:,} messages to {args.record}"
        if recorder.failed:
            _err.print(
                f"[bold red]{line}; {recorder.failed:,} could not be written[/] "
                f"(last: {escape(recorder.last_error)})",
                highlight=False,
            )
        elif not args.quiet:
            _out.print(line, highlight=False)
    return report


def _check_writable(path: Path) -> None:
    """Refuse a --json path that cannot be written before the run, not after it."""
    if path.is_dir():
        raise EdgeloopError(
            f"--json {path} is a folder (fix: name a file, e.g. {path}/report.json)"
        )
    if not path.parent.is_dir():
        raise EdgeloopError(
            f"--json {path}: {path.parent} is not an existing folder (fix: create it first)"
        )


def _run_with_progress(executor: Executor, duration: float | None, *, show: bool) -> RunReport:
    if show and not executor.simulated and _err.is_terminal:
        # No live display in real time: redrawing it takes the GIL from the loop.
        length = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
        _err.print(f"running {executor.graph.name} in real time {length}", highlight=False)
    if not show or duration is None or not executor.simulated or not _err.is_terminal:
        return executor.run(duration)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    done = threading.Event()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
        TimeRemainingColumn(),
        console=_err,
        transient=True,
    ) as progress:
        task = progress.add_task(executor.graph.name, total=duration)

        def poll() -> None:  # reads the clock only; never touches the loop
            while not done.wait(0.1):
                progress.update(task, completed=min(executor.clock.now_ns() / 1e9, duration))

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            return executor.run(duration)
        finally:
            done.set()
            watcher.join()


def _cmd_sim(args: argparse.Namespace) -> int:
    import json

    from edgeloop.sims.scenario import load_scenario, run_scenario
    from edgeloop.sims.scenario_report import plot_trajectories, scenario_table

    scenario = load_scenario(args.scenario)
    if args.agents is not None and args.agents < 1:
        raise EdgeloopError(f"--agents must be >= 1, got {args.agents}")
    if args.seed < 0:
        raise EdgeloopError(f"--seed must be >= 0, got {args.seed}")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise EdgeloopError(f"--duration must be a positive number of seconds, got {args.duration}")
    for path in (args.json, args.plot):
        if path is not None:
            _check_writable(path)
    if args.record is not None:
        from edgeloop.runtime.recording import mcap_module

        mcap_module()
    agents = args.agents if args.agents is not None else scenario.agents
    if not args.quiet:
        clock = "real time" if args.realtime else "simulated time (lockstep)"
        where = "one process" if args.one_process else f"{agents + 1} processes"
        _err.print(f"running {scenario.name}: {agents} agents in {where}, {clock}", highlight=False)
    report, metrics = run_scenario(
        scenario,
        agents=agents,
        seed=args.seed,
        realtime=args.realtime,
        duration_s=args.duration,
        record=args.record,
        one_process=args.one_process,
    )
    if not args.quiet:
        _out.print(scenario_table(scenario.name, metrics))
        if report.stop_reason != "duration reached":
            _err.print(f"stopped: {report.stop_reason}", highlight=False)
    if args.record is not None and report.recording is not None and not args.quiet:
        _out.print(f"recorded {report.recording['written']:,} messages to {args.record}")
    if args.plot is not None:
        names = [a["agent"] for a in metrics["per_agent"]]
        title = f"{scenario.name}: {agents} agents, seed {args.seed}"
        if plot_trajectories(report, names, args.plot, title) is None:
            _err.print("no trajectory plot: the world reports no x/y per agent", highlight=False)
        elif not args.quiet:
            _out.print(f"trajectories plotted to {args.plot}")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"metrics": metrics, "report": report.to_dict()}, indent=2, default=str)
        )
    return 1 if report.stopped_by_fault else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    graph = load_and_check(args.graph, _registry())
    _out.print(
        f"[green]ok:[/] {args.graph}: graph '{graph.name}' is valid "
        f"({len(graph.nodes)} nodes, {len(graph.contracts)} contracts)",
        highlight=False,
    )
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    registry = _registry()
    table = Table(title="node types", title_justify="left")
    for col in ("type", "role", "plugin", "description"):
        table.add_column(col)
    for name in sorted(registry.node_types):
        info = registry.node_types[name]
        table.add_row(name, info.cls.role, info.plugin, Text(info.description))
    _out.print(table)
    if registry.failures:
        failed = Table(title="plugins that failed to load", title_justify="left")
        failed.add_column("plugin")
        failed.add_column("error")
        for failure in registry.failures:
            failed.add_row(failure.name, Text(failure.error))
        _out.print(failed)
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from edgeloop.runtime.profiles import (
        builtin_profile_names,
        load_profile,
        profile_source,
        profile_summary,
    )

    if args.profiles_command == "show":
        load_profile(args.name)  # validates, and names the problem if it does not
        sys.stdout.write(profile_source(args.name))
        return 0
    table = Table(title="hardware profiles", title_justify="left")
    for col in ("name", "kind", "memory GB", "compute", "TensorRT", "max opset", "providers"):
        table.add_column(col, justify="right" if col in ("memory GB", "max opset") else "left")
    for name in builtin_profile_names():
        row = profile_summary(load_profile(name))
        table.add_row(
            *(
                "-"
                if row[key] is None
                else f"{row[key]:g}"
                if isinstance(row[key], float)
                else str(row[key])
                for key in (
                    "name",
                    "kind",
                    "memory_gb",
                    "compute_capability",
                    "tensorrt",
                    "max_onnx_opset",
                    "providers",
                )
            )
        )
    _out.print(table)
    _out.print("`edgeloop profiles show NAME` prints one with its sources.")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if ":" not in args.factory and not Path(args.factory).is_dir():
        raise EdgeloopError(
            f"{args.factory} is neither a run folder nor MODULE:FACTORY (fix: check the path "
            "of the run, or name a factory as package.module:function)"
        )
    if Path(args.factory).is_dir():
        from edgeloop.sims.policy_export import export_run

        if args.input or args.output or args.checkpoint:
            raise EdgeloopError(
                f"{args.factory} is a run folder: its inputs, outputs and weights come from the "
                "run (fix: drop --input, --output and --checkpoint)"
            )
        result = export_run(args.factory, args.out, profile=args.profile, overwrite=args.overwrite)
    else:
        from edgeloop.exporters.model_source import load_factory, sample_inputs
        from edgeloop.exporters.onnx_export import export_bundle

        if not args.input or not args.output:
            raise EdgeloopError(
                f"exporting {args.factory} needs --input NAME=SHAPE and --output NAME "
                "(fix: name the model's inputs with example shapes, and its outputs)"
            )
        module = load_factory(args.factory, checkpoint=args.checkpoint)
        names, samples = sample_inputs(args.input)
        result = export_bundle(
            module,
            samples,
            args.out,
            input_names=names,
            output_names=args.output,
            profile=args.profile,
            opset=args.opset,
            dynamic_batch=not args.static_batch,
            tolerance=args.tolerance,
            fp16=args.fp16,
            overwrite=args.overwrite,
        )
    m, p = result.manifest, result.parity
    table = Table(title=f"exported {args.factory} -> {result.bundle}", title_justify="left")
    table.add_column("")
    table.add_column("")
    table.add_row("profile", m.profile or "-")
    table.add_row("opset", str(m.opset))
    for kind, specs in (("input", m.inputs), ("output", m.outputs)):
        for t in specs:
            table.add_row(kind, f"{t.name}: {t.dtype} {tuple(t.shape)}")
    table.add_row(
        "parity",
        f"max abs {p.max_abs_error:.3g}, max rel {p.max_rel_error:.3g} over "
        f"{p.cases} inputs (tolerance {p.tolerance:g})",
    )
    if "fp16" in m.parity:
        half = m.parity["fp16"]
        table.add_row(
            "fp16 parity",
            f"max abs {half['max_abs_error']:.3g} over {half['cases']} "
            f"inputs (tolerance {half['tolerance']:g}), file {m.variants['fp16']}",
        )
    if m.precheck:
        verdict = "passed" if m.precheck["passed"] else "FAILED"
        table.add_row("precheck", f"{verdict} for {m.profile} (details: edgeloop precheck)")
    _out.print(table)
    if m.precheck and not m.precheck["passed"]:
        _err.print(
            f"[bold red]precheck failed[/] for {m.profile}: the bundle is written but "
            f"will not run as the profile asks (run edgeloop precheck {result.bundle} "
            f"--profile {m.profile})",
            highlight=False,
        )
        return 1
    return 0


_SAMPLERS = ("erm", "drm", "gdrm", "mpts", "mpts+div", "mpts+regret", "mpts+div+regret")


def _cmd_train(args: argparse.Namespace) -> int:
    from edgeloop.sims.ppo import TrainConfig, check_config
    from edgeloop.sims.runs import CHECKPOINT, read_config, train_run
    from edgeloop.sims.task_space import load_task_space

    settings = {
        "task_space": args.task_space,
        "sampler": args.sampler,
        "total_steps": args.steps,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "processes": args.processes or None,
    }
    given = {k: v for k, v in settings.items() if v is not None}
    if args.resume is not None:
        if given:
            raise EdgeloopError(
                f"--resume goes on with the run's own settings (fix: drop "
                f"{', '.join('--' + k.replace('_', '-') for k in given)})"
            )
        folder, config = args.resume, read_config(args.resume)
    else:
        folder = args.out
        defaults = {"task_space": "pendulum", "sampler": "mpts", "total_steps": 200_000}
        config = TrainConfig(**{**defaults, **given})
        load_task_space(config.task_space)  # an unknown space is a clear error first
    check_config(config)
    label = f"{config.sampler} on {config.task_space}"
    try:
        with _step_progress(label, config.total_steps) as show:
            result = train_run(config, folder, resume=args.resume is not None, progress=show)
    except KeyboardInterrupt:
        kept = (Path(folder) / CHECKPOINT).exists()
        _err.print(
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
    _out.print(
        f"trained {label} for {result.steps[-1]:,} steps in {result.seconds:.0f} s{grid}; "
        f"run written to {folder} (evaluate it with: edgeloop evaluate {folder})",
        highlight=False,
    )
    return 0


def _step_progress(label: str, total: int) -> Any:
    """A progress bar over environment steps showing the training figures; yields the
    callback the trainer calls after each iteration."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    @contextmanager
    def bar() -> Any:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=_err,
            transient=True,
            disable=not _err.is_terminal,
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

    return bar()


def _cmd_compare(args: argparse.Namespace) -> int:
    import shlex

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
    if args.seeds < 1:
        raise EdgeloopError(f"--seeds {args.seeds}: a comparison needs at least one seed")
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
        console=_err,
        transient=True,
        disable=not _err.is_terminal,
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
            _err.print(
                "interrupted; finished runs are kept and unfinished ones checkpointed: run the "
                "same command again to continue",
                highlight=False,
            )
            return 130
    import dataclasses

    report = build_report(dataclasses.asdict(config), results)
    command = "edgeloop " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "edgeloop compare"
    paths = write_report(report, args.out, command)
    header, rows = table_rows(report)
    table = Table(
        title=f"{config.task_space}: {len(config.seeds)} seeds x {config.total_steps:,} steps "
        "(mean ± s.e. across seeds)",
        title_justify="left",
    )
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    _out.print(table)
    _out.print(f"report: {', '.join(str(p) for p in paths)}", highlight=False, soft_wrap=True)
    return 0


def _settings(pairs: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs, values read as YAML scalars (numbers, booleans, strings)."""
    import yaml

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EdgeloopError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set gamma=0.99")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from edgeloop.sims.evaluation import evaluate
    from edgeloop.sims.ppo import as_policy_function
    from edgeloop.sims.runs import load_run
    from edgeloop.sims.task_space import load_task_space

    if args.grid < 1 or args.episodes < 1:
        raise EdgeloopError("--grid and --episodes must be at least 1")
    if args.json is not None:
        _check_writable(args.json)
    result = load_run(args.run)
    space = load_task_space(result.config.task_space)
    policy = as_policy_function(result)
    table = Table(
        title=f"evaluation of {args.run} ({result.config.sampler}, {result.steps[-1]:,} steps)",
        title_justify="left",
    )
    for col in ("tasks", "grid", "mean", "CVaR_0.5", "CVaR_0.7", "CVaR_0.9"):
        table.add_column(col, justify="left" if col == "tasks" else "right")
    report = {}
    for label, ood in (("in range", False), ("out of distribution", True)):
        if args.ray is not None:
            from edgeloop.sims.cluster import evaluate_run_on_ray

            e = evaluate_run_on_ray(
                args.run, per_axis=args.grid, episodes=args.episodes, ood=ood, address=args.ray
            )
        else:
            e = evaluate(
                policy,
                space,
                per_axis=args.grid,
                episodes=args.episodes,
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
    _out.print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


_STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}


DEFAULT_STATS = "ipc:///tmp/edgeloop-stats"


def _cmd_top(args: argparse.Namespace) -> int:
    from rich.live import Live

    from edgeloop.runtime.processes.introspection import STATS_TOPIC, StatsSubscriber

    feed = StatsSubscriber(args.endpoint, topic=STATS_TOPIC)
    try:
        first = feed.stats(args.timeout)
        if first is None:
            raise EdgeloopError(
                f"no loop publishes stats on {args.endpoint} (fix: start one with "
                f"edgeloop run GRAPH --stats {args.endpoint})"
            )
        if args.once:
            _out.print(_stats_table(first, None))
            return 0
        previous, current = None, first
        with Live(_stats_table(current, previous), console=_out, auto_refresh=False) as live:
            while True:
                update = feed.stats(5.0)
                if update is None:
                    _err.print("the loop stopped publishing", highlight=False)
                    return 0
                previous, current = current, update
                live.update(_stats_table(current, previous), refresh=True)
    except KeyboardInterrupt:
        return 0
    finally:
        feed.close()


def _stats_table(stats: dict[str, Any], previous: dict[str, Any] | None) -> Table:
    before = {n["id"]: n for n in previous["nodes"]} if previous else {}
    span = stats["time"] - previous["time"] if previous else None
    table = Table(title=f"{stats['graph']} (live)", title_justify="left")
    for col in (
        "node",
        "type",
        "calls",
        "rate Hz",
        "p50 µs",
        "p99 µs",
        "misses",
        "drops",
        "faults",
    ):
        table.add_column(col, justify="left" if col in ("node", "type") else "right")
    for n in stats["nodes"]:
        old = before.get(n["id"])
        rate = (n["calls"] - old["calls"]) / span if old and span else None
        table.add_row(
            n["id"],
            n["type"],
            f"{n['calls']:,}",
            "-" if rate is None else f"{rate:.1f}",
            _micros(n["p50_us"]),
            _micros(n["p99_us"]),
            str(n["deadline_misses"]),
            str(sum(n["drops"].values())),
            str(sum(n["faults"].values())),
        )
    return table


def _micros(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"  # NaN: never ran


def _cmd_echo(args: argparse.Namespace) -> int:
    from edgeloop.runtime.processes.introspection import StatsSubscriber

    feed = StatsSubscriber(args.endpoint, topic=f"msg/{args.port}".encode())
    shown = 0
    try:
        while args.n == 0 or shown < args.n:
            got = feed.message(args.timeout)
            if got is None:
                raise EdgeloopError(
                    f"no message from {args.port} on {args.endpoint} in {args.timeout:g} s "
                    "(fix: check the port name and that the loop runs with --stats)"
                )
            topic, message = got
            if topic != args.port:  # a subscription matches prefixes: cam/img2 for cam/img
                continue
            _out.print(
                f"seq {message.seq}  t {message.created:.6f}  {message.data!r}",
                highlight=False,
                markup=False,
            )
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
    return 0


def _cmd_hz(args: argparse.Namespace) -> int:
    import time

    from edgeloop.runtime.processes.introspection import StatsSubscriber

    if args.window <= 0:
        raise EdgeloopError("--window must be positive")
    feed = StatsSubscriber(args.endpoint, topic=f"msg/{args.port}".encode())
    windows = 0
    try:
        if feed.message(10.0) is None:
            raise EdgeloopError(
                f"no message from {args.port} on {args.endpoint} in 10 s (fix: check the "
                "port name and that the loop runs with --stats)"
            )
        while args.count == 0 or windows < args.count:
            start, seen = time.monotonic(), 0
            while (left := start + args.window - time.monotonic()) > 0:
                got = feed.message(left)
                if got is not None and got[0] == args.port:
                    seen += 1
            span = time.monotonic() - start
            _out.print(
                f"{args.port}: {seen / span:.1f} Hz ({seen} messages in {span:.2f} s)",
                highlight=False,
            )
            windows += 1
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from edgeloop.runtime.recording import Collector, read_metadata, read_recording

    facts = read_metadata(args.recording)
    if facts.get("simulated") == "False":
        raise EdgeloopError(
            f"{args.recording} was recorded in real time, where messages are not on the "
            "timers' grid, so it cannot replay bit-exact (fix: record with --sim)"
        )
    graph_path = args.graph or (Path(facts["graph"]) if "graph" in facts else None)
    if graph_path is None:
        raise EdgeloopError(f"{args.recording} does not name its graph (fix: give --graph)")
    registry = _registry()
    graph = load_and_check(graph_path, registry)
    recorded: dict[str, list[tuple[float, int, Any]]] = {}
    for topic, created, message in read_recording(args.recording):
        recorded.setdefault(topic, []).append((created, message["seq"], message["value"]))
    recorded_nodes = {topic.split("/")[1] for topic in recorded}
    played = []
    for node in graph.nodes:
        sourced = all(i.is_timer for i in node.inputs.values())
        if sourced and node.id in recorded_nodes:
            node.type = "replay"
            node.config = {"recording": str(args.recording.resolve()), "node": node.id}
            played.append(node.id)
    replaced = {}
    for pair in args.replace:
        node_id, sep, node_type = pair.partition("=")
        if not sep or not node_type:
            raise EdgeloopError(f"--replace {pair!r}: expected NODE=TYPE")
        if node_id not in {n.id for n in graph.nodes}:
            raise EdgeloopError(f"--replace {pair!r}: the graph has no node '{node_id}'")
        node = graph.node(node_id)
        if node_id in played:  # a played-back node replaced: its own config again
            node.config = {}
            played.remove(node_id)
        node.type = node_type
        replaced[node_id] = node_type
    duration = args.duration or float(facts.get("duration", 0)) or None
    if duration is None:
        raise EdgeloopError("the recording has no duration (fix: give --duration)")
    seed = args.seed if args.seed is not None else int(facts.get("seed", 0))
    collector = Collector()
    Executor(graph, registry=registry, simulated=True, seed=seed, recorder=collector).run(duration)
    table = Table(
        title=f"replay of {args.recording}: played back {', '.join(played) or 'nothing'}"
        + (f"; replaced {', '.join(f'{k}={v}' for k, v in replaced.items())}" if replaced else ""),
        title_justify="left",
    )
    for col in ("topic", "recorded", "replayed", "identical", "first difference"):
        table.add_column(col, justify="left" if col in ("topic", "first difference") else "right")
    exact = True
    for topic in sorted(set(recorded) | set(collector.messages)):
        if topic.split("/")[1] in played:
            continue
        before, after = recorded.get(topic, []), collector.messages.get(topic, [])
        same = 0
        first = "-"
        for k, (old, new) in enumerate(zip(before, after, strict=False)):
            if _same_message(old, new):
                same += 1
            elif first == "-":
                first = f"message {k} at {old[0]:.3f} s"
        if first == "-" and len(before) != len(after):
            first = "counts differ"
        exact &= first == "-"
        table.add_row(topic, f"{len(before)}", f"{len(after)}", f"{same}", first)
    _out.print(table)
    verdict = "bit-exact" if exact else "outputs differ"
    _out.print(f"{verdict} ({'nothing replaced' if not replaced else 'with replacements'})")
    return 1 if not exact and not replaced else 0


def _same_message(old: tuple[float, int, Any], new: tuple[float, int, Any]) -> bool:
    """Same time, seq and payload, compared in the recorded form (arrays by dtype, shape
    and exact values; NaN equal to NaN)."""
    import json

    from edgeloop.runtime.recording import _plain

    (t0, s0, a), (t1, s1, b) = old, new
    if round(t0 * 1e9) != round(t1 * 1e9) or s0 != s1:
        return False
    try:
        return json.dumps(_plain(a), sort_keys=True) == json.dumps(_plain(b), sort_keys=True)
    except TypeError:
        return False


def _cmd_keys(args: argparse.Namespace) -> int:
    from edgeloop.runtime.processes.security import generate_keys

    public, secret = generate_keys(args.out, args.name)
    _out.print(
        f"public key {public} (give it to the peers that must accept this one)\n"
        f"secret key {secret} (keep it here; mode 600)",
        highlight=False,
    )
    return 0


def _cmd_precheck(args: argparse.Namespace) -> int:
    from edgeloop.exporters.precheck import precheck
    from edgeloop.runtime.profiles import load_profile

    if args.json is not None:
        _check_writable(args.json)
    report = precheck(args.model, load_profile(args.profile))
    table = Table(title=f"precheck of {args.model} for {report.profile}", title_justify="left")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for check in report.checks:
        detail = check.detail + (f": {', '.join(check.items)}" if check.items else "")
        table.add_row(
            check.name, Text(check.status, style=_STATUS_STYLE[check.status]), Text(detail)
        )
    _out.print(table)
    failed = not report.passed or (args.strict and any(c.status == "warn" for c in report.checks))
    _out.print("[bold red]FAIL[/]" if failed else "[green]PASS[/]")
    if args.json is not None:
        import json

        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 1 if failed else 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from edgeloop.plugins.onnx_model import OnnxModel
    from edgeloop.runtime.bundles import zeros_for
    from edgeloop.runtime.node import NodeContext, build_config, new_node
    from edgeloop.runtime.profiles import load_profile

    if args.runs < 0:
        raise EdgeloopError(f"--runs must be >= 0, got {args.runs} (fix: e.g. --runs 20)")
    profile = load_profile(args.profile)
    config = build_config(
        "onnx.model",
        OnnxModel.Config,
        {"model": str(args.model), "warmup": 0, "variant": args.variant},
    )
    OnnxModel.ports(config)  # a missing or tampered model is reported before any session
    ctx = NodeContext.standalone("warmup", config, profile=profile)
    node = new_node(OnnxModel, ctx)
    started = time.perf_counter()
    node.setup(ctx)
    built_s = time.perf_counter() - started
    feed = {t.name: zeros_for(t) for _, t in node.feeds}
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        node.session.run(node.output_names, feed)
        times.append((time.perf_counter() - t0) * 1e6)
    _out.print(
        f"{args.model}: runs on {ctx.notes['provider']} (profile {profile.name}); "
        f"session and first inference took {built_s:.2f} s",
        highlight=False,
    )
    if "skipped" in ctx.notes:
        _out.print(Text(f"skipped: {ctx.notes['skipped']}"))
    if times:
        _out.print(
            f"{args.runs} runs: p50 {np.percentile(times, 50):.1f} µs, "
            f"p99 {np.percentile(times, 99):.1f} µs",
            highlight=False,
        )
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from edgeloop.runtime.diagram import graph_mermaid, graph_text

    graph = load_graph(args.graph)
    sys.stdout.write((graph_mermaid(graph) if args.mermaid else graph_text(graph)) + "\n")
    return 0


_COMMANDS = {
    "top": _cmd_top,
    "echo": _cmd_echo,
    "hz": _cmd_hz,
    "replay": _cmd_replay,
    "sim": _cmd_sim,
    "keys": _cmd_keys,
    "compare": _cmd_compare,
    "evaluate": _cmd_evaluate,
    "train": _cmd_train,
    "export": _cmd_export,
    "precheck": _cmd_precheck,
    "profiles": _cmd_profiles,
    "warmup": _cmd_warmup,
    "run": _cmd_run,
    "validate": _cmd_validate,
    "plugins": _cmd_plugins,
    "graph": _cmd_graph,
}
