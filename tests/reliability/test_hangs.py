"""Hangs, exits and slow restarts, through the real CLI where the process is at stake.

A hang the watchdog can interrupt is a ``hung`` fault (``test_fault_matrix.py``).
One it cannot (a C call holding the GIL, or a step that swallows every
interrupt) ends the process with every thread's stack on stderr and SIGALRM,
unless the node runs in a process of its own (``isolate: process``): then its
group is restarted and the loop goes on. A restart's slow setup and a close
that never returns do not hold the loop up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeloop import Executor, LoopGraph
from edgeloop.runtime.watchdog import HUNG_EXIT
from edgeloop.testing import CounterSensor, FaultyNode, RecordingSink

GRAPH = """\
name: hang
nodes:
  - id: src
    type: testing.counter
    rate_hz: 100
    watchdog_ms: 200  # every node's: a hard hang ends the process at twice the longest
  - id: bad
    type: testing.faulty
    inputs: {{value: src/value}}
    config: {{fault: {fault}}}
    watchdog_ms: 200
    close_timeout_ms: 200
{extra}
  - id: motor
    type: testing.audit
    inputs: {{action: bad/value}}
    watchdog_ms: 200
"""


def edgeloop_run(tmp_path: Path, fault: str, extra: str = "", duration: str = "1") -> Any:
    path = tmp_path / "hang.yaml"
    path.write_text(GRAPH.format(fault=fault, extra=extra))
    command = [sys.executable, "-m", "edgeloop", "run", str(path), "--duration", duration]
    command += ["--plugin", "edgeloop.testing", "--json", "report.json"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    report = tmp_path / "report.json"
    return result, json.loads(report.read_text()) if report.exists() else None


def test_a_hang_in_c_holding_the_gil_ends_the_process_with_every_stack(tmp_path):
    result, report = edgeloop_run(tmp_path, "c_hang")
    assert result.returncode == -signal.SIGALRM, result.stderr
    assert "Current thread" in result.stderr and "in _hang" in result.stderr
    assert "Traceback" not in result.stderr and report is None  # nothing Python could run


def test_a_step_that_ignores_interrupts_ends_the_process_with_stacks_and_report(tmp_path):
    result, report = edgeloop_run(tmp_path, "swallowing_hang")
    assert result.returncode == HUNG_EXIT, result.stderr
    assert "node 'bad' has run one step for" in result.stderr and "in _hang" in result.stderr
    assert "Traceback" not in result.stderr
    assert report["stop_reason"].startswith("node 'bad' hung: its step ran")
    bad = next(n for n in report["nodes"] if n["id"] == "bad")
    assert bad["faults"] == {"hung": 1} and bad["calls"] == 3  # steps 0, 1 and the hung one
    assert "stopped: node 'bad' hung" in result.stdout  # the table was printed too


def test_an_isolated_node_that_hangs_in_c_takes_down_only_its_own_process(tmp_path):
    result, report = edgeloop_run(tmp_path, "c_hang", extra="    isolate: process", duration="3")
    assert result.returncode == 0, result.stderr
    groups = {g["name"]: g for g in report["groups"]}
    assert groups["bad"]["crashes"] >= 1 and groups["main"]["crashes"] == 0
    assert report["stop_reason"] == "duration reached"
    src = next(n for n in report["nodes"] if n["id"] == "src")
    assert src["calls"] > 100  # the rest of the loop kept running
    assert next(n for n in report["nodes"] if n["id"] == "motor")["notes"]["bad"] == "0"


@pytest.mark.parametrize(
    ("fault", "code", "stop"),
    [
        ("keyboard_interrupt", 0, "interrupted"),
        ("system_exit", 1, "node 'bad' faulted (exception: SystemExit: 3"),
        ("base_exception", 1, "node 'bad' faulted (exception: BaseException"),
    ],
)
def test_an_exit_raised_in_a_step_still_gives_the_report(tmp_path, fault, code, stop):
    result, report = edgeloop_run(tmp_path, fault)
    assert result.returncode == code, result.stderr
    assert report is not None and report["stop_reason"].startswith(stop)
    assert "Traceback" not in result.stderr
    assert "stopped: " + stop.split(" (")[0] in result.stdout


def test_a_close_that_never_returns_is_left_behind_within_its_timeout(tmp_path):
    result, report = edgeloop_run(tmp_path, "close_hang", duration="0.5")
    assert result.returncode == 0, result.stderr
    assert "node 'bad' close: still running after 200 ms (close_timeout_ms)" in result.stderr
    assert next(n for n in report["nodes"] if n["id"] == "bad")["faults"] == {"close": 1}


def test_a_python_hang_in_real_time_is_interrupted_and_the_duration_holds(tmp_path):
    result, report = edgeloop_run(tmp_path, "python_hang")
    assert result.returncode == 0, result.stderr
    bad = next(n for n in report["nodes"] if n["id"] == "bad")
    assert bad["faults"] == {"hung": 1} and bad["restarts"] == 1
    assert report["stop_reason"] == "duration reached"


def slow_restart_loop(**restart: Any) -> LoopGraph:
    """src -> bad (slow setup after its fault) -> sink_bad, and src -> sink."""
    graph = LoopGraph(name="slow_restart")
    graph.add_node("src", CounterSensor, rate_hz=100)
    graph.add_node(
        "bad",
        FaultyNode,
        inputs={"value": "src/value"},
        config={"fault": "slow_setup", "on_step": 5, "seconds": 0.6},
        on_fault={"restart": {"max_restarts": 1, **restart}},
    )
    graph.add_node("sink", RecordingSink, inputs={"value": "src/value"})
    return graph


def test_a_slow_restart_does_not_stop_the_rest_of_the_loop():
    executor = Executor(slow_restart_loop())
    report = executor.run(1.5)
    bad = report.node("bad")
    assert bad.restarts == 1 and bad.down_s >= 0.6 and bad.skipped > 0
    # Its fault was at step 5; the sink kept receiving while it was down.
    went_down = next(f["time_s"] for f in report.fault_log if f["node"] == "bad")
    times = [t for t, _ in executor.node("sink").received]
    assert sum(went_down < t < went_down + 0.6 for t in times) > 5
    assert report.stop_reason == "duration reached"


def test_a_restart_whose_setup_outlasts_its_timeout_is_a_failed_restart():
    report = Executor(slow_restart_loop(setup_timeout_ms=100)).run(1.0)
    errors = [f["error"] for f in report.fault_log if f["node"] == "bad"]
    assert "setup after restart: did not finish within 100 ms (setup_timeout_ms)" in errors[1]
    assert report.stopped_by_fault  # max_restarts 1: the second fault stops the loop


def test_a_slow_restart_in_simulated_time_is_waited_for_so_runs_repeat():
    def sink_times() -> list[float]:
        executor = Executor(slow_restart_loop(), simulated=True)
        executor.run(0.2)
        return [t for t, _ in executor.node("sink").received]

    assert sink_times() == sink_times()


SAFE_ACTION = """\
name: safe_action
nodes:
  - id: src
    type: testing.counter
    rate_hz: 100
    watchdog_ms: 200
  - id: controller
    type: testing.faulty
    inputs: {value: src/value}
    config: {fault: c_hang, on_step: 20}
    watchdog_ms: 200
    isolate: process
  - id: safety
    type: clamp
    inputs: {action: {from: controller/value, stale_ms: 100}}
    config: {low: -5.0, high: 5.0}
    on_fault: {fallback: stop_action}
    watchdog_ms: 200
  - id: stop_action
    type: constant
    config: {value: [0.0, 0.0], dtype: float64}
    watchdog_ms: 200
  - id: motor
    type: testing.audit
    inputs: {action: safety/action}
    watchdog_ms: 200
"""


def test_a_hung_controller_process_gets_the_graphs_safe_action_to_the_motor(tmp_path):
    (tmp_path / "loop.yaml").write_text(SAFE_ACTION)
    command = [sys.executable, "-m", "edgeloop", "run", "loop.yaml", "--duration", "1.5"]
    command += ["--plugin", "edgeloop.testing", "--json", "report.json", "--quiet"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    safe = [f for f in report["fault_log"] if f["node"] == "safety"]
    # The controller's process hung and was restarted; meanwhile its output went
    # stale at the safety node, whose fallback sent the stop action on.
    assert safe and {f["kind"] for f in safe} == {"stale_input"}
    assert {f["action"] for f in safe} == {"fallback:stop_action"}
    motor = next(n for n in report["nodes"] if n["id"] == "motor")
    assert motor["notes"]["bad"] == "0" and int(motor["notes"]["received"]) > 20


def test_a_stop_policy_in_a_group_of_event_driven_nodes_stops_the_run(tmp_path):
    # Its group has no timer: the stop must end the run from inside a delivery.
    extra = "    isolate: process\n    on_fault: stop"
    result, report = edgeloop_run(tmp_path, "raise", extra=extra, duration="30")
    assert result.returncode == 1, result.stderr
    assert report["stop_reason"].startswith("group 'bad': node 'bad' faulted (exception")
    assert next(n for n in report["nodes"] if n["id"] == "bad")["faults"] == {"exception": 1}
