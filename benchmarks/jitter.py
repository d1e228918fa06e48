"""Timer jitter and sense-to-act latency under a CPU-hogging neighbour, for each
real-time option of ``edgeloop run`` and for all of them together.

The loop is constant (the sensor, at the rate) -> clamp -> log, with a
sense-to-act contract over the three and a deadline of one period. Each
configuration runs through the real CLI in a process of its own (so no option
outlives its run) while one busy process per core runs beside it, started
before the loop and ending by itself after it: what a camera pipeline does to a
loop. A "quiet" row runs the default settings with no neighbour. Printed per
rate: timer jitter p50/p99/max, sense-to-act p99, overruns (ticks skipped), the
share of a core the spin took, and garbage collections.

Options the OS refuses (a priority without CAP_SYS_NICE, locked memory past the
memlock limit) run with ``--best-effort`` and say so in the row. It fails
unless every run fired its timer on (nearly) every tick and the contract saw
every tick it fired.

    python benchmarks/jitter.py                      # 60 s per row, 50/500/1000 Hz
    python benchmarks/jitter.py --seconds 10 --rates 500
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

GRAPH = """\
name: jitter
nodes:
  - {{id: sensor, type: constant, rate_hz: {rate}, config: {{value: [0.5, -0.5]}}}}
  - {{id: ctl, type: clamp, inputs: {{action: sensor/action}}}}
  - {{id: sink, type: log, inputs: {{action: ctl/action}}, config: {{every: 1000000000}}}}
contracts:
  - {{name: sense_to_act, path: [sensor, ctl, sink], deadline_ms: {period_ms}}}
"""
COLUMNS = (
    "configuration", "jitter p50 µs", "p99 µs", "max µs", "sense-to-act p99 ms",
    "overruns", "spin % core", "gc", "refused",
)  # fmt: skip


def configurations(cpu: int) -> dict[str, list[str]]:
    """Name -> flags of ``edgeloop run``; the neighbour runs beside all but quiet."""
    every = ["--cpus", str(cpu), "--priority", "80", "--lock-memory", "--gc", "between-ticks"]
    return {
        "quiet (no neighbour)": [],
        "default": [],
        f"cpus {cpu}": ["--cpus", str(cpu)],
        "priority 80 (SCHED_FIFO)": ["--priority", "80"],
        "lock memory": ["--lock-memory"],
        "gc between ticks": ["--gc", "between-ticks"],
        "spin 0 (sleep only)": ["--spin-us", "0"],
        "spin 1000 us": ["--spin-us", "1000"],
        "all of cpus, priority, lock, gc": every,
    }


def neighbour(seconds: float) -> list[subprocess.Popen[bytes]]:
    """One busy process per core, each ending by itself after ``seconds``; returns once
    all of them are busy (each says so on stdout)."""
    spin = (
        f"import sys, time\nend = time.monotonic() + {seconds}\nprint('busy', flush=True)\n"
        "while time.monotonic() < end: pass"
    )
    hogs = [
        subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE)
        for _ in range(os.cpu_count() or 1)
    ]
    for hog in hogs:
        assert hog.stdout is not None and hog.stdout.readline() == b"busy\n"
    return hogs


def run_row(folder: Path, flags: list[str], seconds: float, hog: bool) -> dict[str, Any]:
    report = folder / "report.json"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "edgeloop", "run", "loop.yaml", "--duration", str(seconds)]
    command += ["--json", str(report), "--quiet", "--best-effort", *flags]
    hogs = neighbour(seconds + 30) if hog else []  # outlives the run's start-up too
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
    finally:
        for process in hogs:
            process.kill()
            process.wait()
    if done.returncode != 0:
        raise SystemExit(f"edgeloop run {' '.join(flags)} failed:\n{done.stderr}")
    return json.loads(report.read_text())


def row_figures(report: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    timer, contract = report["timers"][0], report["contracts"][0]
    realtime = report["realtime"]["main"]
    expected = rate * report["duration_s"]
    if timer["fired"] + timer["overruns"] < 0.95 * expected or timer["fired"] < 0.5 * expected:
        raise SystemExit(
            f"the timer fired {timer['fired']} times and skipped {timer['overruns']} "
            f"of {expected:.0f} ticks: not a measurement of this loop"
        )
    if contract["count"] < timer["fired"] - 1:
        raise SystemExit(f"the contract saw {contract['count']} of {timer['fired']} ticks")
    return {
        "p50": timer["jitter_p50_us"],
        "p99": timer["jitter_p99_us"],
        "max": timer["jitter_max_us"],
        "act_p99_ms": contract["p99_ms"],
        "overruns": timer["overruns"],
        "spin": realtime.get("spin_cpu_percent", 0.0),
        "gc": realtime["gc_collections"],
        "refused": [r.split(":")[0].removeprefix("realtime.") for r in realtime.get("refused", [])],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per row")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[50.0, 500.0, 1000.0], help="loop rates, Hz"
    )
    args = parser.parse_args()
    cpu = max(os.sched_getaffinity(0))
    console = Console(width=160)
    console.print(
        f"{os.cpu_count()} CPUs, running as {'root' if os.geteuid() == 0 else 'a user'}; "
        f"{args.seconds:g} s a row; the neighbour: one busy process per CPU"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rate in args.rates:
            (folder / "loop.yaml").write_text(GRAPH.format(rate=rate, period_ms=1e3 / rate))
            table = Table(title=f"{rate:g} Hz", title_justify="left")
            for col in COLUMNS:
                table.add_column(col, justify="left" if col == "configuration" else "right")
            for name, flags in configurations(cpu).items():
                start = time.monotonic()
                report = run_row(folder, flags, args.seconds, hog=not name.startswith("quiet"))
                f = row_figures(report, rate, args.seconds)
                table.add_row(
                    name,
                    f"{f['p50']:.1f}",
                    f"{f['p99']:.1f}",
                    f"{f['max']:.1f}",
                    f"{f['act_p99_ms']:.3f}",
                    str(f["overruns"]),
                    f"{f['spin']:.1f}",
                    str(f["gc"]),
                    ", ".join(f["refused"]) or "-",
                )
                console.print(f"  {rate:g} Hz, {name}: {time.monotonic() - start:.0f} s")
            console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
