"""Looking into a running loop: a stats socket for ``edgeloop top``, ``echo`` and ``hz``.

``edgeloop run --stats ENDPOINT`` binds a ZeroMQ PUB socket there (loopback or
ipc only) and publishes:

- ``stats``: once a second, JSON per node (calls, p50/p99 step time, deadline
  misses, drops, faults), read by ``edgeloop top``;
- ``msg/NODE/PORT``: every message, in the wire format, read by
  ``edgeloop echo`` and ``edgeloop hz``.

Publishing never blocks the loop: PUB drops what no subscriber wants, and a
full subscriber queue drops too. Stats are read from a side thread; a reading
that races the loop is skipped, never a fault.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict
from typing import Any

import zmq

from edgeloop.runtime.errors import TransportError, WireError
from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes.security import check_bind
from edgeloop.runtime.processes.wire import decode, encode

STATS_TOPIC = b"stats"


class StatsPublisher:
    """Publishes a running executor's stats and messages on ``endpoint``.

    Pass it to the executor as its ``recorder`` (it sees every message), then
    :meth:`watch` the executor to start the once-a-second stats.
    """

    def __init__(self, endpoint: str, period_s: float = 1.0) -> None:
        check_bind(endpoint, encrypted=False)
        self.endpoint = endpoint
        self.period_s = period_s
        self.socket = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 1000)
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            raise TransportError(
                f"cannot publish stats on {endpoint}: {exc}", fix="another endpoint"
            ) from None
        self.published = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the loop thread and the stats thread share the socket

    def write(self, topic: str, data: Any, seq: int, created: float, sensed: float) -> None:
        try:
            frames = encode(Message(data, seq, created, sensed))
        except Exception:  # never let looking in take the loop down
            self.failed += 1
            return
        with self._lock:
            try:
                self.socket.send_multipart([b"msg" + topic.encode(), *frames], zmq.NOBLOCK)
                self.published += 1
            except zmq.Again:
                self.failed += 1

    def summary(self) -> dict[str, Any]:
        return {"stats": self.endpoint, "published": self.published, "failed": self.failed}

    def watch(self, executor: Any) -> None:
        """Publish ``executor``'s node stats every ``period_s`` until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(self.period_s):
                try:
                    nodes = [asdict(n) for n in executor._loop_parts.node_stats()]
                except Exception:  # raced the loop thread; next second will do
                    continue
                body = json.dumps(
                    {"graph": executor.graph.name, "time": time.time(), "nodes": nodes},
                    default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else v,
                ).encode()
                with self._lock:
                    try:
                        self.socket.send_multipart([STATS_TOPIC, body], zmq.NOBLOCK)
                    except zmq.Again:
                        pass

        self._thread = threading.Thread(target=loop, name="edgeloop-stats", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.socket.close(linger=0)


class StatsSubscriber:
    """Reads what a :class:`StatsPublisher` sends: stats, or one port's messages."""

    def __init__(self, endpoint: str, *, topic: bytes) -> None:
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            raise TransportError(
                f"cannot connect to {endpoint}: {exc}",
                fix="e.g. ipc:///tmp/edgeloop-stats or tcp://127.0.0.1:PORT",
            ) from None
        self.endpoint = endpoint

    def stats(self, timeout_s: float) -> dict[str, Any] | None:
        if not self.socket.poll(int(timeout_s * 1000)):
            return None
        _, body = self.socket.recv_multipart()
        return json.loads(body)

    def message(self, timeout_s: float) -> tuple[str, Message] | None:
        """The next message (None after ``timeout_s``); malformed ones are skipped."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(int(left * 1000)):
                return None
            topic, *frames = self.socket.recv_multipart(copy=False)
            try:
                return bytes(topic.buffer[4:]).decode(errors="replace"), decode(frames)
            except (WireError, ValueError, OverflowError, TypeError):
                continue

    def close(self) -> None:
        self.socket.close(linger=0)
