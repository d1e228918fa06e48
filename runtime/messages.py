"""The message: what flows along an edge of a loop graph."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


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
    if isinstance(data, (np.ndarray, np.generic)):
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
