"""A gymnasium environment as a plant: a sensor reads it, an actuator drives it.

Both nodes name the same ``plant``; the first to set up makes the environment
and the other finds it through ``ctx.shared``. The actuator steps the
environment once per action (or, given ``rate_hz``, once per tick with the
latest action held), so the loop works the same in real and simulated time.

A plant can run one task (``task``: physical parameters by their attribute name
on ``env.unwrapped``, e.g. a pendulum's ``m`` and ``l``), written with
:func:`~edgeloop.plugins.gym_env.set_env_attributes`, the same function the task
spaces (``TaskSpace.apply``, in the sims layer above) apply their tasks with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.plugins.gym_env import set_env_attributes
from edgeloop.runtime.errors import (
    MissingDependencyError,
    NodeConfigError,
    TaskSpaceError,
)
from edgeloop.runtime.imports import check_config_path, gym_id_module, import_named
from edgeloop.runtime.node import Actuator, NodeContext, Port, Sensor
from edgeloop.runtime.sensing import SensingSpec


def _gymnasium() -> Any:
    try:
        import gymnasium
    except ImportError:
        raise MissingDependencyError(
            "gymnasium", "gym", "the gym.sensor/gym.actuator nodes"
        ) from None
    return gymnasium


class GymPlant:
    """One gymnasium environment shared by the nodes of a loop.

    Args:
        env_id: Registered gymnasium id, e.g. ``Pendulum-v1``.
        seed: Seed of the first reset.
        dt: Integration step (s) written to the env's ``dt`` (or ``tau``), to
            match the loop rate; None keeps the env's own.
        max_episode_steps: Episode length; None keeps the env's default.
        env_kwargs: Extra keyword arguments for ``gymnasium.make``.
        task: Values by attribute name of ``env.unwrapped`` (e.g. ``{"m": 1.5}``),
            written before the first reset.
    """

    def __init__(
        self,
        env_id: str,
        *,
        seed: int,
        dt: float | None = None,
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        task: dict[str, float] | None = None,
    ):
        gym = _gymnasium()
        module = gym_id_module(env_id)
        if module is not None:  # gymnasium imports it: only an installed or allowed one
            try:
                import_named(module, shown=env_id)
            except ImportError as exc:
                raise NodeConfigError(
                    f"gymnasium cannot make '{env_id}': {exc}",
                    key="env",
                    fix="name a module that registers the environment",
                ) from None
        try:
            self.env = gym.make(env_id, max_episode_steps=max_episode_steps, **(env_kwargs or {}))
        except gym.error.Error as exc:
            raise NodeConfigError(
                f"gymnasium cannot make '{env_id}': {exc}",
                key="env",
                fix="use a registered environment id",
            ) from None
        self.env_id = env_id
        self.settings = {
            "dt": dt,
            "max_episode_steps": max_episode_steps,
            "env_kwargs": dict(env_kwargs or {}),
            "task": dict(task or {}),
        }
        if dt is not None:
            attr = next((a for a in ("dt", "tau") if hasattr(self.env.unwrapped, a)), None)
            if attr is None:
                raise NodeConfigError(
                    f"{env_id} has no dt or tau attribute to set",
                    key="dt",
                    fix="remove 'dt' from the config",
                )
            setattr(self.env.unwrapped, attr, dt)
        if task:
            try:
                set_env_attributes(self.env, task)
            except TaskSpaceError as exc:  # an attribute the env does not have
                self.env.close()
                raise NodeConfigError(exc.message, key="task", fix=exc.fix, where="task") from None
        self.observation, _ = self.env.reset(seed=seed)
        self.episode_return = 0.0
        self.episode_steps = 0

    def apply(self, action: Any) -> float | None:
        """Step the environment; return the episode's return if it just ended (and reset)."""
        space = self.env.action_space
        if isinstance(space, _gymnasium().spaces.Box):
            action = np.clip(
                np.asarray(action, dtype=space.dtype).reshape(space.shape), space.low, space.high
            )
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.episode_return += float(reward)
        self.episode_steps += 1
        self.observation = obs
        if terminated or truncated:
            finished = self.episode_return
            self.observation, _ = self.env.reset()
            self.episode_return = 0.0
            self.episode_steps = 0
            return finished
        return None

    def close(self) -> None:
        """Close the environment; the loop does this after every node is closed."""
        self.env.close()


@dataclass(frozen=True)
class PlantConfig:
    env: str = "Pendulum-v1"
    """gymnasium environment id."""
    plant: str = "plant"
    """Name that pairs a sensor with its actuator."""
    dt: float | None = None
    """Integration step (s) to set on the env's ``dt`` (or ``tau``); match it to the
    loop rate. None keeps the env's own."""
    max_episode_steps: int | None = None
    """Episode length before a reset; None keeps the env's default."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra arguments to ``gymnasium.make`` (e.g. ``{g: 9.81}``)."""
    task: dict[str, float] = field(default_factory=dict)
    """The task to run: numbers by attribute name of ``env.unwrapped``, e.g.
    ``{m: 1.5, l: 1.2}`` (Pendulum-v1's mass and length), written before the first
    reset and kept for every episode. An attribute the env does not have fails the
    node's setup (with close matches); the values are not range-checked, as the
    plant knows no task space: take them from the task space the policy was
    trained on (``edgeloop export`` records its parameters, attributes and ranges,
    in and out of distribution, under ``constants.task`` of the bundle manifest)."""

    def __post_init__(self) -> None:
        module = gym_id_module(self.env)
        if module is not None:  # gymnasium would import it: installed or allowed only
            check_config_path(module, key="env", shown=self.env)
        for name, value in self.task.items():
            if not math.isfinite(value):
                raise ValueError(
                    f"task value {name} = {value} is not a finite number; "
                    f"give a number, e.g. {name}: 1.0"
                )


@dataclass(frozen=True)
class GymActuatorConfig(PlantConfig):
    safe: list[float] | None = None
    """The safe action (e.g. ``[0.0]``: no torque), applied as one environment step
    when the loop stops and when the node faults (a ``stale_ms`` input gone silent
    is a fault), as a device takes one safe command; None: none."""


def _plant(ctx: NodeContext) -> GymPlant:
    cfg: PlantConfig = ctx.config
    plant = ctx.shared(
        f"gym:{cfg.plant}",
        lambda: GymPlant(
            cfg.env,
            seed=ctx.seed,
            dt=cfg.dt,
            max_episode_steps=cfg.max_episode_steps,
            env_kwargs=cfg.env_kwargs,
            task=cfg.task,
        ),
    )
    if plant.env_id != cfg.env:
        raise NodeConfigError(
            f"plant '{cfg.plant}' is {plant.env_id}, but node '{ctx.node_id}' asks for {cfg.env}",
            key="env",
            fix="use one env per plant name",
        )
    # The first node of a plant makes it; another may leave these out, but not contradict.
    for key, made_with in plant.settings.items():
        wanted = getattr(cfg, key)
        if wanted not in (None, {}) and wanted != made_with:
            raise NodeConfigError(
                f"plant '{cfg.plant}' was made with {key}={made_with!r}, but node "
                f"'{ctx.node_id}' asks for {key}={wanted!r}",
                key=key,
                fix=f"give both nodes the same {key}",
            )
    return plant


class GymSensor(Sensor):
    """Reads a gymnasium environment's observation.

    Each step publishes a copy of the plant's latest observation: the one after
    the actuator's last action, or the first observation of a new episode after
    a reset. The environment is reset with the run seed when it is made. For
    Pendulum-v1, ``obs`` is float32 (3,): ``[cos(theta), sin(theta), theta_dot]``
    in -, -, rad/s.

    It runs on its ``rate_hz``. It is a steerable sensor: commands on its
    ``sensing`` input change its rate (0.01 to 1000 Hz, narrowed by the node's
    ``sensing:`` bounds), turn it off and on, or take one reading now. A reading
    costs 1 energy unit unless the node's ``sensing: {cost_per_reading: ...}``
    says otherwise.

    The sensor and its ``gym.actuator`` share one environment through the
    ``plant`` name, and their config. The first node of a plant to set up makes
    the environment from its own config; the other must name the same ``env``
    and may leave ``dt``, ``max_episode_steps``, ``env_kwargs`` and ``task``
    out, but not contradict them. A task is written before the first reset and
    stays for every episode; its values are not range-checked (the plant knows
    no task space). The environment lives as long as the loop: a restart of
    the node finds the same one, mid-episode.

    Faults:
        ``setup`` raises MissingDependencyError (naming the ``gym`` extra)
        without gymnasium, and NodeConfigError for an unregistered ``env``, a
        ``dt`` the env has no ``dt`` or ``tau`` to take, a ``plant`` already made
        with another ``env`` or other settings, or a ``task`` attribute the env
        does not have (the fix names close matches). A ``task`` value that is
        not a finite number is a config error, reported when the graph is
        validated.

    YAML::

        - id: sensor
          type: gym.sensor
          rate_hz: 50
          config: {env: Pendulum-v1, dt: 0.02}
    """

    outputs = (Port("obs", doc="latest observation, in the env's own dtype and shape"),)
    Config = PlantConfig
    sensing = SensingSpec(min_rate_hz=0.01, max_rate_hz=1000.0, cost_per_reading=1.0)

    def setup(self, ctx: NodeContext) -> None:
        self.plant = _plant(ctx)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"obs": np.array(self.plant.observation, copy=True)}


class GymActuator(Actuator):
    """Applies actions to a gymnasium environment and reports episode returns.

    Each step applies the latest action with one ``env.step``; for a ``Box``
    action space the action is first reshaped to the space's shape and dtype and
    clipped to its bounds. When an episode terminates or is truncated, the
    node adds its return to the report series ``<node id>.episode_return`` and
    the environment resets. Without ``rate_hz`` it steps once per action; with
    it, once per tick with the latest action held. It has no outputs.

    The actuator and its ``gym.sensor`` share one environment through the
    ``plant`` name, and their config. The first node of a plant to set up makes
    the environment from its own config; the other must name the same ``env``
    and may leave ``dt``, ``max_episode_steps``, ``env_kwargs`` and ``task``
    out, but not contradict them. A task is written before the first reset and
    stays for every episode; its values are not range-checked (the plant knows
    no task space). The environment and the running episode's return live as
    long as the loop: a restart of the node finds them as they were.

    Faults:
        ``setup`` raises MissingDependencyError (naming the ``gym`` extra)
        without gymnasium, and NodeConfigError for an unregistered ``env``, a
        ``dt`` the env has no ``dt`` or ``tau`` to take, a ``plant`` already made
        with another ``env`` or other settings, or a ``task`` attribute the env
        does not have (the fix names close matches). A ``task`` value that is
        not a finite number is a config error, reported when the graph is
        validated. An action the env cannot take (e.g. one that cannot be
        reshaped to a ``Box`` space) is an ``exception`` fault. No action yet
        means no env step. With ``safe``, the safe action is applied (one env
        step) when the loop stops and when the node faults, once per run of
        faults, and counted in the report.

    YAML::

        - id: motor
          type: gym.actuator
          inputs: {action: safety/action}
          config: {env: Pendulum-v1, dt: 0.02}
    """

    inputs = (
        Port(
            "action",
            dtype="float32",
            doc="action to apply, in the env's action space (Pendulum-v1: torque in N*m)",
        ),
    )
    Config = GymActuatorConfig

    def setup(self, ctx: NodeContext) -> None:
        self.plant = _plant(ctx)

    def step(self, inputs: dict[str, Any]) -> None:
        action = inputs["action"]
        if action is None:
            return None
        self._apply(action)
        return None

    def safe(self, reason: str) -> bool:
        if self.config.safe is None:
            return False
        self._apply(self.config.safe)
        return True

    def _apply(self, action: Any) -> None:
        finished = self.plant.apply(action)
        if finished is not None:
            self.ctx.record("episode_return", finished)
