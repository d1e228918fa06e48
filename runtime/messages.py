"""The message: what flows along an edge of a loop graph."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeloop.runtime.device_tensors import DeviceTensor
from edgeloop.runtime.errors import WireError


class Message:
    """One value on one output port, with the times that make latency measurable.

    Attributes:
        data: The payload: a numpy array, a number or a small mapping.
        seq: Sequence number of this output port, from 0.
        created: Clock time (s) when the producing node returned it.
        sensed: Clock time (s) of the oldest sensor reading it derives from;
            equal to ``created`` for a sensor's own output. At an actuator,
            ``now - sensed`` is the sense-to-act latency.
    """

    __slots__ = ("created", "data", "sensed", "seq")

    def __init__(self, data: Any, seq: int, created: float, sensed: float) -> None:
        self.data = data
        self.seq = seq
        self.created = created
        self.sensed = sensed

    def __repr__(self) -> str:
        return (
            f"Message(seq={self.seq}, created={self.created:.6f}, "
            f"sensed={self.sensed:.6f}, data={self.data!r})"
        )


# What a payload may be, in one process as between processes (the wire format
# carries exactly this), so a graph behaves the same split into process groups.
MAX_DEPTH = 8
"""Deepest nesting of lists and mappings in a payload."""
MAX_ITEMS = 1024
"""Most entries of all lists and mappings in a payload together (arrays are one)."""
MAX_HEADER_BYTES = 64 * 1024
"""Largest JSON description of a payload that is not one array (strings count)."""
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
"""Largest payload (arrays and bytes together)."""
MAX_NDIM = 32
DTYPES = frozenset(
    np.dtype(f"{order}{code}").str
    for code in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")
    for order in "<>"
) | {"|b1", "|i1", "|u1"}
"""Array dtypes a payload may hold: booleans, integers, floats, complex, either byte order."""


def payload_problem(data: Any) -> tuple[str, str] | None:
    """``(fault kind, why)`` when ``data`` may not be published, else None: NaN or inf
    anywhere in it (``non_finite``), or what could not travel between processes
    (``payload``: too deep, too many entries, too large, a type or dtype that has
    no wire form). Cheap for one array; a mapping or list is described in full."""
    if type(data) is np.ndarray:
        problem = _array_problem(data, top=True)
        if problem is not None:
            return "payload", problem
        return None if _array_is_finite(data) else ("non_finite", "non-finite values")
    if type(data) is float:
        return None if math.isfinite(data) else ("non_finite", "non-finite values")
    if data is None or type(data) in (int, bool):
        return None
    try:
        tree, size = describe_payload(data)
    except WireError as exc:
        return "payload", exc.detail
    if size > MAX_PAYLOAD_BYTES:
        return "payload", f"{size:,} bytes of arrays, more than {MAX_PAYLOAD_BYTES:,}"
    header = len(json.dumps(tree, separators=(",", ":")))
    if header > MAX_HEADER_BYTES:
        return "payload", f"described in {header:,} bytes, more than {MAX_HEADER_BYTES:,}"
    return None if payload_is_finite(data) else ("non_finite", "non-finite values")


def describe_payload(value: Any, buffers: list[Any] | None = None) -> tuple[Any, int]:
    """The wire's JSON description of a payload (arrays and bytes as references to
    ``buffers``, appended to) and the bytes those buffers hold.

    Raises:
        WireError: it breaks a limit, or holds something without a wire form.
    """
    found = [] if buffers is None else buffers
    budget = [MAX_ITEMS]
    tree = _describe(value, found, 0, budget)
    return tree, sum(memoryview(b).nbytes for b in found)


def _describe(value: Any, buffers: list[Any], depth: int, budget: list[int]) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("depth", f"payload nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"@f": repr(value)}
    if isinstance(value, np.ndarray):
        problem = _array_problem(value, top=False)
        if problem is not None:
            raise WireError("dtype", problem)
        buffers.append(np.ascontiguousarray(value))
        return {"@a": len(buffers) - 1, "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        buffers.append(value)
        return {"@b": len(buffers) - 1}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise WireError("key", "mapping keys must be strings")
        _spend(budget, len(value))
        return {"@m": {k: _describe(v, buffers, depth + 1, budget) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        _spend(budget, len(value))
        return [_describe(v, buffers, depth + 1, budget) for v in value]
    raise WireError(
        "type",
        f"a {type(value).__name__} has no wire form (numbers, strings, "
        "arrays, bytes, lists and mappings do)",
    )


def _spend(budget: list[int], entries: int) -> None:
    budget[0] -= entries
    if budget[0] < 0:
        raise WireError("items", f"more than {MAX_ITEMS} entries in lists and mappings")


def _array_problem(data: np.ndarray, *, top: bool) -> str | None:
    if data.dtype.str not in DTYPES:
        return f"arrays of {data.dtype} have no wire form (numbers and booleans only)"
    if top and data.ndim > MAX_NDIM:
        return f"{data.ndim} dimensions, more than {MAX_NDIM}"
    if data.nbytes > MAX_PAYLOAD_BYTES:
        return f"{data.nbytes:,} bytes, more than {MAX_PAYLOAD_BYTES:,}"
    return None


_MAX_VISITS = 1_000_000  # entries of nested lists/mappings looked at; past that, trusted


def payload_is_finite(data: Any) -> bool:
    """True unless a float in the payload is NaN or inf: in an array, a number, or
    anywhere inside lists, tuples and mappings (walked without recursion, so any
    nesting depth is safe). Cheap for small arrays."""
    if type(data) is np.ndarray:
        return _array_is_finite(data)
    if type(data) is float:
        return math.isfinite(data)
    if data is None or isinstance(data, (int, str, bytes)):
        return True
    pending = [data]
    visits = 0
    while pending and visits < _MAX_VISITS:
        item = pending.pop()
        visits += 1
        if isinstance(item, np.ndarray):
            if not _array_is_finite(item):
                return False
        elif isinstance(item, (float, np.floating, np.complexfloating, complex)):
            if not np.isfinite(item):
                return False
        elif isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            try:  # numbers only: one C-level pass; NaN or inf makes the sum so
                if not math.isfinite(math.fsum(item)):
                    return False
                continue
            except ValueError:  # inf and -inf together
                return False
            except (TypeError, OverflowError):  # not all numbers, or a huge sum
                pending.extend(item)
    return True


def _array_is_finite(data: np.ndarray) -> bool:
    if data.dtype.kind != "f":
        return data.dtype.kind != "c" or bool(np.isfinite(data).all())
    if data.ndim == 1 and data.size <= 64:
        # fsum of Python floats is cheaper than any numpy reduction at this size;
        # it is NaN or inf exactly when an element is (overflow raises instead).
        try:
            return math.isfinite(math.fsum(data.tolist()))
        except OverflowError:
            pass
        except ValueError:  # inf and -inf together
            return False
    return bool(np.isfinite(data).all())


_SCALAR_KINDS = {bool: "b", int: "iu", float: "f", complex: "c"}


def type_problem(
    dtype: np.dtype | None, shape: tuple[int | None, ...] | None, data: Any
) -> str | None:
    """Why ``data`` is not what a port declaring ``dtype`` and ``shape`` carries
    (``"expected float64 (2,), got int32 (5, 5)"``), or None when it is.

    An array (or numpy scalar) must have the dtype exactly; a Python number counts
    as a scalar of its kind (a float on a float32 port is fine, an int is not).
    """
    if dtype is None and shape is None:
        return None  # nothing declared, nothing to break
    expected = " ".join(
        part for part in (str(dtype) if dtype is not None else "", _shape_text(shape)) if part
    )
    if isinstance(data, (np.ndarray, np.generic, DeviceTensor)):
        got_dtype, got_shape = data.dtype, data.shape
        dtype_ok = dtype is None or got_dtype == dtype
        got = f"{got_dtype} {_shape_text(got_shape)}"
    elif type(data) in _SCALAR_KINDS:
        got_shape = ()
        dtype_ok = dtype is None or dtype.kind in _SCALAR_KINDS[type(data)]
        got = f"a Python {type(data).__name__}"
    else:
        return f"expected {expected}, got {type(data).__name__}"
    shape_ok = shape is None or (
        len(got_shape) == len(shape)
        and all(want is None or want == n for want, n in zip(shape, got_shape, strict=True))
    )
    return None if dtype_ok and shape_ok else f"expected {expected}, got {got}"


def _shape_text(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return ""
    dims = ", ".join("any" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"
