"""The ``board.limits`` node: when the board runs hot or draws too much, sense less
and run a lighter model, and go back when it has cooled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from edgeloop.runtime.limits import MAX_RATE_HZ
from edgeloop.runtime.node import Controller, NodeContext, Port
from edgeloop.runtime.sensing import sensing_command


@dataclass(frozen=True)
class BoardLimitsConfig:
    temp_c: float | None = None
    """Hottest thermal zone allowed (°C); None: temperature is not watched."""
    power_w: float | None = None
    """Board input power allowed (W); None: power is not watched."""
    margin: Annotated[float, Field(gt=0, lt=1)] = 0.05
    """Back to normal only below the limit less this share of it (hysteresis)."""
    hold_s: Annotated[float, Field(ge=0)] = 5.0
    """Seconds over (or under) a limit before acting: one hot reading is not a trend."""
    slow_rate_hz: Annotated[float | None, Field(gt=0, le=MAX_RATE_HZ)] = None
    """Rate commanded on ``sensing`` while over a limit; None: sensing is left alone."""
    rate_hz: Annotated[float | None, Field(gt=0, le=MAX_RATE_HZ)] = None
    """Rate commanded on ``sensing`` when back to normal (the sensor's usual rate)."""
    variant: str | None = None
    """Model variant commanded on ``variant`` while over (``auto`` when back); None:
    the model is left alone."""

    def __post_init__(self) -> None:
        if self.temp_c is None and self.power_w is None:
            raise ValueError("give temp_c, power_w or both: there is nothing to watch")
        if self.slow_rate_hz is None and self.variant is None:
            raise ValueError("give slow_rate_hz, variant or both: there is nothing to do")
        if (self.slow_rate_hz is None) != (self.rate_hz is None):
            raise ValueError("slow_rate_hz and rate_hz go together: the rate to go back to")


class BoardLimits(Controller):
    """Throttles sensing and switches the model to a lighter variant while the board
    is over a temperature or power limit, and undoes both when it is back under.

    It reads ``temp_max_c`` and ``power_w`` (wire them from ``board.health``). Once
    either has stayed over its limit for ``hold_s``, it sends ``{"rate_hz":
    slow_rate_hz}`` on ``sensing`` and ``variant`` on ``variant``; once both have
    stayed under the limit less ``margin`` for ``hold_s``, ``{"rate_hz": rate_hz}``
    and ``auto`` (the model's own switching takes over again). Commands go out only
    when the state changes. Each change is a point of the series ``<id>.over``
    (1: over, 0: back) and noted with why. A limit whose reading never arrives
    (the board lacks it) never trips.

    Faults:
        none of its own; a config that watches nothing or does nothing is refused
        when the graph is validated.

    YAML::

        - id: limits
          type: board.limits
          inputs: {temp_max_c: health/temp_max_c, power_w: health/power_w}
          config: {temp_c: 85, slow_rate_hz: 5, rate_hz: 30, variant: small}
        # and: camera's sensing input from limits/sensing, the model's variant
        # input from limits/variant (trigger: false)
    """

    inputs = (
        Port("temp_max_c", units="°C", doc="the hottest thermal zone"),
        Port("power_w", units="W", doc="the board's input power"),
    )
    outputs = (
        Port("sensing", doc="a sensing command for the sensor to slow down or speed up"),
        Port("variant", doc="the model variant to run: the lighter one, or ``auto``"),
    )
    Config = BoardLimitsConfig

    def setup(self, ctx: NodeContext) -> None:
        self.over = False
        self.since: float | None = None  # when the readings started to disagree with it

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        cfg: BoardLimitsConfig = self.config
        readings = [(inputs["temp_max_c"], cfg.temp_c, "°C"), (inputs["power_w"], cfg.power_w, "W")]
        watched = [
            (float(v), limit, unit)
            for v, limit, unit in readings
            if v is not None and limit is not None
        ]
        if self.over:
            wrong = [(v, limit, u) for v, limit, u in watched if v >= limit * (1 - cfg.margin)]
            flip = not wrong
        else:
            wrong = [(v, limit, u) for v, limit, u in watched if v > limit]
            flip = bool(wrong)
        now = self.ctx.now()
        if not flip:
            self.since = None
            return None
        if self.since is None:
            self.since = now
        if now - self.since < cfg.hold_s:
            return None
        self.over, self.since = not self.over, None
        self.ctx.record("over", float(self.over))
        if self.over:
            why = ", ".join(f"{v:g} {u} over {limit:g} {u}" for v, limit, u in wrong)
        else:
            why = "under every limit less the margin"
        self.ctx.note("state", f"{'over' if self.over else 'normal'} since {now:.1f} s: {why}")
        out: dict[str, Any] = {}
        if cfg.slow_rate_hz is not None:
            out["sensing"] = sensing_command(rate_hz=cfg.slow_rate_hz if self.over else cfg.rate_hz)
        if cfg.variant is not None:
            out["variant"] = cfg.variant if self.over else "auto"
        return out
