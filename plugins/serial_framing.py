"""Framing bytes from a serial device into messages, and messages into bytes.

A serial port delivers a byte stream in arbitrary chunks: a frame can arrive
in pieces, two frames in one read, and a device that was plugged in mid-stream
starts with half a frame. :class:`Deframer` takes chunks as they come and
yields whole frames' values, counting what it had to skip (garbage between
frames, a bad checksum, a frame of the wrong size) without ever raising.

Line framings (text, one frame per line ending in ``\\n``):

- ``nmea``: ``$BODY*HH`` where HH is the XOR of BODY's bytes in hex; the
  value is BODY's comma-separated fields after the sentence name, as floats.
- ``csv``: comma-separated numbers.

Binary framings, carrying a ``struct`` layout the user declares (``<fff``):

- ``cobs``: the packed struct plus a CRC-32, COBS-encoded, ended by a zero byte.
- ``length``: a start byte 0xA5, a length byte, the packed struct, a CRC-32.

Every framing decodes to a float64 array (one element per field).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

FRAMINGS = ("nmea", "csv", "cobs", "length")
_START = 0xA5
_MAX_LINE = 4096  # bytes; a longer "line" is garbage (a device at the wrong baud rate)
_CRC = struct.Struct("<I")


@dataclass
class FrameCounts:
    """What a :class:`Deframer` read: frames decoded and what it skipped, by reason."""

    frames: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class Deframer:
    """Turns a byte stream into frame values.

    Args:
        framing: One of :data:`FRAMINGS`.
        layout: The ``struct`` format of a binary frame's fields (``<fff``); unused
            by the line framings.
        fields: For the line framings, how many numbers a frame must have (None:
            any number).
    """

    def __init__(self, framing: str, layout: str = "", fields: int | None = None) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing '{framing}' (known: {', '.join(FRAMINGS)})")
        self.framing = framing
        self._struct = struct.Struct(layout) if framing in ("cobs", "length") else None
        self._fields = fields
        self._buffer = bytearray()
        self.counts = FrameCounts()

    def feed(self, chunk: bytes) -> Iterator[np.ndarray]:
        """The values of every frame ``chunk`` completes, oldest first."""
        self._buffer += chunk
        if self.framing in ("nmea", "csv"):
            yield from self._lines()
        elif self.framing == "cobs":
            yield from self._cobs_frames()
        else:
            yield from self._length_frames()

    # -- line framings ------------------------------------------------------------------

    def _lines(self) -> Iterator[np.ndarray]:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > _MAX_LINE:
                    self.counts.skip("too long")
                    self._buffer.clear()
                return
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            if not line:
                continue
            value = self._nmea(line) if self.framing == "nmea" else self._numbers(line)
            if value is not None:
                self.counts.frames += 1
                yield value

    def _nmea(self, line: bytes) -> np.ndarray | None:
        start = line.find(b"$")
        if start < 0 or b"*" not in line[start:]:
            self.counts.skip("not a sentence")
            return None
        body, _, checksum = line[start + 1 :].rpartition(b"*")
        try:
            expected = int(checksum[:2], 16)
        except ValueError:
            self.counts.skip("bad checksum")
            return None
        actual = 0
        for byte in body:
            actual ^= byte
        if actual != expected:
            self.counts.skip("bad checksum")
            return None
        return self._numbers(body.split(b",", 1)[1] if b"," in body else b"")

    def _numbers(self, text: bytes) -> np.ndarray | None:
        try:
            value = np.array([float(x) for x in text.split(b",")], dtype=np.float64)
        except ValueError:
            self.counts.skip("not numbers")
            return None
        if self._fields is not None and len(value) != self._fields:
            self.counts.skip("wrong field count")
            return None
        return value

    # -- binary framings ----------------------------------------------------------------

    def _cobs_frames(self) -> Iterator[np.ndarray]:
        assert self._struct is not None
        while True:
            end = self._buffer.find(b"\x00")
            if end < 0:
                if len(self._buffer) > 2 * (self._struct.size + _CRC.size) + 8:
                    self.counts.skip("garbage")
                    self._buffer.clear()
                return
            encoded = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if not encoded:
                continue
            payload = cobs_decode(encoded)
            value = self._checked(payload) if payload is not None else None
            if payload is None:
                self.counts.skip("bad COBS")
            if value is not None:
                self.counts.frames += 1
                yield value

    def _length_frames(self) -> Iterator[np.ndarray]:
        assert self._struct is not None
        while True:
            start = self._buffer.find(bytes([_START]))
            if start < 0:
                if self._buffer:
                    self.counts.skip("garbage")
                    self._buffer.clear()
                return
            if start:
                self.counts.skip("garbage")
                del self._buffer[:start]
            if len(self._buffer) < 2:
                return
            length = self._buffer[1]
            if length != self._struct.size:
                self.counts.skip("wrong size")
                del self._buffer[:1]  # resynchronise on the next start byte
                continue
            whole = 2 + length + _CRC.size
            if len(self._buffer) < whole:
                return
            payload = bytes(self._buffer[2:whole])
            value = self._checked(payload)
            if value is None:
                del self._buffer[:1]
                continue
            del self._buffer[:whole]
            self.counts.frames += 1
            yield value

    def _checked(self, payload: bytes) -> np.ndarray | None:
        assert self._struct is not None
        if len(payload) != self._struct.size + _CRC.size:
            self.counts.skip("wrong size")
            return None
        body, (crc,) = payload[: -_CRC.size], _CRC.unpack(payload[-_CRC.size :])
        if zlib.crc32(body) != crc:
            self.counts.skip("bad checksum")
            return None
        return np.array(self._struct.unpack(body), dtype=np.float64)


def encode_frame(
    framing: str, values: Sequence[float], layout: str = "", name: str = "EDG"
) -> bytes:
    """The bytes of one frame carrying ``values`` (what a device sends, or an
    actuator writes), in ``framing``."""
    if framing == "csv":
        return (",".join(repr(float(v)) for v in values) + "\n").encode()
    if framing == "nmea":
        body = ",".join([name, *(repr(float(v)) for v in values)]).encode()
        checksum = 0
        for byte in body:
            checksum ^= byte
        return b"$" + body + f"*{checksum:02X}\r\n".encode()
    packed = struct.Struct(layout).pack(*values)
    payload = packed + _CRC.pack(zlib.crc32(packed))
    if framing == "cobs":
        return cobs_encode(payload) + b"\x00"
    if framing == "length":
        return bytes([_START, len(packed)]) + payload
    raise ValueError(f"unknown framing '{framing}' (known: {', '.join(FRAMINGS)})")


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: ``data`` without zero bytes (so a zero
    can end a frame)."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """The inverse of :func:`cobs_encode`; None for bytes no encoding could give."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            return None
        block = data[i + 1 : i + code]
        if len(block) != code - 1 or 0 in block:
            return None
        out += block
        i += code
        if code < 255 and i < len(data):
            out.append(0)
    return bytes(out)
