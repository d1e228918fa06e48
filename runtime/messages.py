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


def payload_is_finite(data: Any) -> bool:
    """True unless a float payload holds NaN or inf; cheap for small arrays."""
    if type(data) is np.ndarray:
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
    if type(data) is float:
        return math.isfinite(data)
    if isinstance(data, (int, np.integer, str, bytes)) or data is None:
        return True
    if isinstance(data, Mapping):
        return all(payload_is_finite(v) for v in data.values())
    try:
        return bool(np.isfinite(np.asarray(data, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return True
