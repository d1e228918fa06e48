"""Multi-rate fusion: streams at different rates, aligned to one time with a bounded skew.

The ``fusion`` node type (:class:`FusionNode`) documents the alignment and the
late policies (``LATE_POLICIES``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.node import Model, NodeContext, Port

LATE_POLICIES = ("drop", "hold", "interpolate")


@dataclass(frozen=True)
class FusionConfig:
    streams: tuple[str, ...] = ()
    """The inputs to fuse, in output order."""
    max_skew_ms: float = 50.0
    """Age (ms) up to which a sample counts as fresh: now minus its sensing time."""
    late: str = "hold"
    """Policy for a late sample: drop, hold or interpolate."""
    late_by_stream: dict[str, str] = field(default_factory=dict)
    """Per-stream policies that override ``late``."""
    min_trust: float = 0.5
    """Streams whose ``<stream>_trust`` input is below this are dropped."""

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("name the inputs to fuse in streams")
        for name, policy in [("late", self.late), *self.late_by_stream.items()]:
            if policy not in LATE_POLICIES:
                raise ValueError(f"{name}: late policy '{policy}' is not one of {LATE_POLICIES}")
        unknown = sorted(set(self.late_by_stream) - set(self.streams))
        if unknown:
            raise ValueError(f"late_by_stream names {unknown}, not in streams")
        if not self.max_skew_ms > 0:
            raise ValueError("max_skew_ms must be positive")


class FusionNode(Model):
    """Aligns streams of different rates to now, within a skew bound.

    It takes inputs of any name: one per stream named in ``streams``, and
    optionally ``<stream>_trust`` (a predictor's ``trust`` output, say). It is
    meant to run on its own ``rate_hz``; each step it takes the latest sample of
    every stream (flattened) and checks its age: now minus the time it was
    sensed. A sample no older than ``max_skew_ms`` is used as it is; an older
    one is *late*, and the stream's late policy (``late_by_stream``, else
    ``late``) decides:

    - ``drop``: the stream is left out (its ``valid`` flag false, its values
      zero: a float output with NaN would be a fault);
    - ``hold``: the last sample is used as it is;
    - ``interpolate``: the last two samples are extended linearly to now (held
      while there is only one).

    A stream whose ``<stream>_trust`` is below ``min_trust`` is dropped whatever
    its age: untrusted streams are gated out. From the first step at which every
    stream has a sample, it publishes ``fused`` and ``valid``; before, nothing.
    Values keep their streams' units. The last two samples of each stream carry
    over between steps; a restart starts again from the latest samples. The run
    report notes per stream how many steps were fresh, held, interpolated and
    dropped.

    Faults:
        no ``streams``, an unknown late policy, a ``late_by_stream`` entry for a
        stream not in ``streams`` or a ``max_skew_ms`` that is not positive is a
        config error, reported when the graph is validated. A trust input that
        is not a number is an ``exception`` fault.

    YAML::

        - id: fusion
          type: fusion
          rate_hz: 50
          inputs:
            imu: imu/obs
            camera: camera/obs
            camera_trust: {from: predictor/trust, trigger: false}
          config: {streams: [imu, camera], max_skew_ms: 20, late: interpolate}
    """

    Config = FusionConfig
    accepts_any_inputs = True  # the streams and their trust inputs
    outputs = (
        Port("fused", "float64", doc="the streams' values concatenated in ``streams`` order"),
        Port("valid", "bool", doc="one flag per stream: false where it was dropped"),
    )

    def setup(self, ctx: NodeContext) -> None:
        cfg: FusionConfig = ctx.config
        self.history: dict[str, list[tuple[float, np.ndarray]]] = {s: [] for s in cfg.streams}
        self.seen = dict.fromkeys(cfg.streams, -1)
        self.counts = {
            s: dict.fromkeys(("fresh", "held", "interpolated", "dropped"), 0) for s in cfg.streams
        }

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        cfg: FusionConfig = self.config
        now = self.ctx.now()
        parts, valid = [], []
        for name in cfg.streams:
            message = self.ctx.message(name)
            if message is not None and message.seq != self.seen[name]:
                self.seen[name] = message.seq
                history = self.history[name]
                history.append((message.sensed, np.asarray(message.data, dtype=np.float64).ravel()))
                del history[:-2]
            value, ok = self._align(name, now, inputs.get(f"{name}_trust"))
            parts.append(value)
            valid.append(ok)
        if any(p is None for p in parts):  # until every stream has a first sample
            return None
        return {"fused": np.concatenate(parts), "valid": np.array(valid)}

    def _align(self, name: str, now: float, trust: Any) -> tuple[np.ndarray | None, bool]:
        cfg: FusionConfig = self.config
        history = self.history[name]
        counts = self.counts[name]
        trusted = trust is None or float(np.asarray(trust).ravel()[0]) >= cfg.min_trust
        if not history or not trusted:
            counts["dropped"] += 1
            return (np.zeros_like(history[-1][1]) if history else None), False
        sensed, value = history[-1]
        if now - sensed <= cfg.max_skew_ms / 1e3 + 1e-9:
            counts["fresh"] += 1
            return value, True
        policy = cfg.late_by_stream.get(name, cfg.late)
        if policy == "drop":
            counts["dropped"] += 1
            return np.zeros_like(value), False
        if policy == "interpolate" and len(history) == 2 and history[1][0] > history[0][0]:
            (t0, v0), (t1, v1) = history
            counts["interpolated"] += 1
            return v1 + (v1 - v0) * (now - t1) / (t1 - t0), True
        counts["held"] += 1
        return value, True

    def close(self) -> None:
        self.ctx.note("streams", json.dumps(self.counts))
