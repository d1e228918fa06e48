"""Event sensing: a DVS-style event sensor, a synthetic moving edge, and encoders.

``events.dvs`` turns a stream of frames into ON/OFF events, as an event camera
does: a pixel fires ON when its log intensity has risen by ``threshold`` since
its last event, OFF when it has fallen by as much, and then stays silent for
``refractory_s``. Events are binned per tick into a (2, H, W) tensor of counts
(ON, OFF). A tick without events publishes nothing, so a spiking node fed by it
runs only on ticks that carry events (event-driven execution); the report notes
how many ticks were empty.

``scene.edge`` is a synthetic scene for it: a bright vertical edge sweeping
across a dark frame. The encoders turn low-dimensional observations into spikes:

- ``encode.rate``: each value in [low, high] fires with that probability per step;
- ``encode.latency``: within a window of ``steps`` ticks, larger values fire earlier;
- ``encode.delta``: send-on-change, +1 / -1 when a value moved by ``threshold``
  since it last fired (nothing is published when nothing changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.runtime.node import Model, NodeContext, Port, Sensor


@dataclass(frozen=True)
class DvsConfig:
    threshold: float = 0.2
    """Log-intensity change that makes an event."""
    refractory_s: float = 0.0
    """A pixel that fired stays silent this long."""
    eps: float = 1e-3
    """Added to intensities before the log (dark pixels)."""

    def __post_init__(self) -> None:
        if not (self.threshold > 0 and self.refractory_s >= 0 and self.eps > 0):
            raise ValueError("threshold and eps must be positive, refractory_s >= 0")


class DvsSensor(Model):
    """Frames in, ON/OFF event counts per tick out (nothing on a tick without events)."""

    inputs = (Port("frame"),)
    outputs = (Port("events", "float32", doc="(2, H, W): ON and OFF counts this tick"),)
    Config = DvsConfig

    def setup(self, ctx: NodeContext) -> None:
        self.reference: np.ndarray | None = None
        self.silent_until: np.ndarray | None = None
        self.empty = 0
        self.events = 0

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        frame = inputs.get("frame")
        if frame is None:
            return None
        cfg: DvsConfig = self.config
        frame = np.asarray(frame, dtype=np.float64)
        if frame.ndim != 2:
            raise ValueError(f"events.dvs takes grey 2-D frames, got shape {frame.shape}")
        level = np.log(np.clip(np.nan_to_num(frame, nan=0.0), 0.0, None) + cfg.eps)
        now = self.ctx.now()
        if self.reference is None:
            self.reference = level.copy()
            self.silent_until = np.full(level.shape, -np.inf)
            return None
        ready = now >= self.silent_until
        change = level - self.reference
        # A change of several thresholds is several events, as in a real sensor; the
        # reference moves by what was emitted, the remainder carries over.
        steps = np.where(ready, np.trunc(change / cfg.threshold), 0.0)
        on, off = np.clip(steps, 0, None), np.clip(-steps, 0, None)
        fired = steps != 0
        self.reference[fired] += steps[fired] * cfg.threshold
        self.silent_until[fired] = now + cfg.refractory_s
        count = int(on.sum() + off.sum())
        if not count:
            self.empty += 1
            return None
        self.events += count
        return {"events": np.stack([on, off]).astype(np.float32)}

    def close(self) -> None:
        self.ctx.note(
            "events", f"{self.events} events, {self.empty} ticks without (skipped downstream)"
        )


@dataclass(frozen=True)
class EdgeConfig:
    width: int = 16
    height: int = 8
    speed: float = 8.0
    """Pixels per second the edge moves right (it wraps around)."""


class MovingEdge(Sensor):
    """A bright vertical edge sweeping right over a dark frame."""

    outputs = (Port("frame", "float32"),)
    Config = EdgeConfig

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        cfg: EdgeConfig = self.config
        column = int(self.ctx.now() * cfg.speed) % cfg.width
        frame = np.full((cfg.height, cfg.width), 0.05, np.float32)
        frame[:, : column + 1] = 1.0
        return {"frame": frame}


@dataclass(frozen=True)
class EncoderConfig:
    low: float = -1.0
    high: float = 1.0
    steps: int = 10
    """``encode.latency``: the window, in ticks."""
    threshold: float = 0.1
    """``encode.delta``: the change that fires."""

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError("need high > low")
        if self.steps < 1 or not self.threshold > 0:
            raise ValueError("steps must be at least 1 and threshold positive")


class RateEncoder(Model):
    """Each value, scaled from [low, high] to [0, 1], fires with that probability."""

    inputs = (Port("x"),)
    outputs = (Port("spikes", "float32"),)
    Config = EncoderConfig

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        x = inputs.get("x")
        if x is None:
            return None
        p = np.clip(
            (np.asarray(x, np.float64) - self.config.low) / (self.config.high - self.config.low),
            0,
            1,
        )
        return {"spikes": (self.ctx.rng.random(p.shape) < p).astype(np.float32)}


class LatencyEncoder(Model):
    """Within each window of ``steps`` ticks, a value fires once, larger ones earlier."""

    inputs = (Port("x"),)
    outputs = (Port("spikes", "float32"),)
    Config = EncoderConfig

    def setup(self, ctx: NodeContext) -> None:
        self.tick = 0
        self.fire_at: np.ndarray | None = None

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        x = inputs.get("x")
        if x is None:
            return None
        cfg: EncoderConfig = self.config
        phase = self.tick % cfg.steps
        if phase == 0:  # a new window: the value now sets when each fires
            p = np.clip((np.asarray(x, np.float64) - cfg.low) / (cfg.high - cfg.low), 0, 1)
            self.fire_at = np.round((1 - p) * (cfg.steps - 1)).astype(int)
        self.tick += 1
        return {"spikes": (self.fire_at == phase).astype(np.float32)}


class DeltaEncoder(Model):
    """Send-on-change: +1 or -1 where a value moved by ``threshold`` since it fired."""

    inputs = (Port("x"),)
    outputs = (Port("spikes", "float32"),)
    Config = EncoderConfig

    def setup(self, ctx: NodeContext) -> None:
        self.last: np.ndarray | None = None

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        x = inputs.get("x")
        if x is None:
            return None
        x = np.asarray(x, np.float64)
        if self.last is None:
            self.last = x.copy()
            return None
        change = x - self.last
        fired = np.abs(change) >= self.config.threshold
        if not fired.any():
            return None
        self.last[fired] = x[fired]
        return {"spikes": (np.sign(change) * fired).astype(np.float32)}
