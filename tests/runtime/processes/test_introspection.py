"""edgeloop top, echo and hz against a real loop running with --stats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gymnasium")

PENDULUM = Path(__file__).parents[3] / "examples" / "pendulum" / "loop.yaml"


def edgeloop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeloop", *args], capture_output=True, text=True, timeout=timeout
    )


def test_top_echo_and_hz_read_a_running_loop(tmp_path):
    endpoint = f"ipc://{tmp_path}/stats"
    loop = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", str(PENDULUM), "--duration", "8",
         "--stats", endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        top = edgeloop("top", endpoint, "--once", "--timeout", "20")
        assert top.returncode == 0, top.stderr
        assert "pendulum (live)" in top.stdout
        assert all(node in top.stdout for node in ("sensor", "controller", "safety", "motor"))
        echo = edgeloop("echo", "sensor/obs", "--endpoint", endpoint, "-n", "3")
        assert echo.returncode == 0, echo.stderr
        lines = echo.stdout.strip().splitlines()
        seqs = [int(line.split()[1]) for line in lines]
        assert len(lines) == 3 and seqs == list(range(seqs[0], seqs[0] + 3))
        assert "dtype=float32" in lines[0]
        hz = edgeloop("hz", "sensor/obs", "--endpoint", endpoint, "--count", "1")
        assert hz.returncode == 0, hz.stderr
        rate = float(hz.stdout.split(":")[1].split()[0])
        assert rate > 0 and "messages in" in hz.stdout
    finally:
        _, stderr = loop.communicate(timeout=60)
    assert loop.returncode == 0, stderr
    assert f"stats on {endpoint}" in stderr


def test_the_tools_say_clearly_when_no_loop_is_there(tmp_path):
    endpoint = f"ipc://{tmp_path}/nothing"
    top = edgeloop("top", endpoint, "--once", "--timeout", "0.5")
    assert top.returncode == 2 and "no loop publishes stats" in top.stderr
    echo = edgeloop("echo", "sensor/obs", "--endpoint", endpoint, "--timeout", "0.5")
    assert echo.returncode == 2 and "no message from sensor/obs" in echo.stderr
    assert "Traceback" not in top.stderr + echo.stderr
    public = edgeloop("run", str(PENDULUM), "--sim", "--stats", "tcp://0.0.0.0:5999")
    assert public.returncode == 2 and "without CURVE" in public.stderr
