"""serial.sensor against a real pseudo-terminal: frames in, the newest out, faults counted.

This machine has no serial device; a pty pair is the same code path pyserial
takes for /dev/ttyUSB0 (a tty file descriptor), with the test writing what a
device would send on the master side.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from edgeloop import Executor, LoopGraph
from edgeloop.plugins.serial_framing import encode_frame
from edgeloop.testing import RecordingSink

pytest.importorskip("serial")


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def imu_loop(port: str, on_fault: str = "stop") -> LoopGraph:
    graph = LoopGraph(name="imu")
    graph.add_node(
        "imu",
        "serial.sensor",
        rate_hz=100,
        config={"port": port, "framing": "nmea", "fields": 3},
        on_fault=on_fault,
    )
    graph.add_node("sink", RecordingSink, inputs={"reading": "imu/reading"})
    return graph


def test_frames_a_device_sends_are_published_newest_first_and_garbage_is_counted(pty_pair):
    master, port = pty_pair
    frames = [encode_frame("nmea", [k, 2.0 * k, -k], name="IMU") for k in (1.0, 2.0, 3.0)]
    executor = Executor(imu_loop(port))

    def device() -> None:  # sends once the node has opened the port (opening flushes it)
        deadline = time.monotonic() + 60
        while "imu" not in executor._loop_parts.runners and time.monotonic() < deadline:
            time.sleep(0.005)
        os.write(master, b"garbage\n" + b"".join(frames))

    sender = threading.Thread(target=device)
    sender.start()
    report = executor.run(0.5)
    sender.join()
    received = [r.tolist() for r in executor.node("sink").values("reading") if r is not None]
    assert received[-1] == [3.0, 6.0, -3.0]  # the newest whole frame, each at most once
    assert received == sorted(received) and len(received) == len({tuple(r) for r in received})
    notes = report.node("imu").notes
    assert notes["frames"] == "3" and notes["skipped"] == "1"


def test_a_device_that_vanishes_is_a_fault_under_the_nodes_policy(pty_pair):
    master, port = pty_pair
    executor = Executor(imu_loop(port))
    gone = threading.Timer(0.2, os.close, args=(master,))  # unplugged mid-run
    gone.start()
    report = executor.run(5.0)
    gone.join()
    assert report.stopped_by_fault, report.stop_reason
    assert report.node("imu").faults == {"exception": 1}
    assert f"serial port {port} failed" in report.fault_log[0]["error"]


def test_a_port_that_cannot_be_opened_fails_setup_saying_what_to_check():
    from edgeloop.runtime.errors import NodeSetupError

    with pytest.raises(NodeSetupError, match="cannot open serial port /dev/no-such-tty"):
        Executor(imu_loop("/dev/no-such-tty")).run(0.1)


def read_frames(master: int) -> list[list[float]]:
    """Every frame the actuator wrote, as the device at the master end reads them."""
    from edgeloop.plugins.serial_framing import Deframer

    os.set_blocking(master, False)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return [v.tolist() for v in Deframer("nmea").feed(data)]


def test_the_actuator_writes_each_command_and_its_safe_command_when_the_loop_stops(pty_pair):
    from edgeloop.testing import CounterSensor

    master, port = pty_pair
    graph = LoopGraph(name="motor")
    graph.add_node("ctl", CounterSensor, rate_hz=50, config={"start": 1.0})
    graph.add_node(
        "motor",
        "serial.actuator",
        inputs={"command": "ctl/value"},
        config={"port": port, "framing": "nmea", "safe": [0.0]},
    )
    report = Executor(graph).run(0.2)
    frames = read_frames(master)
    assert frames[-1] == [0.0]  # the safe command, last
    commands = [f[0] for f in frames[:-1]]
    assert commands == sorted(commands) and commands[0] == 1.0  # in order, none twice
    assert report.node("motor").notes["timeouts"] == "0"


class SimulatedDevice:
    """``python -m edgeloop.sims.serial_devices`` in a process of its own, under a link."""

    def __init__(self, kind: str, tmp_path, **options: float) -> None:
        import subprocess
        import sys

        self.link = str(tmp_path / f"{kind}-link")
        self.log = tmp_path / f"{kind}.jsonl"
        args = [sys.executable, "-m", "edgeloop.sims.serial_devices", kind]
        args += ["--link", self.link, "--log", str(self.log)]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        line = self.process.stdout.readline()  # the device's readiness line
        assert line.startswith("ready"), line

    def unplug(self) -> None:
        """Pull the cable; returns once the device is back under its link."""
        import signal

        self.process.send_signal(signal.SIGUSR1)
        self.wait_ready()

    def commands(self) -> list[list[float]]:
        import json

        if not self.log.exists():
            return []
        return [json.loads(line)["command"] for line in self.log.read_text().splitlines()]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.fixture
def simulated(tmp_path):
    devices: list[SimulatedDevice] = []

    def start(kind: str, **options: float) -> SimulatedDevice:
        devices.append(SimulatedDevice(kind, tmp_path, **options))
        return devices[-1]

    yield start
    for device in devices:
        device.close()


def wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def run_while(executor: Executor, script) -> Any:
    """Run ``executor`` (on this, the main thread) while ``script`` acts on it from
    another thread and stops it when done."""
    failure: list[BaseException] = []

    def act() -> None:
        try:
            wait_for(
                lambda: executor._loop_parts is not None and executor._loop_parts.runners, "setup"
            )
            script()
        except BaseException as exc:
            failure.append(exc)
        finally:
            executor.stop("the test is done")

    actor = threading.Thread(target=act)
    actor.start()
    report = executor.run(120.0)
    actor.join()
    if failure:
        raise failure[0]
    return report


def test_the_sensor_reopens_a_port_that_vanished_and_goes_on_reading(simulated):
    imu = simulated("imu", rate_hz=200, replug_ms=100)
    graph = LoopGraph(name="imu")
    graph.add_node(
        "imu",
        "serial.sensor",
        rate_hz=100,
        config={"port": imu.link, "fields": 3, "reconnect_ms": 20},
        on_fault="hold_last",
    )
    executor = Executor(graph)

    def script() -> None:
        node = executor.node("imu")
        wait_for(lambda: node.deframer.counts.frames > 5, "frames")
        imu.unplug()
        wait_for(lambda: node.link.reconnects == 1, "the reconnect")
        before = node.deframer.counts.frames
        wait_for(lambda: node.deframer.counts.frames > before + 5, "frames after the reconnect")

    report = run_while(executor, script)
    imu_stats = report.node("imu")
    assert imu_stats.faults == {"exception": 1}, report.fault_log
    assert "reopening it with backoff" in report.fault_log[0]["error"]
    assert imu_stats.notes["reconnects"] == "1"
    assert not report.stopped_by_fault


def motor_loop(link: str, command: Any = "ctl/value", safe: Any = (0.0,)) -> LoopGraph:
    from edgeloop.testing import CounterSensor

    graph = LoopGraph(name="motor")
    graph.add_node("ctl", CounterSensor, rate_hz=50, config={"start": 1.0})
    graph.add_node(
        "motor",
        "serial.actuator",
        inputs={"command": command},
        config={"port": link, "safe": list(safe), "reconnect_ms": 20},
        on_fault="hold_last",
    )
    return graph


def test_the_motor_gets_its_safe_command_first_after_a_replug_and_last_on_stop(simulated):
    motor = simulated("motor", replug_ms=100)
    executor = Executor(motor_loop(motor.link))

    def script() -> None:
        node = executor.node("motor")
        wait_for(lambda: len(motor.commands()) >= 3, "commands")
        motor.unplug()
        wait_for(lambda: node.link.reconnects == 1, "the reconnect")
        seen = len(motor.commands())
        wait_for(lambda: len(motor.commands()) >= seen + 3, "commands after the reconnect")

    report = run_while(executor, script)
    stats = report.node("motor")
    assert stats.safe_states == {"reconnect": 1, "stop": 1}
    assert stats.faults == {"exception": 1}, report.fault_log  # the unplug, once
    wait_for(lambda: motor.commands()[-1] == [0.0], "the safe command on stop")
    commands = motor.commands()
    replugged = commands.index([0.0])  # the first frame on the new link is the safe one
    assert replugged < len(commands) - 1
    counts = [c[0] for c in commands if c != [0.0]]
    assert counts == sorted(counts) and counts[replugged] > counts[replugged - 1] + 1


def test_a_silent_controller_makes_the_motor_safe_once_and_the_stop_again(simulated):
    from edgeloop.testing import FaultyNode

    motor = simulated("motor")
    graph = motor_loop(motor.link, {"from": "brain/value", "stale_ms": 100}, safe=[0.0, 0.0])
    graph.add_node(  # goes silent at its 10th step: down for a minute (a killed controller)
        "brain",
        FaultyNode,
        inputs={"value": "ctl/value"},
        config={"fault": "raise", "on_step": 10},
        on_fault={"restart": {"backoff_ms": 60_000, "max_backoff_ms": 60_000}},
    )
    executor = Executor(graph)

    def script() -> None:
        wait_for(lambda: executor.node("brain").state["steps"] > 10, "the silence")
        wait_for(lambda: [0.0, 0.0] in motor.commands(), "the safe command")

    report = run_while(executor, script)
    assert report.node("motor").safe_states == {"stale_input": 1, "stop": 1}
    wait_for(lambda: motor.commands()[-2:] == [[0.0, 0.0]] * 2, "the safe command on stop")
    commands = motor.commands()
    assert commands[:10] == [[float(k), float(k)] for k in range(1, 11)]  # every command, then
    assert commands[10:] == [[0.0, 0.0]] * 2  # safe: when the input went stale, and on stop


def test_a_killed_controller_process_makes_the_motor_safe(simulated):
    import signal

    from edgeloop.runtime.processes.supervisor import Supervisor

    motor = simulated("motor")
    graph = LoopGraph(name="killed-brain")
    graph.add_node("ctl", "testing.counter", rate_hz=50, config={"start": 1.0}, group="brain")
    graph.add_node(
        "motor",
        "serial.actuator",
        inputs={"command": {"from": "ctl/value", "stale_ms": 150}},
        config={"port": motor.link, "safe": [0.0]},
        on_fault="hold_last",
        group="drive",
    )
    killed: list[int] = []

    def kill_the_brain(pids: dict[str, int]) -> None:
        def act() -> None:
            wait_for(lambda: len(motor.commands()) >= 5, "commands")
            os.kill(pids["brain"], signal.SIGKILL)
            killed.append(len(motor.commands()))

        threading.Thread(target=act, daemon=True).start()

    report = Supervisor(graph, plugins=["edgeloop.testing"], on_started=kill_the_brain).run(2.5)
    assert killed, report.stop_reason
    wait_for(lambda: motor.commands()[-1] == [0.0], "the safe command on stop")
    commands = [c[0] for c in motor.commands()]
    assert 0.0 in commands[killed[0] : -1]  # safe while the brain was down, before the stop
    assert report.node("motor").safe_states == {"stale_input": 1, "stop": 1}
    assert any(f["kind"] == "crash" for f in report.fault_log)  # the supervisor saw the kill
