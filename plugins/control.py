"""Classical controllers: PID, and energy-based swing-up for the pendulum."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.runtime.node import Controller, NodeContext, Port


class Pid:
    """A PID law with output limits and anti-windup (integration stops at saturation)."""

    def __init__(self, kp: float, ki: float, kd: float, limit: float | None) -> None:
        self.kp, self.ki, self.kd, self.limit = kp, ki, kd, limit
        self.integral = 0.0
        self.previous_error: float | None = None

    def update(self, error: float, dt: float, rate: float | None = None) -> float:
        """One step; ``rate`` (d error / dt) is used instead of a difference when given."""
        if rate is None:
            rate = (
                0.0
                if self.previous_error is None or dt <= 0
                else (error - self.previous_error) / dt
            )
        self.previous_error = error
        candidate = self.integral + error * dt
        u = self.kp * error + self.ki * candidate + self.kd * rate
        if self.limit is not None and abs(u) > self.limit:
            return math.copysign(self.limit, u)
        self.integral = candidate
        return u


@dataclass(frozen=True)
class PidConfig:
    kp: float = 1.0
    """Proportional gain."""
    ki: float = 0.0
    """Integral gain (1/s)."""
    kd: float = 0.0
    """Derivative gain (s)."""
    setpoint: float = 0.0
    """Target when the ``setpoint`` input is not wired."""
    index: int = 0
    """Element of ``measurement`` to control."""
    limit: float | None = None
    """Symmetric output limit (None: unlimited); the integrator holds while saturated."""


class PidController(Controller):
    """PID control of one element of a measurement vector.

    The error is the target minus ``measurement[index]`` (the measurement is
    flattened first); the target is the first element of the ``setpoint`` input
    once a setpoint has arrived, else ``config.setpoint``. The law is
    ``kp * e + ki * integral(e dt) + kd * de/dt``, so the units of ``action`` are
    those of the measurement times the gains. ``dt`` is the clock time between
    steps (0 on the first), so the law is the same in real and simulated time.
    The derivative is a difference of errors (0 on the first step). While the
    output is at ``+-limit`` the integrator holds (anti-windup).

    It steps when an input arrives, or on its ``rate_hz`` with the latest
    inputs. The integral and the previous error carry over between steps; a
    restart starts them again from zero.

    Faults:
        none of its own; no output until the first measurement. An ``index`` past
        the end of ``measurement`` is an ``exception`` fault. A non-finite
        measurement or setpoint raises (an ``exception`` fault) before it can
        reach the integrator.

    YAML::

        - id: pid
          type: pid
          inputs: {measurement: sensor/obs}
          config: {kp: 2.0, kd: 0.1, index: 0, limit: 1.0}
    """

    inputs = (
        Port("measurement", dtype="float64", doc="measured state; ``index`` picks the element"),
        Port("setpoint", dtype="float64", doc="optional target, in the measurement's units"),
    )
    outputs = (
        Port("action", dtype="float64", shape=(1,), doc="control effort, within +-``limit``"),
    )
    Config = PidConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: PidConfig = ctx.config
        self.pid = Pid(cfg.kp, cfg.ki, cfg.kd, cfg.limit)
        self.last_time: float | None = None

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        measurement = inputs["measurement"]
        if measurement is None:
            return None
        target = inputs.get("setpoint")
        target = self.config.setpoint if target is None else float(np.ravel(target)[0])
        error = target - float(np.asarray(measurement).reshape(-1)[self.config.index])
        if not math.isfinite(error):  # keep it out of the integrator
            raise ValueError(f"non-finite error {error} (measurement or setpoint)")
        now = self.ctx.now()
        dt = 0.0 if self.last_time is None else now - self.last_time
        self.last_time = now
        return {"action": np.array([self.pid.update(error, dt)])}


@dataclass(frozen=True)
class SwingUpConfig:
    max_torque: float = 2.0
    """Torque limit (N*m); Pendulum-v1's is 2."""
    energy_gain: float = 1.0
    """Gain of the energy pump far from upright; torque is bang-bang, so only its sign counts."""
    switch_angle: float = 0.5
    """abs(theta) (rad) under which the PID balances instead of pumping."""
    kp: float = 20.0
    """PID proportional gain near upright (N*m/rad)."""
    ki: float = 0.0
    """PID integral gain near upright (N*m/(rad*s))."""
    kd: float = 4.0
    """PID derivative gain near upright (N*m*s/rad)."""
    mass: float = 1.0
    """Pendulum mass (kg), for the energy estimate."""
    length: float = 1.0
    """Pendulum length (m), for the energy estimate."""
    gravity: float = 10.0
    """Gravity (m/s^2); Pendulum-v1 uses 10."""


class PendulumSwingUp(Controller):
    """Energy-based swing-up with PID balance near upright, for Pendulum-v1.

    Far from upright it pumps energy toward that of the upright rest state:
    full torque (``max_torque``) in the direction of motion while energy is
    short, against it when in excess. Within ``switch_angle`` of upright a PID
    on the angle (with the measured ``theta_dot`` as its derivative) balances
    it; its integrator is cleared while pumping. ``theta`` is the angle from
    upright, ``atan2(sin, cos)``. The energy estimate treats the pendulum as a
    uniform rod (inertia ``mass * length**2 / 3``), as Pendulum-v1 does. ``dt``
    is the clock time between steps (0 on the first).

    It steps on each observation, or on its ``rate_hz`` with the latest one. The
    balance PID's integral and previous error carry over between steps; a
    restart clears them.

    Faults:
        none of its own; no output until the first observation. An ``obs`` with
        fewer than 3 elements, or a non-finite one, raises (an ``exception``
        fault) rather than turn into full torque.

    YAML::

        - id: controller
          type: pendulum.swing_up
          inputs: {obs: sensor/obs}
          config: {max_torque: 2.0, switch_angle: 0.5}
    """

    inputs = (
        Port(
            "obs",
            dtype="float32",
            shape=(3,),
            doc="pendulum state ``[cos(theta), sin(theta), theta_dot]``, theta_dot in rad/s",
        ),
    )
    outputs = (
        Port(
            "action",
            dtype="float32",
            shape=(1,),
            units="N*m",
            doc="torque, within +-``max_torque``",
        ),
    )
    Config = SwingUpConfig

    def setup(self, ctx: NodeContext) -> None:
        cfg: SwingUpConfig = ctx.config
        self.pid = Pid(cfg.kp, cfg.ki, cfg.kd, cfg.max_torque)
        self.inertia = cfg.mass * cfg.length**2 / 3.0
        self.last_time: float | None = None

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        obs = inputs["obs"]
        if obs is None:
            return None
        cfg: SwingUpConfig = self.config
        cos_t, sin_t, rate = (float(v) for v in obs[:3])
        if not all(map(math.isfinite, (cos_t, sin_t, rate))):
            raise ValueError(f"non-finite observation {list(obs[:3])}")
        angle = math.atan2(sin_t, cos_t)
        now = self.ctx.now()
        dt = 0.0 if self.last_time is None else now - self.last_time
        self.last_time = now
        if abs(angle) < cfg.switch_angle:
            torque = self.pid.update(-angle, dt, rate=-rate)
        else:
            self.pid.integral = 0.0
            # Energy relative to upright rest; dE/dt = torque * rate.
            energy = 0.5 * self.inertia * rate**2 + 0.5 * cfg.mass * cfg.gravity * cfg.length * (
                cos_t - 1
            )
            push = cfg.energy_gain * -energy * rate
            torque = math.copysign(cfg.max_torque, push if push != 0 else 1.0)
        torque = max(-cfg.max_torque, min(cfg.max_torque, torque))
        return {"action": np.array([torque], dtype=np.float32)}
