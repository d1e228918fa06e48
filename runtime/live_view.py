"""Serving a running loop to Foxglove live: ``edgeloop run --foxglove [HOST:PORT]``.

The Foxglove SDK's WebSocket server (protocol ``foxglove.sdk.v1``; open
``ws://HOST:PORT`` in Foxglove) advertises one channel per output port, with
the schemas recordings use (:mod:`edgeloop.runtime.record_codecs`): cameras show
in an Image panel, numbers plot. The loop never waits for a viewer: a message
is encoded only while someone subscribes to its port, and the server queues it
per client, dropping a slow client's oldest messages beyond its backlog.

Channels are never closed while the server runs. The SDK logs a refused
subscription into Python (which needs the GIL) while it holds that client's
channel map, and ``Channel.close`` holds the GIL while it waits for the map: a
close then hangs the whole process (seen on CI, reproduced with the SDK 0.30).

What can be measured is counted: the messages offered to subscribers, per
topic, and the subscriptions made. What cannot: the SDK does not say how many
messages it dropped for a slow client, nor how many it sent.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from edgeloop.runtime.channel_log import ChannelLog
from edgeloop.runtime.errors import UsageError
from edgeloop.runtime.record_codecs import PortRecording

DEFAULT_ADDRESS = "127.0.0.1:8765"
BACKLOG = 1024
"""Messages the server queues per client before it drops the oldest."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``HOST``) as ``(host, port)``.

    Raises:
        UsageError: not an address.
    """
    host, sep, port = text.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):  # HOST, or a bare IPv6
        host, port = text, DEFAULT_ADDRESS.split(":")[1]
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise UsageError(
            f"--foxglove {text!r}: expected HOST:PORT with a port from 0 to 65535",
            fix=f"e.g. --foxglove {DEFAULT_ADDRESS}",
        ) from None
    return host.strip("[]") or "127.0.0.1", number


class _Watchers:
    """The SDK's server listener: which channels someone subscribes to now."""

    def __init__(self) -> None:
        self.subscribed: Counter[int] = Counter()  # channel id -> subscribers now
        self.subscriptions = 0
        self.clients: set[int] = set()
        self._lock = threading.Lock()

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.subscribed[channel.id] += 1
            self.subscriptions += 1
            self.clients.add(client.id)

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.subscribed[channel.id] -= 1


class LiveServer:
    """A Foxglove WebSocket server on a :class:`ChannelLog`'s channels.

    Args:
        log: Whose channels to serve (a :class:`LiveView`, or a recorder, whose
            messages are then encoded once for both).
        host, port: Where to listen (port 0: any free port; :attr:`port` says which).
        name: The server's name, shown by Foxglove.

    Raises:
        UsageError: the address cannot be listened on (in use, not this host's).
    """

    def __init__(self, log: ChannelLog, host: str, port: int, *, name: str = "edgeloop") -> None:
        self.watchers = _Watchers()
        self.offered: Counter[str] = Counter()
        try:
            self.server = log._foxglove.start_server(
                name=name,
                host=host,
                port=port,
                context=log.context,
                server_listener=self.watchers,
                message_backlog_size=BACKLOG,
            )
        except Exception as exc:
            raise UsageError(
                f"--foxglove cannot listen on {host}:{port}: {exc}",
                fix="another port (0 picks a free one), or stop what listens there",
            ) from None
        self.host = host
        self.port: int = self.server.port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def count(self, topic: str, channel: Any) -> None:
        """A message logged on ``channel``: offered to its subscribers, if any."""
        if self.watchers.subscribed[channel.id()] > 0:
            self.offered[topic] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "offered": sum(self.offered.values()),
            "offered_by_topic": dict(self.offered),
            "subscriptions": self.watchers.subscriptions,
            "clients": len(self.watchers.clients),
            "backlog": BACKLOG,
        }

    def stop(self) -> None:
        self.server.stop()


class LiveView(ChannelLog):
    """The live view alone (no recording): a loop's recorder that only serves.

    Args:
        host, port: Where to listen.
        ports: Frame ids, image marking and compression per topic.
        simulated: The run's clock is simulated.

    Attributes:
        failed: Messages that could not be encoded; last_error says why.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ports: Mapping[str, PortRecording] | None = None,
        simulated: bool = True,
        name: str = "edgeloop",
    ) -> None:
        super().__init__(ports, simulated=simulated, only_when_watched=True)
        self.serve(host, port, name=name)
        self.failed = 0
        self.last_error = ""

    def write(self, topic: str, data: Any, seq: int, created: float, sensed: float) -> None:
        """Offer one message to whoever watches its port; never raises."""
        try:
            self.log(topic, data, created, sensed)
        except Exception as exc:  # a viewer must not take the loop down
            self.failed += 1
            self.last_error = f"{topic}: {exc}"

    def summary(self) -> dict[str, Any]:
        return {**self.live.summary(), "failed": self.failed, "last_error": self.last_error}

    def close(self) -> None:
        self.stop_serving()
