"""``edgeloop recording info`` and ``repair``: what a recording holds, and making a
killed run's recording whole again."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.table import Table

from edgeloop.cli._common import err, out


def register(commands: Any) -> None:
    recording = commands.add_parser(
        "recording",
        help="inspect or repair an MCAP recording of edgeloop run --record",
        description="Inspect or repair an MCAP recording made by edgeloop run --record.",
    )
    actions = recording.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = actions.add_parser(
        "info",
        help="topics, message counts, time span, and whether the file is whole",
        description="Print what a recording holds, per topic, and whether its writer "
        "finished it or it was cut short (a killed run) or damaged.",
    )
    info.add_argument("recording", type=Path, help="an MCAP file")
    info.set_defaults(handler=info_command)
    repair = actions.add_parser(
        "repair",
        help="make a killed run's recording whole: merge its parts, or rewrite it",
        description="After a run was killed: merge the parts its process groups left "
        "in FILE.parts/ into FILE, or rewrite a single-process FILE cut short with "
        "everything it holds and a proper summary. read_recording and edgeloop replay "
        "merge left-behind parts on their own.",
    )
    repair.add_argument("recording", type=Path, help="the file --record named")
    repair.set_defaults(handler=repair_command)


def info_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.mcap_records import scan
    from edgeloop.runtime.recording import clock_origin, parts_dir

    if parts_dir(args.recording).is_dir():
        err.print(
            f"{args.recording} has parts a stopped run left in {parts_dir(args.recording)}: "
            f"edgeloop recording repair {args.recording} merges them",
            highlight=False,
        )
        return 1
    found = scan(args.recording)
    origin = clock_origin(found.metadata, args.recording)
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for channel, message in found.messages:
        schema = channel.schema_name or f"({channel.message_encoding}, no schema)"
        times[channel.topic, schema].append((message.log_time - origin) / 1e9)
    table = Table(title=str(args.recording))
    for column in ("topic", "schema", "messages", "first s", "last s"):
        table.add_column(column, justify="left" if column in ("topic", "schema") else "right")
    for (topic, schema), seen in sorted(times.items()):
        table.add_row(topic, schema, f"{len(seen):,}", f"{min(seen):.3f}", f"{max(seen):.3f}")
    out.print(table)
    facts = found.metadata.get("edgeloop.run", {})
    if facts:
        out.print("run: " + ", ".join(f"{k}={v}" for k, v in facts.items()), highlight=False)
    if found.complete:
        out.print(f"whole: {len(found.messages):,} messages", highlight=False)
        return 0
    err.print(f"{args.recording}: {found.stopped}", highlight=False)
    err.print(f"(fix: edgeloop recording repair {args.recording})", highlight=False)
    return 1


def repair_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.recording import repair_recording

    summary = repair_recording(args.recording)
    if summary is None:
        out.print(f"{args.recording} is whole: nothing to repair", highlight=False)
        return 0
    out.print(f"repaired {args.recording}: {summary['written']:,} messages", highlight=False)
    for part in summary.get("cut_short", []):
        out.print(f"  read up to its last flush: {part}", highlight=False)
    if summary["failed"]:
        err.print(
            f"{summary['failed']} part(s) could not be read: {summary['last_error']}",
            highlight=False,
        )
        return 1
    return 0
