"""What every command family shares: the consoles, options defined once, checks.

An option two commands take (``--seed``, ``--duration``, ``--json``, ...) is
defined here, once, with its help text and its check, so ``edgeloop run`` and
``edgeloop sim`` cannot drift apart.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from edgeloop.runtime.errors import UsageError
from edgeloop.runtime.imports import ENV_VAR, import_policy, restrict_imports
from edgeloop.runtime.limits import MAX_COUNT, MAX_DURATION_S, MAX_MS
from edgeloop.runtime.plugins import PluginRegistry, import_plugin

out = Console(soft_wrap=True)
"""Results: tables, reports."""
err = Console(stderr=True, soft_wrap=True)
"""Everything else: progress, warnings, errors."""
if not out.is_terminal:  # piped or redirected: no terminal width to fit tables into
    out.width = 160

DEFAULT_STATS = "ipc:///tmp/edgeloop-stats"
"""Where ``edgeloop run --stats`` publishes and ``top``/``echo``/``hz`` listen."""


# -- value types: argparse calls them, and prints their message on a bad value -----------


def positive_seconds(text: str) -> float:
    """A duration: a finite number of seconds above zero, at most ten years
    (``MAX_DURATION_S``: the run's end in ns must fit the executor's int64 clock)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, got {_shown(text)} (fix: e.g. 10)"
        )
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_DURATION_S:,} seconds (ten years), got {_shown(text)} "
            "(fix: use a shorter duration)"
        )
    return value


def non_negative_ms(text: str) -> float:
    """A number of milliseconds from 0 to one day (``MAX_MS``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_MS):
        raise argparse.ArgumentTypeError(
            f"must be a number of milliseconds from 0 to {MAX_MS:,}, got {_shown(text)} "
            "(fix: e.g. 100)"
        )
    return value


def whole_number(low: int, high: int = MAX_COUNT) -> Any:
    """An int type from ``low`` to ``high`` (by default ``MAX_COUNT``, 10**12)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a whole number, got {_shown(text)}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {_shown(text)}")
        if value > high:
            raise argparse.ArgumentTypeError(
                f"must be at most {high:,}, got {_shown(text)} (fix: use a smaller number)"
            )
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def _shown(text: str) -> str:
    """An option's value as an error quotes it: 10**5000 is not printed in full."""
    return repr(text if len(text) <= 40 else text[:30] + "..." + text[-6:])


# -- options defined once -------------------------------------------------------------------


def add_seed(parser: argparse.ArgumentParser, *, default: int | None = 0, what: str = "") -> None:
    shown = f" (default {default})" if default is not None else ""
    parser.add_argument(
        "--seed",
        type=whole_number(0),
        default=default,
        metavar="N",
        help=(what or "seed for node random generators and simulated plants") + shown,
    )


def add_duration(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    parser.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="S",
        help=f"seconds of clock time to run (default: {default_help})",
    )


def add_json(parser: argparse.ArgumentParser, what: str = "the report") -> None:
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help=f"also write {what} as JSON to FILE"
    )


def add_record(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE.mcap",
        help="record every message (topic /NODE/PORT) into an MCAP file Foxglove opens; "
        "needs the record extra",
    )


def add_record_policy(parser: argparse.ArgumentParser) -> None:
    """How often a recording reaches its file (``run``; a scenario keeps the defaults)."""
    parser.add_argument(
        "--record-flush-ms",
        type=non_negative_ms,
        default=100.0,
        metavar="MS",
        help="flush the recording to its file at least this often, so a killed run "
        "loses at most that much (0: every message; default 100)",
    )
    parser.add_argument(
        "--record-fsync",
        action="store_true",
        help="also fsync at every flush, so a power cut loses no more either (slower)",
    )


def add_plugins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        dest="plugins",
        help="load a plugin that is not installed, by import path (repeatable); "
        "the current folder is importable",
    )


def add_allow_import(parser: argparse.ArgumentParser, what: str = "graph") -> None:
    parser.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="PKG",
        dest="allow_import",
        help=f"let the {what} name code of package PKG by import path (a world, a network, "
        f"a gymnasium id PKG.mod:Env-v0); repeatable, or {ENV_VAR}=PKG,PKG. Installed "
        f"plugins, edgeloop, --plugin modules and modules beside the {what} need no option",
    )


def add_quiet(parser: argparse.ArgumentParser, what: str = "no progress bar and no table") -> None:
    parser.add_argument("--quiet", action="store_true", help=f"print {what}")


def add_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default=DEFAULT_STATS,
        help=f"where the loop publishes: its --stats endpoint (default {DEFAULT_STATS})",
    )


# -- shared steps ---------------------------------------------------------------------------


def registry(plugins: list[str] | tuple[str, ...] = ()) -> PluginRegistry:
    """Installed plugins plus ``plugins`` (import paths); each that failed to load is
    named on stderr, and the others still load."""
    loaded = PluginRegistry(plugins={path: import_plugin(path) for path in plugins})
    for failure in loaded.failures:
        err.print(
            f"[yellow]warning:[/] plugin '{failure.name}' failed to load: {escape(failure.error)}",
            highlight=False,
        )
    return loaded


def under_import_policy(
    file: str, source: str = "the graph"
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Run a command handler under the import policy of the file in ``args.<file>``:
    what that graph or scenario names by import path is imported only if installed,
    allowed (``--allow-import``, ``--plugin``) or beside the file
    (:mod:`edgeloop.runtime.imports`)."""

    def decorate(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            policy = import_policy(
                allow=args.allow_import,
                plugins=args.plugins,
                file=getattr(args, file),
                source=source,
            )
            with restrict_imports(policy):
                return handler(args)

        return run

    return decorate


def check_writable(path: Path, option: str = "--json") -> None:
    """Refuse an output path that cannot be written before the work, not after it."""
    if path.is_dir():
        raise UsageError(
            f"{option} {path} is a folder", fix=f"name a file, e.g. {path / 'report.json'}"
        )
    if not path.parent.is_dir():
        raise UsageError(
            f"{option} {path}: {path.parent} is not an existing folder", fix="create it first"
        )


def write_text(path: Path, text: str, option: str = "--json") -> None:
    """Write an output file, as a user error if it cannot be written."""
    try:
        path.write_text(text)
    except OSError as exc:
        raise UsageError(
            f"cannot write {option} {path}: {exc.strerror}", fix="choose another path"
        ) from None
