"""edgeloop top, echo and hz against a real loop running with --stats."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gymnasium")

from edgeloop.cli import main

PENDULUM = Path(__file__).parents[3] / "examples" / "pendulum" / "loop.yaml"


def tool(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The edgeloop command in this process (a tool reading a loop needs no process of
    its own): exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_top_echo_and_hz_read_a_running_loop(tmp_path, capsys):
    endpoint = f"ipc://{tmp_path}/stats"
    loop = subprocess.Popen(  # runs until Ctrl-C
        [sys.executable, "-m", "edgeloop", "run", str(PENDULUM), "--stats", endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code, out, err = tool(capsys, "top", endpoint, "--once", "--timeout", "30")
        assert code == 0, err
        assert "pendulum (live)" in out
        assert all(node in out for node in ("sensor", "controller", "safety", "motor"))
        code, out, err = tool(capsys, "echo", "sensor/obs", "--endpoint", endpoint, "-n", "3")
        assert code == 0, err
        lines = out.strip().splitlines()
        seqs = [int(line.split()[1]) for line in lines]
        assert len(lines) == 3 and seqs == list(range(seqs[0], seqs[0] + 3))
        assert "dtype=float32" in lines[0]
        code, out, err = tool(capsys, "hz", "sensor/obs", "--endpoint", endpoint, "--count", "1")
        assert code == 0, err
        rate = float(out.split(":")[1].split()[0])
        assert rate > 0 and "messages in" in out
    finally:
        loop.send_signal(signal.SIGINT)
        _, stderr = loop.communicate(timeout=60)
    assert loop.returncode == 0, stderr
    assert f"stats on {endpoint}" in stderr


def test_the_tools_say_clearly_when_no_loop_is_there(tmp_path, capsys):
    endpoint = f"ipc://{tmp_path}/nothing"
    code, _, err = tool(capsys, "top", endpoint, "--once", "--timeout", "0.5")
    assert code == 2 and "no loop publishes stats" in err
    code, _, err = tool(capsys, "echo", "sensor/obs", "--endpoint", endpoint, "--timeout", "0.5")
    assert code == 2 and "no message from sensor/obs" in err
    code, _, err = tool(capsys, "run", str(PENDULUM), "--sim", "--stats", "tcp://0.0.0.0:5999")
    assert code == 2 and "without CURVE" in err
