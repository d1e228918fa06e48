"""The wire format between processes: a versioned header plus raw array buffers.

A message travels as a ZeroMQ multipart message ``[header, buffer, buffer, ...]``:

- ``header``: the 4-byte magic ``ELW1`` (format version 1), then a kind byte.
  Kind ``A``, the fast path for a payload that is one array: a little-endian
  struct of seq (u64), created and sensed (f64), the dtype string (4 bytes,
  space-padded), the number of dimensions (u8) and each size (u64), the array's
  bytes in the next frame. Kind ``a``: the same with the bytes at the end of the
  header frame, for arrays up to ``SINGLE_FRAME_BYTES`` (one frame is cheaper
  to receive than two, and copying a few kilobytes costs less). Kind ``J``,
  any other payload: UTF-8 JSON
  ``{"seq": int, "created": float, "sensed": float, "data": TREE}``.
- ``TREE`` describes the payload: JSON scalars (numbers, strings, booleans,
  null) stand for themselves; ``{"@a": i, "dtype": "<f4", "shape": [..]}`` is a
  numpy array whose bytes are buffer ``i``; ``{"@b": i}`` is a bytes value;
  ``{"@f": "nan"|"inf"|"-inf"}`` a non-finite float; ``{"@m": {...}}`` a mapping
  with string keys.

Never pickle: decoding builds nothing but numbers, strings, bytes, arrays of a
fixed set of dtypes, and dicts. Every received message is checked — magic and
version, total size, JSON shape and nesting, dtype, shape, and that each buffer
is used once with exactly the bytes its shape needs — and a bad one raises
:class:`WireError` saying what is wrong; :class:`Decoder` counts those and drops
them, so a malformed peer can never crash a node. Arrays decode without a copy,
as read-only views of the received frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from edgeloop.runtime.errors import WireError
from edgeloop.runtime.messages import (
    DTYPES,
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    MAX_ITEMS,
    MAX_PAYLOAD_BYTES,
    Message,
    describe_payload,
)
from edgeloop.runtime.processes.control import KINDS, ControlMessage

MAGIC = b"ELW1"
"""Format identifier and version; a new version gets a new magic."""

DEFAULT_MAX_BYTES = MAX_PAYLOAD_BYTES + 2 * MAX_HEADER_BYTES
"""Largest message (header and buffers together) a decoder accepts by default: any
payload an executor lets a node publish (``edgeloop.runtime.messages``) fits."""

_ARRAY_HEAD = struct.Struct("<Qdd4sB")
SINGLE_FRAME_BYTES = 16 * 1024
_SIZE = struct.Struct("<Q")
_SHAPES = [struct.Struct(f"<{n}Q") for n in range(33)]  # every dimension in one unpack
_SEQ, _TIMES = struct.Struct("<Q"), struct.Struct("<dd")
_INLINE_ARRAY = MAGIC + b"a"
_LAYOUT_AT = len(_INLINE_ARRAY) + _SEQ.size + _TIMES.size  # dtype, rank, shape: 4 + 1 + 8 n
_WIRE_DTYPES = {name.encode().ljust(4): np.dtype(name) for name in DTYPES}
"""The 4-byte dtype field of an array header -> its dtype, for the dtypes that travel."""


def encode(message: Message) -> list[Any]:
    """The frames of ``message``: a header, then one buffer per array or bytes value.

    Arrays are handed over without a copy when C-contiguous (ZeroMQ sends from
    their memory). Raises:
        WireError: a payload that cannot travel (an object array, a key that is not
            a string, a value of another type).
    """
    data = message.data
    if type(data) is np.ndarray and data.dtype.str in DTYPES and data.ndim <= 32:
        head = _ARRAY_HEAD.pack(
            message.seq,
            message.created,
            message.sensed,
            data.dtype.str.encode().ljust(4),
            data.ndim,
        )
        shape = b"".join(_SIZE.pack(n) for n in data.shape)
        if data.nbytes <= SINGLE_FRAME_BYTES:
            return [b"".join((MAGIC, b"a", head, shape, data.tobytes()))]
        return [MAGIC + b"A" + head + shape, np.ascontiguousarray(data)]
    buffers: list[Any] = []
    tree, _ = describe_payload(data, buffers)
    header = json.dumps(
        {
            "seq": message.seq,
            "created": message.created,
            "sensed": message.sensed,
            "data": tree,
        },
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    return [MAGIC + b"J" + header, *buffers]


def decode(frames: Sequence[Any], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """The message in ``frames`` (bytes, memoryviews or zmq.Frame objects).

    Raises:
        WireError: anything that is not a well-formed message within ``max_bytes``.
    """
    if not frames:
        raise WireError("empty", "no frames")
    views = [memoryview(f.buffer if hasattr(f, "buffer") else f) for f in frames]
    total = sum(v.nbytes for v in views)
    if total > max_bytes:
        raise WireError("oversized", f"{total} bytes, more than the limit of {max_bytes}")
    head = views[0]
    if head.nbytes < len(MAGIC) or bytes(head[: len(MAGIC)]) != MAGIC:
        start = bytes(head[:4])
        version = (
            f"version {start[3:4].decode(errors='replace')}"
            if start[:3] == MAGIC[:3]
            else "not an edgeloop message"
        )
        raise WireError("magic", f"{version} (this side speaks {MAGIC.decode()})")
    if head.nbytes - len(MAGIC) > MAX_HEADER_BYTES:
        raise WireError("header", f"header over {MAX_HEADER_BYTES} bytes")
    kind = bytes(head[len(MAGIC) : len(MAGIC) + 1])
    if kind in (b"A", b"a"):
        return _decode_array(head, views, inline=kind == b"a")
    if kind != b"J":
        raise WireError("header", f"unknown header kind {kind!r}")
    try:
        header = json.loads(bytes(head[len(MAGIC) + 1 :]))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers too
        raise WireError("header", f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"seq", "created", "sensed", "data"}:
        raise WireError("header", "header must hold exactly seq, created, sensed and data")
    seq, created, sensed = header["seq"], header["created"], header["sensed"]
    if type(seq) is not int or seq < 0:
        raise WireError("header", f"seq must be a non-negative integer, got {seq!r}")
    for name, t in (("created", created), ("sensed", sensed)):
        if not (type(t) is float or (type(t) is int and abs(t) < 2**53)) or not math.isfinite(t):
            raise WireError("header", f"{name} must be a finite number, got {str(t)[:40]}")
    used = [False] * (len(views) - 1)
    budget = [MAX_ITEMS]
    data = _build(header["data"], views[1:], used, 0, budget)
    if not all(used):
        raise WireError("buffers", f"{used.count(False)} buffer(s) not referenced by the header")
    return Message(data, seq, float(created), float(sensed))


def _decode_array(head: memoryview, views: list[memoryview], *, inline: bool) -> Message:
    # The path of every array between processes, and it runs cold: a receiver wakes
    # from a sleep to decode, when each Python operation costs several times what it
    # does in a tight loop (measured: 5.4 us hot, about 30 us after 3 ms idle). So
    # the checks of _array are done here with as few operations as they allow.
    start = len(MAGIC) + 1
    if head.nbytes < start + _ARRAY_HEAD.size or len(views) != (1 if inline else 2):
        raise WireError("header", "an array message needs its full header and its buffer")
    seq, created, sensed, dtype_field, ndim = _ARRAY_HEAD.unpack_from(head, start)
    end = start + _ARRAY_HEAD.size + ndim * _SIZE.size
    if ndim > 32 or (head.nbytes < end if inline else head.nbytes != end):
        raise WireError("header", f"header length does not match {ndim} dimensions")
    if not (math.isfinite(created) and math.isfinite(sensed)):
        name, t = ("created", created) if not math.isfinite(created) else ("sensed", sensed)
        raise WireError("header", f"{name} must be a finite number, got {t!r}")
    dtype = _WIRE_DTYPES.get(dtype_field)
    if dtype is None:
        shown = dtype_field.rstrip(b" ").decode("ascii", errors="replace")[:20]
        raise WireError("dtype", f"dtype {shown!r} does not travel")
    shape = _SHAPES[ndim].unpack_from(head, start + _ARRAY_HEAD.size)
    if ndim and max(shape) >= 2**40:
        raise WireError("shape", f"shape {str(list(shape))[:60]} is not a list of sizes")
    buffer = head[end:] if inline else views[1]
    return Message(_view(buffer, dtype, shape), seq, created, sensed)


def _build(
    tree: Any, buffers: list[memoryview], used: list[bool], depth: int, budget: list[int]
) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("depth", f"payload nested deeper than {MAX_DEPTH}")
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        budget[0] -= len(tree)
        if budget[0] < 0:
            raise WireError("items", f"more than {MAX_ITEMS} items")
        return [_build(v, buffers, used, depth + 1, budget) for v in tree]
    if not isinstance(tree, dict) or len(tree) == 0:
        raise WireError("tree", f"unexpected payload entry {str(tree)[:60]}")
    if "@m" in tree and len(tree) == 1 and isinstance(tree["@m"], dict):
        budget[0] -= len(tree["@m"])
        if budget[0] < 0:
            raise WireError("items", f"more than {MAX_ITEMS} items")
        return {k: _build(v, buffers, used, depth + 1, budget) for k, v in tree["@m"].items()}
    if "@f" in tree and len(tree) == 1 and tree["@f"] in ("nan", "inf", "-inf"):
        return float(tree["@f"])
    if "@b" in tree and len(tree) == 1:
        return bytes(_take(tree["@b"], buffers, used))
    if "@a" in tree and set(tree) == {"@a", "dtype", "shape"}:
        return _array(tree, buffers, used)
    raise WireError("tree", f"unexpected payload entry {str(tree)[:60]}")


def _take(index: Any, buffers: list[memoryview], used: list[bool]) -> memoryview:
    if type(index) is not int or not 0 <= index < len(buffers):
        raise WireError("buffers", f"buffer index {index!r} out of range ({len(buffers)} buffers)")
    if used[index]:
        raise WireError("buffers", f"buffer {index} referenced twice")
    used[index] = True
    return buffers[index]


def _array(tree: dict[str, Any], buffers: list[memoryview], used: list[bool]) -> np.ndarray:
    dtype, shape = tree["dtype"], tree["shape"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError("dtype", f"dtype {str(dtype)[:20]!r} does not travel")
    if (
        not isinstance(shape, list)
        or len(shape) > 32
        or not all(type(n) is int and 0 <= n < 2**40 for n in shape)
    ):
        raise WireError("shape", f"shape {str(shape)[:60]} is not a list of sizes")
    return _view(_take(tree["@a"], buffers, used), np.dtype(dtype), tuple(shape))


def _view(buffer: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The array of ``dtype`` and ``shape`` over ``buffer``, which must hold it exactly."""
    expected = math.prod(shape) * dtype.itemsize
    if buffer.nbytes != expected:
        raise WireError(
            "shape",
            f"{dtype.str} {shape} needs {expected} bytes, the buffer has {buffer.nbytes}",
        )
    try:
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)
    except ValueError as exc:  # e.g. an empty array with an absurd shape
        raise WireError("shape", f"shape {shape}: {exc}") from None


class Decoder:
    """Decodes received messages, counting and dropping the bad ones.

    Attributes:
        received: Messages decoded.
        dropped: Bad messages by reason (``oversized``, ``magic``, ``header`` ...).
        last_error: The last bad message's description, for the report.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.received = 0
        self.dropped: Counter[str] = Counter()
        self.last_error = ""
        # The last one-frame array's layout (length; dtype, rank and shape bytes; its
        # dtype and shape): a stream of like arrays skips the checks they passed.
        self._like: tuple[int, bytes, np.dtype, tuple[int, ...]] | None = None

    def decode(self, frames: Sequence[Any]) -> Message | None:
        """The message, or None (counted) when ``frames`` are not a valid one."""
        like = self._like
        if like is not None and len(frames) == 1:
            view = memoryview(getattr(frames[0], "buffer", frames[0]))
            nbytes, layout, dtype, shape = like
            if (
                view.nbytes == nbytes
                and view[: len(_INLINE_ARRAY)] == _INLINE_ARRAY
                and view[_LAYOUT_AT : _LAYOUT_AT + len(layout)] == layout
            ):
                seq = _SEQ.unpack_from(view, len(_INLINE_ARRAY))[0]
                created, sensed = _TIMES.unpack_from(view, len(_INLINE_ARRAY) + _SEQ.size)
                if math.isfinite(created) and math.isfinite(sensed):
                    data = np.frombuffer(view[_LAYOUT_AT + len(layout) :], dtype).reshape(shape)
                    self.received += 1
                    return Message(data, seq, created, sensed)
        try:
            message = decode(frames, max_bytes=self.max_bytes)
        except WireError as exc:
            self.dropped[exc.reason] += 1
            self.last_error = str(exc)
            return None
        except (ValueError, OverflowError, TypeError) as exc:  # a check we did not foresee
            self.dropped["malformed"] += 1
            self.last_error = f"malformed wire message: {exc}"
            return None
        self.received += 1
        self._remember(frames, message)
        return message

    def _remember(self, frames: Sequence[Any], message: Message) -> None:
        data = message.data
        self._like = None
        if len(frames) != 1 or type(data) is not np.ndarray:
            return
        view = memoryview(getattr(frames[0], "buffer", frames[0]))
        if view[: len(_INLINE_ARRAY)] != _INLINE_ARRAY:
            return
        layout = bytes(view[_LAYOUT_AT : _LAYOUT_AT + 5 + data.ndim * _SIZE.size])
        self._like = (view.nbytes, layout, data.dtype, data.shape)


# -- control messages -------------------------------------------------------------------------

_CONTROL_TAGS = {cls: tag for tag, cls in KINDS.items()}
_CONTROL_ADAPTERS: dict[type, TypeAdapter[Any]] = {}
MAX_CONTROL_BYTES = MAX_HEADER_BYTES * 64
"""Largest control message but a group's report (4 MiB)."""
MAX_REPORT_BYTES = 1 << 30
"""Largest group report (1 GiB): it carries the group's series, which grow with the
run and its agents (a world of 256 agents reports 5 MB after 15 s at 20 Hz)."""
_REPORT_HEAD = b'{"t":"report",'  # how encode_control starts a report


def encode_control(message: ControlMessage) -> bytes:
    """A control message as one frame: UTF-8 JSON ``{"t": tag, field: value, ...}``."""
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    return json.dumps({"t": _CONTROL_TAGS[type(message)], **fields}, separators=(",", ":")).encode()


def decode_control(frame: bytes | memoryview) -> ControlMessage:
    """The control message in ``frame``, its fields checked against their types.

    Raises:
        WireError: not JSON, an unknown tag, or fields missing, unknown or of the
            wrong type (reason ``control``).
    """
    report = bytes(frame[: len(_REPORT_HEAD)]) == _REPORT_HEAD
    if len(frame) > (MAX_REPORT_BYTES if report else MAX_CONTROL_BYTES):
        kind = "group report" if report else "control message"
        raise WireError("oversized", f"{kind} of {len(frame):,} bytes")
    try:
        body = json.loads(bytes(frame))
    except (ValueError, RecursionError) as exc:
        raise WireError("control", f"control message is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("t") not in KINDS:
        tag = body.get("t") if isinstance(body, dict) else body
        raise WireError("control", f"unknown control message {str(tag)[:40]!r}")
    cls = KINDS[body.pop("t")]
    unknown = set(body) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise WireError("control", f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    adapter = _CONTROL_ADAPTERS.get(cls)
    if adapter is None:
        adapter = _CONTROL_ADAPTERS[cls] = TypeAdapter(cls)
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise WireError("control", f"{cls.__name__}.{where}: {first['msg']}") from None
