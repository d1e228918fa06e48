"""The ``edgeloop`` command line: one module per command family.

=================  ==================================================
module             commands
=================  ==================================================
``loops``          run, validate, graph, replay
``scenarios``      sim
``catalog``        plugins (list, show), profiles (list, show)
``models``         export, precheck, warmup
``training``       train, evaluate, compare
``live``           top, echo, hz
``keys``           keys
``recordings``     recording (info, repair)
``service``        service (install, status, logs, uninstall)
=================  ==================================================

Each module owns its subparsers and handlers (``register(commands)``); options
two families share are defined once in ``_common``. User errors print one
message, without a traceback, and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from rich.markup import escape

from edgeloop.cli import (
    catalog,
    keys,
    live,
    loops,
    models,
    recordings,
    scenarios,
    service,
    training,
)
from edgeloop.cli._common import err
from edgeloop.runtime.errors import EdgeloopError

USER_ERROR = 2
"""Exit code of a run that a user's input stopped (a bad graph, option or file)."""
INTERRUPTED = 130
"""Exit code after a Ctrl-C (128 + SIGINT, as shells report it)."""

_FAMILIES = (loops, scenarios, recordings, service, catalog, models, training, live, keys)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the form every other edgeloop error takes."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument (\S+): ", r"\1 ", message)  # "--seed must be >= 0"
        if "(fix: " not in message:
            message += f" (fix: see `{self.prog} --help`)"
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        err.print(self.format_usage().rstrip(), highlight=False, markup=False)
        raise SystemExit(USER_ERROR)


def parser() -> argparse.ArgumentParser:
    """The whole command line."""
    top = _Parser(
        prog="edgeloop",
        description="Run sensing-to-action loops described as YAML graphs, inspect them, "
        "and train and export the policies they run.",
        epilog="Quick start: edgeloop run examples/pendulum/loop.yaml --sim --duration 20",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in _FAMILIES:
        family.register(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgeloop`` command; returns the exit code."""
    # As `python -m` does: modules in the current folder (a factory to export, a
    # plugin) import without PYTHONPATH=.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except EdgeloopError as exc:  # GraphError and every other user error
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return USER_ERROR
    except KeyboardInterrupt:  # a Ctrl-C before a command's own handling of it
        err.print("interrupted", highlight=False)
        return INTERRUPTED


__all__ = ["USER_ERROR", "main", "parser"]
