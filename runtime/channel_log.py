"""Every port's messages as Foxglove SDK channels: the base of the MCAP recorder
and of the live view (``edgeloop run --record``, ``--foxglove``).

One channel per output port and message form, topic ``/NODE/PORT``, in the form
:mod:`edgeloop.runtime.record_codecs` picks for each message (a port whose payloads
change form, an empty frame before the camera's first, has a channel per form on
its topic). Times: a message's log time (and publish time: the SDK writes both the
same) is when it was created, its ``timestamp`` field when its data was sensed.
In real time both are Unix nanoseconds (the loop's clock plus the Unix time it
started, so Foxglove and ROS tools show the date); in simulated time they are
nanoseconds of simulated time from 0, and the file's ``edgeloop.clock``
metadata says which.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from edgeloop.runtime.errors import MissingDependencyError
from edgeloop.runtime.record_codecs import (
    PortRecording,
    compressed_layout,
    encode,
    kinds,
    tagged,
    value_message,
)


def port_recordings(graph: Any) -> dict[str, PortRecording]:
    """Each output port's ``record:`` settings from a graph, by topic."""
    found = {}
    for node in graph.nodes:
        for port, how in node.record.items():
            found[f"/{node.id}/{port}"] = PortRecording(
                frame_id=how.frame_id or node.id,
                image=how.image,
                compress=how.compress,
                quality=how.quality,
            )
    return found


class _SameTopic(logging.Filter):
    """Hides the SDK's warning about a second channel on a topic: edgeloop makes one
    per message form on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "already exists in this context" not in record.getMessage()


def foxglove_module() -> Any:
    try:
        import foxglove
        import foxglove.mcap
    except ImportError:
        raise MissingDependencyError("foxglove-sdk", "record", "--record or --foxglove") from None
    context_log = logging.getLogger("foxglove.context")
    if not any(isinstance(f, _SameTopic) for f in context_log.filters):
        context_log.addFilter(_SameTopic())
    return foxglove


class ChannelLog:
    """Encodes each message once and logs it to every sink of its SDK context.

    Args:
        ports: How each topic is recorded (frame id, image marking, compression);
            a topic not named gets its node's id as frame id and the defaults.
        simulated: The run's clock is simulated (times from 0, not Unix time).
        only_when_watched: Encode a message only when some sink wants its channel
            (the live view alone: nothing is encoded while nobody subscribes).
    """

    def __init__(
        self,
        ports: Mapping[str, PortRecording] | None = None,
        *,
        simulated: bool = True,
        only_when_watched: bool = False,
    ) -> None:
        self._foxglove = foxglove_module()
        kinds()  # the schemas, built once before the loop runs
        self.context = self._foxglove.Context()
        self._ports = dict(ports or {})
        self._channels: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # channels are made from any process-group thread
        self._only_when_watched = only_when_watched
        self.simulated = simulated
        self.live: Any = None
        """The live view's server on these channels (:meth:`serve`), if any."""
        self.origin_ns: int | None = 0 if simulated else None
        """Unix time of the loop's time 0 (0 in simulated time; None until the first
        message in real time, which fixes it)."""

    def port(self, topic: str) -> PortRecording:
        found = self._ports.get(topic)
        if found is None:
            found = self._ports[topic] = PortRecording(frame_id=topic.split("/")[1])
        return found

    def clock_facts(self) -> dict[str, str]:
        return {"simulated": str(self.simulated).lower(), "origin_unix_ns": str(self.origin_ns)}

    def _first_message(self, created: float) -> None:
        """Fixes the Unix time of the loop's time 0 (real time)."""
        self.origin_ns = time.time_ns() - round(created * 1e9)

    def log(self, topic: str, data: Any, created: float, sensed: float) -> bool:
        """Encode and log one message; False when nobody wanted it.

        Raises:
            TypeError: the payload cannot be encoded (nothing was logged).
        """
        channels = self._channels.get(topic)
        if (
            self._only_when_watched
            and channels
            and not any(c.has_sinks() for c in channels.values())
        ):
            return False
        if self.origin_ns is None:
            self._first_message(created)
        origin = self.origin_ns or 0
        log_ns = origin + max(0, round(created * 1e9))
        sensed_ns = origin + round((sensed if math.isfinite(sensed) else created) * 1e9)
        port = self.port(topic)
        kind, body = encode(data, sensed_ns, port)
        if kind == "foxglove.CompressedImage" and channels and not self._fits(channels, data, port):
            # A compressed image in another layout than its channel's: as tagged JSON.
            kind, body = "edgeloop.Value", value_message({"value": tagged(data)}, sensed_ns)
        channel = self._channel(topic, kind, data, port)
        channel.log(body, log_time=log_ns)
        if self.live is not None:
            self.live.count(topic, channel)
        return True

    def serve(self, host: str, port: int, *, name: str = "edgeloop") -> Any:
        """Serve these channels live to Foxglove too (a recorder's messages are then
        encoded once for the file and the viewers); returns the ``LiveServer``.

        Raises:
            UsageError: the address cannot be listened on.
        """
        from edgeloop.runtime.live_view import LiveServer

        self.live = LiveServer(self, host, port, name=name)
        return self.live

    def stop_serving(self) -> None:
        if self.live is not None:
            self.live.stop()

    def log_unrecordable(self, topic: str, reason: str, created: float) -> None:
        """A message that could not be encoded, kept in its place with the reason."""
        origin = self.origin_ns or 0
        stamp = origin + max(0, round(created * 1e9))
        body = value_message({"unrecordable": reason}, stamp)
        self._channel(topic, "edgeloop.Value", None, self.port(topic)).log(body, log_time=stamp)

    @staticmethod
    def _fits(channels: Mapping[str, Any], data: Any, port: PortRecording) -> bool:
        """Whether the topic's compressed-image channel, if it has one, can carry this
        image (it reads back in its channel's layout: the first one's)."""
        channel = channels.get("foxglove.CompressedImage")
        return channel is None or (
            channel.metadata()["edgeloop.layout"] == compressed_layout(data, port)
        )

    def _channel(self, topic: str, kind: str, data: Any, port: PortRecording) -> Any:
        found = self._channels.get(topic, {}).get(kind)
        if found is not None:
            return found
        with self._lock:  # made once, whichever thread logs first
            found = self._channels.get(topic, {}).get(kind)
            if found is not None:
                return found
            form = kinds()[kind]
            schema = self._foxglove.Schema(
                name=form.name, encoding=form.schema_encoding, data=form.schema
            )
            metadata = {"edgeloop.frame_id": port.frame_id}
            if kind == "foxglove.CompressedImage":
                metadata["edgeloop.layout"] = compressed_layout(data, port)
            channel = self._foxglove.Channel(
                topic,
                schema=schema,
                message_encoding=form.message_encoding,
                context=self.context,
                metadata=metadata,
            )
            self._channels.setdefault(topic, {})[kind] = channel
        return channel
