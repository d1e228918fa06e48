"""The fault matrix's cells that do more than run a graph: kill a run, a
supervisor or a group mid-run, damage a recording, name code to run.

Each takes an empty folder and a time limit and returns ``(outcome, detail)``
with the outcomes of ``fault_matrix.py`` (handled, died, traceback, silent,
hung). Used by ``fault_matrix.py``; not run by itself.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PENDULUM = ROOT / "examples" / "pendulum"
Outcome = tuple[str, str]


def edgeloop(folder: Path, *args: str, limit_s: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edgeloop", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=limit_s)


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "edgeloop", *args]
    return subprocess.Popen(
        command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_for(ready: Callable[[], bool], run: subprocess.Popen[str], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while not ready():
        if run.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def traceback_in(*texts: str) -> str | None:
    """The last line of a Python traceback in any of ``texts``, or None."""
    for text in texts:
        if "Traceback (most recent call last)" in text:
            return text.strip().splitlines()[-1][:60]
    return None


def killed_run(folder: Path, limit_s: float) -> Outcome:
    """`run --record` SIGKILLed after its first flushes: readable, then repaired."""
    run = start(
        folder,
        "run",
        str(PENDULUM / "loop.yaml"),
        "--record",
        "r.mcap",
        "--record-flush-ms",
        "20",
        "--duration",
        "60",
        "--quiet",
    )
    path = folder / "r.mcap"
    if not wait_for(lambda: path.exists() and path.stat().st_size > 4000, run, limit_s):
        run.kill()
        return "died", f"no flushed recording: {run.stderr.read()[-60:] if run.stderr else ''}"
    run.send_signal(signal.SIGKILL)
    run.wait()
    return _repaired(folder, "r.mcap", limit_s)


def killed_supervisor(folder: Path, limit_s: float) -> Outcome:
    """A split run's supervisor SIGKILLed: its parts are merged by repair."""
    run = start(
        folder,
        "run",
        str(PENDULUM / "processes.yaml"),
        "--record",
        "g.mcap",
        "--record-flush-ms",
        "20",
        "--duration",
        "60",
        "--quiet",
    )
    parts = folder / "g.mcap.parts"

    def flushed() -> bool:
        found = list(parts.glob("*.mcap")) if parts.is_dir() else []
        return len(found) == 2 and all(p.stat().st_size > 2000 for p in found)

    if not wait_for(flushed, run, limit_s):
        run.kill()
        return "died", "the parts were never flushed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    if (folder / "g.mcap").exists():
        return "silent", "a merged file from a killed supervisor?"
    return _repaired(folder, "g.mcap", limit_s)


def _repaired(folder: Path, name: str, limit_s: float) -> Outcome:
    repair = edgeloop(folder, "recording", "repair", name, limit_s=limit_s)
    info = edgeloop(folder, "recording", "info", name, limit_s=limit_s)
    if (problem := traceback_in(repair.stderr, info.stderr)) is not None:
        return "traceback", problem
    whole = re.search(r"whole: ([\d,]+) messages", info.stdout)
    if repair.returncode != 0 or info.returncode != 0 or whole is None:
        return "died", f"repair exit {repair.returncode}, info exit {info.returncode}"
    return "handled", f"repaired: {whole.group(1)} messages kept"


def killed_group(signum: int) -> Callable[[Path, float], Outcome]:
    """A group of a split run killed or frozen: its figures and lost messages reported."""

    def cell(folder: Path, limit_s: float) -> Outcome:
        graph = folder / "split.yaml"
        data = yaml.safe_load((PENDULUM / "processes.yaml").read_text())
        data.setdefault("groups", {}).setdefault("control", {})["heartbeat_timeout_ms"] = 400
        graph.write_text(yaml.safe_dump(data, sort_keys=False))
        command = [
            sys.executable,
            "-m",
            "edgeloop",
            "run",
            str(graph),
            "--duration",
            "4",
            "--json",
            "report.json",
            "--record",
            "g.mcap",
            "--record-flush-ms",
            "20",
        ]
        run = subprocess.Popen(
            command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert run.stderr is not None
        pid = None
        for line in run.stderr:  # readiness: "started: plant (pid N), control (pid M)"
            found = re.search(r"control \(pid (\d+)\)", line)
            if found:
                pid = int(found.group(1))
                break
        if pid is None:
            run.wait()
            return "died", "the groups never started"
        part = folder / "g.mcap.parts" / "control.0.mcap"
        if not wait_for(lambda: part.exists() and part.stat().st_size > 2000, run, limit_s):
            run.kill()  # readiness: it has run (and beaten) long enough to flush actions
            return "died", "the control group never recorded"
        subprocess.run(["kill", f"-{signal.Signals(signum).name[3:]}", str(pid)], check=False)
        try:
            _, err = run.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            run.kill()
            return "hung", "the run did not end"
        if (problem := traceback_in(err)) is not None:
            return "traceback", problem
        report_file = folder / "report.json"
        if run.returncode != 0 or not report_file.exists():
            return "died", f"exit {run.returncode}"
        report = json.loads(report_file.read_text())
        controller = next(n for n in report["nodes"] if n["id"] == "controller")
        lost = [f for f in report["fault_log"] if f["kind"] == "lost_messages"]
        if "figures" not in controller["notes"]:
            return "silent", "the dead process's figures are gone"
        if signum == signal.SIGSTOP and not lost:
            return "silent", "messages sent into the frozen group not counted"
        extra = f", {lost[0]['error'].split(' sent')[0]} lost" if lost else ""
        return "handled", f"its figures kept{extra}"

    return cell


def flipped_bits(folder: Path, limit_s: float) -> Outcome:
    """45 single-bit flips of a recording, each read by `recording info`."""
    made = edgeloop(
        folder,
        "run",
        str(PENDULUM / "loop.yaml"),
        "--sim",
        "--duration",
        "0.2",
        "--record",
        "r.mcap",
        "--quiet",
        limit_s=limit_s,
    )
    if made.returncode != 0:
        return "died", "could not make the recording"
    whole = bytearray((folder / "r.mcap").read_bytes())
    outcomes = {"read": 0, "refused": 0}
    for k in range(45):
        bit = (k * len(whole) * 8) // 45 + 3
        damaged = bytearray(whole)
        damaged[bit // 8] ^= 1 << (bit % 8)
        (folder / "f.mcap").write_bytes(damaged)
        info = edgeloop(folder, "recording", "info", "f.mcap", limit_s=limit_s)
        if (problem := traceback_in(info.stderr, info.stdout)) is not None:
            return "traceback", f"bit {bit}: {problem}"
        if info.returncode not in (0, 1, 2):
            return "died", f"bit {bit}: exit {info.returncode}"
        outcomes["read" if info.returncode == 0 else "refused"] += 1
    return "handled", f"{outcomes['read']} read, {outcomes['refused']} refused with a reason"


def named_code(folder: Path, limit_s: float) -> Outcome:
    """A graph whose world names os:system: refused, the command never run."""
    marker = folder / "pwned"
    (folder / "g.yaml").write_text(
        "name: w\nnodes:\n  - id: world\n    type: world\n    rate_hz: 10\n"
        f"    config: {{env: 'os:system', kwargs: {{command: 'touch {marker}'}}, "
        "agents: [robot_0]}\n"
    )
    result = edgeloop(folder, "run", "g.yaml", "--sim", "--duration", "1", limit_s=limit_s)
    if (problem := traceback_in(result.stderr)) is not None:
        return "traceback", problem
    if marker.exists():
        return "silent", "the shell command ran"
    if result.returncode != 2 or "--allow-import" not in result.stderr:
        return "died", f"exit {result.returncode}"
    return "handled", "refused, naming what to allow"


def hostile_shared_memory(folder: Path, limit_s: float) -> Outcome:
    """A same-user peer shrinking a slot, handing over a hardlink, naming another
    edge's live slot: the attacks of tests/reliability/test_shared_memory.py, run
    against real processes and sockets."""
    chosen = "shrink or truncating or hardlink or another_edge or not_a_sealed"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        chosen,
        str(ROOT / "tests" / "reliability" / "test_shared_memory.py"),
    ]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=limit_s)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0:
        return "died", summary[:60] or f"exit {result.returncode}"
    return "handled", f"survived and counted: {summary[:40]}"


CELLS: dict[str, Callable[[Path, float], Outcome]] = {
    "recording, run SIGKILLed": killed_run,
    "recording, supervisor SIGKILLed": killed_supervisor,
    "group SIGKILLed": killed_group(signal.SIGKILL),
    "group SIGSTOPped": killed_group(signal.SIGSTOP),
    "recording, 45 single-bit flips": flipped_bits,
    "graph naming os:system": named_code,
    "shared memory, hostile peer": hostile_shared_memory,
}
"""Name -> procedure, in the order the matrix prints them."""
