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
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from edgeloop.runtime.limits import MAX_RATE_HZ
from edgeloop.runtime.node import Controller, NodeContext, Port
from edgeloop.runtime.sensing import sensing_command


@dataclass(frozen=True)
class UrgencyConfig:
    index: int = 0
    """Element of ``state`` whose distance from ``center`` sets the urgency."""
    center: float = 0.0
    """Value of the element where sensing matters most (e.g. an unstable equilibrium)."""
    angle: bool = False
    """The element is an angle: distances wrap around 2 pi."""
    near: float = 0.3
    """At this distance or closer: ``max_rate_hz``."""
    far: float = 1.5
    """At this distance or farther: ``min_rate_hz``; linear in between."""
    max_rate_hz: Annotated[float, Field(le=MAX_RATE_HZ)] = 50.0
    """Rate (Hz) at ``near`` or closer (at most 1,000,000, as ``rate_hz``)."""
    min_rate_hz: float = 5.0
    """Rate (Hz) at ``far`` or farther."""
    change: float = 0.2
    """Send a new rate only when it differs from the last by this fraction."""

    def __post_init__(self) -> None:
        if not (0 <= self.near < self.far):
            raise ValueError("need 0 <= near < far")
        if not (0 < self.min_rate_hz <= self.max_rate_hz):
            raise ValueError("need 0 < min_rate_hz <= max_rate_hz")


class UrgencyRate(Controller):
    """Sets a sensor's rate from the state: fast where it matters, slow elsewhere.

    The urgency is the distance of ``state[index]`` from ``center`` (wrapped to
    [-pi, pi] when ``angle``): the sensor gets ``max_rate_hz`` at ``near`` or
    closer, ``min_rate_hz`` at ``far`` or farther, and a rate linear in the
    distance between (near an unstable equilibrium, say, full rate; far from
    it, the floor). Distances are in the state's units. Wire ``command`` to a
    steerable sensor's ``sensing`` input; the sensor clamps the rate to its own
    bounds.

    It steps when a state arrives, or on its ``rate_hz``. It sends the first
    rate, then a new one only when it differs from the last one sent by more
    than ``change`` of it, so the sensor is not re-planned at every step. The
    last rate sent carries over between steps; a restart forgets it, so the
    next step sends again.

    Faults:
        ``near`` and ``far`` outside ``0 <= near < far``, or rates outside
        ``0 < min_rate_hz <= max_rate_hz``, are a config error, reported when the
        graph is validated. No output until the first state. An ``index`` past
        the end of ``state`` is an ``exception`` fault. A non-finite state gives
        a non-finite rate, which the sensor rejects and counts (its rate stays
        as it was).

    YAML::

        - id: urgency
          type: sensing.urgency
          inputs: {state: predictor/state}
          config: {index: 0, angle: true, near: 0.3, far: 1.5, max_rate_hz: 50, min_rate_hz: 5}
    """

    inputs = (Port("state", doc="state estimate, e.g. a predictor's"),)
    outputs = (Port("command", doc="sensing command setting ``rate_hz``"),)
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
    floor_rate_hz: Annotated[float, Field(le=MAX_RATE_HZ)] = 1.0
    """The rate the sensor idles at (it is never read less often); at most 1,000,000
    Hz, as ``rate_hz``."""

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.floor_rate_hz <= 0:
            raise ValueError("threshold and floor_rate_hz must be positive")


class EventTriggered(Controller):
    """Reads the sensor when the predictor is no longer sure enough.

    Event-triggered sensing: the sensor idles at ``floor_rate_hz`` and takes one
    reading whenever the predictor's uncertainty passes ``threshold`` (in the
    uncertainty's units, e.g. the state's standard deviation). Wire
    ``command`` to a steerable sensor's ``sensing`` input and ``uncertainty``
    to a predictor's, e.g. ``predictor.kalman``'s.

    It steps when an uncertainty arrives, or on its ``rate_hz``. Its first step
    sends a command that sets the sensor to ``floor_rate_hz``; every later step
    whose uncertainty is above ``threshold`` sends a one-off ``read`` command.
    A restart sends the floor rate again.

    Faults:
        a ``threshold`` or ``floor_rate_hz`` that is not positive is a config
        error, reported when the graph is validated. An uncertainty that is not
        a single number is an ``exception`` fault. A NaN uncertainty never
        triggers a reading.

    YAML::

        - id: trigger
          type: sensing.event
          inputs: {uncertainty: predictor/uncertainty}
          config: {threshold: 0.05, floor_rate_hz: 1}
    """

    inputs = (Port("uncertainty", doc="predictor's uncertainty, a single number"),)
    outputs = (Port("command", doc="sensing command: the floor rate, then ``read`` requests"),)
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
