"""serial.sensor against a real pseudo-terminal: frames in, the newest out, faults counted.

This machine has no serial device; a pty pair is the same code path pyserial
takes for /dev/ttyUSB0 (a tty file descriptor), with the test writing what a
device would send on the master side.
"""

from __future__ import annotations

import os
import threading
import time

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
