"""The cascade guard: back to full sensing and a safe controller when trust fails.

The ``guard`` node type (:class:`CascadeGuard`) documents when it trips and
recovers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from edgeloop.runtime.limits import MAX_RATE_HZ
from edgeloop.runtime.node import Controller, NodeContext, Port
from edgeloop.runtime.sensing import sensing_command


@dataclass(frozen=True)
class GuardConfig:
    low: float = 0.5
    """Trust below this counts toward a trip."""
    high: float = 0.8
    """Trust at or above this counts toward recovery."""
    trip_after: int = 3
    """Steps in a row of low trust, or of missed deadlines, that trip the guard."""
    recover_after: int = 25
    """Steps in a row of high trust (or on time) after which it recovers."""
    deadline_ms: float | None = None
    """Sense-to-act deadline of the forwarded action (None: not watched)."""
    full_rate_hz: Annotated[float, Field(le=MAX_RATE_HZ)] = 50.0
    """The sensing rate commanded while guarded (at most 1,000,000 Hz, as ``rate_hz``)."""

    def __post_init__(self) -> None:
        if not (0 <= self.low <= self.high <= 1):
            raise ValueError("need 0 <= low <= high <= 1")
        if self.trip_after < 1 or self.recover_after < 1:
            raise ValueError("trip_after and recover_after must be at least 1")


class CascadeGuard(Controller):
    """Full sensing and a safe controller while trust is low or deadlines are missed.

    Adaptive sensing trades readings for predictions, and a feedback loop
    amplifies what goes wrong: a corrupted stream, a predictor that drifts,
    actions made on stale data. The guard sits between the adaptive parts and
    the plant, in one of two modes:

    - *normal*: it forwards the adaptive sensing policy's ``command`` (each new
      one, once) and the controller's ``action``;
    - *guarded*: it commands the sensor back to ``full_rate_hz`` (and enabled)
      and forwards ``safe_action`` instead of ``action`` once one has arrived;
      the policy's commands are held back.

    It trips when ``trust`` (the first element) stays below ``low`` for
    ``trip_after`` steps in a row, or when the action it forwards misses its
    sense-to-act deadline (``deadline_ms``: now minus the sensing time behind
    the action) at that many steps in a row. It recovers when trust stays at or
    above ``high`` for ``recover_after`` steps (without a trust value, with
    ``deadline_ms`` set, each step whose action is on time counts), then sends
    the settings the policy had set (its commands merged, one-off ``read``
    requests left out). Every transition is recorded (series ``<id>.trip_s``
    and ``<id>.recover_s``, clock times in s) and the report notes the trips.
    Without a trust input and without ``deadline_ms`` it never trips.

    It steps when an input arrives, or on its ``rate_hz``, and publishes
    ``mode`` at every step. The mode, the streaks and the policy's settings
    carry over between steps; a restart starts normal with none.

    Faults:
        a config without ``0 <= low <= high <= 1``, or a ``trip_after`` or
        ``recover_after`` below 1, is a config error, reported when the graph is
        validated. A ``trust`` that is not a number is an ``exception`` fault.

    YAML::

        - id: guard
          type: guard
          inputs:
            action: controller/action
            trust: {from: predictor/trust, trigger: false}
            command: trigger/command
          config: {low: 0.5, high: 0.8, trip_after: 2, recover_after: 25, full_rate_hz: 50}
    """

    inputs = (
        Port("action", doc="controller's action, forwarded while normal"),
        Port("safe_action", doc="safe controller's action, forwarded while guarded (optional)"),
        Port("trust", doc="predictor's trust in its readings, 0..1 (optional)"),
        Port("command", doc="adaptive sensing policy's command, forwarded while normal"),
    )
    outputs = (
        Port("action", doc="action to apply"),
        Port("command", doc="sensing command for the sensor's ``sensing`` input"),
        Port("mode", doc="guard mode, an int8 array (1,): 0 normal, 1 guarded"),
    )
    Config = GuardConfig

    def setup(self, ctx: NodeContext) -> None:
        self.guarded = False
        self.low_streak = 0
        self.good_streak = 0
        self.late_streak = 0
        self.policy_command: Any = None
        self.settings: dict[str, Any] = {}  # what the policy's commands have set so far
        self.trips = 0

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        cfg: GuardConfig = self.config
        out: dict[str, Any] = {}
        command = inputs.get("command")
        fresh_command = command is not None and command is not self.policy_command
        self.policy_command = command
        if fresh_command and isinstance(command, dict):
            self.settings.update({k: v for k, v in command.items() if k != "read"})
        trust = inputs.get("trust")
        trust = None if trust is None else float(np.asarray(trust).ravel()[0])
        self._watch(trust)
        if not self.guarded and self._should_trip():
            self.guarded = True
            self.trips += 1
            self.good_streak = 0
            self.ctx.record("trip_s", self.ctx.now())
            out["command"] = sensing_command(enabled=True, rate_hz=cfg.full_rate_hz)
        elif self.guarded and self.good_streak >= cfg.recover_after:
            self.guarded = False
            self.low_streak = self.late_streak = 0
            self.ctx.record("recover_s", self.ctx.now())
            if self.settings:
                out["command"] = dict(self.settings)
        elif fresh_command and not self.guarded:
            out["command"] = command
        action = inputs.get("safe_action") if self.guarded else None
        if action is None:
            action = inputs.get("action")
        if action is not None:
            out["action"] = action
        out["mode"] = np.array([1 if self.guarded else 0], np.int8)
        return out

    def _watch(self, trust: float | None) -> None:
        cfg: GuardConfig = self.config
        if trust is not None:
            self.low_streak = self.low_streak + 1 if trust < cfg.low else 0
            self.good_streak = self.good_streak + 1 if trust >= cfg.high else 0
        elif cfg.deadline_ms is not None:  # no trust wired: steps on time count toward recovery
            self.good_streak += 1
        if cfg.deadline_ms is not None:
            message = self.ctx.message("action")
            late = message is not None and (self.ctx.now() - message.sensed > cfg.deadline_ms / 1e3)
            self.late_streak = self.late_streak + 1 if late else 0
            if late:
                self.good_streak = 0

    def _should_trip(self) -> bool:
        cfg: GuardConfig = self.config
        return self.low_streak >= cfg.trip_after or self.late_streak >= cfg.trip_after

    def close(self) -> None:
        self.ctx.note("trips", str(self.trips))
