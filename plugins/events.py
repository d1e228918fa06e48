"""Event sensing: a DVS-style event sensor, a synthetic moving edge, and encoders.

``events.dvs`` (:class:`DvsSensor`) turns frames into ON/OFF events as an event
camera does; ``scene.edge`` (:class:`MovingEdge`) is a synthetic scene for it.
The encoders turn low-dimensional observations into spikes: ``encode.rate``
(:class:`RateEncoder`), ``encode.latency`` (:class:`LatencyEncoder`) and
``encode.delta`` (:class:`DeltaEncoder`). Each class documents its node type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from edgeloop.runtime.limits import MAX_IMAGE_SIDE
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
    """Frames in, ON/OFF event counts per tick out (nothing on a tick without events).

    It turns a stream of grey frames into events, as an event camera (DVS)
    does: a pixel fires ON when its log intensity has risen by ``threshold``
    since its last event, OFF when it has fallen by as much, and then stays
    silent for ``refractory_s`` of clock time. A change of several thresholds
    is several events; the pixel's reference moves by what was emitted and the
    remainder carries over. Intensities are clipped at 0 (NaN read as 0) and
    offset by ``eps`` before the log. Events are binned per step into a (2, H,
    W) array of counts (ON, OFF).

    It steps on each frame, or on its ``rate_hz``. The first frame sets the
    references and publishes nothing. A step without events publishes nothing,
    so a spiking node fed by it runs only on steps that carry events
    (event-driven execution). The references carry over between steps; a
    restart starts again from the next frame. The report notes the events and
    the steps without any.

    Faults:
        a ``threshold`` or ``eps`` that is not positive, or a negative
        ``refractory_s``, is a config error, reported when the graph is
        validated. A frame that is not 2-D is an ``exception`` fault; so is a
        frame of another shape than the first.

    YAML::

        - id: dvs
          type: events.dvs
          inputs: {frame: edge/frame}
          config: {threshold: 0.2, refractory_s: 0.0}
    """

    inputs = (Port("frame", doc="grey intensity image (H, W), non-negative"),)
    outputs = (Port("events", "float32", doc="(2, H, W): ON and OFF event counts this step"),)
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
    width: Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)] = 16
    """Frame width (pixels), at most 8192 (an 8K sensor's)."""
    height: Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)] = 8
    """Frame height (pixels), at most 8192."""
    speed: float = 8.0
    """Pixels per second the edge moves right (it wraps around)."""


class MovingEdge(Sensor):
    """A bright vertical edge sweeping right over a dark frame.

    A synthetic scene for ``events.dvs``: each step draws a ``height`` x
    ``width`` frame, bright (1.0) from the left up to the edge's column and dark
    (0.05) to its right. The edge moves ``speed`` pixels per second of clock
    time and wraps around to column 0, so the frame is a function of time
    alone; the node keeps no state.

    It runs on its ``rate_hz``.

    Faults:
        none of its own.

    YAML::

        - id: edge
          type: scene.edge
          rate_hz: 100
          config: {width: 16, height: 8, speed: 8.0}
    """

    outputs = (Port("frame", "float32", doc="grey image (height, width), intensities in [0, 1]"),)
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
    """``encode.rate`` and ``encode.latency``: the value that never fires or fires
    last."""
    high: float = 1.0
    """``encode.rate`` and ``encode.latency``: the value that always fires or fires
    first."""
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
    """Each value, scaled from [low, high] to [0, 1], fires with that probability.

    Rate coding: every step each element of ``x`` fires a spike (1.0) with
    probability ``(x - low) / (high - low)``, clipped to [0, 1], drawn from the
    node's seeded generator; the spikes have the shape of ``x``. Only ``low``
    and ``high`` apply. It steps on each ``x``, or on its ``rate_hz``, and keeps
    no state between steps.

    Faults:
        ``high`` not above ``low``, a ``steps`` below 1 or a ``threshold`` that
        is not positive is a config error, reported when the graph is
        validated. No output until the first value. A NaN value never fires.

    YAML::

        - id: spikes
          type: encode.rate
          inputs: {x: sensor/obs}
          config: {low: -1.0, high: 1.0}
    """

    inputs = (Port("x", doc="values to encode, in [low, high]"),)
    outputs = (Port("spikes", "float32", doc="1 where an element fired, else 0; the shape of x"),)
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
    """Within each window of ``steps`` ticks, a value fires once, larger ones earlier.

    Latency coding: at the first step of each window of ``steps`` steps, each
    element of ``x`` is scaled from [low, high] to p in [0, 1] (clipped) and
    set to fire at step ``round((1 - p) * (steps - 1))`` of the window: ``high``
    fires first, ``low`` last. Values arriving later in the window are not
    read. Every step publishes the spikes of that step, often all zero. Only
    ``low``, ``high`` and ``steps`` apply. It steps on each ``x``, or on its
    ``rate_hz``; the window position carries over between steps, and a restart
    starts a new window.

    Faults:
        ``high`` not above ``low``, a ``steps`` below 1 or a ``threshold`` that
        is not positive is a config error, reported when the graph is
        validated. No output until the first value. A NaN value never fires in
        its window.

    YAML::

        - id: spikes
          type: encode.latency
          inputs: {x: sensor/obs}
          config: {low: -1.0, high: 1.0, steps: 10}
    """

    inputs = (Port("x", doc="values to encode, in [low, high]"),)
    outputs = (Port("spikes", "float32", doc="1 where an element fires this step, else 0"),)
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
    """Send-on-change: +1 or -1 where a value moved by ``threshold`` since it fired.

    Delta coding: each element of ``x`` fires +1 when it has risen by
    ``threshold`` or more since it last fired, -1 when it has fallen by as much;
    the elements that fired take their new value as the reference. A step where
    nothing fired publishes nothing. Only ``threshold`` applies, in the units of
    ``x``. It steps on each ``x``, or on its ``rate_hz``. The first value sets
    the references and publishes nothing; they carry over between steps, and a
    restart starts again from the next value.

    Faults:
        ``high`` not above ``low``, a ``steps`` below 1 or a ``threshold`` that
        is not positive is a config error, reported when the graph is
        validated. A value of another shape than the first is an ``exception``
        fault. A NaN value never fires.

    YAML::

        - id: spikes
          type: encode.delta
          inputs: {x: sensor/obs}
          config: {threshold: 0.1}
    """

    inputs = (Port("x", doc="values to encode"),)
    outputs = (Port("spikes", "float32", doc="+1 or -1 where an element fired, else 0"),)
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
