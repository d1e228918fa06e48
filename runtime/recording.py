"""Recording every message of a run into an MCAP file that Foxglove opens.

One channel per output port, topic ``/NODE/PORT``, JSON message encoding, and
log time the message's creation time on the run's clock. A message is
``{"seq": int, "sensed": float, "value": V}`` where V is the payload: numbers,
strings, booleans and null as themselves, a mapping as an object, and a numpy
array as ``{"dtype": "<f4", "shape": [...], "data": [...]}`` (floats written
with enough digits to read back bit-exact, NaN and infinities as strings).

The recorder never drops silently: a message it cannot write is counted, with
the last reason, and the run report says so. ``mcap`` is the ``record`` extra.

Crash safety: messages are written unchunked and flushed to the file every
``flush_ms`` (and ``fsync``-ed too where power may fail), so a process killed
mid-run leaves a file readable up to its last flush. A run split into process
groups records one part per process in ``FILE.parts/`` beside ``FILE`` and
merges them at the end; parts a killed run left behind are merged by
:func:`repair_recording` (``edgeloop recording repair FILE``), and by
:func:`read_recording` on its own.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.errors import RecordingError
from edgeloop.runtime.mcap_records import mcap_module, scan

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
        flush_ms: Flush what was written to the file at least this often (from a
            thread of its own, so a loop gone quiet is flushed too); 0 flushes
            every message. A killed process loses at most this much. A node's
            ``ctx.record`` (an episode's end) flushes at once too.
        fsync: Also ``fsync`` at each flush, so a power cut loses no more either
            (costs a disk write each time: see ``benchmarks/recording_cost.py``).

    Attributes:
        written: Messages written.
        failed: Messages that could not be written.
        last_error: Why the last one failed.
    """

    def __init__(
        self, path: str | Path, *, flush_ms: float = DEFAULT_FLUSH_MS, fsync: bool = False
    ) -> None:
        mcap = mcap_module()
        self.path = Path(path)
        try:
            self._file = self.path.open("wb")
        except OSError as exc:
            raise RecordingError(
                f"cannot write the recording {path}: {exc.strerror}", fix="a writable path"
            ) from None
        # Unchunked: a chunk is written only when it is full, so a killed process
        # would lose the whole chunk it was filling.
        self._writer = mcap.writer.Writer(self._file, use_chunking=False)
        self._writer.start(profile="", library="edgeloop")
        self._channels: dict[str, int] = {}
        self._fsync = fsync
        self._every_message = flush_ms <= 0
        self._lock = threading.Lock()  # the writer and the flusher thread take turns
        self._dirty = False
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if not self._every_message:
            self._flusher = threading.Thread(
                target=self._flush_every,
                args=(flush_ms / 1e3,),
                daemon=True,
                name="edgeloop-recorder-flush",
            )
            self._flusher.start()
        self.written = 0
        self.failed = 0
        self.last_error = ""

    def write(self, topic: str, data: Any, seq: int, created: float, sensed: float) -> None:
        """Record one message; never raises (failures are counted)."""
        try:
            body = json.dumps(
                {"seq": seq, "sensed": _float(sensed), "value": _plain(data)},
                separators=(",", ":"),
            ).encode()
            stamp = max(0, round(created * 1e9))
            with self._lock:
                channel = self._channel(topic)
                self._writer.add_message(
                    channel, log_time=stamp, data=body, publish_time=stamp, sequence=seq
                )
                self._dirty = True
                if self._every_message:
                    self._flush()
            self.written += 1
        except Exception as exc:  # a recorder must not take the loop down
            self.failed += 1
            self.last_error = f"{topic}: {exc}"

    def flush(self) -> None:
        """Write what was recorded through to the file now (at an episode's end)."""
        if self._dirty:
            with self._lock:
                try:
                    self._flush()
                except OSError as exc:  # a full disk: counted at the next write
                    self.last_error = f"flush: {exc}"

    def _flush_every(self, period_s: float) -> None:
        while not self._closed.wait(period_s):
            self.flush()

    def _flush(self) -> None:
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._dirty = False

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
        with self._lock:
            self._writer.add_metadata("edgeloop.run", {k: str(v) for k, v in data.items()})

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
            with self._lock:
                self._writer.finish()
                self._flush()
        finally:
            self._file.close()


def read_recording(path: str | Path) -> Iterator[tuple[str, float, dict[str, Any]]]:
    """``(topic, created, {"seq", "sensed", "value"})`` for every recorded message, in
    log-time order, payloads restored (arrays with their dtype and shape).

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
    order = sorted(range(len(found.messages)), key=lambda i: found.messages[i][1].log_time)
    for i in order:
        topic, message = found.messages[i]
        try:
            body = json.loads(message.data)
            entry = {
                "seq": body["seq"],
                "sensed": _restore(body["sensed"]),
                "value": _restore(body["value"]),
            }
        except Exception as exc:  # a damaged body: bad JSON, missing keys, bad dtype
            raise RecordingError(
                f"{path} is not a readable edgeloop recording: the message on {topic} "
                f"at {message.log_time / 1e9:.6f} s: {type(exc).__name__}: {exc}"
            ) from None
        yield topic, message.log_time / 1e9, entry


def read_metadata(path: str | Path) -> dict[str, str]:
    """The run facts a recording holds (empty if none).

    Raises:
        RecordingError: the file is missing or not an MCAP recording.
    """
    repair_recording(path, only_parts=True)
    return scan(path).metadata.get("edgeloop.run", {})


def parts_dir(path: str | Path) -> Path:
    """Where the process groups of a run recording into ``path`` write their parts."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def merge_recordings(
    parts: list[Path], path: str | Path, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge the recordings of a run's process groups into one file, in log-time
    order (ties in the order of ``parts``); messages are copied byte for byte. A
    part whose process was killed is read up to its last flushed message: that is
    noted (``cut_short``), not counted as a failure.

    Returns:
        The recording's summary, as a :class:`Recorder` gives it, with
        ``cut_short``: the parts that ended early, and why.
    """
    out = Recorder(path, flush_ms=0)
    cut_short = []
    try:
        readers = []
        for k, part in enumerate(parts):
            try:
                found = scan(part)
            except RecordingError as exc:
                out.failed += 1
                out.last_error = exc.message
                continue
            if found.stopped:
                cut_short.append(f"{part.name}: {found.stopped}")
            readers.append([(m.log_time, k, topic, m) for topic, m in found.messages])
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
        out.close()
    return {**out.summary(), "cut_short": cut_short}


def repair_recording(path: str | Path, *, only_parts: bool = False) -> dict[str, Any] | None:
    """Make ``path`` a whole recording again after a killed run.

    Parts left in ``path``'s parts folder (a killed supervisor) are merged into
    ``path``, with the run facts they saved, and the folder removed. Otherwise a
    file cut short (a killed single process) is rewritten with everything it
    holds and a proper summary, unless ``only_parts``.

    Returns:
        The repaired recording's summary (with ``cut_short``), or None when
        there was nothing to repair.

    Raises:
        RecordingError: neither the file nor its parts exist, or the file is not
            an MCAP recording.
    """
    path = Path(path)
    folder = parts_dir(path)
    if folder.is_dir():
        facts = folder / "run.json"
        info = json.loads(facts.read_text()) if facts.exists() else {}
        order = {name: i for i, name in enumerate(info.get("groups", []))}

        def rank(part: Path) -> tuple[int, int, str]:
            group, _, restart = part.stem.rpartition(".")
            number = int(restart) if restart.isdigit() else 0
            return (order.get(group, len(order)), number, part.name)

        parts = sorted(folder.glob("*.mcap"), key=rank)
        summary = merge_recordings(parts, path, info.get("metadata"))
        shutil.rmtree(folder, ignore_errors=True)
        _log.warning("%s: merged from %d part(s) a stopped run left behind", path, len(parts))
        return summary
    if only_parts:
        return None
    found = scan(path)
    if found.complete:
        return None
    temporary = path.with_name(path.name + ".repairing")
    temporary.unlink(missing_ok=True)
    path.rename(temporary)
    try:
        summary = merge_recordings([temporary], path, found.metadata.get("edgeloop.run"))
    except BaseException:
        temporary.rename(path)  # nothing lost: the original comes back
        raise
    temporary.unlink()
    summary["cut_short"] = [s.replace(temporary.name, path.name) for s in summary["cut_short"]]
    return summary


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
