"""A gymnasium environment as a plant: a sensor reads it, an actuator drives it.

Both nodes name the same ``plant``; the first to set up makes the environment
and the other finds it through ``ctx.shared``. The actuator steps the
environment once per action (or, given ``rate_hz``, once per tick with the
latest action held), so the loop works the same in real and simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.errors import EdgeloopError, MissingDependencyError
from edgeloop.runtime.node import Actuator, NodeContext, Port, Sensor


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
    """

    def __init__(
        self,
        env_id: str,
        *,
        seed: int,
        dt: float | None = None,
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ):
        gym = _gymnasium()
        try:
            self.env = gym.make(env_id, max_episode_steps=max_episode_steps, **(env_kwargs or {}))
        except gym.error.Error as exc:
            raise EdgeloopError(
                f"gymnasium cannot make '{env_id}': {exc} (fix: use a registered environment id)"
            ) from None
        self.env_id = env_id
        if dt is not None:
            attr = next((a for a in ("dt", "tau") if hasattr(self.env.unwrapped, a)), None)
            if attr is None:
                raise EdgeloopError(
                    f"{env_id} has no dt or tau attribute to set (fix: remove 'dt' from the config)"
                )
            setattr(self.env.unwrapped, attr, dt)
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
        self.env.close()


@dataclass(frozen=True)
class PlantConfig:
    env: str = "Pendulum-v1"
    """gymnasium environment id."""
    plant: str = "plant"
    """Name that pairs a sensor with its actuator."""
    dt: float | None = None
    """Integration step (s) to set on the env; match it to the loop rate."""
    max_episode_steps: int | None = None
    """Episode length before a reset; None keeps the env's default."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra arguments to ``gymnasium.make`` (e.g. ``{g: 9.81}``)."""


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
        ),
    )
    if plant.env_id != cfg.env:
        raise EdgeloopError(
            f"plant '{cfg.plant}' is {plant.env_id}, but node '{ctx.node_id}' "
            f"asks for {cfg.env} (fix: use one env per plant name)"
        )
    return plant


class GymSensor(Sensor):
    """Reads a gymnasium environment's observation.

    Outputs:
        | port | dtype/shape | meaning |
        | obs | env's observation dtype and shape | the latest observation |

    Config: see :class:`PlantConfig` (``env``, ``plant``, ``dt``,
    ``max_episode_steps``, ``env_kwargs``).

    Faults: none of its own; a missing gymnasium is a setup error naming the extra.

    YAML::

        - id: sensor
          type: gym.sensor
          rate_hz: 50
          config: {env: Pendulum-v1, dt: 0.02}
    """

    outputs = (Port("obs", dtype="float32", doc="environment observation"),)
    Config = PlantConfig

    def setup(self, ctx: NodeContext) -> None:
        super().setup(ctx)
        self.plant = _plant(ctx)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"obs": np.array(self.plant.observation, copy=True)}


class GymActuator(Actuator):
    """Applies actions to a gymnasium environment and reports episode returns.

    Inputs:
        | port | dtype/shape | meaning |
        | action | env's action dtype and shape | clipped to the action space |

    Config: see :class:`PlantConfig`.

    Reports the series ``<id>.episode_return`` (one value per finished
    episode); the environment resets at each episode end.

    Faults: an action of the wrong size raises (an ``exception`` fault); no
    action yet means no step.

    YAML::

        - id: motor
          type: gym.actuator
          inputs: {action: safety/action}
          config: {env: Pendulum-v1, dt: 0.02}
    """

    inputs = (Port("action", dtype="float32", doc="action to apply"),)
    Config = PlantConfig

    def setup(self, ctx: NodeContext) -> None:
        super().setup(ctx)
        self.plant = _plant(ctx)

    def step(self, inputs: dict[str, Any]) -> None:
        action = inputs["action"]
        if action is None:
            return None
        finished = self.plant.apply(action)
        if finished is not None:
            self.ctx.record("episode_return", finished)
        return None

    def close(self) -> None:
        self.plant.close()
