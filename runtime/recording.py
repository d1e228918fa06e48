"""Recording every message of a run into an MCAP file that Foxglove and ROS tools open.

One channel per output port, topic ``/NODE/PORT``, each message in the typed
form :mod:`edgeloop.runtime.record_codecs` describes (images as
``foxglove.RawImage``, numbers Foxglove plots, arrays as binary with dtype and
shape, the rest as tagged JSON) and with the times
:mod:`edgeloop.runtime.channel_log` describes. Reading gives every payload back
bit-exact (a jpeg-compressed port within a tolerance, and says so). Recordings of
edgeloop before 0.3 (schemaless JSON) still read.

The recorder never drops silently: a message it cannot encode is counted, with
the last reason, and kept in its place as an ``unrecordable`` note; the run
report says so. The Foxglove SDK writes the file (``record`` extra).

Crash safety: messages are written unchunked and flushed to the file every
``flush_ms`` (and ``fsync``-ed too where power may fail), so a process killed
mid-run leaves a file readable up to its last flush. A run split into process
groups records one part per process in ``FILE.parts/`` beside ``FILE`` and
merges them at the end (:mod:`edgeloop.runtime.recording_parts`, which also
repairs what a killed run left behind).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgeloop.runtime.channel_log import ChannelLog
from edgeloop.runtime.errors import RecordingError
from edgeloop.runtime.mcap_records import ChannelInfo, mcap_module, scan
from edgeloop.runtime.record_codecs import PortRecording, Unrecordable, decode, lossy
from edgeloop.runtime.recording_parts import merge_recordings, parts_dir, repair_recording

__all__ = [
    "Collector",
    "Recorder",
    "Tee",
    "mcap_module",
    "merge_recordings",
    "parts_dir",
    "read_metadata",
    "read_recording",
    "repair_recording",
]
DEFAULT_FLUSH_MS = 100.0
_log = logging.getLogger("edgeloop.recording")


class _SinkErrors(logging.Handler):
    """Counts the write errors the SDK reports only as log records, for the recorder
    writing on this thread just then (the SDK logs them inside the write call)."""

    writing = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        recorder = getattr(self.writing, "recorder", None)
        if recorder is not None:
            recorder.sdk_errors += 1
            recorder.last_error = record.getMessage()


_SINK_ERRORS = _SinkErrors(logging.WARNING)
logging.getLogger("foxglove.log_sink_set").addHandler(_SINK_ERRORS)


class Recorder(ChannelLog):
    """Writes messages into ``path`` (MCAP); counts what it could not write.

    Args:
        path: The MCAP file.
        flush_ms: Flush what was written to the file at least this often (from a
            thread of its own, so a loop gone quiet is flushed too); 0 flushes
            every message. A killed process loses at most this much. A node's
            ``ctx.record`` (an episode's end) flushes at once too.
        fsync: Also ``fsync`` at each flush, so a power cut loses no more either
            (costs a disk write each time: see ``benchmarks/recording_cost.py``).
        ports: Frame ids, image marking and compression per topic.
        simulated: Times are simulated (from 0) rather than Unix time.

    Attributes:
        written: Messages written.
        failed: Messages that could not be written.
        last_error: Why the last one failed.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_ms: float = DEFAULT_FLUSH_MS,
        fsync: bool = False,
        ports: Mapping[str, PortRecording] | None = None,
        simulated: bool = True,
    ) -> None:
        super().__init__(ports, simulated=simulated)
        foxglove = self._foxglove
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise RecordingError(
                f"cannot write the recording {path}: no folder {self.path.parent}",
                fix="a writable path",
            )
        # Unchunked: a chunk is written only when it is full, so a killed process
        # would lose the whole chunk it was filling. No data CRC: it costs as much
        # as the write of a camera frame, and flushes would not cover it anyway.
        options = foxglove.mcap.MCAPWriteOptions(
            use_chunks=False, compression=None, calculate_data_section_crc=False
        )
        try:
            self._writer = foxglove.open_mcap(
                self.path, allow_overwrite=True, context=self.context, writer_options=options
            )
        except Exception as exc:
            raise RecordingError(
                f"cannot write the recording {path}: {exc}", fix="a writable path"
            ) from None
        self._fsync = fsync
        self._every_message = flush_ms <= 0
        self._flush_lock = threading.Lock()
        self._dirty = False
        self._closed = threading.Event()
        self.written = 0
        self.failed = 0
        self.last_error = ""
        self.sdk_errors = 0  # write errors the SDK logged during this recorder's writes
        self._unflushed = 0  # messages written since the last flush that reached the file
        if simulated:
            self._metadata("edgeloop.clock", self.clock_facts())
        self._flusher: threading.Thread | None = None
        if not self._every_message:
            self._flusher = threading.Thread(
                target=self._flush_every,
                args=(flush_ms / 1e3,),
                daemon=True,
                name="edgeloop-recorder-flush",
            )
            self._flusher.start()

    def _first_message(self, created: float) -> None:
        super()._first_message(created)
        self._metadata("edgeloop.clock", self.clock_facts())

    def _metadata(self, name: str, data: Mapping[str, str]) -> None:
        try:
            self._writer.write_metadata(name, dict(data))
        except RuntimeError as exc:  # a full disk: the SDK raises here, logs elsewhere
            self.last_error = f"{name}: {exc}"

    def write(self, topic: str, data: Any, seq: int, created: float, sensed: float) -> None:
        """Record one message; never raises (failures are counted). ``seq`` is not
        written: it is the message's place among its topic's messages."""
        _SinkErrors.writing.recorder = self
        try:
            errors = self.sdk_errors
            try:
                self.log(topic, data, created, sensed)
            except Exception as exc:  # kept in its place, so later messages keep their seq
                self.failed += 1
                self.last_error = f"{topic}: {exc}"
                self.log_unrecordable(topic, f"{type(exc).__name__}: {exc}", created)
            else:
                if self.sdk_errors == errors:
                    self.written += 1
                    self._unflushed += 1
                else:
                    self.failed += 1
            self._dirty = True
            if self._every_message:
                self.flush()
        except Exception as exc:  # a recorder must not take the loop down
            self.failed += 1
            self.last_error = f"{topic}: {exc}"
        finally:
            _SinkErrors.writing.recorder = None

    def flush(self) -> None:
        """Write what was recorded through to the file now (at an episode's end)."""
        if not self._dirty:
            return
        with self._flush_lock:
            self._dirty = False
            pending = self._unflushed  # the loop may write more meanwhile
            try:
                self._writer.flush()
                if self._fsync:
                    with self.path.open("rb") as file:
                        os.fsync(file.fileno())
            except (OSError, RuntimeError) as exc:  # a full disk
                self._lost(f"flush: {exc}")
            else:
                self._unflushed -= pending

    def _lost(self, why: str) -> None:
        """What was written since the last good flush never reached the file."""
        self.written -= self._unflushed
        self.failed += self._unflushed
        self._unflushed = 0
        self.last_error = why

    def _flush_every(self, period_s: float) -> None:
        while not self._closed.wait(period_s):
            self.flush()

    def add_metadata(self, data: Mapping[str, Any]) -> None:
        """Facts about the run (graph, seed, duration) for ``edgeloop replay``."""
        self._metadata("edgeloop.run", {k: str(v) for k, v in data.items()})

    def summary(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "written": self.written,
            "failed": self.failed,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            with self._flush_lock:
                self._writer.close()
                if self._fsync:
                    with self.path.open("rb") as file:
                        os.fsync(file.fileno())
        except (RuntimeError, OSError) as exc:  # the summary is lost; flushed messages stay
            self._lost(f"close: {exc}")
        finally:
            self.stop_serving()


def read_recording(path: str | Path) -> Iterator[tuple[str, float, dict[str, Any]]]:
    """``(topic, created, {"seq", "sensed", "value", "exact"})`` for every recorded
    message, in log-time order, payloads restored (arrays with their dtype and
    shape). ``seq`` is the message's place among its topic's messages (as the
    port numbered it), ``exact`` False where the payload went through a lossy
    compression. A message the recorder could not write is skipped (it still
    takes its place in ``seq``).

    A file whose writer was killed is read up to its last flushed message (a
    warning says so); parts a killed multi-process run left beside ``path`` are
    merged into it first.

    Raises:
        RecordingError: the file is missing, not an MCAP recording, or damaged
            where a message should be (the message says where).
    """
    repair_recording(path, only_parts=True)
    found = scan(path)
    if found.stopped:
        _log.warning("%s: %s; reading what comes before", path, found.stopped)
    origin = clock_origin(found.metadata, path)
    order = sorted(range(len(found.messages)), key=lambda i: found.messages[i][1].log_time)
    seqs: dict[str, int] = {}
    for i in order:
        channel, message = found.messages[i]
        try:
            entry = _entry(channel, message.data, origin)
        except Exception as exc:  # a damaged body: bad JSON or protobuf, a bad dtype
            raise RecordingError(
                f"{path} is not a readable edgeloop recording: the message on "
                f"{channel.topic} at {message.log_time / 1e9:.6f} s: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if "seq" not in entry:  # written since 0.3: its place on the topic
            entry["seq"] = seqs.get(channel.topic, 0)
        seqs[channel.topic] = entry["seq"] + 1
        if isinstance(entry["value"], Unrecordable):
            continue
        yield channel.topic, (message.log_time - origin) / 1e9, entry


def clock_origin(metadata: Mapping[str, Mapping[str, str]], path: str | Path) -> int:
    """The Unix time (ns) of the run's time 0 a recording names (0: simulated time,
    or a recording from before 0.3)."""
    written = metadata.get("edgeloop.clock", {}).get("origin_unix_ns", "0")
    try:
        return int(written)
    except ValueError:
        raise RecordingError(
            f"{path} is not a readable edgeloop recording: its clock origin is {written!r}"
        ) from None


def _entry(channel: ChannelInfo, data: bytes, origin: int) -> dict[str, Any]:
    if not channel.schema_name and channel.message_encoding == "json":  # before 0.3
        body = json.loads(data)
        return {
            "seq": body["seq"],
            "sensed": untagged_legacy(body["sensed"]),
            "value": untagged_legacy(body["value"]),
            "exact": True,
        }
    value, sensed_ns = decode(channel.schema_name, data, dict(channel.metadata))
    return {
        "sensed": (sensed_ns - origin) / 1e9,
        "value": value,
        "exact": not lossy(channel.schema_name, data),
    }


def untagged_legacy(value: Any) -> Any:
    """A payload as edgeloop before 0.3 wrote it (arrays as ``{"dtype", "shape",
    "data"}`` lists, non-finite floats as strings)."""
    import numpy as np

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
        return {k: untagged_legacy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untagged_legacy(v) for v in value]
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def read_metadata(path: str | Path) -> dict[str, str]:
    """The run facts a recording holds (empty if none).

    Raises:
        RecordingError: the file is missing or not an MCAP recording.
    """
    repair_recording(path, only_parts=True)
    return scan(path).metadata.get("edgeloop.run", {})


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

    def flush(self) -> None:
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                flush()

    def summary(self) -> dict[str, Any]:
        return self.sinks[0].summary()
