"""The protobuf wire format, the little of it recordings need: writing a message from
its fields without copying large ``bytes`` fields more than once, and reading one
back field by field.

Why by hand: the Foxglove SDK's typed messages copy a camera frame four times on
the way to the file (``benchmarks/recording_cost.py`` measured 2.3x the raw write
for a 640x480 frame, against 1.2x for bytes encoded here and logged through the
SDK's generic channel), and the ``protobuf`` package is not a runtime dependency.
The schemas themselves come from the SDK (``foxglove.messages.*.get_schema()``) or
from :func:`file_descriptor_set` for edgeloop's own messages; tests check both
against the ``protobuf`` package.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Sequence
from typing import Any

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

# FieldDescriptorProto.Type values used by edgeloop's schemas.
TYPE_DOUBLE, TYPE_MESSAGE, TYPE_BYTES, TYPE_UINT32, TYPE_STRING = 1, 11, 12, 13, 9


def varint(n: int) -> bytes:
    """``n`` as a base-128 varint (negative numbers as 64-bit two's complement)."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


@functools.cache
def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_delimited(field: int, data: bytes | memoryview) -> list[bytes | memoryview]:
    """The pieces of a bytes, string or message field: join them with the rest."""
    return [tag(field, LEN) + varint(len(data)), data]


def fixed32(field: int, n: int) -> bytes:
    return tag(field, FIXED32) + struct.pack("<I", n)


def uint(field: int, n: int) -> bytes:
    """A varint field; proto3 leaves a zero out."""
    return tag(field, VARINT) + varint(n) if n else b""


@functools.lru_cache(maxsize=1024)  # frame ids, dtypes, encodings: a few per port
def string(field: int, text: str) -> bytes:
    if not text:
        return b""
    data = text.encode()
    return tag(field, LEN) + varint(len(data)) + data


@functools.lru_cache(maxsize=1024)  # shapes: a few per port
def packed_uint32(field: int, values: tuple[int, ...]) -> bytes:
    if not values:
        return b""
    body = b"".join(varint(v) for v in values)
    return tag(field, LEN) + varint(len(body)) + body


def packed_double(field: int, values: Any) -> bytes:
    """``values``: a float64 numpy array (its bytes are the packed field)."""
    body = values.astype("<f8", copy=False).tobytes()
    return tag(field, LEN) + varint(len(body)) + body if body else b""


def timestamp(field: int, ns: int) -> bytes:
    """A ``google.protobuf.Timestamp`` field ``ns`` nanoseconds after the epoch."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    body = uint(1, seconds) + uint(2, nanos)
    return tag(field, LEN) + varint(len(body)) + body


def read_timestamp(data: memoryview) -> int:
    """Nanoseconds of an encoded ``google.protobuf.Timestamp``."""
    seconds = nanos = 0
    for field, _, value in fields(data):
        if field == 1:
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 2:
            nanos = value
    return seconds * 1_000_000_000 + nanos


def _read_varint(data: memoryview, at: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = data[at]
        at += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, at
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` for each field in order: ints for varint
    and fixed fields, a memoryview (no copy) for length-delimited ones.

    Raises:
        ValueError: the bytes are not a protobuf message (cut short, a bad wire type).
    """
    data = memoryview(data)
    at, end = 0, len(data)
    try:
        while at < end:
            key, at = _read_varint(data, at)
            field, wire = key >> 3, key & 7
            if wire == VARINT:
                value, at = _read_varint(data, at)
            elif wire == LEN:
                size, at = _read_varint(data, at)
                if at + size > end:
                    raise ValueError("a field runs past the end of the message")
                value, at = data[at : at + size], at + size
            elif wire == FIXED32:
                (value,), at = struct.unpack_from("<I", data, at), at + 4
            elif wire == FIXED64:
                (value,), at = struct.unpack_from("<Q", data, at), at + 8
            else:
                raise ValueError(f"wire type {wire} is not one recordings use")
            yield field, wire, value
    except (IndexError, struct.error):
        raise ValueError("the message is cut short") from None


def read_packed_uint(data: memoryview) -> list[int]:
    out, at = [], 0
    while at < len(data):
        n, at = _read_varint(data, at)
        out.append(n)
    return out


# -- schemas ---------------------------------------------------------------------------------


def field_descriptor(
    name: str, number: int, kind: int, *, repeated: bool = False, type_name: str = ""
) -> bytes:
    """A ``FieldDescriptorProto`` (proto3: repeated scalars are packed by default)."""
    camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
    return b"".join(
        (
            string(1, name),
            uint(3, number),
            uint(4, 3 if repeated else 1),
            uint(5, kind),
            string(6, type_name),
            string(10, camel),
        )
    )


def file_descriptor_set(
    file: str, package: str, message: str, field_list: Sequence[bytes], imports: Sequence[bytes]
) -> bytes:
    """A ``FileDescriptorSet`` of one message (proto3) and the files it imports
    (``imports``: encoded ``FileDescriptorProto``s, the first naming each)."""
    body = string(1, message) + b"".join(b"".join(length_delimited(2, f)) for f in field_list)
    names = []
    for proto in imports:
        names.extend(bytes(v).decode() for n, _, v in fields(proto) if n == 1)
    own = b"".join(
        (
            string(1, file),
            string(2, package),
            *(string(3, name) for name in names),
            *length_delimited(4, body),
            string(12, "proto3"),
        )
    )
    return b"".join(b"".join(length_delimited(1, proto)) for proto in (*imports, own))


def descriptor_files(schema: bytes) -> list[bytes]:
    """The ``FileDescriptorProto``s of a ``FileDescriptorSet``."""
    return [bytes(v) for n, _, v in fields(schema) if n == 1]
