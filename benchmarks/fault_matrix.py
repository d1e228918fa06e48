"""The fault matrix: every way a node can misbehave, under every fault policy,
plus the graphs that try to exhaust memory or time, each run through the real
``edgeloop`` CLI in a process of its own.

Each cell's loop is ``src (100 Hz) -> bad -> motor``: ``bad`` is
``testing.faulty`` doing one fault from its step 2 on, ``motor`` a
``testing.audit`` that counts what a well-behaved loop would never deliver.
A cell ends as one of:

- handled: the run ended normally (exit 0, or 1 when the policy stopped it),
  the report was written, the fault was counted with the expected kind, and
  nothing bad reached the motor; a bad graph was refused with exit 2;
- handled also: a killed run's recording repaired, a killed or frozen group's
  figures kept and the messages it never took counted, a damaged recording
  read or refused with a reason, code a graph names refused (process_faults.py);
- ended: a hang nothing can interrupt ended the process as documented (every
  thread's stack on stderr, then exit 70 with the report, or SIGALRM where C
  code holds the GIL; see edgeloop.runtime.watchdog);
- died: any other exit, or no report;
- traceback: a Python traceback on stderr;
- silent: bad data delivered, or the fault not counted;
- hung: still running after the time limit.

    python benchmarks/fault_matrix.py            # the whole matrix, about a minute
    python benchmarks/fault_matrix.py --only nan  # the cells whose name has "nan"

Exits 1 unless every cell is handled or ended.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import process_faults  # beside this script
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edgeloop.runtime.watchdog import HUNG_EXIT
from edgeloop.testing import CLOSE_FAULTS, SETUP_FAULTS, STEP_FAULTS

POLICIES = ("restart", "hold_last", "fallback", "stop")
HARD_HANGS = ("c_hang", "swallowing_hang")
KIND = {  # the fault kind each step fault is counted as
    "raise": "exception",
    "system_exit": "exception",
    "base_exception": "exception",
    "not_a_mapping": "exception",
    "unknown_output": "exception",
    "python_hang": "hung",
    "sleep_hang": "hung",
    "wrong_dtype": "wrong_type",
    "wrong_shape": "wrong_type",
    "string": "wrong_type",
    "nan": "non_finite",
    "nan_in_list": "wrong_type",
    "long_list": "wrong_type",  # a list on a port declared float64 (2,)
    "deep_nesting": "wrong_type",
    "slow_setup": "exception",
    "failing_setup": "exception",
    "close_hang": "close",
    "close_raise": "close",
}
OUTCOMES = ("handled", "ended", "died", "traceback", "silent", "hung")

LOOP = """\
name: matrix
nodes:
  - id: src
    type: testing.counter
    rate_hz: 100
    watchdog_ms: 300
{spare}  - id: bad
    type: testing.faulty
    inputs: {{value: src/value}}
    config: {config}
    on_fault: {policy}
    watchdog_ms: 300
    deadline_ms: 20
    close_timeout_ms: 300
{isolate}  - id: motor
    type: testing.audit
    inputs: {{action: bad/value}}
    watchdog_ms: 300
"""
SPARE = """\
  - id: spare
    type: testing.faulty
    config: {on_step: 1000000000}
"""
BAD_GRAPHS = {  # name -> (how the sound loop is changed, extra CLI arguments, the error names)
    "yaml 500 deep": (("nodes:", "x: " + "[" * 500 + "]" * 500 + "\nnodes:"), [], "nested deeper"),
    "fifo size 10**21": (
        (
            "inputs: {value: src/value}",
            "inputs: {value: {from: src/value, queue: fifo, size: " + str(10**21) + "}}",
        ),
        [],
        "size",
    ),
    "rate_hz 1e9": (("rate_hz: 100", "rate_hz: 1.0e+9"), [], "rate_hz"),
    "timer/0.1us": (
        ("rate_hz: 100\n", "rate_hz: 100\n    inputs: {t: timer/0.1us}\n"),
        [],
        "timer/0.1us",
    ),
    "--duration 1e300": (("", ""), ["--duration", "1e300"], "--duration"),
}


@dataclass
class Cell:
    name: str
    graph: str
    args: list[str] = field(default_factory=list)
    expect_kind: str | None = None  # the fault kind the report must count on 'bad'
    refused: str = ""  # a bad graph: exit 2 with an error naming this is the right answer
    hard_hang: bool = False  # ends by SIGALRM, as documented
    procedure: Callable[[Path, float], tuple[str, str]] | None = None  # does more than a run
    outcome: str = ""
    detail: str = ""
    seconds: float = 0.0


def loop(fault: str, policy: str, *, typed: bool = True, isolate: bool = False) -> str:
    on_fault = "{fallback: spare}" if policy == "fallback" else policy
    # An overrun: past the deadline, not the watchdog; a slow setup as long as the issue's.
    seconds = {"overrun": 0.1, "slow_setup": 3.0}.get(fault, 0.6)
    config = f"{{fault: {fault}, seconds: {seconds}" + ("" if typed else ", typed: false") + "}"
    return LOOP.format(
        spare=SPARE if policy == "fallback" else "",
        config=config,
        policy=on_fault,
        isolate="    isolate: process\n" if isolate else "",
    )


def cells() -> list[Cell]:
    found = []
    for fault in STEP_FAULTS:
        for policy in POLICIES:
            cell = Cell(f"{fault} / {policy}", loop(fault, policy), expect_kind=KIND.get(fault))
            cell.hard_hang = fault in HARD_HANGS
            found.append(cell)
    for fault in ("nan", "nan_in_list"):
        found.append(
            Cell(
                f"{fault} untyped / stop",
                loop(fault, "stop", typed=False),
                expect_kind="non_finite",
            )
        )
    for fault in SETUP_FAULTS:
        found.append(
            Cell(f"{fault} / restart", loop(fault, "restart"), ["--duration", "4"], KIND[fault])
        )
    for fault in CLOSE_FAULTS:
        found.append(Cell(f"{fault} / stop", loop(fault, "stop"), expect_kind=KIND[fault]))
    for fault in HARD_HANGS:
        isolated = loop(fault, "restart", isolate=True)  # its process ends within 2 s or so
        found.append(Cell(f"{fault} isolated / restart", isolated, ["--duration", "4"]))
    sound = loop("raise", "stop")
    for name, ((old, new), args, names) in BAD_GRAPHS.items():
        found.append(Cell(name, sound.replace(old, new, 1), args, refused=names))
    for fault in ("long_list", "deep_nesting"):  # the same payload limits split or not
        found.append(
            Cell(f"{fault} untyped / stop", loop(fault, "stop", typed=False), [], "payload")
        )
        split = loop(fault, "stop", typed=False, isolate=True)
        found.append(Cell(f"{fault} untyped, own process / stop", split, [], "payload"))
    for name, procedure in process_faults.CELLS.items():
        found.append(Cell(name, "", procedure=procedure))
    return found


def run_cell(cell: Cell, workdir: Path, limit_s: float) -> Cell:
    folder = Path(tempfile.mkdtemp(dir=workdir))
    if cell.procedure is not None:
        start = time.perf_counter()
        try:
            cell.outcome, cell.detail = cell.procedure(folder, limit_s)
        except subprocess.TimeoutExpired:
            cell.outcome, cell.detail = "hung", f"still running after {limit_s:g} s"
        cell.seconds = time.perf_counter() - start
        return cell
    (folder / "loop.yaml").write_text(cell.graph)
    command = [sys.executable, "-m", "edgeloop", "run", "loop.yaml", "--plugin", "edgeloop.testing"]
    command += ["--json", "report.json", "--quiet"] + (cell.args or ["--duration", "1.5"])
    start = time.perf_counter()
    try:
        result = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=limit_s
        )
    except subprocess.TimeoutExpired:
        cell.outcome, cell.detail = "hung", f"still running after {limit_s:g} s"
        return cell
    finally:
        cell.seconds = time.perf_counter() - start
    report_file = folder / "report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    cell.outcome, cell.detail = judge(cell, result, report)
    return cell


def judge(cell: Cell, result: subprocess.CompletedProcess[str], report: Any) -> tuple[str, str]:
    err = result.stderr
    if (problem := process_faults.traceback_in(err)) is not None:
        return "traceback", problem
    if cell.refused:
        if result.returncode == 2 and cell.refused in err:
            return "handled", "refused, naming " + cell.refused
        return "died", f"exit {result.returncode}"
    if cell.hard_hang and result.returncode == -signal.SIGALRM and "Current thread" in err:
        return "ended", "SIGALRM after every thread's stack"
    if (
        cell.hard_hang
        and result.returncode == HUNG_EXIT
        and report
        and "hung" in report["stop_reason"]
    ):
        return "ended", f"exit {HUNG_EXIT} after the stacks and the report"
    if result.returncode not in (0, 1) or report is None:
        return "died", f"exit {result.returncode}, report {'written' if report else 'missing'}"
    nodes = {n["id"]: n for n in report["nodes"]}
    if "motor" in nodes and nodes["motor"]["notes"].get("bad", "0") != "0":
        return "silent", f"{nodes['motor']['notes']['bad']} bad payloads delivered"
    if cell.name.startswith("keyboard_interrupt"):
        ok = report["stop_reason"] == "interrupted"
        return ("handled", "a clean stop") if ok else ("silent", report["stop_reason"])
    if cell.name.startswith("overrun"):
        misses = nodes["bad"]["deadline_misses"]
        return (
            ("handled", f"{misses} deadline miss(es)") if misses else ("silent", "no miss counted")
        )
    if "isolated" in cell.name:
        groups = {g["name"]: g for g in report.get("groups") or []}
        crashes = groups.get("bad", {}).get("crashes", 0)
        return (
            ("handled", f"group restarted {crashes}x") if crashes else ("silent", "no group crash")
        )
    if cell.name.startswith("slow_setup"):  # the restart's setup must not hold the loop up
        overruns = report["timers"][0]["overruns"]
        down = nodes["bad"]["down_s"]
        detail = f"down {down:.2f} s, src ticks skipped {overruns}"
        return ("handled", detail) if down >= 3.0 and overruns < 10 else ("silent", detail)
    faults = nodes["bad"]["faults"] if "bad" in nodes else {}
    if cell.expect_kind not in faults:
        return "silent", f"faults {faults}, stop: {report['stop_reason'][:50]}"
    how = "the loop stopped" if report["stopped_by_fault"] else "the loop ran on"
    return "handled", f"{cell.expect_kind} x{faults[cell.expect_kind]}, {how}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="run only the cells whose name has this")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="cells at once")
    parser.add_argument("--limit-s", type=float, default=60.0, help="a cell past this is hung")
    args = parser.parse_args()
    todo = [c for c in cells() if args.only in c.name]
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
        task = progress.add_task("fault matrix", total=len(todo))
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_cell, c, Path(tmp), args.limit_s) for c in todo]
            for future in futures:
                future.result()
                progress.advance(task)
    table = Table(title=f"fault matrix: {len(todo)} cells")
    for column in ("cell", "outcome", "detail", "s"):
        table.add_column(column, justify="right" if column == "s" else "left")
    for c in todo:
        style = "green" if c.outcome in ("handled", "ended") else "red"
        table.add_row(c.name, f"[{style}]{c.outcome}[/]", c.detail, f"{c.seconds:.1f}")
    console.print(table)
    counts = Counter(c.outcome for c in todo)
    console.print("  ".join(f"{o}: {counts.get(o, 0)}" for o in OUTCOMES))
    bad = sum(counts.get(o, 0) for o in OUTCOMES[2:])
    if bad or not todo:
        console.print(f"[red]{bad} cell(s) neither handled nor ended as documented[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
