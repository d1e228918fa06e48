"""Safety: clamp actions to limits and bound how fast they change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.runtime.node import Controller, NodeContext, Port


@dataclass(frozen=True)
class ClampConfig:
    low: float = -1.0
    """Lowest allowed value of every element."""
    high: float = 1.0
    """Highest allowed value of every element."""
    max_rate: float | None = None
    """Largest change per second of any element (action units/s); None means no rate limit."""

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.max_rate is not None and self.max_rate <= 0:
            raise ValueError(f"max_rate must be positive, got {self.max_rate}")


class ActionClamp(Controller):
    """Clamps an action to [low, high] and limits its rate of change.

    Every element is clipped to ``[low, high]``. With ``max_rate``, each element
    may then move at most ``max_rate * dt`` from the previous safe action, where
    ``dt`` is the clock time between steps; the first action is only clipped.
    The limits are in the action's own units (``max_rate`` in those units per
    second), the same for every element. The safe action has the input's
    shape, and a float32 action stays float32.

    It steps on each action, or on its ``rate_hz`` with the latest one. The
    previous safe action and its time carry over between steps; a restart
    forgets them, so the next action is only clipped.

    Faults:
        ``low`` above ``high`` or a ``max_rate`` that is not positive is a
        config error, reported when the graph is validated. No output until the
        first action. A non-finite action raises (an ``exception`` fault) and is
        neither passed on nor kept as the previous action. With ``max_rate``, an
        action whose shape does not broadcast against the previous one is an
        ``exception`` fault.

    YAML::

        - id: safety
          type: clamp
          inputs: {action: controller/action}
          config: {low: -2.0, high: 2.0, max_rate: 40.0}
    """

    inputs = (Port("action", doc="requested action, a float array"),)
    outputs = (Port("action", doc="safe action, within the limits, in the request's dtype"),)
    Config = ClampConfig

    def setup(self, ctx: NodeContext) -> None:
        self.previous: np.ndarray | None = None
        self.last_time = 0.0

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        action = inputs["action"]
        if action is None:
            return None
        cfg: ClampConfig = self.config
        if not np.isfinite(action).all():  # never pass it on, nor keep it as the previous
            raise ValueError(f"non-finite action {action}")
        safe = np.clip(action, cfg.low, cfg.high)
        now = self.ctx.now()
        if cfg.max_rate is not None and self.previous is not None:
            step = cfg.max_rate * (now - self.last_time)
            safe = np.clip(safe, self.previous - step, self.previous + step)
        self.previous = safe
        self.last_time = now
        return {"action": safe}
