"""Process groups: a graph split across processes by its ``group`` fields.

Real processes, real ZeroMQ links and a real gymnasium plant: the same outputs as
one process in simulated time; a killed or frozen group restarted and reported;
a crash policy of ``stop``; Ctrl-C and a killed supervisor leave no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import edgeloop_cli

from edgeloop.runtime.errors import EdgeloopError, GraphError
from edgeloop.runtime.graph import LoopGraph
from edgeloop.runtime.graph_yaml import load_graph
from edgeloop.runtime.processes.placement import REMOTE_TYPE, split_graph

pytest.importorskip("gymnasium")
pytest.importorskip("mcap")

from conftest import group_workers

from edgeloop.runtime.processes.supervisor import GroupCrashed, Supervisor
from edgeloop.runtime.recording import read_recording

EXAMPLES = Path(__file__).parents[3] / "examples" / "pendulum"
SPLIT = EXAMPLES / "processes.yaml"


def split_pendulum(tmp_path: Path, **groups: Any) -> LoopGraph:
    data = yaml.safe_load(SPLIT.read_text())
    data["groups"] = groups or data["groups"]
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_graph(path)


def by_topic(path: Path) -> dict[str, list[tuple[float, int, Any, bytes]]]:
    out: dict[str, list[tuple[float, int, Any, bytes]]] = {}
    for topic, created, body in read_recording(path):
        value = body["value"]
        out.setdefault(topic, []).append(
            (
                created,
                body["seq"],
                body["sensed"],
                value.tobytes() if hasattr(value, "tobytes") else value,
            )
        )
    return out


# -- placement ------------------------------------------------------------------------


def test_split_puts_stand_ins_where_remote_senders_were() -> None:
    plans = split_graph(load_graph(SPLIT))
    assert list(plans) == ["plant", "control"]
    control = plans["control"].graph
    assert [n.id for n in control.nodes] == ["sensor", "controller", "safe_torque", "safety"]
    assert control.node("sensor").type == REMOTE_TYPE
    assert control.node("sensor").config["outputs"] == ["obs"]
    plant = plans["plant"].graph
    assert [n.id for n in plant.nodes] == ["sensor", "safety", "motor"]
    assert plant.node("safety").type == REMOTE_TYPE
    # One link each way; the contract lives where it ends, from the stand-in on.
    assert [(k.node, k.port, k.dest_group) for k in plans["plant"].outbound] == [
        ("sensor", "obs", "control")
    ]
    assert [(k.node, k.port, k.dest_group) for k in plans["control"].outbound] == [
        ("safety", "action", "plant")
    ]
    assert [c.path for c in plant.contracts] == [["safety", "motor"]]
    assert control.contracts == []


def test_a_fallback_in_another_group_is_refused() -> None:
    data = yaml.safe_load(SPLIT.read_text())
    data["nodes"][2]["group"] = "plant"  # safe_torque away from its controller
    graph = load_graph("g.yaml", text=yaml.safe_dump(data))
    with pytest.raises(GraphError, match="fallback node 'safe_torque' is in process group"):
        Supervisor(graph, simulated=True).run(1.0)


def test_groups_policy_must_name_a_group(tmp_path: Path) -> None:
    graph = split_pendulum(tmp_path, contrl={"on_crash": "stop"})
    with pytest.raises(EdgeloopError, match="contrl"):
        Supervisor(graph, simulated=True).run(1.0)


def test_classes_passed_directly_cannot_be_placed() -> None:
    from edgeloop.testing import RecordingSink

    graph = load_graph(SPLIT)
    graph.add_node("watch", RecordingSink, inputs={"obs": "sensor/obs"}, group="monitor")
    with pytest.raises(EdgeloopError, match="register them in a plugin"):
        Supervisor(graph, simulated=True)


# -- simulated time ---------------------------------------------------------------------


def test_same_outputs_in_one_process_and_in_two(tmp_path: Path) -> None:
    runs = {}
    for name, extra in (("one", ["--one-process"]), ("two", [])):
        result = edgeloop_cli(
            tmp_path,
            "run", str(SPLIT), "--sim", "--duration", "25", "--seed", "4",
            "--record", f"{name}.mcap", "--json", f"{name}.json", *extra,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        runs[name] = by_topic(tmp_path / f"{name}.mcap")
    assert "process groups" in result.stdout and "plant" in result.stdout
    one, two = runs["one"], runs["two"]
    assert sorted(one) == sorted(two) == ["/controller/action", "/safety/action", "/sensor/obs"]
    for topic in one:
        assert len(one[topic]) == 1250
        assert one[topic] == two[topic], topic  # times, sequence numbers, payload bytes
    # Replay re-runs the graph in one process on the multi-process recording.
    replay = edgeloop_cli(tmp_path, "replay", "two.mcap", "--graph", str(SPLIT))
    assert replay.returncode == 0, replay.stderr
    assert "bit-exact" in replay.stdout


def test_lockstep_reports_like_one_process(tmp_path: Path) -> None:
    graph = load_graph(SPLIT)
    report = Supervisor(graph, simulated=True, seed=1).run(21.0)
    assert report.stop_reason == "duration reached"
    assert report.duration_s == 21.0
    assert [n.id for n in report.nodes] == [n.id for n in graph.nodes]  # stand-ins left out
    assert report.node("sensor").calls == report.node("motor").calls == 1050
    contract = report.contract("sense_to_act")
    assert contract.path == ["sensor", "controller", "safety", "motor"]
    assert contract.count == 1050
    assert len(report.series["motor.episode_return"]) == 1
    groups = {g["name"]: g for g in report.groups}
    assert groups["plant"]["sent"] == groups["control"]["sent"] == 1050
    assert groups["plant"]["dropped"] == groups["control"]["dropped"] == 0


def test_a_group_that_fails_to_start_is_reported(tmp_path: Path) -> None:
    data = yaml.safe_load(SPLIT.read_text())
    data["nodes"][0]["config"]["env"] = "NoSuchEnv-v9"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(GroupCrashed, match=r"group 'plant' failed to start.*NoSuchEnv"):
        Supervisor(load_graph(path), simulated=True).run(1.0)
    result = edgeloop_cli(tmp_path, "run", str(path), "--sim", "--duration", "1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "NoSuchEnv" in result.stderr


# -- real time: crashes, restarts, stopping ------------------------------------------


def run_and_hit(
    graph: LoopGraph, duration: float, hit: Any, record: Path | None = None, **options: Any
) -> Any:
    """Run in real time; once every group runs, ``hit({group: pid}, supervisor)`` in a
    thread."""

    def started(pids: dict[str, int]) -> None:
        threading.Thread(target=hit, args=(pids, supervisor), daemon=True).start()

    supervisor = Supervisor(graph, seed=2, on_started=started, record=record, **options)
    return supervisor.run(duration)


def wait_for_beats(supervisor: Supervisor, group: str, beats: int = 2) -> None:
    """Until ``group``'s loop has run a while (its heartbeats are 0.25 s apart): a
    readiness signal, never a fixed sleep."""
    deadline = time.monotonic() + 60
    while supervisor.heartbeats()[group] < beats:
        assert time.monotonic() < deadline, f"group {group} never ran"
        time.sleep(0.01)


def test_a_killed_group_is_restarted_and_reported(tmp_path: Path, monkeypatch) -> None:
    import crash_probe

    graph = split_pendulum(tmp_path)
    killed: list[int] = []

    def kill_control(pids: dict[str, int], supervisor: Supervisor) -> None:
        wait_for_beats(supervisor, "control", 3)  # it has recorded actions by then, and
        # its first beat brought its figures
        os.kill(pids["control"], signal.SIGKILL)
        killed.append(pids["control"])

    monkeypatch.setenv("PYTHONPATH", str(Path(crash_probe.__file__).parent))
    crash_probe.CRASHES.clear()
    # 5 s: under load (CI shares its cores) the new process takes seconds to start
    report = run_and_hit(
        graph, 5.0, kill_control, record=tmp_path / "run.mcap", plugins=["crash_probe"]
    )
    assert killed
    # The plugin heard of the crash, in the supervisor's process (this one).
    (crash,) = crash_probe.CRASHES
    assert crash["group"] == "control" and crash["restarts"] == 0
    assert crash["action"].startswith("restart in") and crash["time_s"] > 0
    assert report.stop_reason == "duration reached" and not report.stopped_by_fault
    control = next(g for g in report.groups if g["name"] == "control")
    assert control["crashes"] == 1 and control["restarts"] == 1
    assert control["pid"] != killed[0]  # the report is the new process's
    kinds = [(f["node"], f["kind"]) for f in report.fault_log]
    assert ("(group control)", "crash") in kinds
    assert ("(group plant)", "upstream_restarted") in kinds  # downstream was told
    # The loop went on after the restart: the motor got actions from the new process.
    assert report.node("controller").calls > 0
    assert report.node("motor").calls > 0
    # The killed process's figures, up to its last heartbeat, are kept and said so.
    note = report.node("controller").notes["figures"]
    assert note == "includes a process that ended (killed by SIGKILL), up to its last heartbeat"
    # The killed process's recording, cut short, is merged with the rest up to its
    # last flush and its end noted (not counted as a failure); nothing else is lost.
    topics = [topic for topic, _, _ in read_recording(tmp_path / "run.mcap")]
    assert report.recording["failed"] == 0
    (cut,) = report.recording["cut_short"]
    assert cut.startswith("control.0.mcap: ")
    assert report.recording["written"] == len(topics)
    assert topics.count("/controller/action") > report.node("controller").calls


def test_a_frozen_group_misses_heartbeats_and_is_restarted(tmp_path: Path) -> None:
    graph = split_pendulum(tmp_path, control={"heartbeat_timeout_ms": 400})

    def freeze_control(pids: dict[str, int], supervisor: Supervisor) -> None:
        wait_for_beats(supervisor, "control")
        os.kill(pids["control"], signal.SIGSTOP)

    report = run_and_hit(graph, 3.0, freeze_control)
    crash = next(f for f in report.fault_log if f["kind"] == "crash")
    assert "no heartbeat" in crash["error"]
    assert next(g for g in report.groups if g["name"] == "control")["restarts"] == 1
    # What the plant sent into the frozen process is counted as lost, with why.
    lost = next(f for f in report.fault_log if f["kind"] == "lost_messages")
    assert lost["node"] == "(group control)" and "no heartbeat" in lost["error"]
    assert int(lost["error"].split()[0].replace(",", "")) > 0
    # Its figures up to its last heartbeat are in the report, said so.
    assert "no heartbeat" in report.node("controller").notes["figures"]


def test_on_crash_stop_ends_the_run(tmp_path: Path) -> None:
    graph = split_pendulum(tmp_path, plant={"on_crash": "stop"})

    def kill_plant(pids: dict[str, int], supervisor: Supervisor) -> None:
        wait_for_beats(supervisor, "plant")
        os.kill(pids["plant"], signal.SIGKILL)

    report = run_and_hit(graph, 20.0, kill_plant)
    assert report.stopped_by_fault
    assert "group 'plant' crashed" in report.stop_reason  # not "duration reached"


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def wait_for_workers(pid: int, count: int) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = children(pid) & group_workers()
        if len(found) == count:
            return found
        time.sleep(0.1)
    raise AssertionError("the group processes did not start")


def test_ctrl_c_stops_every_process_and_prints_the_report(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", str(SPLIT), "--json", "out.json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    group_pids = wait_for_workers(process.pid, 2)
    seen = []
    for line in process.stderr:  # readiness: every group runs
        seen.append(line)
        if line.startswith("started: "):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(seen) + err
    assert "stopped: interrupted" in out
    assert not group_pids & group_workers()
    assert (tmp_path / "out.json").exists()


def test_ctrl_c_while_the_groups_start_ends_everything_at_once(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", str(SPLIT)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    group_pids = wait_for_workers(process.pid, 2)  # spawned, most likely still importing
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    if "started: " in err:  # this machine was quick: the run had begun
        assert process.returncode == 0 and "stopped: interrupted" in out, err
    else:  # a group that never said it is ready is killed, not waited for
        assert process.returncode == 130 and err.rstrip().endswith("interrupted"), err
        assert "Traceback" not in err
    assert not group_pids & group_workers()


def test_a_killed_supervisor_takes_its_groups_with_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", str(SPLIT), "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    group_pids = wait_for_workers(process.pid, 2)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while group_pids & group_workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_pids & group_workers()
