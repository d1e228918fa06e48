"""Recording every message of a run into an MCAP file that Foxglove opens.

One channel per output port, topic ``/NODE/PORT``, JSON message encoding, and
log time the message's creation time on the run's clock. A message is
``{"seq": int, "sensed": float, "value": V}`` where V is the payload: numbers,
strings, booleans and null as themselves, a mapping as an object, and a numpy
array as ``{"dtype": "<f4", "shape": [...], "data": [...]}`` (floats written
with enough digits to read back bit-exact, NaN and infinities as strings).

The recorder never drops silently: a message it cannot write is counted, with
the last reason, and the run report says so. ``mcap`` is the ``record`` extra.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.errors import MissingDependencyError, RecordingError


def mcap_module() -> Any:
    try:
        import mcap.reader
        import mcap.records
        import mcap.stream_reader
        import mcap.writer
    except ImportError:
        raise MissingDependencyError("mcap", "record", "--record") from None
    return mcap


def _plain(value: Any) -> Any:
    """The payload as JSON-ready data (floats exact, non-finite floats as strings)."""
    if isinstance(value, np.ndarray):
        data = value.ravel().tolist()
        if value.dtype.kind in "fc":
            data = (
                [_float(x) for x in data]
                if value.dtype.kind == "f"
                else [[_float(x.real), _float(x.imag)] for x in data]
            )
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": data}
    if isinstance(value, (float, np.floating)):
        return _float(float(value))
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    raise TypeError(f"a {type(value).__name__} payload cannot be recorded")


def _float(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)  # 'nan', 'inf', '-inf'


def _restore(value: Any) -> Any:
    """Inverse of :func:`_plain`."""
    if isinstance(value, dict):
        if set(value) == {"dtype", "shape", "data"}:
            dtype = np.dtype(value["dtype"])
            if dtype.kind == "c":
                flat = [complex(float(r), float(i)) for r, i in value["data"]]
            elif dtype.kind == "f":
                flat = [float(x) for x in value["data"]]
            else:
                flat = value["data"]
            return np.asarray(flat, dtype=dtype).reshape(value["shape"])
        if set(value) == {"bytes"}:
            return bytes.fromhex(value["bytes"])
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return value


class Recorder:
    """Writes messages into ``path`` (MCAP); counts what it could not write.

    Args:
        path: The MCAP file.
        crash_safe: Write every message through at once (no chunks, no buffer),
            so a process killed mid-run leaves a readable file; a little slower.

    Attributes:
        written: Messages written.
        failed: Messages that could not be written.
        last_error: Why the last one failed.
    """

    def __init__(self, path: str | Path, *, crash_safe: bool = False) -> None:
        mcap = mcap_module()
        self._crash_safe = crash_safe
        self.path = Path(path)
        try:
            self._file = self.path.open("wb")
        except OSError as exc:
            raise RecordingError(
                f"cannot write the recording {path}: {exc.strerror}", fix="a writable path"
            ) from None
        # Crash-safe (a process group's part): no chunks, and every message flushed
        # to the file at once, so a killed process loses nothing it recorded.
        self._writer = mcap.writer.Writer(self._file, use_chunking=not crash_safe)
        self._writer.start(profile="", library="edgeloop")
        self._channels: dict[str, int] = {}
        self.written = 0
        self.failed = 0
        self.last_error = ""

    def write(self, topic: str, data: Any, seq: int, created: float, sensed: float) -> None:
        """Record one message; never raises (failures are counted)."""
        try:
            channel = self._channel(topic)
            body = json.dumps(
                {"seq": seq, "sensed": _float(sensed), "value": _plain(data)},
                separators=(",", ":"),
            ).encode()
            stamp = max(0, round(created * 1e9))
            self._writer.add_message(
                channel, log_time=stamp, data=body, publish_time=stamp, sequence=seq
            )
            if self._crash_safe:
                self._file.flush()
            self.written += 1
        except Exception as exc:  # a recorder must not take the loop down
            self.failed += 1
            self.last_error = f"{topic}: {exc}"

    def _channel(self, topic: str) -> int:
        channel = self._channels.get(topic)
        if channel is None:
            channel = self._writer.register_channel(
                topic=topic, message_encoding="json", schema_id=0
            )
            self._channels[topic] = channel
        return channel

    def add_metadata(self, data: Mapping[str, Any]) -> None:
        """Facts about the run (graph, seed, duration) for ``edgeloop replay``."""
        self._writer.add_metadata("edgeloop.run", {k: str(v) for k, v in data.items()})

    def summary(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "written": self.written,
            "failed": self.failed,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        try:
            self._writer.finish()
        finally:
            self._file.close()


def read_recording(path: str | Path) -> Iterator[tuple[str, float, dict[str, Any]]]:
    """``(topic, created, {"seq", "sensed", "value"})`` for every recorded message, in
    log-time order, payloads restored (arrays with their dtype and shape).

    Raises:
        EdgeloopError: the file is missing or not an MCAP recording.
    """
    mcap = mcap_module()
    try:
        stream = Path(path).open("rb")
    except OSError as exc:
        raise RecordingError(f"cannot open the recording {path}: {exc.strerror}") from None
    with stream:
        try:
            reader = mcap.reader.make_reader(stream)
            for _schema, channel, message in reader.iter_messages(log_time_order=True):
                body = json.loads(message.data)
                yield (
                    channel.topic,
                    message.log_time / 1e9,
                    {
                        "seq": body["seq"],
                        "sensed": _restore(body["sensed"]),
                        "value": _restore(body["value"]),
                    },
                )
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise RecordingError(f"{path} is not a readable edgeloop recording: {exc}") from None
        except Exception as exc:  # mcap raises its own error types for damaged files
            if type(exc).__module__.startswith(("mcap", "struct")) or isinstance(exc, EOFError):
                raise RecordingError(f"{path} is not a readable MCAP file: {exc}") from None
            raise


def merge_recordings(
    parts: list[Path], path: str | Path, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge the recordings of a run's process groups into one file, in log-time
    order (ties in the order of ``parts``); messages are copied byte for byte.

    Returns:
        The recording's summary, as a :class:`Recorder` gives it.
    """
    import heapq

    mcap = mcap_module()
    out = Recorder(path)
    streams = [part.open("rb") for part in parts]

    def messages(k: int, stream: Any) -> Iterator[tuple[int, int, str, Any]]:
        # A part whose process was killed has no summary: read it as a stream, and
        # count what cannot be read rather than lose the other parts.
        try:
            reader = mcap.stream_reader.StreamReader(stream, skip_magic=False)
            channels: dict[int, str] = {}
            for record in reader.records:
                if isinstance(record, mcap.records.Channel):
                    channels[record.id] = record.topic
                elif isinstance(record, mcap.records.Message):
                    yield record.log_time, k, channels[record.channel_id], record
        except Exception as exc:
            out.failed += 1
            out.last_error = f"{parts[k].name}: {type(exc).__name__}: {exc}"

    try:
        readers = [messages(k, stream) for k, stream in enumerate(streams)]
        for _, _, topic, message in heapq.merge(*readers, key=lambda item: item[:2]):
            channel = out._channel(topic)
            out._writer.add_message(
                channel,
                log_time=message.log_time,
                data=message.data,
                publish_time=message.publish_time,
                sequence=message.sequence,
            )
            out.written += 1
        if metadata:
            out.add_metadata(metadata)
    finally:
        for stream in streams:
            stream.close()
        out.close()
    return out.summary()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The run facts a recording holds (empty if none)."""
    mcap = mcap_module()
    try:
        with Path(path).open("rb") as stream:
            reader = mcap.reader.make_reader(stream)
            for record in reader.iter_metadata():
                if record.name == "edgeloop.run":
                    return dict(record.metadata)
    except FileNotFoundError:
        raise RecordingError(f"cannot open the recording {path}: no such file") from None
    except Exception as exc:  # mcap and struct errors, short reads: a damaged file
        raise RecordingError(f"{path} is not a readable MCAP file: {exc}") from None
    return {}


class Collector:
    """A recorder that keeps messages in memory, by topic (for replay comparisons)."""

    def __init__(self) -> None:
        self.messages: dict[str, list[tuple[float, int, Any]]] = {}
        self.failed = 0

    def write(self, topic: str, data: Any, seq: int, created: float, sensed: float) -> None:
        self.messages.setdefault(topic, []).append((created, seq, data))

    def summary(self) -> dict[str, Any]:
        return {"written": sum(map(len, self.messages.values())), "failed": 0}


class Tee:
    """Hands every message to several recorders (an MCAP file and the stats socket);
    the summary is the first one's."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def write(self, topic: str, data: Any, seq: int, created: float, sensed: float) -> None:
        for sink in self.sinks:
            sink.write(topic, data, seq, created, sensed)

    def summary(self) -> dict[str, Any]:
        return self.sinks[0].summary()
