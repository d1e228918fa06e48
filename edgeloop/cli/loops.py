"""``edgeloop run``, ``validate``, ``graph`` and ``replay``: loop graphs themselves."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from edgeloop.cli._common import (
    DEFAULT_STATS,
    add_allow_import,
    add_duration,
    add_json,
    add_plugins,
    add_quiet,
    add_record,
    add_record_policy,
    add_seed,
    check_writable,
    err,
    out,
    registry,
    under_import_policy,
    write_text,
)
from edgeloop.cli.realtime_flags import add_realtime, apply_realtime_flags
from edgeloop.runtime.errors import RecordingError, UsageError
from edgeloop.runtime.executor import Executor
from edgeloop.runtime.graph import LoopGraph
from edgeloop.runtime.graph_yaml import load_graph
from edgeloop.runtime.metrics import RunReport
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.validation import load_and_check


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run a loop graph and print its report",
        description="Run a loop graph in real time (default) or in simulated time (--sim), "
        "then print per-node latency, drops and faults, contract latency and "
        "deadline misses, and timer jitter. A graph with several process groups runs "
        "each group in a process of its own under a supervisor.",
    )
    run.add_argument("graph", type=Path, help="loop graph YAML file")
    add_duration(run, default_help="until Ctrl-C; 10 with --sim")
    run.add_argument(
        "--sim",
        action="store_true",
        help="simulated clock: deterministic and as fast as the CPU allows",
    )
    add_seed(run)
    run.add_argument(
        "--stats",
        nargs="?",
        const=DEFAULT_STATS,
        metavar="ENDPOINT",
        help=f"publish live stats and messages for edgeloop top/echo/hz (default {DEFAULT_STATS})",
    )
    add_record(run)
    add_record_policy(run)
    run.add_argument(
        "--foxglove",
        nargs="?",
        const="127.0.0.1:8765",
        metavar="HOST:PORT",
        help="serve every port live to Foxglove (open connection: Foxglove WebSocket, "
        "ws://HOST:PORT) with the schemas recordings use; default 127.0.0.1:8765 "
        "(loopback: give 0.0.0.0:8765 to let other machines in; port 0 picks a free one)",
    )
    add_json(run)
    run.add_argument(
        "--one-process",
        action="store_true",
        help="run every node in this process, whatever its group (by default each "
        "process group of the graph runs in a process of its own)",
    )
    add_realtime(run)
    add_plugins(run)
    add_allow_import(run)
    add_quiet(run)
    run.add_argument("-v", "--verbose", action="store_true", help="log node messages (INFO)")
    run.add_argument(
        "--log-format",
        choices=("text", "journal"),
        help="journal: one line per event with a <level> prefix journald reads (the default "
        "when stderr goes to the journal, as under edgeloop service)",
    )
    run.set_defaults(handler=run_command)

    validate = commands.add_parser(
        "validate",
        help="check a loop graph and list every problem",
        description="Check a graph's schema, node types, config, wiring, cycles and contracts. "
        "Prints every problem with file:line and field; exits 2 if there are any.",
    )
    validate.add_argument("graph", type=Path, help="loop graph YAML file")
    add_plugins(validate)
    add_allow_import(validate)
    validate.set_defaults(handler=validate_command)

    graph = commands.add_parser(
        "graph",
        help="print a loop graph as text or Mermaid",
        description="Print the nodes and wiring of a graph, as indented "
        "text or (--mermaid) as a Mermaid flowchart.",
    )
    graph.add_argument("graph", type=Path, help="loop graph YAML file")
    graph.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart")
    graph.set_defaults(handler=graph_command)

    replay = commands.add_parser(
        "replay",
        help="run a graph again on a recording's sensor data; compare the outputs",
        description="Play the recorded source nodes (sensors) back at the times they "
        "published, run every other node again in simulated time, and compare each of "
        "their outputs with the recording. With nothing replaced a deterministic loop is "
        "bit-exact; --replace NODE=TYPE swaps in another node type to see what it would "
        "have done on the same inputs.",
    )
    replay.add_argument("recording", type=Path, help="an MCAP file from edgeloop run --record")
    replay.add_argument(
        "--graph",
        type=Path,
        help="the loop graph to run again; a graph the recording names is never loaded "
        "by itself (a recording may come from anyone, and a graph can name code to run)",
    )
    replay.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NODE=TYPE",
        help="run NODE as another node type, with its config (repeatable)",
    )
    add_duration(replay, default_help="the recorded run's")
    add_seed(replay, default=None, what="seed (default: the recorded run's)")
    add_plugins(replay)
    add_allow_import(replay)
    replay.set_defaults(handler=replay_command)


# -- run ------------------------------------------------------------------------------------


@under_import_policy("graph")
def run_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.processes.placement import groups_of
    from edgeloop.runtime.systemd import JournalFormatter, Notifier

    journal = args.log_format == "journal" or (
        args.log_format is None and bool(os.environ.get("JOURNAL_STREAM"))
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        JournalFormatter("%(name)s: %(message)s")
        if journal
        else logging.Formatter("%(name)s: %(message)s")
    )
    level = logging.INFO if args.verbose or journal else logging.WARNING
    logging.basicConfig(level=level, handlers=[handler])
    _stop_on_sigterm()
    loaded = registry(args.plugins)
    graph = load_and_check(args.graph, loaded)
    apply_realtime_flags(args, graph)
    duration = args.duration if args.duration is not None or not args.sim else 10.0
    if args.json is not None:
        check_writable(args.json)
    notifier = Notifier.from_environment()  # under systemd's Type=notify
    try:
        if len(groups_of(graph)) > 1 and not args.one_process:
            report = _run_groups(args, graph, duration, notifier)
            _save_json(args, report)
        else:
            report = _run_here(args, graph, loaded, duration, notifier)
    finally:
        if notifier is not None:
            notifier.close()
    return 1 if report.stopped_by_fault else 0


def _stop_on_sigterm() -> None:
    """``systemctl stop`` (SIGTERM) ends the loop as Ctrl-C does: nodes closed, the
    report written."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _save_json(args: argparse.Namespace, report: RunReport) -> None:
    if args.json is not None:
        write_text(args.json, report.to_json())
        if not args.quiet:
            out.print(f"report written to {args.json}")


def _run_metadata(args: argparse.Namespace, duration: float | None) -> dict[str, Any]:
    """Facts a recording keeps for ``edgeloop replay``."""
    return {"graph": Path(args.graph).resolve(), "seed": args.seed, "simulated": args.sim} | (
        {"duration": duration} if duration is not None else {}
    )


def _run_groups(
    args: argparse.Namespace, graph: LoopGraph, duration: float | None, notifier: Any = None
) -> RunReport:
    """Each process group in a process of its own, under a supervisor."""
    from edgeloop.runtime.processes.placement import groups_of
    from edgeloop.runtime.processes.supervisor import Supervisor
    from edgeloop.runtime.report_table import print_report

    for option, value in (("--stats", args.stats), ("--foxglove", args.foxglove)):
        if value is not None:
            raise UsageError(
                f"{option} watches one process; this graph has several process groups",
                fix="add --one-process to watch it in one",
            )
    if args.record is not None:
        from edgeloop.runtime.channel_log import foxglove_module
        from edgeloop.runtime.recording import mcap_module

        mcap_module()  # the record extra is there, before any process starts
        foxglove_module()

    def started(pids: dict[str, int]) -> None:
        each = ", ".join(f"{name} (pid {pid})" for name, pid in pids.items())
        if not args.quiet:
            err.print(f"started: {each}", highlight=False)
        if notifier is not None:  # the supervisor restarts a stuck group itself
            notifier.ready(f"running {graph.name}: {each}")
            notifier.start_watchdog(lambda half_s: True)

    supervisor = Supervisor(
        graph,
        simulated=args.sim,
        seed=args.seed,
        plugins=args.plugins,
        record=args.record,
        record_flush_ms=args.record_flush_ms,
        record_fsync=args.record_fsync,
        metadata=_run_metadata(args, duration),
        on_started=started,
    )
    if not args.quiet:
        names = ", ".join(groups_of(graph))
        clock = "simulated time (lockstep)" if args.sim else "real time"
        err.print(f"running {graph.name} as processes {names} in {clock}", highlight=False)
    report = supervisor.run(duration)
    if notifier is not None:
        notifier.stopping(f"stopped: {report.stop_reason}")
    if not args.quiet:
        print_report(report, out)
    recording = report.recording
    if recording is not None:
        line = f"recorded {recording['written']:,} messages to {args.record}"
        if recording["failed"]:
            err.print(
                f"[bold red]{line}; {recording['failed']:,} could not be written[/]",
                highlight=False,
            )
        elif not args.quiet:
            out.print(line, highlight=False)
        for part in recording.get("cut_short", []):  # a group killed mid-run: kept to its end
            err.print(f"a part ended early, read up to its last flush: {part}", highlight=False)
    return report


def _run_here(
    args: argparse.Namespace,
    graph: LoopGraph,
    loaded: PluginRegistry,
    duration: float | None,
    notifier: Any = None,
) -> RunReport:
    """Every node in this process."""

    recorder = stats = viewer = live = None
    # Whatever was opened is closed, whatever fails after: an MCAP writer or a server
    # left open would be torn down by the interpreter's exit, noisily.
    with contextlib.ExitStack() as opened:
        if args.record is not None:
            from edgeloop.runtime.channel_log import port_recordings
            from edgeloop.runtime.recording import Recorder

            recorder = Recorder(
                args.record,
                flush_ms=args.record_flush_ms,
                fsync=args.record_fsync,
                ports=port_recordings(graph),
                simulated=args.sim,
            )
            opened.callback(recorder.close)
            # The run's facts first, so a recording cut short by a kill still replays.
            recorder.add_metadata(_run_metadata(args, duration))
        if args.foxglove is not None:
            live, viewer = _serve_live(args, graph, recorder)
            if viewer is not None:
                opened.callback(viewer.close)
        if args.stats is not None:
            from edgeloop.runtime.processes.introspection import StatsPublisher

            stats = StatsPublisher(args.stats)
            opened.callback(stats.close)
        sinks = [s for s in (recorder, viewer, stats) if s is not None]
        if len(sinks) > 1:
            from edgeloop.runtime.recording import Tee

            sink: Any = Tee(*sinks)
        else:
            sink = sinks[0] if sinks else None

        def hung_for_good(report: RunReport) -> None:
            # From the watchdog's thread, just before the process ends: what was measured
            # and recorded is kept. (The sinks are not written meanwhile: the loop is stuck.)
            opened.close()
            _show_and_save(args, report, recorder, live)

        executor = Executor(
            graph,
            registry=loaded,
            simulated=args.sim,
            seed=args.seed,
            recorder=sink,
            on_hard_hang=hung_for_good,
        )
        if notifier is not None:
            from edgeloop.runtime.systemd import LoopNotifier

            loaded.add_plugin(LoopNotifier(notifier, executor.busy_s), "systemd")
        if stats is not None:
            stats.watch(executor)
            err.print(f"stats on {args.stats} (edgeloop top {args.stats})", highlight=False)
        report = _run_with_progress(executor, duration, show=not args.quiet)
    _show_and_save(args, report, recorder, live)
    return report


def _serve_live(args: argparse.Namespace, graph: LoopGraph, recorder: Any) -> tuple[Any, Any]:
    """The live view's server, and the viewer sink when nothing records (a recorder
    serves its own channels: each message is encoded once for both)."""
    from edgeloop.runtime.channel_log import port_recordings
    from edgeloop.runtime.live_view import LiveView, parse_address

    host, port = parse_address(args.foxglove)
    viewer = None
    if recorder is not None:
        live = recorder.serve(host, port, name=graph.name)
    else:
        ports = port_recordings(graph)
        viewer = LiveView(host, port, ports=ports, simulated=args.sim, name=graph.name)
        live = viewer.live
    # The line a script (or a test) waits for before it connects.
    err.print(f"foxglove live view on {live.url}", highlight=False)
    return live, viewer


def _show_and_save(
    args: argparse.Namespace, report: RunReport, recorder: Any, live: Any = None
) -> None:
    """The report table, what the recording holds, and the --json file."""
    from edgeloop.runtime.report_table import print_report

    if not args.quiet:
        print_report(report, out)
    if recorder is not None:
        line = f"recorded {recorder.written:,} messages to {args.record}"
        if recorder.failed:
            err.print(
                f"[bold red]{line}; {recorder.failed:,} could not be written[/] "
                f"(last: {escape(recorder.last_error)})",
                highlight=False,
            )
        elif not args.quiet:
            out.print(line, highlight=False)
    if live is not None and not args.quiet:
        seen = live.summary()
        out.print(
            f"live view {seen['url']}: {seen['clients']} client(s), "
            f"{seen['subscriptions']} subscription(s), {seen['offered']:,} messages offered "
            f"to subscribers (the server drops a slow client's oldest beyond "
            f"{seen['backlog']} queued, and does not count them)",
            highlight=False,
        )
    _save_json(args, report)


def _run_with_progress(executor: Executor, duration: float | None, *, show: bool) -> RunReport:
    if show and not executor.simulated and err.is_terminal:
        # No live display in real time: redrawing it takes the GIL from the loop.
        length = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
        err.print(f"running {executor.graph.name} in real time {length}", highlight=False)
    if not show or duration is None or not executor.simulated or not err.is_terminal:
        return executor.run(duration)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    done = threading.Event()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
        TimeRemainingColumn(),
        console=err,
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


# -- validate, graph --------------------------------------------------------------------------


@under_import_policy("graph")
def validate_command(args: argparse.Namespace) -> int:
    graph = load_and_check(args.graph, registry(args.plugins))
    out.print(
        f"[green]ok:[/] {args.graph}: graph '{graph.name}' is valid "
        f"({len(graph.nodes)} nodes, {len(graph.contracts)} contracts)",
        highlight=False,
    )
    return 0


def graph_command(args: argparse.Namespace) -> int:
    import sys

    from edgeloop.runtime.diagram import graph_mermaid, graph_text

    graph = load_graph(args.graph)
    sys.stdout.write((graph_mermaid(graph) if args.mermaid else graph_text(graph)) + "\n")
    return 0


# -- replay ---------------------------------------------------------------------------------


@under_import_policy("graph")
def replay_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.recording import Collector, read_metadata, read_recording

    facts = read_metadata(args.recording)
    if facts.get("simulated") == "False":
        raise RecordingError(
            f"{args.recording} was recorded in real time, where messages are not on the "
            "timers' grid, so it cannot replay bit-exact",
            fix="record with --sim",
        )
    if args.graph is None:
        # Never the graph the recording names: a recording may come from anyone, and
        # a graph names code to run (issue 14, item 4). The user names it, or nothing.
        if "graph" not in facts:
            raise RecordingError(f"{args.recording} does not name its graph", fix="give --graph")
        named = facts["graph"]  # text from the file: quoted, control characters shown
        named = shlex.quote(named) if named.isprintable() else repr(named)
        raise RecordingError(
            f"{args.recording} was recorded from the graph {named}, which replay does not "
            "load by itself: a recording may come from anyone, and a graph can name code "
            "to run",
            fix=f"give the graph if you trust it: --graph {named}",
        )
    loaded = registry(args.plugins)
    graph = load_and_check(args.graph, loaded)
    recorded: dict[str, list[tuple[float, int, Any]]] = {}
    lossy: set[str] = set()  # topics recorded compressed (jpeg): compared within a tolerance
    for topic, created, message in read_recording(args.recording):
        recorded.setdefault(topic, []).append((created, message["seq"], message["value"]))
        if not message["exact"]:
            lossy.add(topic)
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
            raise UsageError(f"--replace {pair!r}: expected NODE=TYPE", fix="e.g. pid=constant")
        if node_id not in {n.id for n in graph.nodes}:
            raise UsageError(
                f"--replace {pair!r}: the graph has no node '{node_id}'",
                fix=f"one of {', '.join(n.id for n in graph.nodes)}",
            )
        node = graph.node(node_id)
        if node_id in played:  # a played-back node replaced: its own config again
            node.config = {}
            played.remove(node_id)
        node.type = node_type
        replaced[node_id] = node_type
    duration = args.duration or float(facts.get("duration", 0)) or None
    if duration is None:
        raise RecordingError("the recording has no duration", fix="give --duration")
    seed = args.seed if args.seed is not None else int(facts.get("seed", 0))
    collector = Collector()
    Executor(graph, registry=loaded, simulated=True, seed=seed, recorder=collector).run(duration)
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
            if _same_message(old, new, exact=topic not in lossy):
                same += 1
            elif first == "-":
                first = f"message {k} at {old[0]:.3f} s"
        if first == "-" and len(before) != len(after):
            first = "counts differ"
        exact &= first == "-"
        table.add_row(topic, f"{len(before)}", f"{len(after)}", f"{same}", first)
    out.print(table)
    verdict = "bit-exact" if exact else "outputs differ"
    out.print(f"{verdict} ({'nothing replaced' if not replaced else 'with replacements'})")
    return 1 if not exact and not replaced else 0


def _same_message(
    old: tuple[float, int, Any], new: tuple[float, int, Any], *, exact: bool = True
) -> bool:
    """Same time, seq and payload, compared in the recorded form (arrays by dtype, shape
    and exact values; NaN equal to NaN). A jpeg-recorded image (not ``exact``) is the
    same within a mean absolute difference of ``JPEG_TOLERANCE``."""
    import json

    import numpy as np

    from edgeloop.runtime.record_codecs import JPEG_TOLERANCE, tagged

    (t0, s0, a), (t1, s1, b) = old, new
    if round(t0 * 1e9) != round(t1 * 1e9) or s0 != s1:
        return False
    if not exact and isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        return float(np.abs(a.astype(float) - b).mean()) <= JPEG_TOLERANCE
    try:
        return json.dumps(tagged(a), sort_keys=True) == json.dumps(tagged(b), sort_keys=True)
    except (TypeError, ValueError):
        return False
