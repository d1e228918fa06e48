"""The realtime: options: applied for the loop, undone after it, refused clearly.

Root here is allowed every option, which proves nothing about refusals: those
tests run the CLI with every capability dropped (``setpriv``) when the tests run
as root, as they would run for an unprivileged user.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cli_runner import edgeloop_cli

import edgeloop
from edgeloop.cli.realtime_flags import cpu_list
from edgeloop.runtime.clocks import RealClock
from edgeloop.runtime.errors import RealtimeError
from edgeloop.runtime.graph import RealtimeSpec
from edgeloop.runtime.realtime import MIN_SLEEP_NS, Realtime


class Cycles(edgeloop.Sensor):
    """Makes reference cycles each step (garbage only a collection frees) and notes
    whether a collection ever ran inside one of its steps."""

    outputs = ("n",)

    def setup(self, ctx: edgeloop.NodeContext) -> None:
        self.in_step = False
        self.collected_in_step = 0
        gc.callbacks.append(self._watch)

    def _watch(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and self.in_step:
            self.collected_in_step += 1

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.in_step = True
        for _ in range(300):
            a: list[Any] = []
            a.append(a)
        self.in_step = False
        return {"n": 1}

    def close(self) -> None:
        gc.callbacks.remove(self._watch)


def cycles_loop(**realtime: Any) -> edgeloop.LoopGraph:
    graph = edgeloop.LoopGraph(name="cycles", realtime=realtime)
    graph.add_node("cycles", Cycles, rate_hz=200)
    return graph


def test_between_ticks_the_collector_runs_only_after_a_tick_and_everything_is_undone_after():
    cpu = max(os.sched_getaffinity(0))
    affinity, gc_enabled = os.sched_getaffinity(0), gc.isenabled()
    spec = {"cpus": [cpu], "gc": "between_ticks", "spin_us": 100}
    if os.geteuid() == 0:
        spec |= {"priority": 10, "lock_memory": True}
    executor = edgeloop.Executor(cycles_loop(**spec))
    report = executor.run(0.5)
    figures = report.realtime["main"]
    assert figures["cpus"] == [cpu] and figures["spin_window_us"] == 100
    assert figures["gc"] == "between ticks" and figures["gc_collections"] > 0
    assert executor.node("cycles").collected_in_step == 0
    if os.geteuid() == 0:
        assert figures["scheduler"] == "SCHED_FIFO 10" and figures["locked_mib"] > 10
    # The process is as it was: affinity, scheduler, collector, no locked memory.
    assert os.sched_getaffinity(0) == affinity and gc.isenabled() == gc_enabled
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    status = Path("/proc/self/status").read_text().splitlines()
    assert [line.split()[1] for line in status if line.startswith("VmLck:")] == ["0"]
    assert gc.get_freeze_count() == 0


def test_with_the_default_collector_collections_happen_inside_steps_and_are_counted():
    executor = edgeloop.Executor(cycles_loop())
    report = executor.run(0.5)
    figures = report.realtime["main"]
    assert figures["gc"] == "default" and "cpus" not in figures and "scheduler" not in figures
    # The contrast that makes the between_ticks test mean something.
    assert executor.node("cycles").collected_in_step > 0
    assert figures["gc_collections"] >= executor.node("cycles").collected_in_step


def test_cpus_this_process_cannot_use_are_refused_naming_those_it_can():
    missing = os.cpu_count() or 1  # numbered from 0: one past the last
    with pytest.raises(RealtimeError) as refused:
        edgeloop.Executor(cycles_loop(cpus=[missing])).run(0.2)
    allowed = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    assert f"CPU {missing} is not among those this process may use ({allowed} of" in str(
        refused.value
    )
    assert refused.value.where == "realtime.cpus"


def test_the_spin_window_stays_under_half_the_shortest_period():
    clock = RealClock()
    realtime = Realtime(RealtimeSpec(spin_us=5000), clock, shortest_period_ns=1_000_000)
    realtime.apply()
    realtime.restore()
    assert clock.spin_ns == 500_000 and realtime.figures(1.0)["spin_window_us"] == 500


def test_a_late_loop_under_a_busy_limit_still_sleeps_once_per_period():
    # Every wait is for a time already past: without the limit the loop never
    # sleeps (a SCHED_FIFO loop like that would starve the machine).
    free, limited = RealClock(), RealClock()
    limited.busy_limit_ns, limited.min_sleep_ns = 1_000_000, MIN_SLEEP_NS
    for clock, seconds in ((free, 0.05), (limited, 5.0)):  # 50 ms: fifty busy limits
        clock.start()
        end = time.monotonic() + seconds
        while clock.sleeps < 5 and time.monotonic() < end:
            clock.wait_until(0)
    assert free.sleeps == 0
    assert limited.sleeps == 5


def test_cpu_lists_read_as_linux_writes_them():
    assert cpu_list("0,2-3") == [0, 2, 3] and cpu_list("5") == [5]
    for bad in ("3-1", "a", "-1", "1,,2", "99999"):
        with pytest.raises(Exception, match="must be CPU numbers"):
            cpu_list(bad)


# -- refusals, through the CLI as a user without privileges --------------------------------


def unprivileged() -> list[str]:
    """A command prefix that drops every capability (for root); none for another user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: the refusals cannot be provoked")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--"]


def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return edgeloop_cli(folder, *args, prefix=unprivileged())


@pytest.fixture
def loop_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "loop.yaml"
    path.write_text(
        "name: small\n"
        "nodes:\n"
        "  - {id: source, type: constant, rate_hz: 100, config: {value: [1.0]}}\n"
        "  - {id: sink, type: log, inputs: {action: source/action}}\n"
    )
    return path


def test_a_priority_and_locked_memory_the_os_refuses_stop_the_run_with_the_limit_to_raise(
    loop_yaml,
):
    done = run_cli(loop_yaml.parent, "run", "loop.yaml", "--duration", "0.2", "--priority", "50")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "realtime.priority: SCHED_FIFO 50 refused (Operation not permitted)" in done.stderr
    assert "RLIMIT_RTPRIO" in done.stderr and "LimitRTPRIO=" in done.stderr
    done = run_cli(loop_yaml.parent, "run", "loop.yaml", "--duration", "0.2", "--lock-memory")
    assert done.returncode == 2, done.stderr
    assert "realtime.lock_memory: locking memory refused" in done.stderr
    assert "LimitMEMLOCK=infinity" in done.stderr


def test_best_effort_runs_on_and_lists_what_was_refused(loop_yaml):
    done = run_cli(
        loop_yaml.parent,
        *("run", "loop.yaml", "--duration", "0.3", "--json", "report.json", "--quiet"),
        *("--priority", "50", "--lock-memory", "--best-effort", "--gc", "off"),
    )
    assert done.returncode == 0, done.stderr
    assert "refused, running without it: realtime.priority" in done.stderr
    figures = json.loads((loop_yaml.parent / "report.json").read_text())["realtime"]["main"]
    assert [r.split(":")[0] for r in figures["refused"]] == [
        "realtime.lock_memory",
        "realtime.priority",
    ]
    assert "scheduler" not in figures and "locked_mib" not in figures and figures["gc"] == "off"


def test_each_process_group_runs_on_its_own_cpus(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    (tmp_path / "split.yaml").write_text(
        "name: split\n"
        f"realtime: {{cpus: [{cpus[0]}]}}\n"
        f"groups: {{acting: {{cpus: [{cpus[-1]}]}}}}\n"
        "nodes:\n"
        "  - {id: source, type: constant, rate_hz: 50, config: {value: [1.0]}}\n"
        "  - {id: sink, type: log, inputs: {action: source/action}, group: acting}\n"
    )
    done = run_cli(tmp_path, "run", "split.yaml", "--duration", "0.5", "--json", "r.json")
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "r.json").read_text())["realtime"]
    assert figures["main"]["cpus"] == [cpus[0]] and figures["acting"]["cpus"] == [cpus[-1]]
    assert "real time" in done.stdout
