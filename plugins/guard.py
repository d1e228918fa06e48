"""The cascade guard: back to full sensing and a safe controller when trust fails.

Adaptive sensing trades readings for predictions, and a feedback loop amplifies
what goes wrong: a corrupted stream, a predictor that drifts, actions made on
stale data. ``guard`` sits between the adaptive parts and the plant:

- *normal*: it forwards the adaptive sensing policy's ``command`` and the
  controller's ``action``;
- *guarded*: it commands the sensor back to ``full_rate_hz`` and forwards
  ``safe_action`` instead (when wired).

It trips when ``trust`` (a predictor's) stays below ``low`` for ``trip_after``
steps in a row, or when the action it forwards misses its sense-to-act deadline
(``deadline_ms``: now minus the sensing time behind the action) that many times
in a row. It recovers when trust stays at or above ``high`` for
``recover_after`` steps, then sends the settings the policy had set (its
commands merged, one-off ``read`` requests left out). Every
transition is recorded (series ``<id>.trip_s`` and ``<id>.recover_s``); the
``mode`` output is 0 normal, 1 guarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.runtime.node import Controller, NodeContext, Port
from edgeloop.runtime.sensing import sensing_command


@dataclass(frozen=True)
class GuardConfig:
    low: float = 0.5
    high: float = 0.8
    trip_after: int = 3
    recover_after: int = 25
    deadline_ms: float | None = None
    """Sense-to-act deadline of the forwarded action (None: not watched)."""
    full_rate_hz: float = 50.0
    """The sensing rate commanded while guarded."""

    def __post_init__(self) -> None:
        if not (0 <= self.low <= self.high <= 1):
            raise ValueError("need 0 <= low <= high <= 1")
        if self.trip_after < 1 or self.recover_after < 1:
            raise ValueError("trip_after and recover_after must be at least 1")


class CascadeGuard(Controller):
    """Full sensing and a safe controller while trust is low or deadlines are missed."""

    inputs = (Port("action"), Port("safe_action"), Port("trust"), Port("command"))
    outputs = (Port("action"), Port("command"), Port("mode"))
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
