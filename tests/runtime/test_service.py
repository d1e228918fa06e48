"""A loop as a systemd service: the unit ``edgeloop service install`` writes, and
the sd_notify messages the loop sends, received on a real Unix datagram socket.

systemd is not PID 1 here, so ``systemctl`` cannot start the unit: the restart
by the watchdog is documented, not tested. ``systemd-analyze verify`` reads the
unit as systemd would.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import edgeloop_cli

GRAPH = """\
name: served
nodes:
  - {id: source, type: constant, rate_hz: 50, config: {value: [1.0]}}
  - {id: sink, type: log, inputs: {action: source/action}, config: {every: 1000000}}
"""
STUCK = """\
name: stuck
nodes:
  - {id: source, type: constant, rate_hz: 50, config: {value: [1.0]}}
  - id: ctl
    type: testing.faulty
    inputs: {value: source/action}
    config: {fault: overrun, on_step: 25, seconds: 1.5}
  - {id: sink, type: log, inputs: {action: ctl/value}, config: {every: 1000000}}
"""


# -- the unit ------------------------------------------------------------------------------


def verify(unit: Path) -> str:
    """What ``systemd-analyze verify`` says of a unit (empty: nothing wrong)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    return (done.stdout + done.stderr).strip()


def test_the_unit_systemd_reads_without_a_complaint_and_raises_the_limits_it_needs(tmp_path):
    folder = tmp_path / "my loop %h"  # a space and a specifier sign in the path
    folder.mkdir()
    (folder / "loop.yaml").write_text(GRAPH)
    done = edgeloop_cli(
        folder,
        *("service", "install", "loop.yaml", "--name", "demo", "--unit-dir", str(tmp_path)),
        *("--no-enable", "--priority", "80", "--lock-memory", "--env", "ROBOT=arm 1"),
    )
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "edgeloop-demo.service"
    text = unit.read_text()
    assert verify(unit) == ""
    assert "Type=notify" in text and "WatchdogSec=10" in text
    assert "LimitRTPRIO=99" in text and "LimitMEMLOCK=infinity" in text
    assert f'"{folder}/loop.yaml"'.replace("%", "%%") in text
    assert "--json %S/edgeloop-demo/report.json" in text and "--priority 80" in text
    assert 'Environment="ROBOT=arm 1"' in text
    assert "WantedBy=multi-user.target" in text
    # The check is not blind: a unit broken on purpose draws a complaint.
    broken = tmp_path / "edgeloop-broken.service"
    broken.write_text(text.replace("Type=notify", "Type=notifyy"))
    assert "Failed to parse service type" in verify(broken)


def test_a_user_unit_without_real_time_options_asks_for_no_limits(tmp_path):
    (tmp_path / "loop.yaml").write_text(GRAPH)
    done = edgeloop_cli(
        tmp_path,
        *("service", "install", "loop.yaml", "--name", "u1", "--user", "--no-enable"),
        *("--unit-dir", str(tmp_path), "--watchdog-s", "0"),
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "edgeloop-u1.service").read_text()
    assert "WantedBy=default.target" in text
    assert "LimitRTPRIO" not in text and "LimitMEMLOCK" not in text
    assert "WatchdogSec" not in text


def test_a_broken_graph_or_name_installs_nothing(tmp_path):
    (tmp_path / "loop.yaml").write_text(GRAPH.replace("rate_hz: 50", "rate_hz: -1"))
    done = edgeloop_cli(
        tmp_path, "service", "install", "loop.yaml", "--name", "x", "--unit-dir", "units"
    )
    assert done.returncode == 2 and "rate_hz" in done.stderr and "Traceback" not in done.stderr
    done = edgeloop_cli(
        tmp_path, "service", "install", "loop.yaml", "--name", "../x", "--unit-dir", "units"
    )
    assert done.returncode == 2 and "service name '../x'" in done.stderr
    assert not (tmp_path / "units").exists()


# -- sd_notify -----------------------------------------------------------------------------


class NotifySocket:
    """A Unix datagram socket standing in for systemd's ``NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.received: list[tuple[float, dict[str, str]]] = []

    def next(self, timeout_s: float = 60.0) -> dict[str, str]:
        self.socket.settimeout(timeout_s)
        data = self.socket.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.splitlines())
        self.received.append((time.monotonic(), fields))
        return fields

    def until(self, key: str) -> dict[str, str]:
        while True:
            fields = self.next()
            if key in fields:
                return fields

    def pings(self) -> list[float]:
        return [t for t, fields in self.received if "WATCHDOG" in fields]


def served(tmp_path: Path, graph: str, *extra: str) -> tuple[subprocess.Popen[str], NotifySocket]:
    (tmp_path / "loop.yaml").write_text(graph)
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"}
    env.pop("JOURNAL_STREAM", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", "loop.yaml", "--json", "report.json", *extra],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return process, notify


def test_the_loop_says_ready_feeds_the_watchdog_and_says_stopping(tmp_path):
    process, notify = served(tmp_path, GRAPH, "--duration", "2", "--quiet")
    ready = notify.until("READY")
    assert ready["READY"] == "1" and ready["STATUS"] == "running served"
    assert ready["MAINPID"] == str(process.pid)
    stopping = notify.until("STOPPING")
    assert stopping["STATUS"] == "stopped: duration reached"
    assert process.wait(60) == 0, process.stderr.read()
    assert len(notify.pings()) >= 3  # one every 100 ms while the loop ran
    assert json.loads((tmp_path / "report.json").read_text())["stop_reason"] == "duration reached"


def test_a_stuck_step_stops_the_watchdog_pings_until_it_is_done(tmp_path):
    process, notify = served(
        tmp_path, STUCK, "--duration", "3", "--quiet", "--plugin", "edgeloop.testing"
    )
    notify.until("READY")
    notify.until("STOPPING")
    assert process.wait(60) == 0, process.stderr.read()
    pings = notify.pings()
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # 1.5 s in one step: no ping for over a second (systemd, at 0.2 s, would have
    # restarted it), then pings again once the loop moved on.
    assert max(gaps) >= 1.0
    assert gaps.index(max(gaps)) < len(gaps) - 1


def test_sigterm_ends_the_loop_as_ctrl_c_does_with_its_report(tmp_path):
    process, notify = served(tmp_path, GRAPH, "--quiet")
    notify.until("READY")
    process.terminate()
    notify.until("STOPPING")
    assert process.wait(60) == 0, process.stderr.read()
    assert json.loads((tmp_path / "report.json").read_text())["stop_reason"] == "interrupted"


def test_journal_lines_carry_their_level_and_stay_one_line_each():
    import logging

    from edgeloop.runtime.systemd import JournalFormatter

    formatter = JournalFormatter("%(name)s: %(message)s")

    def line(level: int, message: str) -> str:
        return formatter.format(logging.LogRecord("edgeloop.x", level, "", 0, message, (), None))

    assert line(logging.ERROR, "a\nb") == "<3>edgeloop.x: a | b"
    assert line(logging.WARNING, "w") == "<4>edgeloop.x: w"
    assert line(logging.INFO, "i") == "<6>edgeloop.x: i"


def test_an_abstract_notify_socket_is_reached_too(tmp_path, monkeypatch):
    from edgeloop.runtime.systemd import Notifier

    name = f"edgeloop-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog: not ours
    notifier = Notifier.from_environment()
    assert notifier is not None and notifier.watchdog_s is None
    notifier.ready("up")
    assert receiver.recv(4096).decode().splitlines()[:2] == ["READY=1", "STATUS=up"]
    notifier.close()
    receiver.close()


def test_under_the_journal_each_event_is_one_line_with_its_level(tmp_path):
    (tmp_path / "loop.yaml").write_text(
        STUCK.replace("fault: overrun, on_step: 25, seconds: 1.5", "fault: raise, on_step: 3")
    )
    done = edgeloop_cli(
        tmp_path,
        *("run", "loop.yaml", "--sim", "--duration", "0.2", "--quiet"),
        *("--plugin", "edgeloop.testing"),
        env={"JOURNAL_STREAM": "8:12345"},  # what systemd sets: journal mode
    )
    lines = done.stderr.splitlines()
    assert lines[0] == "<6>edgeloop.executor: loop 'stuck' started: 3 nodes"
    faults = [line for line in lines if line.startswith("<6>edgeloop.faults: ")]
    assert faults and "node 'ctl' exception: RuntimeError" in faults[0]
    assert lines[-1].startswith("<6>edgeloop.executor: loop 'stuck' stopped after")
    assert all(line.startswith("<") for line in lines)  # nothing unprefixed, no wrapped lines
