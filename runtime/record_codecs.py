"""How a payload is written into a recording or a live view, and read back exactly.

Each message goes out in the first of these forms that fits it; Foxglove shows
every one of them, and each reads back to the very payload that was written:

=====================  ====================================================  ==============
schema                 payloads                                              Foxglove shows
=====================  ====================================================  ==============
``foxglove.RawImage``  uint8 ``H x W x C`` arrays (C = 1, 3, 4), and the     an image
                       2-D arrays of a port marked ``image: mono``
``foxglove.Compressed  the uint8 RGB and gray images of a port marked        an image
Image``                ``compress: jpeg|png`` (jpeg reads back within a
                       tolerance, png exactly; other images stay raw)
``edgeloop.Numbers``   numbers: a bool, int or float, a numpy scalar, or a   plots
                       real array of up to 64 values (all exact as float64)  (``.values[i]``)
``edgeloop.Array``     any other array with a plain dtype: its bytes as they  dtype, shape
                       are, with its dtype (byte order kept) and shape
``edgeloop.Value``     anything else, as tagged JSON (below)                 a tree
=====================  ====================================================  ==============

The first four are protobuf (the two Foxglove schemas as the Foxglove SDK gives
them), ``edgeloop.Value`` is JSON with a JSON schema. Every form has a
``timestamp``: when the message's data was sensed (ROS's ``header.stamp``).
Non-finite floats keep their bits: ``"nan"``, ``"inf"``, ``"-inf"``, or
``"bits:<16 hex digits>"`` for a NaN with a sign or payload of its own; a
subclass of bool, int or float (an ``IntEnum``) reads back as the base type.

Tagged JSON writes what JSON has as itself and tags the rest with a one-key
object, so nothing is ambiguous: ``{"__float__": "nan"}`` (the string ``"nan"``
is a string), ``{"__tuple__": [...]}``, ``{"__bytes__": BASE64}``,
``{"__array__": {"dtype", "shape", "values" | "data"}}``, ``{"__scalar__":
{"dtype", "data"}}``, and ``{"__map__": [[key, value], ...]}`` for a mapping
whose keys are not all strings or that is itself a one-key ``__..__`` object. A
mapping whose keys happen to be ``dtype/shape/data`` is a plain JSON object.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeloop.runtime import protowire as pw

SMALL = 64
"""Arrays of up to this many values are written as numbers Foxglove plots."""
EXACT_INT = 2**53
"""Integers up to this size survive a float64 exactly."""
JPEG_TOLERANCE = 3.0
"""Replay compares a jpeg-recorded image within this mean absolute difference (of 255)."""


@dataclass(frozen=True)
class PortRecording:
    """How one output port is recorded and shown (the graph's ``record:`` entry)."""

    frame_id: str
    image: Literal["auto", "rgb", "bgr", "mono", "never"] = "auto"
    compress: Literal["jpeg", "png"] | None = None
    quality: int = 90


@dataclass(frozen=True)
class Kind:
    """A message form: its schema, as the MCAP file and the live view announce it."""

    name: str
    schema_encoding: str
    schema: bytes
    message_encoding: str


def _foxglove_schema(message: str) -> Kind:
    import foxglove.messages

    schema = getattr(foxglove.messages, message).get_schema()
    return Kind(schema.name, schema.encoding, bytes(schema.data), "protobuf")


@functools.cache
def kinds() -> dict[str, Kind]:
    """Every form by schema name (the SDK is imported here, once)."""
    raw = _foxglove_schema("RawImage")
    imports = pw.descriptor_files(raw.schema)[:1]  # google/protobuf/timestamp.proto
    stamp = pw.field_descriptor(
        "timestamp", 1, pw.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp"
    )
    dtype = pw.field_descriptor("dtype", 2, pw.TYPE_STRING)
    shape = pw.field_descriptor("shape", 3, pw.TYPE_UINT32, repeated=True)
    numbers = pw.file_descriptor_set(
        "edgeloop/Numbers.proto",
        "edgeloop",
        "Numbers",
        [
            stamp,
            dtype,
            shape,
            pw.field_descriptor("values", 4, pw.TYPE_DOUBLE, repeated=True),
            pw.field_descriptor("scalar", 5, 8),  # TYPE_BOOL
        ],
        imports,
    )
    array = pw.file_descriptor_set(
        "edgeloop/Array.proto",
        "edgeloop",
        "Array",
        [stamp, dtype, shape, pw.field_descriptor("data", 4, pw.TYPE_BYTES)],
        imports,
    )
    value_schema = {
        "title": "edgeloop.Value",
        "description": "A payload as tagged JSON (see edgeloop.runtime.record_codecs)",
        "type": "object",
        "properties": {
            "timestamp": {
                "type": "object",
                "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}},
            },
            "value": {},
            "unrecordable": {"type": "string", "description": "why the payload is not here"},
        },
    }
    found = [
        raw,
        _foxglove_schema("CompressedImage"),
        Kind("edgeloop.Numbers", "protobuf", numbers, "protobuf"),
        Kind("edgeloop.Array", "protobuf", array, "protobuf"),
        Kind("edgeloop.Value", "jsonschema", json.dumps(value_schema).encode(), "json"),
    ]
    return {kind.name: kind for kind in found}


# -- writing ---------------------------------------------------------------------------------


def encode(value: Any, sensed_ns: int, port: PortRecording) -> tuple[str, bytes]:
    """``(schema name, message bytes)`` of one payload.

    Raises:
        TypeError: the payload cannot be recorded (an object array, a set, ...).
    """
    if isinstance(value, np.ndarray):
        layout = _image_layout(value, port.image)
        if layout is not None:
            if port.compress is not None and layout in _COMPRESSIBLE:
                return "foxglove.CompressedImage", _compressed_image(value, sensed_ns, port)
            return "foxglove.RawImage", _raw_image(value, layout, sensed_ns, port.frame_id)
        if _numbers_fit(value):
            return "edgeloop.Numbers", _numbers(value.dtype.str, value, sensed_ns)
        return "edgeloop.Array", _array(value, sensed_ns)
    if isinstance(value, np.generic):  # before Python's: np.float64 is a float too
        if _numbers_fit(np.asarray(value)):
            body = _numbers(value.dtype.str, np.asarray(value), sensed_ns, scalar=True)
            return "edgeloop.Numbers", body
    elif isinstance(value, (bool, int, float)) and _numbers_fit(value):
        name = next(t.__name__ for t in (bool, int, float) if isinstance(value, t))
        return "edgeloop.Numbers", _numbers(name, np.asarray(value, float), sensed_ns)
    return "edgeloop.Value", value_message({"value": tagged(value)}, sensed_ns)


def value_message(body: dict[str, Any], sensed_ns: int) -> bytes:
    """An ``edgeloop.Value`` message (``body``: its ``value`` or ``unrecordable``)."""
    sec, nsec = divmod(sensed_ns, 1_000_000_000)
    stamped = {"timestamp": {"sec": sec, "nsec": nsec}, **body}
    return json.dumps(stamped, separators=(",", ":"), allow_nan=False).encode()


_IMAGE_ENCODINGS = {  # (dtype, channels, channel order) -> RawImage encoding
    ("|u1", 1, "rgb"): "8UC1",
    ("|u1", 3, "rgb"): "rgb8",
    ("|u1", 4, "rgb"): "rgba8",
    ("|u1", 3, "bgr"): "bgr8",
    ("|u1", 4, "bgr"): "bgra8",
    ("|u1", 0, "mono"): "mono8",
    ("<u2", 0, "mono"): "mono16",
    ("<f4", 0, "mono"): "32FC1",
}
_COMPRESSIBLE = {"8UC1", "rgb8", "bgr8", "mono8"}  # what jpeg and png both take as is
_IMAGE_ARRAYS = {  # RawImage encoding -> (dtype, channels; 0 for a 2-D array)
    encoding: (dtype, channels) for (dtype, channels, _), encoding in _IMAGE_ENCODINGS.items()
}


def _image_layout(value: np.ndarray, image: str) -> str | None:
    """The RawImage encoding ``value`` is written in, or None when it is no image."""
    if image == "never" or value.size == 0:
        return None
    if value.ndim == 3:
        order = "bgr" if image == "bgr" else "rgb"
        return _IMAGE_ENCODINGS.get((value.dtype.str, value.shape[2], order))
    if value.ndim == 2 and image == "mono":
        return _IMAGE_ENCODINGS.get((value.dtype.str, 0, "mono"))
    return None


def _raw_image(value: np.ndarray, encoding: str, sensed_ns: int, frame_id: str) -> bytes:
    height, width = value.shape[:2]
    return b"".join(
        (
            pw.timestamp(1, sensed_ns),
            pw.fixed32(2, width),
            pw.fixed32(3, height),
            pw.string(4, encoding),
            pw.fixed32(5, width * value.itemsize * (value.shape[2] if value.ndim == 3 else 1)),
            *pw.length_delimited(6, _bytes_of(value)),
            pw.string(7, frame_id),
        )
    )


def _compressed_image(value: np.ndarray, sensed_ns: int, port: PortRecording) -> bytes:
    data = compress_image(value, port)
    return b"".join(
        (
            pw.timestamp(1, sensed_ns),
            *pw.length_delimited(2, data),
            pw.string(3, port.compress or ""),
            pw.string(4, port.frame_id),
        )
    )


def _numbers_fit(value: Any) -> bool:
    """Exact as float64 values, and few enough to plot."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= EXACT_INT
    if isinstance(value, float):
        return True
    kind = value.dtype.kind
    if value.size > SMALL or kind not in "biuf" or (kind == "f" and value.dtype.itemsize > 8):
        return False
    if kind in "iu" and value.size and value.dtype.itemsize > 4:
        return bool(np.abs(value).max() <= EXACT_INT)  # uint64 abs is itself
    if kind == "f" and value.itemsize < 8 and value.size and np.isnan(value).any():
        # Through float64, a signalling NaN comes back quieted: then the bytes go as they are.
        with np.errstate(invalid="ignore"):  # a signalling NaN, quieted: then it does not fit
            back = value.astype(np.float64).astype(value.dtype)
        return back.tobytes() == np.ascontiguousarray(value).tobytes()
    return True


def _numbers(dtype: str, value: np.ndarray, sensed_ns: int, *, scalar: bool = False) -> bytes:
    return b"".join(
        (
            pw.timestamp(1, sensed_ns),
            pw.string(2, dtype),
            pw.packed_uint32(3, value.shape),
            pw.packed_double(4, value.astype(np.float64).ravel()),
            pw.uint(5, int(scalar)),
        )
    )


def _plain_dtype(value: np.ndarray) -> str:
    if value.dtype.kind not in "biufcmMSU" or value.dtype.fields is not None:
        raise TypeError(f"an array of dtype {value.dtype} cannot be recorded")
    return value.dtype.str


def _array(value: np.ndarray, sensed_ns: int) -> bytes:
    return b"".join(
        (
            pw.timestamp(1, sensed_ns),
            pw.string(2, _plain_dtype(value)),
            pw.packed_uint32(3, value.shape),
            *pw.length_delimited(4, _bytes_of(value)),
        )
    )


def _bytes_of(value: np.ndarray) -> memoryview:
    """The array's bytes in C order, copied only when it is not contiguous."""
    return memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8))


_CANONICAL_NAN = struct.pack("<d", float("nan"))


def _float(x: float) -> float | dict[str, str]:
    if math.isfinite(x):
        return x
    bits = struct.pack("<d", x)
    if x == x or bits == _CANONICAL_NAN:  # inf, -inf, or the NaN everyone makes
        return {"__float__": repr(x)}
    return {"__float__": "bits:" + bits.hex()}  # a NaN with a sign or payload of its own


def tagged(value: Any) -> Any:
    """``value`` as tagged JSON-ready data (see the module's description)."""
    if isinstance(value, np.generic):  # before Python's: np.float64 is a float too
        dtype = _plain_dtype(np.asarray(value))
        return {"__scalar__": {"dtype": dtype, "data": base64.b64encode(value.tobytes()).decode()}}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, np.ndarray):
        dtype = _plain_dtype(value)
        head = {"dtype": dtype, "shape": list(value.shape)}
        if _numbers_fit(value):
            values = [
                x if isinstance(x, (bool, int)) or math.isfinite(x) else _float(x)["__float__"]
                for x in value.ravel().tolist()
            ]
            return {"__array__": {**head, "values": values}}
        data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
        return {"__array__": {**head, "data": data}}
    if isinstance(value, Mapping):
        keys = list(value)
        plain = all(isinstance(k, str) for k in keys) and not (
            len(keys) == 1 and keys[0].startswith("__")
        )
        if plain:
            return {k: tagged(v) for k, v in value.items()}
        return {"__map__": [[tagged(k), tagged(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [tagged(v) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [tagged(v) for v in value]}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(value).decode()}
    raise TypeError(f"a {type(value).__name__} payload cannot be recorded")


# -- reading ---------------------------------------------------------------------------------


class Unrecordable:
    """A message the recorder could not write, in its place (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unrecordable({self.reason!r})"


def decode(kind: str, data: bytes, channel_metadata: Mapping[str, str]) -> tuple[Any, int]:
    """``(payload, sensed ns)`` of a message written by :func:`encode`.

    Raises:
        ValueError: the bytes are not a message of that form (the message says how).
    """
    if kind == "edgeloop.Value":
        body = json.loads(data)
        stamp = body.get("timestamp", {})
        sensed = stamp.get("sec", 0) * 1_000_000_000 + stamp.get("nsec", 0)
        if "unrecordable" in body:
            return Unrecordable(body["unrecordable"]), sensed
        return untagged(body["value"]), sensed
    found: dict[int, Any] = {}
    for field, _, value in pw.fields(data):
        found[field] = value
    sensed = pw.read_timestamp(found[1]) if 1 in found else 0
    if kind == "foxglove.RawImage":
        encoding = bytes(found.get(4, b"")).decode()
        if encoding not in _IMAGE_ARRAYS:
            raise ValueError(f"an image in encoding {encoding!r}, which edgeloop did not write")
        dtype, channels = _IMAGE_ARRAYS[encoding]
        height, width = found.get(3, 0), found.get(2, 0)
        shape = (height, width, channels) if channels else (height, width)
        return np.frombuffer(found.get(6, b""), dtype=dtype).reshape(shape).copy(), sensed
    if kind == "foxglove.CompressedImage":
        layout = channel_metadata.get("edgeloop.layout", "rgb")
        return decompress_image(bytes(found.get(2, b"")), layout), sensed
    dtype = bytes(found.get(2, b"")).decode()
    shape = tuple(pw.read_packed_uint(found[3])) if 3 in found else ()
    if kind == "edgeloop.Numbers":
        values = np.frombuffer(found.get(4, b""), dtype="<f8")
        if dtype in ("bool", "int", "float"):
            return {"bool": bool, "int": int, "float": float}[dtype](values[0].item()), sensed
        with np.errstate(invalid="ignore"):  # values written from this dtype fit it
            array = values.astype(np.dtype(dtype)).reshape(shape)
        return (array[()] if found.get(5) else array), sensed
    if kind == "edgeloop.Array":
        return np.frombuffer(found.get(4, b""), dtype=np.dtype(dtype)).reshape(shape).copy(), sensed
    raise ValueError(f"messages of schema {kind!r}, which edgeloop did not write")


def lossy(kind: str, data: bytes) -> bool:
    """The message went through a lossy compression (jpeg)."""
    if kind != "foxglove.CompressedImage":
        return False
    return any(field == 3 and bytes(v) == b"jpeg" for field, _, v in pw.fields(data))


def untagged(value: Any) -> Any:
    """Inverse of :func:`tagged`."""
    if isinstance(value, list):
        return [untagged(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == "__float__":
            return _float_of(inner)
        if key == "__tuple__":
            return tuple(untagged(v) for v in inner)
        if key == "__bytes__":
            return base64.b64decode(inner)
        if key == "__map__":
            return {_hashable(untagged(k)): untagged(v) for k, v in inner}
        if key == "__scalar__":
            return np.frombuffer(base64.b64decode(inner["data"]), np.dtype(inner["dtype"]))[0]
        if key == "__array__":
            dtype = np.dtype(inner["dtype"])
            if "data" in inner:
                flat = np.frombuffer(base64.b64decode(inner["data"]), dtype).copy()
            else:
                flat = np.array(
                    [_float_of(v) if isinstance(v, str) else v for v in inner["values"]]
                )
                flat = flat.astype(dtype)
            return flat.reshape(inner["shape"])
        if key.startswith("__"):
            raise ValueError(f"a value tagged {key!r}, which this edgeloop does not know")
    return {k: untagged(v) for k, v in value.items()}


def _float_of(text: str) -> float:
    """A non-finite float as :func:`_float` wrote it."""
    if text.startswith("bits:"):
        return struct.unpack("<d", bytes.fromhex(text[5:]))[0]
    return float(text)


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


# -- compressed images -----------------------------------------------------------------------


def image_library() -> str:
    """Which library compresses images here: "cv2", "PIL", or "" (neither installed)."""
    for name in ("cv2", "PIL.Image"):
        try:
            __import__(name)
            return name.split(".")[0]
        except ImportError:
            pass
    return ""


def compress_image(value: np.ndarray, port: PortRecording) -> bytes:
    """``value`` (uint8, ``H x W x 3`` in the port's channel order, or grayscale)
    as a jpeg or png file."""
    gray = value.ndim == 2 or value.shape[2] == 1
    if not gray and value.shape[2] != 3:
        raise TypeError(f"a {value.shape} image cannot be compressed (RGB or grayscale only)")
    library = image_library()
    if library == "cv2":
        import cv2

        pixels = value if gray or port.image == "bgr" else value[..., ::-1]
        flag = cv2.IMWRITE_JPEG_QUALITY if port.compress == "jpeg" else cv2.IMWRITE_PNG_COMPRESSION
        level = port.quality if port.compress == "jpeg" else 1
        ok, data = cv2.imencode("." + (port.compress or "png"), pixels, [flag, level])
        if not ok:
            raise TypeError(f"OpenCV could not compress a {value.shape} image")
        return data.tobytes()
    if library == "PIL":
        import io

        from PIL import Image

        pixels = value[..., 0] if value.ndim == 3 and gray else value
        pixels = pixels[..., ::-1] if port.image == "bgr" and not gray else pixels
        out = io.BytesIO()
        options = {"quality": port.quality} if port.compress == "jpeg" else {"compress_level": 1}
        Image.fromarray(np.ascontiguousarray(pixels)).save(out, format=port.compress, **options)
        return out.getvalue()
    raise TypeError("compressing images needs OpenCV or Pillow (pip install pillow)")


def decompress_image(data: bytes, layout: str) -> np.ndarray:
    """An image :func:`compress_image` wrote, in ``layout`` ("rgb", "bgr", "mono" for
    a 2-D array, "mono1" for ``H x W x 1``)."""
    library = image_library()
    if library == "cv2":
        import cv2

        gray = layout.startswith("mono")
        flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if pixels is None:
            raise ValueError("the compressed image cannot be decoded")
        if not gray and layout != "bgr":
            pixels = np.ascontiguousarray(pixels[..., ::-1])
    elif library == "PIL":
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(data))
        pixels = np.asarray(image.convert("L" if layout.startswith("mono") else "RGB")).copy()
        if layout == "bgr":
            pixels = np.ascontiguousarray(pixels[..., ::-1])
    else:
        raise ValueError("reading compressed images needs OpenCV or Pillow (pip install pillow)")
    return pixels[..., None] if layout == "mono1" else pixels


def compressed_layout(value: np.ndarray, port: PortRecording) -> str:
    """The layout a compressed image reads back in (kept in its channel's metadata)."""
    if value.ndim == 2:
        return "mono"
    if value.shape[2] == 1:
        return "mono1"
    return "bgr" if port.image == "bgr" else "rgb"
