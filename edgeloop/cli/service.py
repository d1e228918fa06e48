"""``edgeloop service``: run a loop as a systemd service that starts at boot.

``install`` checks the graph, writes a unit of ``Type=notify`` (the loop says
when it is ready, and feeds the watchdog from its own liveness: see
``runtime/systemd.py``) and enables it; ``status``, ``logs`` and ``uninstall``
wrap systemctl and journalctl. The unit runs ``edgeloop run`` with this
Python, in the graph's folder, with journald log lines, and writes the final
report to ``%S/edgeloop-NAME/report.json`` (``/var/lib`` for a system unit,
``~/.local/state`` for a ``--user`` one). Real-time options in the graph or
given here raise the unit's limits (``LimitRTPRIO``, ``LimitMEMLOCK``) so the
OS grants them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgeloop.cli._common import add_allow_import, add_plugins, err, out, registry
from edgeloop.cli.realtime_flags import add_realtime, apply_realtime_flags, realtime_argv
from edgeloop.runtime.errors import UsageError
from edgeloop.runtime.graph import LoopGraph
from edgeloop.runtime.validation import load_and_check

SYSTEM_UNITS = Path("/etc/systemd/system")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def register(commands: Any) -> None:
    service = commands.add_parser(
        "service",
        help="run a loop as a systemd service (install, status, logs, uninstall)",
        description="Run a loop as a systemd service that starts at boot. install checks "
        "the graph and writes a Type=notify unit: the loop tells systemd when it is ready, "
        "and feeds the watchdog while no step is stuck, so a hung loop is restarted. The "
        "unit runs edgeloop run with this Python in the graph's folder, logs to the "
        "journal, and writes the final report to /var/lib/edgeloop-NAME/report.json "
        "(~/.local/state/... for --user). status, logs and uninstall wrap systemctl and "
        "journalctl.",
    )
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")

    install = actions.add_parser(
        "install",
        help="write, enable and start a unit that runs the graph",
        description="Check the graph, write the unit edgeloop-NAME.service and (unless "
        "--no-enable) reload systemd, enable it at boot and start it.",
    )
    install.add_argument("graph", type=Path, help="loop graph YAML file")
    _add_name(install)
    install.add_argument(
        "--unit-dir",
        type=Path,
        help=f"write the unit here instead (default {SYSTEM_UNITS}, or "
        "~/.config/systemd/user with --user)",
    )
    install.add_argument(
        "--no-enable", action="store_true", help="only write the unit (e.g. for an image)"
    )
    install.add_argument(
        "--watchdog-s",
        type=float,
        default=10.0,
        metavar="S",
        help="systemd restarts the loop when it hears no sign of life for this long; a step "
        "running longer than half of it counts as stuck (default 10; 0: no watchdog)",
    )
    install.add_argument(
        "--start-timeout-s",
        type=float,
        default=300.0,
        metavar="S",
        help="time allowed for setup, until the loop is ready (default 300: a TensorRT "
        "engine build takes minutes)",
    )
    install.add_argument(
        "--restart",
        choices=("on-failure", "always"),
        default="on-failure",
        help="restart after a crash, a hang or a stop policy's exit (on-failure, the "
        "default), or after any end",
    )
    install.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the loop (repeatable)",
    )
    add_realtime(install)
    add_plugins(install)
    add_allow_import(install)
    install.set_defaults(handler=install_command)

    for action, what in (
        ("status", "show whether the loop runs (systemctl status)"),
        ("uninstall", "stop and disable the loop and remove its unit"),
    ):
        command = actions.add_parser(action, help=what, description=what)
        _add_name(command, positional=True)
        if action == "uninstall":
            command.add_argument("--unit-dir", type=Path, help="where the unit was written")
        command.set_defaults(handler=status_command if action == "status" else uninstall_command)

    logs = actions.add_parser(
        "logs", help="print the loop's log (journalctl)", description="print the loop's log"
    )
    _add_name(logs, positional=True)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=100, help="lines to show (default 100)")
    logs.set_defaults(handler=logs_command)


def _add_name(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    help_text = "service name: the unit is edgeloop-NAME.service"
    if positional:
        parser.add_argument("name", help=help_text)
    else:
        parser.add_argument("--name", required=True, help=help_text)
    parser.add_argument("--user", action="store_true", help="a user unit (systemctl --user)")


def unit_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"service name {name[:40]!r} is not a name systemd and edgeloop both take",
            fix="letters, digits, - and _, starting with a letter or digit, at most 64",
            where="--name",
        )
    return f"edgeloop-{name}.service"


def unit_text(
    graph_file: Path,
    graph: LoopGraph,
    name: str,
    *,
    user: bool,
    run_flags: list[str],
    watchdog_s: float,
    start_timeout_s: float,
    restart: str,
    env: dict[str, str],
) -> str:
    """The unit file for running ``graph_file`` (already checked) as service ``name``."""
    state = f"edgeloop-{name}"
    words = [_exec_word(w) for w in (sys.executable, "-m", "edgeloop", "run", str(graph_file))]
    # %S: the state folder systemd makes (StateDirectory), /var/lib or ~/.local/state
    words += ["--json", f"%S/{state}/report.json", "--quiet", "--log-format", "journal"]
    words += [_exec_word(w) for w in run_flags]
    lines = [
        "[Unit]",
        f"Description=edgeloop loop {_unit_value(graph.name)} ({_unit_value(str(graph_file))})",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=10",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(words),
        f"WorkingDirectory={_unit_value(str(graph_file.parent))}",
        f"StateDirectory={state}",
        "Environment=PYTHONUNBUFFERED=1",
        *(f"Environment={_exec_word(f'{k}={v}')}" for k, v in env.items()),
        f"Restart={restart}",
        "RestartSec=2",
        f"TimeoutStartSec={start_timeout_s:g}",
        "TimeoutStopSec=30",
    ]
    if watchdog_s > 0:
        lines.append(f"WatchdogSec={watchdog_s:g}")
    if graph.realtime.priority is not None:
        lines.append("LimitRTPRIO=99")
    if graph.realtime.lock_memory:
        lines.append("LimitMEMLOCK=infinity")
    lines += [
        f"SyslogIdentifier={state}",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def _unit_value(text: str) -> str:
    """A value as a unit file reads it literally: ``%`` is a specifier there."""
    return text.replace("%", "%%")


def _exec_word(word: str) -> str:
    """One word of ``ExecStart=``: specifiers and variables escaped, quoted if needed."""
    word = _unit_value(word).replace("$", "$$")
    if re.search(r"[\s\"'\\;]", word) or not word:
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def _run_flags(args: argparse.Namespace) -> list[str]:
    """The flags of ``edgeloop run`` that this install was given, passed on."""
    flags = realtime_argv(args)
    for plugin in args.plugins:
        flags += ["--plugin", plugin]
    for package in args.allow_import:
        flags += ["--allow-import", package]
    return flags


def install_command(args: argparse.Namespace) -> int:
    unit = unit_name(args.name)
    graph_file = args.graph.resolve()
    graph = load_and_check(graph_file, registry(args.plugins))
    apply_realtime_flags(args, graph)  # checked here, and the limits the unit needs
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(
                f"--env {item[:40]!r} is not KEY=VALUE", fix="e.g. --env ROS_DOMAIN_ID=7"
            )
        env[key] = value
    if args.watchdog_s < 0 or args.start_timeout_s <= 0:
        raise UsageError(
            "--watchdog-s must be >= 0 and --start-timeout-s > 0", fix="e.g. --watchdog-s 10"
        )
    text = unit_text(
        graph_file,
        graph,
        args.name,
        user=args.user,
        run_flags=_run_flags(args),
        watchdog_s=args.watchdog_s,
        start_timeout_s=args.start_timeout_s,
        restart=args.restart,
        env=env,
    )
    folder = args.unit_dir or _unit_dir(args.user)
    path = folder / unit
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise UsageError(
            f"cannot write the unit {path}: {exc.strerror}",
            fix="run as root (sudo) for a system unit, or add --user",
        ) from None
    out.print(f"wrote {path}", highlight=False)
    if args.no_enable:
        flag = " --user" if args.user else ""
        out.print(f"enable it with: systemctl{flag} enable --now {unit}", highlight=False)
        return 0
    _systemctl(args.user, "daemon-reload")
    _systemctl(args.user, "enable", "--now", unit)
    out.print(f"{unit} enabled and started; edgeloop service logs {args.name}", highlight=False)
    return 0


def _unit_dir(user: bool) -> Path:
    return Path.home() / ".config" / "systemd" / "user" if user else SYSTEM_UNITS


def _tool(name: str) -> str:
    """The path of systemctl or journalctl, or a clear error where there is none."""
    path = shutil.which(name)
    if path is None:
        raise UsageError(f"{name} is not installed here", fix="run this on the board")
    return path


def _systemctl(user: bool, *words: str, check: bool = True) -> int:
    tool = _tool("systemctl")
    done = subprocess.run(
        [tool, *(["--user"] if user else []), *words], capture_output=True, text=True
    )
    if check and done.returncode != 0:
        raise UsageError(
            f"systemctl {' '.join(words)} failed: {done.stderr.strip() or done.returncode}",
            fix="is systemd running here (PID 1)? The unit file is kept; "
            "enable it on the board with systemctl enable --now",
        )
    return done.returncode


def status_command(args: argparse.Namespace) -> int:
    unit = unit_name(args.name)
    return subprocess.run(
        [_tool("systemctl"), *(["--user"] if args.user else []), "status", "--no-pager", unit]
    ).returncode


def logs_command(args: argparse.Namespace) -> int:
    unit = unit_name(args.name)
    user = ["--user"] if args.user else []
    command = [_tool("journalctl"), *user, "--unit", unit, "--no-pager"]
    command += ["--lines", str(args.lines)] + (["--follow"] if args.follow else [])
    try:
        return subprocess.run(command).returncode
    except KeyboardInterrupt:  # the end of --follow
        return 0


def uninstall_command(args: argparse.Namespace) -> int:
    unit = unit_name(args.name)
    path = (args.unit_dir or _unit_dir(args.user)) / unit
    if not path.exists():
        raise UsageError(f"no unit {path}", fix="check the name (and --user or --unit-dir)")
    if args.unit_dir is None:
        _systemctl(args.user, "disable", "--now", unit, check=False)
    path.unlink()
    if args.unit_dir is None:
        _systemctl(args.user, "daemon-reload", check=False)
    err.print(f"removed {path}", highlight=False)
    return 0
