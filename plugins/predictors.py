"""Predictors that fill in what was not sensed: a Kalman filter over a known model.

The ``predictor.kalman`` node type (:class:`KalmanPredictor`) documents its
models and its gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from edgeloop.runtime.limits import MAX_STATE_DIMS
from edgeloop.runtime.node import Model, NodeContext, Port


class _Pendulum:
    """Pendulum-v1 (g, m, l as gymnasium's defaults): the same explicit Euler step."""

    def __init__(self, dt: float, g: float = 10.0, m: float = 1.0, length: float = 1.0) -> None:
        self.dt, self.g, self.m, self.l = dt, g, m, length
        self.n = 2

    def f(self, x: np.ndarray, u: float) -> np.ndarray:
        theta, omega = x
        u = min(max(u, -2.0), 2.0)
        omega = (
            omega
            + (3 * self.g / (2 * self.l) * math.sin(theta) + 3.0 / (self.m * self.l**2) * u)
            * self.dt
        )
        omega = min(max(omega, -8.0), 8.0)
        return np.array([theta + omega * self.dt, omega])

    def h(self, x: np.ndarray) -> np.ndarray:
        return np.array([math.cos(x[0]), math.sin(x[0]), x[1]])

    def state_of(self, z: np.ndarray) -> np.ndarray:
        return np.array([math.atan2(z[1], z[0]), z[2]])

    def initial_covariance(self, noise: float) -> np.ndarray:
        return noise * np.eye(self.n)  # both read


class _ConstantVelocity:
    def __init__(self, dt: float, dims: int) -> None:
        self.n, self.dims = 2 * dims, dims
        self.F = np.eye(self.n)
        self.F[:dims, dims:] = dt * np.eye(dims)

    def f(self, x: np.ndarray, u: float) -> np.ndarray:
        return self.F @ x

    def h(self, x: np.ndarray) -> np.ndarray:
        return x[: self.dims]

    def state_of(self, z: np.ndarray) -> np.ndarray:
        return np.concatenate([z, np.zeros(self.dims)])

    def initial_covariance(self, noise: float) -> np.ndarray:
        # positions read; velocities unknown (a wide start, so the gate lets the
        # readings of a moving target in)
        return np.diag([noise] * self.dims + [1e2] * self.dims)


def _jacobian(fn: Any, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    fx = fn(x)
    jac = np.empty((fx.size, x.size))
    for i in range(x.size):
        step = np.zeros_like(x)
        step[i] = eps
        jac[:, i] = (fn(x + step) - fx) / eps
    return jac


@dataclass(frozen=True)
class KalmanConfig:
    dt: float
    """Prediction step (s): the node's period, e.g. 0.02 at 50 Hz."""
    model: str = "pendulum"
    """``pendulum`` or ``constant_velocity``."""
    dims: Annotated[int, Field(ge=1, le=MAX_STATE_DIMS)] = 1
    """Positions of a ``constant_velocity`` model, at most 1000 (the covariance, (2
    dims)^2 numbers, is updated every step)."""
    process_noise: float = 1e-3
    """Variance added to every state element per step: how fast trust in a
    prediction fades."""
    measurement_noise: float = 1e-4
    """Variance of each element of a reading."""
    gate: float | None = None
    """Reject a reading whose normalised innovation squared passes this (e.g.
    11.3, the 99% chi-square bound for 3 values): an outlier, a stuck or noisy
    sensor. None accepts every reading."""
    trust_memory: float = 0.8
    """Trust is 1 for an accepted reading, 0 for a rejected one, averaged
    with this weight on the past."""
    max_rejections: int = 100
    """After this many rejections in a row, accept again (the model, not the
    sensor, may be what is wrong)."""
    mass: float = 1.0
    """``pendulum``: the mass (kg) the model assumes (Pendulum-v1's is 1)."""
    length: float = 1.0
    """``pendulum``: the length (m) the model assumes (Pendulum-v1's is 1)."""

    def __post_init__(self) -> None:
        if self.model not in ("pendulum", "constant_velocity"):
            raise ValueError(f"unknown model '{self.model}' (known: pendulum, constant_velocity)")
        if not self.dt > 0:
            raise ValueError(f"dt must be a positive step in seconds, got {self.dt}")
        if self.process_noise < 0 or self.measurement_noise <= 0:
            raise ValueError("process_noise must be >= 0 and measurement_noise > 0")


class KalmanPredictor(Model):
    """Predicts the state between readings and corrects it with each fresh one.

    It runs on its own rate (the control rate; ``dt`` should be its period).
    Every tick it predicts the state one step on, with the first element of the
    last ``action`` applied (0 before any); when a fresh reading has arrived it
    corrects the prediction with it. A reading sensed more than ``dt / 2``
    before the tick (one read on demand between ticks, say) corrects the
    estimate before the prediction instead. It publishes the estimate in the
    sensor's own format (``obs``), so a controller written for the sensor runs
    on it unchanged, and its uncertainty, which sensing policies use to decide
    when to read again.

    Models (``model``):

    - ``pendulum``: Pendulum-v1's dynamics (an extended Kalman filter), state
      ``[theta, theta_dot]`` in rad and rad/s, torque in N*m (clipped to +-2, and
      theta_dot to +-8, as Pendulum-v1 does), reading
      ``[cos(theta), sin(theta), theta_dot]``; ``mass`` and ``length`` set the
      model, gravity is 10 m/s^2.
    - ``constant_velocity``: ``dims`` positions and their velocities (a linear
      Kalman filter); the reading is the positions, ``action`` is not used.

    The first reading sets the state (velocities 0 for ``constant_velocity``)
    and its covariance; it publishes nothing before. With ``gate``, a reading
    whose normalised innovation squared passes the gate is rejected (the gate
    keeps its width through a run of rejections), and after ``max_rejections``
    in a row one is accepted again. ``trust`` averages 1 per accepted and 0 per
    rejected reading. The estimate, its covariance and trust carry over between
    ticks; a restart starts again from the latest reading. The report notes how
    many predictions ran on a fresh reading, how many on prediction alone, and
    how many readings were rejected.

    Faults:
        an unknown ``model``, a ``dt`` that is not positive or a negative noise
        is a config error, reported when the graph is validated. A later reading
        that is not finite is rejected like an outlier (trust drops), never
        used. A reading whose size differs from the model's is an ``exception``
        fault. A non-finite first reading, or a non-finite ``action`` with the
        ``pendulum`` model, makes the estimate non-finite: a ``non_finite`` fault
        on its outputs.

    YAML::

        - id: predictor
          type: predictor.kalman
          rate_hz: 50
          inputs:
            measurement: sensor/obs
            action: {from: safety/action, feedback: true}
          config: {model: pendulum, dt: 0.02}
    """

    inputs = (
        Port("measurement", doc="the sensor's reading (used when fresh, never waited for)"),
        Port("action", doc="the last action applied, for the prediction (optional)"),
    )
    outputs = (
        Port("obs", "float32", doc="estimate in the reading's format and shape"),
        Port("state", "float32", doc="state estimate, (2,) or (2 * dims,)"),
        Port("uncertainty", "float64", doc="largest standard deviation of the state"),
        Port("trust", "float64", doc="agreement of recent readings with the predictions, 0..1"),
    )
    Config = KalmanConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: KalmanConfig = ctx.config
        dt = cfg.dt
        self.model = (
            _Pendulum(dt, m=cfg.mass, length=cfg.length)
            if cfg.model == "pendulum"
            else _ConstantVelocity(dt, cfg.dims)
        )
        self.x: np.ndarray | None = None
        self.t = 0.0  # the time the estimate is for
        self.P = np.eye(self.model.n)
        self.Q = cfg.process_noise * np.eye(self.model.n)
        self.seen = -1  # sequence number of the last reading used
        self.corrected = 0
        self.predicted_only = 0
        self.rejected = 0
        self.in_a_row = 0
        self.gate_S: np.ndarray | None = None  # the gate's width during rejections
        self.trust = 1.0

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        message = self.ctx.message("measurement")
        fresh = message is not None and message.seq != self.seen
        model = self.model
        now = self.ctx.now()
        used = False
        if self.x is None:
            if not fresh:
                return None
            self.x = model.state_of(np.asarray(message.data, dtype=np.float64))
            self.P = model.initial_covariance(self.config.measurement_noise)
            self.t = message.sensed
            self.seen = message.seq  # the first reading made the estimate: used
            self.corrected += 1
            fresh, used = False, True
        if fresh:
            self.seen = message.seq
            # A reading taken between two steps (one read on demand, say) belongs to
            # the estimate before this step's prediction, not after it.
            if message.sensed < now - self.config.dt / 2:
                self._use(message.data)
                fresh, used = False, True
        if self.t < now - self.config.dt / 2:
            u = inputs.get("action")
            u = 0.0 if u is None else float(np.asarray(u, dtype=np.float64).ravel()[0])
            F = _jacobian(lambda x: model.f(x, u), self.x)
            self.x = model.f(self.x, u)
            self.P = F @ self.P @ F.T + self.Q
            self.t = now
        if fresh:
            self._use(message.data)
        elif not used:
            self.predicted_only += 1
        return {
            "obs": model.h(self.x).astype(np.float32),
            "state": self.x.astype(np.float32),
            "uncertainty": float(math.sqrt(max(np.max(np.diag(self.P)), 0.0))),
            "trust": self.trust,
        }

    def _use(self, data: Any) -> None:
        if self._correct(np.asarray(data, dtype=np.float64)):
            self.corrected += 1
        else:
            self.rejected += 1

    def _correct(self, z: np.ndarray) -> bool:
        """Correct the estimate with a reading; False if the gate rejected it."""
        cfg: KalmanConfig = self.config
        model = self.model
        H = _jacobian(model.h, self.x)
        R = cfg.measurement_noise * np.eye(z.size)
        innovation = z - model.h(self.x)
        S = H @ self.P @ H.T + R
        # During a run of rejected readings the gate keeps the width it had when the
        # disagreement began: uncertainty that grows only because readings are being
        # rejected must not let the bad ones in at last.
        gate_S = self.gate_S if self.in_a_row and self.gate_S is not None else S
        finite = bool(np.all(np.isfinite(z)))
        nis = float(innovation @ np.linalg.solve(gate_S, innovation)) if finite else math.inf
        accepted = finite and (
            cfg.gate is None or nis <= cfg.gate or self.in_a_row >= cfg.max_rejections
        )
        self.trust = cfg.trust_memory * self.trust + (1 - cfg.trust_memory) * float(accepted)
        if not accepted:
            if not self.in_a_row:
                self.gate_S = S
            self.in_a_row += 1
            return False
        self.in_a_row = 0
        K = self.P @ H.T @ np.linalg.inv(S)
        self.x = self.x + K @ innovation
        self.P = (np.eye(model.n) - K @ H) @ self.P
        return True

    def close(self) -> None:
        self.ctx.note(
            "predictions",
            f"{self.corrected} corrected, {self.predicted_only} predicted only, "
            f"{self.rejected} readings rejected",
        )
