"""Processes outside edgeloop, in any language, in a running loop: ``zmq.source``
takes their messages in, ``zmq.sink`` publishes a loop's ports to them.

Both speak the wire format of ``docs/wire.md`` over ZeroMQ: a source binds a
PULL socket that any number of PUSH clients send to; a sink binds an XPUB
socket whose SUB clients get ``[topic, header, buffers...]``, the topic being
the sink's input port name (as ``edgeloop run --stats`` frames its messages).
Neither ever blocks the loop: a source's socket is read by a thread of its own,
and a sink drops (and counts) a message its subscribers' queues cannot take.

Times cross in the client's terms: with ``times: monotonic`` (the default) a
message's ``created`` and ``sensed`` are seconds of the machine's monotonic clock
(``CLOCK_MONOTONIC``, Python's ``time.monotonic()``), converted to and from the
loop's clock at the boundary; in a simulated run they are the loop's own
seconds. ``times: now`` makes a source stamp each message when it arrives.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import zmq

from edgeloop.runtime.errors import TransportError
from edgeloop.runtime.messages import Message, payload_is_finite
from edgeloop.runtime.node import Monitor, NodeContext, Port, Sensor
from edgeloop.runtime.processes.security import CurveServer, check_bind
from edgeloop.runtime.processes.transport import Receiver
from edgeloop.runtime.processes.wire import DEFAULT_MAX_BYTES, Decoder, encode

_POLL_MS = 50  # how long the reading thread waits before it looks at its stop flag
_RELEASE_EVERY_S = 0.005  # with shared memory: how soon a slot the loop let go goes back
_PLAUSIBLE_S = 3600.0  # a sensing time further off than this is the client's mistake


def _curve(secret_key: str | None, allowed_keys: str | None) -> CurveServer | None:
    if (secret_key is None) != (allowed_keys is None):
        raise ValueError("give both secret_key and allowed_keys for CURVE, or neither")
    return None if secret_key is None else CurveServer(Path(secret_key), Path(allowed_keys))


def _bind(kind: int, endpoint: str, curve: CurveServer | None, hwm: int) -> tuple[Any, Any]:
    """A bound socket of ``kind`` and its authenticator (None without CURVE)."""
    check_bind(endpoint, encrypted=curve is not None)
    socket = zmq.Context.instance().socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM if kind == zmq.XPUB else zmq.RCVHWM, hwm)
    auth = None
    try:
        auth = curve.apply(socket) if curve is not None else None
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        socket.close(linger=0)
        if auth is not None:
            auth.stop()
        raise TransportError(f"cannot bind {endpoint}: {exc}", fix="another endpoint") from None
    return socket, auth


def _offset_s(clock: Any) -> float:
    """Monotonic seconds minus the loop clock's seconds (0 in simulated time)."""
    return 0.0 if clock.simulated else time.monotonic() - clock.now_ns() / 1e9


@dataclass(frozen=True)
class ZmqSourceConfig:
    endpoint: str = "ipc:///tmp/edgeloop-source"
    """Where to bind the PULL socket: ``ipc://PATH``, ``tcp://127.0.0.1:PORT`` (tcp beyond
    loopback only with CURVE)."""
    times: Literal["monotonic", "now"] = "monotonic"
    """How to read a message's times: ``monotonic`` (the client's CLOCK_MONOTONIC
    seconds), ``now`` (stamp each message when it arrives)."""
    secret_key: str | None = None
    """This side's CURVE secret key file (``edgeloop keys``): encrypt, and accept
    only the clients whose public keys lie in ``allowed_keys``."""
    allowed_keys: str | None = None
    """The folder of the public keys of the clients to accept (with ``secret_key``)."""
    queue: int = 1000
    """Messages the socket holds for the node before ZeroMQ stops reading from
    clients (they then block or drop, as their own socket says)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    """Largest message accepted; a larger one is dropped and counted."""
    shared_memory: bool = False
    """Bind a DEALER socket instead, for one client on this machine that may send
    large arrays through shared-memory slots (``docs/wire.md``: it opens with an
    ask, and gets an offer and a hello). Linux only; not with CURVE."""

    def __post_init__(self) -> None:
        _curve(self.secret_key, self.allowed_keys)
        if not 1 <= self.queue <= 1_000_000:
            raise ValueError("queue must be from 1 to 1,000,000")
        if not 1 <= self.max_bytes <= DEFAULT_MAX_BYTES:
            raise ValueError(f"max_bytes must be from 1 to {DEFAULT_MAX_BYTES:,}")
        if self.shared_memory and self.secret_key is not None:
            raise ValueError("shared memory is for a client on this machine: drop the CURVE keys")


class ZmqSource(Sensor):
    """Messages from processes outside edgeloop, in the wire format (``docs/wire.md``).

    Binds a PULL socket at ``endpoint``; any number of PUSH clients may send to
    it. A thread reads the socket and checks every message as messages between
    process groups are checked (a malformed one is dropped and counted by
    reason: note ``dropped``), and one holding NaN or infinity is dropped too
    (``non_finite``): inside a loop a non-finite value is a fault. Without
    ``rate_hz`` the node steps on each message (its thread wakes the loop);
    with it, it publishes the newest one per tick. Either way a step publishes
    the newest message not yet published, sensed when its ``sensed`` field
    says; the ones a newer message replaced first are counted (``replaced``).
    A client that falls silent makes the output stale: give the receivers a
    ``stale_ms``.

    Faults:
        an endpoint that cannot be bound (in use, tcp beyond loopback without
        CURVE, CURVE key files missing) fails setup.

    YAML::

        - id: planner
          type: zmq.source
          config: {endpoint: "ipc:///tmp/robot-setpoints"}
    """

    outputs = (Port("value", doc="the newest message's payload, as the client sent it"),)
    Config = ZmqSourceConfig
    wakes = True

    def setup(self, ctx: NodeContext) -> None:
        cfg: ZmqSourceConfig = ctx.config
        self._receiver: Receiver | None = None
        self._auth = None
        if cfg.shared_memory:
            self._receiver = Receiver(
                cfg.endpoint, max_bytes=cfg.max_bytes, bind=True, deferred_releases=True
            )
            self.socket, self.decoder = self._receiver.socket, self._receiver.decoder
        else:
            curve = _curve(cfg.secret_key, cfg.allowed_keys)
            self.socket, self._auth = _bind(zmq.PULL, cfg.endpoint, curve, cfg.queue)
            self.decoder = Decoder(cfg.max_bytes)
        self._latest: Message | None = None
        self._lock = threading.Lock()
        self.replaced = self.bad_times = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._receive, name=f"edgeloop-zmq-{ctx.node_id}", daemon=True
        )
        self._thread.start()

    def _receive(self) -> None:
        socket, decoder, receiver = self.socket, self.decoder, self._receiver
        while not self._stopping.is_set():
            if receiver is not None:  # this thread alone touches the socket: releases too
                receiver.send_releases()
                message = receiver.recv(timeout=_RELEASE_EVERY_S)
            elif socket.poll(_POLL_MS):
                message = decoder.decode(socket.recv_multipart(copy=False))
            else:
                continue
            if message is None:
                continue
            if not payload_is_finite(message.data):  # inside a loop that is a fault: dropped
                decoder.dropped["non_finite"] += 1
                continue
            with self._lock:
                self.replaced += self._latest is not None
                self._latest = message
            self.ctx.wake()

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            message, self._latest = self._latest, None
        self._notes()
        if message is None:
            return None
        if self.config.times == "monotonic":
            now = self.ctx.now()
            sensed = message.sensed - _offset_s(self.ctx.clock)
            if abs(sensed - now) > _PLAUSIBLE_S:  # not monotonic seconds: stamp it now
                self.bad_times += 1
                sensed = now
            self.ctx.sensed_at(min(sensed, now))
        return {"value": message.data}

    def _notes(self) -> None:
        decoder = self.decoder
        self.ctx.note("received", str(decoder.received))
        self.ctx.note("replaced", str(self.replaced))
        self.ctx.note("dropped", ", ".join(f"{k} {v}" for k, v in decoder.dropped.items()) or "0")
        if decoder.last_error:
            self.ctx.note("last_error", decoder.last_error)
        if self.bad_times:
            self.ctx.note("implausible_times", str(self.bad_times))

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=1.0)
        self._notes()  # the final counts, messages that came after the last step too
        if self._receiver is not None:
            self._receiver.close()
        else:
            self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()


@dataclass(frozen=True)
class ZmqSinkConfig:
    endpoint: str = "ipc:///tmp/edgeloop-sink"
    """Where to bind the XPUB socket that outside SUB clients connect to."""
    times: Literal["monotonic", "loop"] = "monotonic"
    """The times sent: ``monotonic`` (CLOCK_MONOTONIC seconds, as a client reads its
    own clock), ``loop`` (the loop's own seconds since it started)."""
    secret_key: str | None = None
    """This side's CURVE secret key file: encrypt, and accept only the clients whose
    public keys lie in ``allowed_keys``."""
    allowed_keys: str | None = None
    """The folder of the public keys of the clients to accept (with ``secret_key``)."""
    queue: int = 100
    """Messages queued per subscriber; past it a message is dropped and counted."""

    def __post_init__(self) -> None:
        _curve(self.secret_key, self.allowed_keys)
        if not 1 <= self.queue <= 1_000_000:
            raise ValueError("queue must be from 1 to 1,000,000")


class ZmqSink(Monitor):
    """Publishes its inputs to processes outside edgeloop, each port as a topic.

    Binds an XPUB socket at ``endpoint``; SUB clients subscribe to the port
    names they want (or to everything). Each new message on an input goes out
    as ``[port name, header, buffers...]`` in the wire format (``docs/wire.md``)
    with its sequence number and times. A subscriber whose queue is full makes
    the message dropped for all and counted (note ``dropped``): sending never
    blocks the loop. It takes inputs of any name and has no outputs.

    Faults:
        an endpoint that cannot be bound fails setup; a payload the wire cannot
        carry is an ``exception`` fault.

    YAML::

        - id: outside
          type: zmq.sink
          inputs: {state: sensor/obs, action: controller/action}
          config: {endpoint: "ipc:///tmp/robot-state"}
    """

    accepts_any_inputs = True
    Config = ZmqSinkConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: ZmqSinkConfig = ctx.config
        curve = _curve(cfg.secret_key, cfg.allowed_keys)
        self.socket, self._auth = _bind(zmq.XPUB, cfg.endpoint, curve, cfg.queue)
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue says so: counted, not silent
        self._sent_seq: dict[str, int] = {}
        self.sent = self.dropped = 0

    def step(self, inputs: dict[str, Any]) -> None:
        self._read_subscriptions()
        offset = _offset_s(self.ctx.clock) if self.config.times == "monotonic" else 0.0
        for port, data in inputs.items():
            message = self.ctx.message(port)
            if data is None or message is None or self._sent_seq.get(port) == message.seq:
                continue
            self._sent_seq[port] = message.seq
            frames = encode(
                Message(data, message.seq, message.created + offset, message.sensed + offset)
            )
            try:
                self.socket.send_multipart([port.encode(), *frames], zmq.NOBLOCK, copy=False)
                self.sent += 1
            except zmq.Again:
                self.dropped += 1
        self._notes()

    def _notes(self) -> None:
        self.ctx.note("sent", str(self.sent))
        self.ctx.note("dropped", str(self.dropped))

    def _read_subscriptions(self) -> None:
        """XPUB hands subscriptions up; read them so they never pile up."""
        while True:
            try:
                self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def close(self) -> None:
        self._notes()  # the final counts: a Ctrl-C inside a step may have cut its notes
        self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
