"""Devices on a CAN bus (``can.sensor``, ``can.actuator``; python-can and cantools,
the ``can`` extra), their frames decoded and encoded through a DBC file.

On a board the bus is SocketCAN (``interface: socketcan``, ``channel: can0``,
brought up with ``ip link set can0 up type can bitrate 500000``); python-can's
other interfaces (``pcan``, ``kvaser``, ``slcan``, ``virtual``...) work the same.

A bus that goes bus-off (the controller stopped sending after too many
errors; SocketCAN reports it as an error frame with the bus-off flag) or whose
socket fails is one fault under the node's policy; the node's thread then
shuts the bus down and opens it again with backoff.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.plugins.can_link import (
    CAN_ERR_BUSOFF,
    can_link,
    can_module,
    load_dbc,
    on_loop_clock,
    signal_owners,
)
from edgeloop.runtime.errors import NodeConfigError, TransportError
from edgeloop.runtime.node import Actuator, NodeContext, Port, Sensor

_RECV_TIMEOUT_S = 0.05  # how long the reading thread blocks before it looks at its stop flag


@dataclass(frozen=True)
class CanSensorConfig:
    dbc: str
    """The DBC file that describes the bus's messages and signals."""
    signals: list[str]
    """The signals to publish, in this order: ``Message.Signal``, or a signal's name
    alone when one message has it. Only their messages' ids are received."""
    interface: str = "socketcan"
    """python-can interface: ``socketcan`` on Linux boards, ``virtual`` for tests,
    ``pcan``, ``kvaser``, ``slcan``..."""
    channel: str = "can0"
    """The bus: ``can0``, or a virtual bus's name."""
    bitrate: int | None = None
    """Bits per second for interfaces that set it (SocketCAN's is set with ``ip link``)."""
    reconnect_ms: float = 100.0
    """After the bus failed, the first wait before opening it again; doubles after
    each failed try."""
    max_reconnect_ms: float = 2000.0
    """The longest wait between two tries to open the bus."""

    def __post_init__(self) -> None:
        if not self.signals:
            raise ValueError("name at least one signal")
        if not 0 < self.reconnect_ms <= self.max_reconnect_ms <= 3_600_000:
            raise ValueError("reconnect_ms must be above 0 and at most max_reconnect_ms")


class CanSensor(Sensor):
    """The newest values of chosen CAN signals, decoded through a DBC file.

    A thread receives the frames of the signals' messages (SocketCAN filters the
    rest out in the kernel, other interfaces in the node) and decodes them; a
    step publishes every signal's newest value once each has been seen and
    something new came since the last step, sensed when the newest of them was
    received (the bus's receive timestamp). Frames
    that do not decode are counted (note ``undecodable``), as are error frames
    (``error_frames``).

    Faults:
        a bus that cannot be opened fails setup; an unknown signal or a DBC file
        that cannot be read is a NodeConfigError. Bus-off, or a receive that
        fails, makes the next step raise TransportError (an ``exception`` fault
        under the node's policy); the thread then reopens the bus with backoff
        (note ``reconnects``).

    YAML::

        - id: wheels
          type: can.sensor
          rate_hz: 100
          on_fault: hold_last
          config: {dbc: robot.dbc, signals: [WheelSpeed.left, WheelSpeed.right]}
    """

    outputs = (Port("signals", dtype="float64", doc="the signals' newest values, in order"),)
    Config = CanSensorConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: CanSensorConfig = ctx.config
        db = load_dbc(cfg.dbc)
        owners = signal_owners(db, cfg.signals, "signals")
        self._slots: dict[int, list[tuple[int, str]]] = {}
        for i, (message, signal) in enumerate(owners):
            self._slots.setdefault(message.frame_id, []).append((i, signal))
        self._messages = {m.frame_id: m for m, _ in owners}
        filters = [
            {
                "can_id": m.frame_id,
                "can_mask": 0x1FFFFFFF if m.is_extended_frame else 0x7FF,
                "extended": m.is_extended_frame,
            }
            for m in self._messages.values()
        ]
        self.link = can_link(cfg, filters)
        self.values = np.full(len(owners), np.nan)
        self._seen = np.zeros(len(owners), dtype=bool)
        self._fresh_at: float | None = None
        self._lock = threading.Lock()
        self.frames = self.undecodable = self.error_frames = 0
        self._thread = threading.Thread(
            target=self._receive, name=f"edgeloop-can-{ctx.node_id}", daemon=True
        )
        self._thread.start()

    def _receive(self) -> None:
        can, link, clock = can_module(), self.link, self.ctx.clock
        while not link.stopping.is_set():
            if link.device is None and not link.reopen():
                return
            try:
                frame = link.device.recv(timeout=_RECV_TIMEOUT_S)
            except (can.CanError, OSError) as exc:
                link.drop(f"{type(exc).__name__}: {exc}")
                continue
            if frame is None:
                continue
            if frame.is_error_frame:
                self.error_frames += 1
                if frame.arbitration_id & CAN_ERR_BUSOFF:
                    link.drop("bus-off (too many errors: check wiring, termination, bitrate)")
                continue
            self._decode(frame, on_loop_clock(frame.timestamp, clock))

    def _decode(self, frame: Any, received: float) -> None:
        message = self._messages.get(frame.arbitration_id)
        if message is None:  # not one of ours (interfaces other than SocketCAN)
            return
        try:
            decoded = message.decode(frame.data, decode_choices=False)
        except Exception:  # a frame of the wrong length or contents: count, skip
            self.undecodable += 1
            return
        with self._lock:
            for i, signal in self._slots[frame.arbitration_id]:
                self.values[i] = float(decoded[signal])
                self._seen[i] = True
            self._fresh_at = received
            self.frames += 1

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        lost = self.link.take_loss()
        if lost:
            raise TransportError(f"CAN bus {self.config.channel} failed: {lost}; reopening it")
        note = self.ctx.note
        note("frames", str(self.frames))
        note("undecodable", str(self.undecodable))
        note("error_frames", str(self.error_frames))
        note("reconnects", str(self.link.reconnects))
        with self._lock:
            if self._fresh_at is None or not self._seen.all():
                return None
            values, received, self._fresh_at = self.values.copy(), self._fresh_at, None
        self.ctx.sensed_at(received)
        return {"signals": values}

    def close(self) -> None:
        self.link.close(self._thread)


@dataclass(frozen=True)
class CanActuatorConfig:
    dbc: str
    """The DBC file that describes the command message."""
    message: str
    """The message to send, by its name in the DBC file."""
    signals: list[str]
    """The message's signals the ``command`` input sets, in order; the others are
    sent as their DBC initial value (0 if none)."""
    safe: list[float] | None = None
    """The signal values sent when the loop stops and when the node faults (a
    ``stale_ms`` input gone silent is a fault); None: none."""
    interface: str = "socketcan"
    """python-can interface, as for ``can.sensor``."""
    channel: str = "can0"
    """The bus, as for ``can.sensor``."""
    bitrate: int | None = None
    """Bits per second for interfaces that set it."""
    send_timeout_ms: float = 5.0
    """A send the bus cannot take within this (a full transmit queue) is dropped
    and counted; it never holds the loop longer."""
    reconnect_ms: float = 100.0
    """After the bus failed, the first wait before opening it again."""
    max_reconnect_ms: float = 2000.0
    """The longest wait between two tries to open the bus."""

    def __post_init__(self) -> None:
        if not self.signals:
            raise ValueError("name at least one signal")
        if self.safe is not None and len(self.safe) != len(self.signals):
            raise ValueError(f"safe has {len(self.safe)} values for {len(self.signals)} signals")
        if not 0 < self.send_timeout_ms <= 1000:
            raise ValueError("send_timeout_ms must be above 0 and at most 1000")
        if not 0 < self.reconnect_ms <= self.max_reconnect_ms <= 3_600_000:
            raise ValueError("reconnect_ms must be above 0 and at most max_reconnect_ms")


class CanActuator(Actuator):
    """Sends each command as one CAN frame, its signals encoded through a DBC file.

    The ``command`` input's values set ``signals`` in order (values outside a
    signal's DBC range are clipped to it and counted: note ``clipped``); the
    frame is sent at once, within ``send_timeout_ms`` (a frame the bus cannot
    take is dropped and counted: ``dropped``). The ``safe`` values are sent when
    the loop stops and when the node faults, and counted in the report.

    Faults:
        a bus that cannot be opened fails setup; an unknown message or signal is
        a NodeConfigError. A send that fails for another reason than a full
        queue (the bus went away) is one ``exception`` fault; later steps try to
        open the bus again, with backoff between tries (note ``reconnects``),
        and count the commands they could not send as ``dropped``; the first
        frame on the reopened bus is the safe one.

    YAML::

        - id: motor
          type: can.actuator
          inputs: {command: {from: controller/action, stale_ms: 100}}
          on_fault: hold_last
          config: {dbc: robot.dbc, message: MotorCommand, signals: [torque], safe: [0.0]}
    """

    inputs = (Port("command", doc="the signals' values, a float array in ``signals`` order"),)
    outputs = ()
    Config = CanActuatorConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: CanActuatorConfig = ctx.config
        db = load_dbc(cfg.dbc)
        names = {m.name for m in db.messages}
        if cfg.message not in names:
            raise NodeConfigError(
                f"message '{cfg.message}' is not in {cfg.dbc}",
                key="message",
                fix=f"name one of: {', '.join(sorted(names))}",
            )
        self.message = db.get_message_by_name(cfg.message)
        owners = signal_owners(db, [f"{cfg.message}.{s}" for s in cfg.signals], "signals")
        self._signals = [self.message.get_signal_by_name(s) for _, s in owners]
        self._base = {  # the signals the command does not set
            s.name: s.initial if s.initial is not None else 0 for s in self.message.signals
        }
        self.link = can_link(cfg, [])
        self._can = can_module()
        self.sent = self.dropped = self.clipped = 0

    def _frame(self, values: Any) -> Any:
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        if flat.size != len(self._signals):
            raise ValueError(f"command has {flat.size} values for {len(self._signals)} signals")
        data = dict(self._base)
        for signal, value in zip(self._signals, flat.tolist(), strict=True):
            low, high = signal.minimum, signal.maximum
            low = -np.inf if low is None else low
            bounded = min(max(value, low), np.inf if high is None else high)
            self.clipped += bounded != value
            data[signal.name] = bounded
        payload = self.message.encode(data, strict=False)
        return self._can.Message(
            arbitration_id=self.message.frame_id,
            data=payload,
            is_extended_id=self.message.is_extended_frame,
        )

    def _send(self, frame: Any) -> bool:
        """Send ``frame``; False (counted) when the queue is full. A bus that fails
        is dropped and raises TransportError."""
        if self.link.device is None and not self._reopen_now():
            self.dropped += 1  # the bus is still away: the loss was the fault
            return False
        try:
            self.link.device.send(frame, timeout=self.config.send_timeout_ms / 1e3)
        except self._can.CanTimeoutError:  # the transmit queue stayed full: drop this one
            self.dropped += 1
            return False
        except self._can.CanOperationError as exc:
            if "buffer" in str(exc).lower():  # ENOBUFS: the same, as SocketCAN says it
                self.dropped += 1
                return False
            self.link.drop(f"{type(exc).__name__}: {exc}")
            raise TransportError(f"CAN bus {self.config.channel} failed: {exc}") from None
        except (self._can.CanError, OSError) as exc:
            self.link.drop(f"{type(exc).__name__}: {exc}")
            raise TransportError(f"CAN bus {self.config.channel} failed: {exc}") from None
        self.sent += 1
        return True

    def _reopen_now(self) -> bool:
        """One try to open the bus again from the loop's thread (the link's backoff
        spaces the tries); True when it is open, its safe command sent first."""
        if not self.link.reopen_now():
            return False
        if self.config.safe is not None and self._send(self._frame(self.config.safe)):
            self.ctx.went_safe("reconnect")  # the device hears its safe command first
        return True

    def step(self, inputs: dict[str, Any]) -> None:
        command = inputs.get("command")
        if command is not None:
            self._send(self._frame(command))
        note = self.ctx.note
        note("sent", str(self.sent))
        note("dropped", str(self.dropped))
        note("clipped", str(self.clipped))
        note("reconnects", str(self.link.reconnects))

    def safe(self, reason: str) -> bool:
        if self.config.safe is None or self.link.device is None:
            return False
        return self._send(self._frame(self.config.safe))

    def close(self) -> None:
        self.link.close(None)
