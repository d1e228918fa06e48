"""``edgeloop run``'s real-time flags: each overrides a field of the graph's
``realtime:`` section (and the flags a service unit passes on)."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from edgeloop.cli._common import whole_number
from edgeloop.runtime.errors import UsageError
from edgeloop.runtime.graph import LoopGraph, RealtimeSpec
from edgeloop.runtime.limits import MAX_CPU


def cpu_list(text: str) -> list[int]:
    """CPUs as Linux writes them: ``2,3``, ``4-7`` or ``0,2-3``."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if not 0 <= first <= last <= MAX_CPU:
                raise ValueError
            cpus.update(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be CPU numbers from 0 to {MAX_CPU} like 2,3 or 4-7, got {text[:40]!r}"
        ) from None
    return sorted(cpus)


def add_realtime(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "real time",
        "each overrides the graph's realtime: section; applied after the nodes are set up, "
        "undone when the loop ends; a refused option stops the run with the limit to raise",
    )
    group.add_argument(
        "--cpus", type=cpu_list, metavar="LIST", help="CPUs the loop runs on, e.g. 2,3 or 2-3"
    )
    group.add_argument(
        "--priority",
        type=whole_number(1, 99),
        metavar="N",
        help="real-time priority 1-99 of the loop's thread (SCHED_FIFO; needs CAP_SYS_NICE "
        "or an rtprio limit)",
    )
    group.add_argument(
        "--lock-memory",
        action="store_true",
        default=None,
        help="lock the process's memory after setup (mlockall MCL_CURRENT; needs "
        "CAP_IPC_LOCK or a memlock limit above the process's size)",
    )
    group.add_argument(
        "--gc",
        choices=("default", "between-ticks", "off"),
        help="Python's garbage collector: default, only between ticks (setup's objects "
        "frozen), or off",
    )
    group.add_argument(
        "--spin-us",
        type=float,
        metavar="US",
        help="spin this long before a timer is due instead of sleeping (default 200; 0 never)",
    )
    group.add_argument(
        "--best-effort",
        action="store_true",
        default=None,
        help="run on when the OS refuses an option, listing it in the report",
    )


FIELDS = ("cpus", "priority", "lock_memory", "gc", "spin_us", "best_effort")
"""The ``realtime:`` fields the flags set, each flag named after its field."""


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, field) for field in FIELDS if getattr(args, field) is not None}


def realtime_argv(args: argparse.Namespace) -> list[str]:
    """The real-time flags given, as ``edgeloop run`` takes them (a service passes them on)."""
    argv: list[str] = []
    for field, value in _given(args).items():
        flag = "--" + field.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif field == "cpus":
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


def apply_realtime_flags(args: argparse.Namespace, graph: LoopGraph) -> None:
    """The graph's ``realtime:`` with the flags given laid over it (checked)."""
    given = _given(args)
    if "gc" in given:
        given["gc"] = given["gc"].replace("-", "_")
    if not given:
        return
    try:
        graph.realtime = RealtimeSpec.model_validate(
            {**graph.realtime.model_dump(exclude_defaults=True), **given}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise UsageError(f"{flag}: {first['msg']}", fix="see edgeloop run --help") from None
