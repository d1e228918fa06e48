"""Devices on a serial port (``serial.sensor``, ``serial.actuator``; pyserial, the
``serial`` extra).

A thread of the node's own reads (or writes) the port, framing the bytes
(:mod:`edgeloop.plugins.serial_framing`), so a slow, silent or stuck device
never blocks the loop: a sensor's step publishes the newest whole frame, with
the time it was read as its sensing time; an actuator's step hands its newest
command over and goes on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.plugins.serial_framing import FRAMINGS, Deframer, encode_frame
from edgeloop.runtime.errors import MissingDependencyError, TransportError
from edgeloop.runtime.node import Actuator, NodeContext, Port, Sensor

_READ_TIMEOUT_S = 0.05  # how long the reading thread blocks before it looks at its stop flag


def _pyserial() -> Any:
    try:
        import serial
    except ImportError:
        raise MissingDependencyError("pyserial", "serial", "serial.sensor") from None
    return serial


def _open(port: str, baud: int, **options: Any) -> Any:
    """The pyserial port, or a TransportError saying what to check."""
    serial = _pyserial()
    try:
        return serial.Serial(port, baud, **options)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise TransportError(
            f"cannot open serial port {port}: {exc}",
            fix="check the device is plugged in, its name (/dev/serial/by-id/...) and "
            "that this user may use it (the dialout group)",
        ) from None


def _check_link(framing: str, baud: int) -> None:
    """A config's framing and baud rate, as both serial node types take them."""
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing '{framing}' (known: {', '.join(FRAMINGS)})")
    if not 50 <= baud <= 20_000_000:
        raise ValueError(f"baud {baud} is not a serial rate (50 to 20,000,000)")


@dataclass(frozen=True)
class SerialSensorConfig:
    port: str = "/dev/ttyUSB0"
    """The device: ``/dev/ttyUSB0``, or better a stable name from
    ``/dev/serial/by-id/`` (it survives re-plugging and reboots)."""
    baud: int = field(default=115200)
    """Bits per second, as the device sends."""
    framing: str = "nmea"
    """How frames are cut: ``nmea`` ($...*HH lines), ``csv`` (number lines),
    ``cobs`` or ``length`` (binary, with a CRC-32; see ``layout``)."""
    layout: str = "<fff"
    """For binary framings: the ``struct`` format of a frame's fields."""
    fields: int | None = None
    """For line framings: how many numbers a frame must have (None: any)."""

    def __post_init__(self) -> None:
        _check_link(self.framing, self.baud)


class SerialSensor(Sensor):
    """The newest frame a serial device sent, as a float64 array.

    A thread reads the port and frames the bytes; a step publishes the newest
    whole frame since the last step (nothing when none came), sensed when it
    was read. Garbage, bad checksums and frames of the wrong size are skipped
    and counted (the node's notes ``frames`` and ``skipped``).

    Faults:
        a port that cannot be opened fails setup (a NodeSetupError naming it);
        a port that vanishes while running makes the next step raise
        TransportError, an ``exception`` fault under the node's policy (restart
        reopens it, with backoff).

    YAML::

        - id: imu
          type: serial.sensor
          rate_hz: 100
          config: {port: /dev/serial/by-id/usb-IMU-if00, baud: 115200, framing: nmea}
    """

    outputs = (Port("reading", dtype="float64", doc="the newest frame's numbers"),)
    Config = SerialSensorConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: SerialSensorConfig = ctx.config
        self.port = _open(cfg.port, cfg.baud, timeout=_READ_TIMEOUT_S)
        self.deframer = Deframer(cfg.framing, cfg.layout, cfg.fields)
        self._latest: tuple[np.ndarray, float] | None = None
        self._lock = threading.Lock()
        self._error = ""
        self._done = threading.Event()
        self._reader = threading.Thread(
            target=self._read, name=f"edgeloop-serial-{ctx.node_id}", daemon=True
        )
        self._reader.start()

    def _read(self) -> None:
        clock = self.ctx.clock
        while not self._done.is_set():
            try:
                chunk = self.port.read(max(1, self.port.in_waiting))
            except Exception as exc:  # the device vanished: the next step says so
                self._error = f"{type(exc).__name__}: {exc}"
                return
            if not chunk:
                continue
            read_at = clock.now_ns() / 1e9
            for value in self.deframer.feed(chunk):
                with self._lock:
                    self._latest = (value, read_at)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if self._error:
            raise TransportError(f"serial port {self.config.port} failed: {self._error}")
        with self._lock:
            latest, self._latest = self._latest, None
        counts = self.deframer.counts
        self.ctx.note("frames", str(counts.frames))
        self.ctx.note("skipped", str(sum(counts.skipped.values())))
        if latest is None:
            return None
        value, read_at = latest
        self.ctx.sensed_at(read_at)
        return {"reading": value}

    def close(self) -> None:
        self._done.set()
        self._reader.join(timeout=1.0)
        self.port.close()


@dataclass(frozen=True)
class SerialActuatorConfig:
    port: str = "/dev/ttyUSB0"
    """The device, as for ``serial.sensor`` (a ``/dev/serial/by-id/`` name is best)."""
    baud: int = 115200
    """Bits per second, as the device reads."""
    framing: str = "nmea"
    """How a command is framed: ``nmea``, ``csv``, ``cobs`` or ``length``."""
    layout: str = "<fff"
    """For binary framings: the ``struct`` format of a command's fields."""
    sentence: str = "CMD"
    """For ``nmea``: the sentence name (``$CMD,...*HH``)."""
    safe: list[float] | None = None
    """The command sent when the loop stops (zero velocity, brake); None: none."""
    write_timeout_ms: float = field(default=50.0)
    """A write that takes longer is abandoned and counted; it never holds the loop."""

    def __post_init__(self) -> None:
        _check_link(self.framing, self.baud)
        if not 0 < self.write_timeout_ms <= 60_000:
            raise ValueError("write_timeout_ms must be above 0 and at most 60,000")


class SerialActuator(Actuator):
    """Writes each command it gets to a device on a serial port, framed.

    A thread of its own writes (the newest command when several wait), so a
    slow or stuck device never holds the loop: a write past ``write_timeout_ms``
    is abandoned and counted (the notes ``written`` and ``timeouts``). When the
    loop stops, the ``safe`` command is written before the port closes.

    Faults:
        a port that cannot be opened fails setup; one that vanishes while
        running makes the next step raise TransportError (an ``exception``
        fault under the node's policy).

    YAML::

        - id: motor
          type: serial.actuator
          inputs: {command: controller/action}
          config: {port: /dev/serial/by-id/usb-Motor-if00, framing: nmea, safe: [0.0]}
    """

    inputs = (Port("command", doc="the numbers to send, a float array"),)
    outputs = ()
    Config = SerialActuatorConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: SerialActuatorConfig = ctx.config
        self.port = _open(cfg.port, cfg.baud, timeout=0, write_timeout=cfg.write_timeout_ms / 1e3)
        self._timeout_type = _pyserial().SerialTimeoutException
        self._pending: bytes | None = None
        self._wake = threading.Condition()
        self._done = False
        self._error = ""
        self.written = self.timeouts = 0
        self._writer = threading.Thread(
            target=self._write, name=f"edgeloop-serial-{ctx.node_id}", daemon=True
        )
        self._writer.start()

    def _frame(self, values: Any) -> bytes:
        cfg: SerialActuatorConfig = self.config
        flat = np.asarray(values, dtype=np.float64).reshape(-1).tolist()
        return encode_frame(cfg.framing, flat, cfg.layout, name=cfg.sentence)

    def _write(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._done:
                    self._wake.wait()
                if self._pending is None:
                    return
                data, self._pending = self._pending, None
            self._send(data)

    def _send(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.written += 1
        except self._timeout_type:
            self.timeouts += 1
        except Exception as exc:  # the device vanished: the next step says so
            self._error = f"{type(exc).__name__}: {exc}"

    def step(self, inputs: dict[str, Any]) -> None:
        if self._error:
            raise TransportError(f"serial port {self.config.port} failed: {self._error}")
        command = inputs.get("command")
        if command is not None:
            data = self._frame(command)
            with self._wake:
                self._pending = data  # a command not yet written is replaced: the newest wins
                self._wake.notify()
        self.ctx.note("written", str(self.written))
        self.ctx.note("timeouts", str(self.timeouts))

    def close(self) -> None:
        with self._wake:
            self._done = True
            self._wake.notify()
        self._writer.join(timeout=1.0)
        if self.config.safe is not None and not self._error:
            self._send(self._frame(self.config.safe))  # the device's safe state, last
        self.port.close()
