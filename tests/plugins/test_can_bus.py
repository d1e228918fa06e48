"""can.sensor and can.actuator against python-can's virtual bus and a DBC file.

No CAN hardware here, and python-can's ``virtual`` interface works only inside
one process, so a simulated ECU runs on a thread with its own Bus on the same
virtual channel: the node's code path (python-can Bus, filters, cantools) is
the one a SocketCAN bus takes; bus-off is an error frame the ECU sends, as
SocketCAN reports it, not a real controller going bus-off.
"""

from __future__ import annotations

import threading
import uuid

import can_files
import numpy as np
import pytest

from edgeloop import Executor, LoopGraph
from edgeloop.runtime.errors import NodeSetupError
from edgeloop.testing import CounterSensor, RecordingSink

can = pytest.importorskip("can")
cantools = pytest.importorskip("cantools")


class Ecu:
    """A simulated ECU on a virtual bus: streams wheel speeds, records motor commands."""

    def __init__(self, dbc_path, channel: str) -> None:
        self.db = cantools.database.load_file(str(dbc_path))
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.torques: list[float] = []
        self.stopping = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        speeds = self.db.get_message_by_name("WheelSpeed")
        command = self.db.get_message_by_name("MotorCommand")
        while not self.stopping.is_set():
            self.sent += 1
            data = speeds.encode({"left": self.sent * 0.01, "right": -self.sent * 0.01})
            self.bus.send(
                can.Message(arbitration_id=speeds.frame_id, data=data, is_extended_id=False)
            )
            frame = self.bus.recv(timeout=0.005)
            while frame is not None:
                if frame.arbitration_id == command.frame_id:
                    self.torques.append(command.decode(frame.data)["torque"])
                frame = self.bus.recv(timeout=0)

    def send(self, **frame) -> None:
        self.bus.send(can.Message(**frame))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.bus.shutdown()


@pytest.fixture
def ecu(tmp_path):
    dbc = can_files.write_dbc(tmp_path)
    channel = f"test-{uuid.uuid4().hex}"
    device = Ecu(dbc, channel)
    device.dbc, device.channel = str(dbc), channel
    yield device
    device.close()


def bus_config(ecu, **more):
    return {"dbc": ecu.dbc, "interface": "virtual", "channel": ecu.channel, **more}


def sensor_loop(ecu, signals) -> LoopGraph:
    graph = LoopGraph(name="wheels")
    graph.add_node(
        "wheels",
        "can.sensor",
        rate_hz=50,
        config=bus_config(ecu, signals=signals, reconnect_ms=20),
        on_fault="hold_last",
    )
    graph.add_node("sink", RecordingSink, inputs={"speeds": "wheels/signals"})
    return graph


def wait_for(condition, timeout_s: float = 60.0) -> None:
    done = threading.Event()
    deadline = 0.0
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        done.wait(0.01)


def test_signals_are_decoded_newest_first_and_bad_frames_are_counted(ecu):
    executor = Executor(sensor_loop(ecu, ["WheelSpeed.left", "right"]))

    def noise() -> None:
        wait_for(lambda: getattr(executor._loop_parts, "runners", None))
        ecu.send(arbitration_id=256, data=b"\x01", is_extended_id=False)  # too short
        ecu.send(arbitration_id=0x05, data=b"\x01", is_extended_id=False)  # not ours
        ecu.send(arbitration_id=0x04, is_error_frame=True, data=bytes(8))  # an error, not bus-off

    threading.Thread(target=noise, daemon=True).start()
    report = executor.run(0.5)
    speeds = [v for v in executor.node("sink").values("speeds") if v is not None]
    assert len(speeds) > 5
    for left, right in speeds:
        assert left == pytest.approx(-right) and left > 0
    lefts = [s[0] for s in speeds]
    assert lefts == sorted(lefts)
    notes = report.node("wheels").notes
    assert notes["undecodable"] == "1" and notes["error_frames"] == "1"
    assert not report.fault_log


def test_bus_off_is_a_fault_and_the_bus_is_opened_again(ecu):
    executor = Executor(sensor_loop(ecu, ["left"]))

    def bus_off() -> None:
        wait_for(lambda: getattr(executor._loop_parts, "runners", None))
        node = executor.node("wheels")
        wait_for(lambda: node.frames > 3)
        ecu.send(arbitration_id=0x40, is_error_frame=True, data=bytes(8))
        wait_for(lambda: node.link.reconnects == 1)
        seen = node.frames
        wait_for(lambda: node.frames > seen + 3)
        executor.stop("reopened")

    threading.Thread(target=bus_off, daemon=True).start()
    report = executor.run(60.0)
    assert report.stop_reason == "reopened"
    (fault,) = report.fault_log
    assert "bus-off" in fault["error"] and fault["action"] == "hold_last"


def test_an_unknown_signal_fails_setup_naming_the_known_ones(ecu):
    with pytest.raises(NodeSetupError, match=r"signal 'WheelSpeed\.middle' is not in the DBC") as e:
        Executor(sensor_loop(ecu, ["WheelSpeed.middle"])).run(0.1)
    assert "WheelSpeed.left" in str(e.value)


def test_commands_are_encoded_clipped_and_the_safe_value_is_sent_on_stop(ecu):
    graph = LoopGraph(name="motor")
    graph.add_node("ctl", CounterSensor, rate_hz=50, config={"start": 9.0, "increment": 0.5})
    graph.add_node(
        "motor",
        "can.actuator",
        inputs={"command": "ctl/value"},
        config=bus_config(ecu, message="MotorCommand", signals=["torque"], safe=[0.0]),
    )
    report = Executor(graph).run(0.2)
    wait_for(lambda: ecu.torques and ecu.torques[-1] == 0.0)
    torques = ecu.torques
    assert torques[:3] == [9.0, 9.5, 10.0]
    assert all(t == 10.0 for t in torques[3:-1])  # clipped to the DBC's range
    motor = report.node("motor")
    assert int(motor.notes["clipped"]) == len(torques) - 4
    assert motor.safe_states == {"stop": 1}


def test_a_silent_controller_makes_the_can_motor_safe(ecu):
    from edgeloop.testing import ScriptedNode

    graph = LoopGraph(name="motor")
    graph.add_node("ctl", CounterSensor, rate_hz=50, config={"start": 1.0})
    graph.add_node(
        "brain",
        ScriptedNode,
        inputs={"value": "ctl/value"},
        config={"raise_on": [5]},
        on_fault={"restart": {"backoff_ms": 60_000, "max_backoff_ms": 60_000}},
    )
    graph.add_node(
        "motor",
        "can.actuator",
        inputs={"command": {"from": "brain/value", "stale_ms": 100}},
        config=bus_config(ecu, message="MotorCommand", signals=["torque"], safe=[0.0]),
        on_fault="hold_last",
    )
    report = Executor(graph, simulated=False).run(0.6)
    wait_for(lambda: len(ecu.torques) >= 7)
    assert ecu.torques[:5] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert ecu.torques[5:] == [0.0, 0.0]  # safe when the input went stale, and on stop
    assert report.node("motor").safe_states == {"stale_input": 1, "stop": 1}
    assert np.isfinite(report.node("motor").p50_us)


def test_a_bus_that_fails_under_the_actuator_is_one_fault_and_reopened_safe_first(ecu):
    graph = LoopGraph(name="motor")
    graph.add_node("ctl", CounterSensor, rate_hz=50, config={"start": 1.0})
    graph.add_node(
        "motor",
        "can.actuator",
        inputs={"command": "ctl/value"},
        config=bus_config(
            ecu, message="MotorCommand", signals=["torque"], safe=[0.0], reconnect_ms=20
        ),
        on_fault="hold_last",
    )
    executor = Executor(graph)

    def pull_the_bus() -> None:
        wait_for(lambda: len(ecu.torques) >= 3)
        node = executor.node("motor")
        node.link.device.shutdown()  # the bus fails under it: the next send raises
        wait_for(lambda: node.link.reconnects == 1)
        seen = len(ecu.torques)
        wait_for(lambda: len(ecu.torques) >= seen + 3)
        executor.stop("reopened")

    threading.Thread(target=pull_the_bus, daemon=True).start()
    report = executor.run(60.0)
    assert report.stop_reason == "reopened"
    motor = report.node("motor")
    assert motor.faults == {"exception": 1} and motor.notes["reconnects"] == "1"
    assert motor.safe_states == {"reconnect": 1, "stop": 1}
    wait_for(lambda: ecu.torques[-1] == 0.0)
    first_safe = ecu.torques.index(0.0)
    assert ecu.torques[first_safe + 1] > ecu.torques[first_safe - 1]  # then commands again
