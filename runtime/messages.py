"""The message: what flows along an edge of a loop graph."""

from __future__ import annotations

from typing import Any


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
