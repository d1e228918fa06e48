"""Devices on a serial port (``serial.sensor``, ``serial.actuator``; pyserial, the
``serial`` extra).

A thread of the node's own reads (or writes) the port, framing the bytes
(:mod:`edgeloop.plugins.serial_framing`), so a slow, silent or stuck device
never blocks the loop: a sensor's step publishes the newest whole frame, with
the time it was read as its sensing time; an actuator's step hands its newest
command over and goes on.

A port that vanishes (a cable pulled, a USB hub reset) is one fault under the
node's policy; the node's thread then reopens the port by its name, with a
backoff, for as long as the loop runs. A ``/dev/serial/by-id/`` name follows
the device when it comes back under another ``ttyUSBn``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.plugins.backoff import DeviceLink
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


def _check_link(framing: str, baud: int, reconnect_ms: float, max_reconnect_ms: float) -> None:
    """A config's framing, baud rate and backoff, as both serial node types take them."""
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing '{framing}' (known: {', '.join(FRAMINGS)})")
    if not 50 <= baud <= 20_000_000:
        raise ValueError(f"baud {baud} is not a serial rate (50 to 20,000,000)")
    if not 0 < reconnect_ms <= max_reconnect_ms <= 3_600_000:
        raise ValueError(
            "reconnect_ms must be above 0 and at most max_reconnect_ms, itself at most "
            "3,600,000 (an hour)"
        )


def _link(cfg: Any, options: dict[str, Any]) -> DeviceLink:
    """The node's port, opened now (setup fails if it cannot be) and reopened by name
    with backoff after it vanishes."""
    return DeviceLink(
        lambda: _open(cfg.port, cfg.baud, **options),
        lambda port: port.close(),
        cfg.reconnect_ms / 1e3,
        cfg.max_reconnect_ms / 1e3,
    )


def _thread(target: Callable[[], None], node_id: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=f"edgeloop-serial-{node_id}", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class SerialSensorConfig:
    port: str = "/dev/ttyUSB0"
    """The device: ``/dev/ttyUSB0``, or better a stable name from
    ``/dev/serial/by-id/`` (it survives re-plugging and reboots)."""
    baud: int = 115200
    """Bits per second, as the device sends."""
    framing: str = "nmea"
    """How frames are cut: ``nmea`` ($...*HH lines), ``csv`` (number lines),
    ``cobs`` or ``length`` (binary, with a CRC-32; see ``layout``)."""
    layout: str = "<fff"
    """For binary framings: the ``struct`` format of a frame's fields."""
    fields: int | None = None
    """For line framings: how many numbers a frame must have (None: any)."""
    reconnect_ms: float = 100.0
    """After the port vanishes, the first wait before reopening it; doubles after
    each failed try."""
    max_reconnect_ms: float = 2000.0
    """The longest wait between two tries to reopen the port."""

    def __post_init__(self) -> None:
        _check_link(self.framing, self.baud, self.reconnect_ms, self.max_reconnect_ms)


class SerialSensor(Sensor):
    """The newest frame a serial device sent, as a float64 array.

    A thread reads the port and frames the bytes; a step publishes the newest
    whole frame since the last step (nothing when none came), sensed when it
    was read. Garbage, bad checksums and frames of the wrong size are skipped
    and counted (the node's notes ``frames`` and ``skipped``).

    Faults:
        a port that cannot be opened fails setup (a NodeSetupError naming it).
        A port that vanishes while running makes the next step raise
        TransportError, one ``exception`` fault under the node's policy; the
        thread then reopens it with backoff (the note ``reconnects``), and the
        steps in between publish nothing. With ``on_fault: restart`` a restart
        reopens the port at once and one still absent fails the restart (counted
        against ``max_restarts``); ``hold_last`` keeps the node reconnecting for
        as long as it takes.

    YAML::

        - id: imu
          type: serial.sensor
          rate_hz: 100
          on_fault: hold_last
          config: {port: /dev/serial/by-id/usb-IMU-if00, baud: 115200, framing: nmea}
    """

    outputs = (Port("reading", dtype="float64", doc="the newest frame's numbers"),)
    Config = SerialSensorConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: SerialSensorConfig = ctx.config
        self.link = _link(cfg, {"timeout": _READ_TIMEOUT_S})
        self.deframer = Deframer(cfg.framing, cfg.layout, cfg.fields)
        self._latest: tuple[np.ndarray, float] | None = None
        self._lock = threading.Lock()
        self._reader = _thread(self._read, ctx.node_id)

    def _read(self) -> None:
        clock, link = self.ctx.clock, self.link
        while not link.stopping.is_set():
            if link.device is None:
                if not link.reopen():  # a half frame left from before is skipped as garbage
                    return
            try:
                chunk = link.device.read(max(1, link.device.in_waiting))
            except Exception as exc:  # the device vanished: the next step says so
                link.drop(f"{type(exc).__name__}: {exc}")
                continue
            if not chunk:
                continue
            read_at = clock.now_ns() / 1e9
            for value in self.deframer.feed(chunk):
                with self._lock:
                    self._latest = (value, read_at)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        lost = self.link.take_loss()
        if lost:
            raise TransportError(
                f"serial port {self.config.port} failed: {lost}; reopening it with backoff"
            )
        with self._lock:
            latest, self._latest = self._latest, None
        counts = self.deframer.counts
        self.ctx.note("frames", str(counts.frames))
        self.ctx.note("skipped", str(sum(counts.skipped.values())))
        self.ctx.note("reconnects", str(self.link.reconnects))
        if latest is None:
            return None
        value, read_at = latest
        self.ctx.sensed_at(read_at)
        return {"reading": value}

    def close(self) -> None:
        self.link.close(self._reader)


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
    """The safe command (zero velocity, brake), sent when the loop stops, when the
    node faults (a ``stale_ms`` input gone silent is a fault), and first on a
    port reopened after it vanished; None: none."""
    write_timeout_ms: float = 50.0
    """A write that takes longer is abandoned and counted; it never holds the loop."""
    reconnect_ms: float = 100.0
    """After the port vanishes, the first wait before reopening it; doubles after
    each failed try."""
    max_reconnect_ms: float = 2000.0
    """The longest wait between two tries to reopen the port."""

    def __post_init__(self) -> None:
        _check_link(self.framing, self.baud, self.reconnect_ms, self.max_reconnect_ms)
        if not 0 < self.write_timeout_ms <= 60_000:
            raise ValueError("write_timeout_ms must be above 0 and at most 60,000")


class SerialActuator(Actuator):
    """Writes each command it gets to a device on a serial port, framed.

    A thread of its own writes (the newest command when several wait), so a
    slow or stuck device never holds the loop: a write past ``write_timeout_ms``
    is abandoned and counted (the notes ``written`` and ``timeouts``).

    Safe state: the ``safe`` command is written when the loop stops, when the
    node faults (give its input a ``stale_ms``: a controller gone silent or
    killed is then a fault), and first of all on a port reopened after it
    vanished; each is counted in the report's safe commands.

    Faults:
        a port that cannot be opened fails setup. One that vanishes while
        running makes the next step raise TransportError (one ``exception``
        fault under the node's policy); the thread then reopens it with backoff
        (the note ``reconnects``), dropping the commands that came meanwhile: the
        device gets its safe command, then the next fresh command.

    YAML::

        - id: motor
          type: serial.actuator
          inputs: {command: {from: controller/action, stale_ms: 100}}
          on_fault: hold_last
          config: {port: /dev/serial/by-id/usb-Motor-if00, framing: nmea, safe: [0.0]}
    """

    inputs = (Port("command", doc="the numbers to send, a float array"),)
    outputs = ()
    Config = SerialActuatorConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: SerialActuatorConfig = ctx.config
        self.link = _link(cfg, {"timeout": 0, "write_timeout": cfg.write_timeout_ms / 1e3})
        self._timeout_type = _pyserial().SerialTimeoutException
        self._safe = None if cfg.safe is None else self._frame(cfg.safe)
        self._pending: bytes | None = None
        self._wake = threading.Condition()
        self._port_lock = threading.Lock()  # one write at a time: the writer's or safe()'s
        self._safe_sent = 0  # safe commands written; a command taken before one is stale
        self.written = self.timeouts = 0
        self._writer = _thread(self._write, ctx.node_id)

    def _frame(self, values: Any) -> bytes:
        cfg: SerialActuatorConfig = self.config
        flat = np.asarray(values, dtype=np.float64).reshape(-1).tolist()
        return encode_frame(cfg.framing, flat, cfg.layout, name=cfg.sentence)

    def _write(self) -> None:
        link = self.link
        while True:
            with self._wake:
                while self._pending is None and not link.stopping.is_set():
                    self._wake.wait()
                if link.stopping.is_set():
                    return
                data, self._pending = self._pending, None
                taken_at = self._safe_sent
            if self._send(data, taken_at) != "lost":
                continue
            if not link.reopen():
                return
            with self._wake:
                self._pending = None  # commands made while the device was away are stale
            if self._safe is not None and self._send(self._safe) == "written":
                self.ctx.went_safe("reconnect")

    def _send(self, data: bytes, taken_at: int | None = None) -> str:
        """Write ``data``: a command taken when ``taken_at`` safe commands had been
        sent (skipped as ``stale`` if one was sent since: the safe command stays
        the last word), or the safe command (``taken_at`` None). Returns
        ``written``, ``stale``, ``timeout`` or ``lost`` (the port failed and is
        dropped)."""
        with self._port_lock:
            port = self.link.device
            if port is None:
                return "lost"
            if taken_at is not None and taken_at != self._safe_sent:
                return "stale"
            try:
                port.write(data)
            except self._timeout_type:
                self.timeouts += 1
                return "timeout"
            except Exception as exc:  # the device vanished: the next step says so
                self.link.drop(f"{type(exc).__name__}: {exc}")
                return "lost"
            self.written += 1
            if taken_at is None:
                self._safe_sent += 1
            return "written"

    def step(self, inputs: dict[str, Any]) -> None:
        lost = self.link.take_loss()
        if lost:
            raise TransportError(
                f"serial port {self.config.port} failed: {lost}; reopening it with backoff"
            )
        command = inputs.get("command")
        if command is not None:
            data = self._frame(command)
            with self._wake:
                self._pending = data  # a command not yet written is replaced: the newest wins
                self._wake.notify()
        self.ctx.note("written", str(self.written))
        self.ctx.note("timeouts", str(self.timeouts))
        self.ctx.note("reconnects", str(self.link.reconnects))

    def safe(self, reason: str) -> bool:
        """Write the safe command now, from the loop's thread: a command waiting is
        dropped, and the write is bounded by ``write_timeout_ms``."""
        if self._safe is None:
            return False
        with self._wake:
            self._pending = None
        return self._send(self._safe) == "written"

    def close(self) -> None:
        with self._wake:
            self.link.stopping.set()
            self._wake.notify()
        self.link.close(self._writer)
