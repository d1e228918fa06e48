"""``edgeloop top``, ``echo`` and ``hz``: a running loop, watched from outside.

They read what ``edgeloop run --stats`` publishes.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from edgeloop.cli._common import (
    DEFAULT_STATS,
    add_endpoint,
    err,
    out,
    positive_seconds,
    whole_number,
)
from edgeloop.runtime.errors import TransportError


def register(commands: Any) -> None:
    top = commands.add_parser(
        "top",
        help="live rates, step times, drops and faults per node of a running loop",
        description="Show the stats a loop started with edgeloop run --stats publishes, "
        "refreshed every second, until Ctrl-C.",
    )
    top.add_argument(
        "endpoint",
        nargs="?",
        default=DEFAULT_STATS,
        help=f"the loop's --stats (default {DEFAULT_STATS})",
    )
    top.add_argument("--once", action="store_true", help="print one table and exit")
    _add_timeout(top, "seconds to wait for a loop")
    top.set_defaults(handler=top_command)

    echo = commands.add_parser(
        "echo",
        help="print the messages of one port of a running loop",
        description="Print each message NODE/PORT publishes in a loop started with "
        "edgeloop run --stats.",
    )
    echo.add_argument("port", metavar="NODE/PORT")
    add_endpoint(echo)
    echo.add_argument(
        "-n", type=whole_number(0), default=0, help="stop after N messages (0: never)"
    )
    _add_timeout(echo, "seconds to wait for each message")
    echo.set_defaults(handler=echo_command)

    hz = commands.add_parser(
        "hz",
        help="measure the rate of one port of a running loop",
        description="Count the messages NODE/PORT publishes in a loop started with "
        "edgeloop run --stats, and print the rate each window.",
    )
    hz.add_argument("port", metavar="NODE/PORT")
    add_endpoint(hz)
    hz.add_argument(
        "--window", type=positive_seconds, default=1.0, help="seconds per measurement (default 1)"
    )
    hz.add_argument(
        "--count", type=whole_number(0), default=0, help="stop after N windows (0: never)"
    )
    _add_timeout(hz, "seconds to wait for the first message")
    hz.set_defaults(handler=hz_command)


def _add_timeout(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--timeout", type=positive_seconds, default=10.0, help=f"{what} (default 10)"
    )


def top_command(args: argparse.Namespace) -> int:
    from rich.live import Live

    from edgeloop.runtime.processes.introspection import STATS_TOPIC, StatsSubscriber

    feed = StatsSubscriber(args.endpoint, topic=STATS_TOPIC)
    try:
        first = feed.stats(args.timeout)
        if first is None:
            raise TransportError(
                f"no loop publishes stats on {args.endpoint}",
                fix=f"start one with edgeloop run GRAPH --stats {args.endpoint}",
            )
        if args.once:
            out.print(_stats_table(first, None))
            return 0
        previous, current = None, first
        with Live(_stats_table(current, previous), console=out, auto_refresh=False) as live:
            while True:
                update = feed.stats(5.0)
                if update is None:
                    err.print("the loop stopped publishing", highlight=False)
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
    return "-" if value is None or value != value else f"{value:.0f}"


def echo_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.processes.introspection import StatsSubscriber

    feed = StatsSubscriber(args.endpoint, topic=f"msg/{args.port}".encode())
    shown = 0
    try:
        while args.n == 0 or shown < args.n:
            got = feed.message(args.timeout)
            if got is None:
                raise TransportError(
                    f"no message from {args.port} on {args.endpoint} in {args.timeout:g} s",
                    fix="check the port name and that the loop runs with --stats",
                )
            topic, message = got
            if topic != args.port:  # a subscription matches prefixes: cam/img2 for cam/img
                continue
            out.print(
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


def hz_command(args: argparse.Namespace) -> int:
    import time

    from edgeloop.runtime.processes.introspection import StatsSubscriber

    feed = StatsSubscriber(args.endpoint, topic=f"msg/{args.port}".encode())
    windows = 0
    try:
        if feed.message(args.timeout) is None:
            raise TransportError(
                f"no message from {args.port} on {args.endpoint} in {args.timeout:g} s",
                fix="check the port name and that the loop runs with --stats",
            )
        while args.count == 0 or windows < args.count:
            start, seen = time.monotonic(), 0
            while (left := start + args.window - time.monotonic()) > 0:
                got = feed.message(left)
                if got is not None and got[0] == args.port:
                    seen += 1
            span = time.monotonic() - start
            out.print(
                f"{args.port}: {seen / span:.1f} Hz ({seen} messages in {span:.2f} s)",
                highlight=False,
            )
            windows += 1
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
    return 0
