"""The collaborative-sensing world: robots search a 2D field for targets.

:class:`SensingField` follows the PettingZoo Parallel API. Each robot moves
(``vx, vy`` in [-1, 1] times its speed) and may sense (third action > 0.5): it
then finds every target within ``radius``, at a cost of ``sense_cost`` energy
units per reading. Targets found by anyone count for the team; an episode ends
when all are found or after ``max_steps``. Observations are ``[x, y, found
fraction]``; per step, ``infos`` give each robot's position, the energy it
spent and the team's found fraction.

:class:`FieldSearch` is a robot's loop: it covers the field cell by cell
(cells as wide as a reading covers), nearest unknown cell first, and senses
once per cell. With the world's relay on, it shares the cells it sensed and
skips those its teammates shared, so the team senses less for the same result:
the multi-agent sensing-action loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edgeloop.runtime.node import Controller, NodeContext, Port


class SensingField:
    """Robots, targets and a sensing cost in a square field (PettingZoo Parallel API)."""

    metadata: ClassVar[dict[str, Any]] = {"name": "sensing_field_v0", "render_modes": []}
    render_mode = None

    def __init__(
        self,
        n_agents: int = 4,
        size: float = 20.0,
        targets: int = 12,
        radius: float = 2.0,
        speed: float = 0.5,
        sense_cost: float = 1.0,
        max_steps: int = 2000,
    ) -> None:
        from gymnasium import spaces

        if n_agents < 1 or targets < 1 or not (size > 0 and radius > 0 and speed > 0):
            raise ValueError("n_agents, targets, size, radius and speed must be positive")
        self.size, self.radius, self.speed = float(size), float(radius), float(speed)
        self.n_targets, self.sense_cost, self.max_steps = targets, float(sense_cost), max_steps
        self.possible_agents = [f"robot_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self._obs_space = spaces.Box(0.0, max(self.size, 1.0), (3,), np.float32)
        self._act_space = spaces.Box(
            np.array([-1, -1, 0], np.float32), np.array([1, 1, 1], np.float32), dtype=np.float32
        )
        self.positions = np.zeros((n_agents, 2))
        self.targets = np.zeros((targets, 2))
        self.found = np.zeros(targets, bool)
        self.t = 0

    @property
    def unwrapped(self) -> SensingField:
        return self

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def max_num_agents(self) -> int:
        return len(self.possible_agents)

    def observation_space(self, agent: str) -> Any:
        return self._obs_space

    def action_space(self, agent: str) -> Any:
        return self._act_space

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        rng = np.random.default_rng(seed)
        self.targets = rng.uniform(0, self.size, (self.n_targets, 2))
        self.positions = rng.uniform(0, self.size, (len(self.possible_agents), 2))
        self.found[:] = False
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._observations(), {a: self._info(i, 0.0) for i, a in enumerate(self.agents)}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        rewards = dict.fromkeys(self.agents, 0.0)
        spent = dict.fromkeys(self.agents, 0.0)
        for i, agent in enumerate(self.possible_agents):
            if agent not in actions:
                continue
            action = np.asarray(actions[agent], dtype=np.float64)
            move = np.clip(action[:2], -1.0, 1.0) * self.speed
            self.positions[i] = np.clip(self.positions[i] + move, 0.0, self.size)
            if action[2] > 0.5:
                spent[agent] = self.sense_cost
                near = np.hypot(*(self.targets - self.positions[i]).T) <= self.radius
                new = near & ~self.found
                self.found |= near
                rewards[agent] = float(new.sum())
        self.t += 1
        done = bool(self.found.all()) or self.t >= self.max_steps
        terminations = dict.fromkeys(self.agents, bool(self.found.all()))
        truncations = dict.fromkeys(self.agents, done and not self.found.all())
        observations = self._observations()
        infos = {a: self._info(i, spent[a]) for i, a in enumerate(self.agents)}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _observations(self) -> dict[str, np.ndarray]:
        fraction = self.found.mean()
        return {
            a: np.array([*self.positions[i], fraction], np.float32)
            for i, a in enumerate(self.possible_agents)
        }

    def _info(self, i: int, spent: float) -> dict[str, float]:
        x, y = self.positions[i]
        return {"x": float(x), "y": float(y), "energy": spent, "found": float(self.found.mean())}

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass


class FieldSearch(Controller):
    """Covers the field cell by cell, sensing once per cell; shares what it sensed.

    A robot's loop in the :class:`SensingField` world. The field is split into
    square cells as wide as a reading covers (``radius * sqrt(2)``). Each step
    the robot heads for the centre of the nearest cell not yet known, as a unit
    direction (the world scales it by its speed); on the step that reaches the
    centre it senses there, marks the cell known and, with ``share``, publishes
    its index. Cells its teammates shared (the world relays them on
    ``shared``) are known too and skipped, so the team senses less for the same
    result. When every cell is known it stays. ``size``, ``radius`` and
    ``speed`` must match the world's; distances are in the world's units.

    It steps when an input arrives, or on its ``rate_hz``. The known cells and
    the goal carry over between steps; a drop in the team's found fraction
    means a new episode and clears them, and so does a restart.

    Faults:
        none of its own; no output until the first observation. An ``obs`` with
        fewer than 3 elements, or ``shared`` cells that cannot be read as
        integers, is an ``exception`` fault; cell indices outside the field are
        ignored.

    YAML::

        - id: search      # in a scenario's agent nodes: world/obs is this robot's
          type: field.search
          inputs: {obs: world/obs, shared: world/shared}
          config: {size: 20.0, radius: 2.0, speed: 0.5, share: true}
    """

    inputs = (
        Port("obs", "float32", (3,), doc="robot position x, y and the team's found fraction"),
        Port("shared", doc="cells teammates sensed: a list of int arrays"),
    )
    outputs = (
        Port("action", "float32", (3,), doc="move vx, vy in [-1, 1]; sense if the third > 0.5"),
        Port("share", "int32", (None,), doc="indices of the cells sensed this step"),
    )

    @dataclass(frozen=True)
    class Config:
        size: float = 20.0
        """Side of the square field, as the world's ``size``."""
        radius: float = 2.0
        """Reach of one reading, as the world's ``radius``; sets the cell width."""
        speed: float = 0.5
        """Distance moved per step at full action, as the world's ``speed``."""
        share: bool = True
        """Publish the cells sensed (the world relays them when its relay is on)."""

    def setup(self, ctx: NodeContext) -> None:
        cfg = self.config
        self.cell = cfg.radius * math.sqrt(2.0)  # a reading at a cell's centre covers it
        self.cells_per_side = math.ceil(cfg.size / self.cell)
        n = self.cells_per_side
        index = np.arange(n * n)
        centres = (np.stack([index % n, index // n], axis=1) + 0.5) * self.cell
        self.centres = np.minimum(centres, cfg.size)
        self.known = np.zeros(n * n, bool)  # sensed by this robot or a teammate
        self.goal: int | None = None
        self.found = 0.0  # the team's found fraction last seen

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        # (a teammate's share from the end of an episode may mark a cell of the next
        # one as known; the robots still cover the rest)
        for cells in inputs.get("shared") or []:
            cells = np.asarray(cells, dtype=np.int64).ravel()
            self.known[cells[(cells >= 0) & (cells < self.known.size)]] = True
        obs = inputs.get("obs")
        if obs is None:
            return None
        if obs[2] < self.found:  # the found fraction fell: a new episode, a new field
            self.known[:] = False
            self.goal = None
        self.found = float(obs[2])
        position = np.asarray(obs[:2], dtype=np.float64)
        if self.goal is None or self.known[self.goal]:
            self.goal = self._nearest_unknown(position)
        if self.goal is None:  # the whole field is known: stay
            return {"action": np.zeros(3, np.float32)}
        offset = self.centres[self.goal] - position
        distance = float(np.hypot(*offset))
        speed = self.config.speed
        if distance <= speed:  # reach the centre this step and sense there
            cell = self.goal
            self.known[cell] = True
            self.goal = None
            action = np.array([*(offset / speed), 1.0], np.float32)
            out: dict[str, Any] = {"action": action}
            if self.config.share:
                out["share"] = np.array([cell], np.int32)
            return out
        return {"action": np.array([*(offset / distance), 0.0], np.float32)}

    def _nearest_unknown(self, position: np.ndarray) -> int | None:
        unknown = np.flatnonzero(~self.known)
        if unknown.size == 0:
            return None
        distances = np.hypot(*(self.centres[unknown] - position).T)
        return int(unknown[np.argmin(distances)])
