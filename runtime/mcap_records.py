"""Reading what an MCAP file holds, whole, cut short or damaged.

A recording whose writer was killed has no summary and may end inside a record;
one copied badly may have flipped bits anywhere. :func:`scan` reads the file as
a stream, record by record, and keeps everything up to the first record it
cannot read, saying why it stopped. So a reader gets the messages flushed
before a crash, and a damaged file gives one clear reason, never a traceback
from deep inside the ``mcap`` (or a compression) library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeloop.runtime.errors import MissingDependencyError, RecordingError


def mcap_module() -> Any:
    try:
        import mcap.exceptions
        import mcap.reader
        import mcap.records
        import mcap.stream_reader
        import mcap.writer
    except ImportError:
        raise MissingDependencyError("mcap", "record", "--record") from None
    return mcap


@dataclass(frozen=True)
class ChannelInfo:
    """A channel and its schema, as a file declared them."""

    topic: str
    message_encoding: str
    schema_name: str = ""
    """Empty for a channel without a schema (the JSON of edgeloop before 0.3)."""
    schema_encoding: str = ""
    schema: bytes = b""
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass
class Scan:
    """What :func:`scan` found in one file."""

    messages: list[tuple[ChannelInfo, Any]] = field(default_factory=list)
    """``(channel, mcap Message record)`` in file order."""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    """Metadata records by name."""
    complete: bool = False
    """The file ends with its footer: its writer finished it."""
    stopped: str = ""
    """Why reading stopped before a footer ("" when complete): a clean end after
    the last record (a writer that was killed), a record cut off, or damage."""
    lost_bytes: int = 0
    """Bytes after the last record that could be read."""


class _Counting:
    """A read-only view of a file that knows how far it has been read."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.position += len(data)
        return data


def scan(path: str | Path) -> Scan:
    """Every channel, message and metadata record of ``path`` that can be read.

    Raises:
        RecordingError: the file cannot be opened, or is not an MCAP file at all.
    """
    mcap = mcap_module()
    path = Path(path)
    try:
        stream = path.open("rb")
        size = path.stat().st_size
    except OSError as exc:
        raise RecordingError(f"cannot open the recording {path}: {exc.strerror}") from None
    found = Scan()
    channels: dict[int, ChannelInfo] = {}
    schemas: dict[int, Any] = {}
    with stream:
        counting = _Counting(stream)
        last_good = 0
        try:
            reader = mcap.stream_reader.StreamReader(counting, skip_magic=False, validate_crcs=True)
            for record in reader.records:
                last_good = counting.position
                if isinstance(record, mcap.records.Schema):
                    schemas[record.id] = record
                elif isinstance(record, mcap.records.Channel):
                    channels[record.id] = _channel(record, schemas)
                elif isinstance(record, mcap.records.Message):
                    if record.channel_id not in channels:
                        raise ValueError(
                            f"a message on channel {record.channel_id}, never declared"
                        )
                    found.messages.append((channels[record.channel_id], record))
                elif isinstance(record, mcap.records.Metadata):
                    found.metadata[record.name] = dict(record.metadata)
                elif isinstance(record, mcap.records.Footer):
                    found.complete = True
        except Exception as exc:  # anything the file's bytes make a reader raise
            found.lost_bytes = size - last_good
            if last_good == 0:
                raise RecordingError(
                    f"{path} is not an MCAP recording ({_reason(exc)})",
                    fix="check the path; a recording starts with the MCAP magic bytes",
                ) from None
            if found.lost_bytes == 0 and isinstance(exc, mcap.exceptions.EndOfFile):
                found.stopped = "it ends after its last message, without a summary"
            elif isinstance(exc, (mcap.exceptions.EndOfFile, EOFError)) or (
                counting.position >= size
            ):
                found.stopped = f"its last {found.lost_bytes} bytes are a record cut off"
            else:
                found.stopped = (
                    f"it is damaged {last_good} bytes in ({_reason(exc)}); "
                    f"{found.lost_bytes} bytes after that were not read"
                )
    return found


def _channel(record: Any, schemas: dict[int, Any]) -> ChannelInfo:
    schema = schemas.get(record.schema_id)
    if record.schema_id and schema is None:
        raise ValueError(f"channel {record.id} names schema {record.schema_id}, never declared")
    return ChannelInfo(
        topic=record.topic,
        message_encoding=record.message_encoding,
        schema_name=schema.name if schema else "",
        schema_encoding=schema.encoding if schema else "",
        schema=bytes(schema.data) if schema else b"",
        metadata=tuple(sorted(record.metadata.items())),
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (struct.error, EOFError)) or type(exc).__name__ == "EndOfFile":
        return "it ends too soon"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
