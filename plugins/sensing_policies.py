"""Adaptive sensing policies: nodes that decide how much to sense.

Each publishes sensing commands (:mod:`edgeloop.runtime.sensing`) for a sensor's
``sensing`` input:

- ``sensing.urgency``: the rate follows how close the state is to where it
  matters (an unstable equilibrium, an obstacle): full rate near it, the
  sensor's floor far away.
- ``sensing.event``: event-triggered sensing. The sensor idles at a floor rate
  and takes a reading whenever the predictor's uncertainty passes a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.runtime.node import Controller, NodeContext, Port
from edgeloop.runtime.sensing import sensing_command


@dataclass(frozen=True)
class UrgencyConfig:
    index: int = 0
    """Element of ``state`` whose distance from ``center`` sets the urgency."""
    center: float = 0.0
    angle: bool = False
    """The element is an angle: distances wrap around 2 pi."""
    near: float = 0.3
    """At this distance or closer: ``max_rate_hz``."""
    far: float = 1.5
    """At this distance or farther: ``min_rate_hz``; linear in between."""
    max_rate_hz: float = 50.0
    min_rate_hz: float = 5.0
    change: float = 0.2
    """Send a new rate only when it differs from the last by this fraction."""

    def __post_init__(self) -> None:
        if not (0 <= self.near < self.far):
            raise ValueError("need 0 <= near < far")
        if not (0 < self.min_rate_hz <= self.max_rate_hz):
            raise ValueError("need 0 < min_rate_hz <= max_rate_hz")


class UrgencyRate(Controller):
    """Sets a sensor's rate from the state: fast where it matters, slow elsewhere.

    Inputs: ``state`` (a predictor's estimate). Outputs: ``command``.
    """

    inputs = (Port("state"),)
    outputs = (Port("command"),)
    Config = UrgencyConfig

    def setup(self, ctx: NodeContext) -> None:
        self.sent: float | None = None

    def rate_for(self, state: np.ndarray) -> float:
        cfg: UrgencyConfig = self.config
        offset = float(state[cfg.index]) - cfg.center
        if cfg.angle:
            offset = (offset + math.pi) % (2 * math.pi) - math.pi
        share = min(max((abs(offset) - cfg.near) / (cfg.far - cfg.near), 0.0), 1.0)
        return cfg.max_rate_hz + share * (cfg.min_rate_hz - cfg.max_rate_hz)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        state = inputs.get("state")
        if state is None:
            return None
        rate = self.rate_for(np.asarray(state))
        if self.sent is not None and abs(rate - self.sent) <= self.config.change * self.sent:
            return None
        self.sent = rate
        return {"command": sensing_command(rate_hz=rate)}


@dataclass(frozen=True)
class EventConfig:
    threshold: float = 0.05
    """Read when the uncertainty passes this."""
    floor_rate_hz: float = 1.0
    """The rate the sensor idles at (it is never read less often)."""

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.floor_rate_hz <= 0:
            raise ValueError("threshold and floor_rate_hz must be positive")


class EventTriggered(Controller):
    """Reads the sensor when the predictor is no longer sure enough.

    Inputs: ``uncertainty`` (a predictor's). Outputs: ``command``. Its first
    command sets the sensor to ``floor_rate_hz``.
    """

    inputs = (Port("uncertainty"),)
    outputs = (Port("command"),)
    Config = EventConfig

    def setup(self, ctx: NodeContext) -> None:
        self.started = False

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if not self.started:
            self.started = True
            return {"command": sensing_command(rate_hz=self.config.floor_rate_hz)}
        uncertainty = inputs.get("uncertainty")
        if uncertainty is not None and float(uncertainty) > self.config.threshold:
            return {"command": sensing_command(read=True)}
        return None
