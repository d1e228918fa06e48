"""The ``world`` node: hosts a multi-agent world that follows the PettingZoo Parallel API.

Any PettingZoo parallel environment can be a world (:func:`make_world`);
edgeloop ships one, :mod:`edgeloop.sims.sensing_field`. :class:`WorldNode`
documents the node type.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.errors import NodeConfigError
from edgeloop.runtime.imports import check_config_path, import_named
from edgeloop.runtime.node import Node, NodeContext, Port


def make_world(path: str, kwargs: dict[str, Any]) -> Any:
    """The environment ``module:factory(**kwargs)`` names, checked for the Parallel API.

    Raises:
        PluginError: the import policy in force does not allow the module
            (:mod:`edgeloop.runtime.imports`).
        EdgeloopError: it cannot be imported or made, or is not a parallel env.
    """
    try:
        factory = import_named(path if ":" in path else f"{path}:parallel_env", shown=path)
    except (ImportError, AttributeError) as exc:
        raise NodeConfigError(
            f"world '{path}' cannot be imported: {exc}",
            node_type="world",
            key="env",
            fix="module:factory of an installed package, e.g. mpe2.simple_spread_v3:parallel_env",
        ) from None
    try:
        env = factory(**kwargs)
    except Exception as exc:
        raise NodeConfigError(
            f"world '{path}' could not be made: {type(exc).__name__}: {exc}",
            node_type="world",
            key="kwargs",
            fix="check the world's keyword arguments (kwargs:)",
        ) from None
    missing = [
        a for a in ("reset", "step", "possible_agents", "action_space") if not hasattr(env, a)
    ]
    if missing:
        raise NodeConfigError(
            f"world '{path}' is not a PettingZoo parallel env: it has no {', '.join(missing)}",
            node_type="world",
            key="env",
            fix="name a factory of a PettingZoo ParallelEnv",
        )
    return env


def no_op(space: Any) -> Any:
    """The action an agent gets when its answer is late: zeros (or action 0)."""
    if hasattr(space, "n"):
        return int(getattr(space, "start", 0))
    return np.zeros(space.shape, dtype=space.dtype)


def as_action(space: Any, data: Any) -> Any:
    """An agent's message as an action of ``space`` (a bad one is a no-op, counted)."""
    if hasattr(space, "n"):
        value = int(np.asarray(data).ravel()[0])
        start = int(getattr(space, "start", 0))
        if not start <= value < start + space.n:
            raise ValueError(f"action {value} outside {space}")
        return value
    action = np.asarray(data, dtype=space.dtype).reshape(space.shape)
    if not np.all(np.isfinite(action)):
        raise ValueError("non-finite action")
    return np.clip(action, space.low, space.high)


class WorldNode(Node):
    """Steps a PettingZoo parallel world with every agent's latest action.

    Its ports come from ``agents``: an input ``action_<agent>`` and an output
    ``obs_<agent>`` for each agent, and with ``relay`` also an input
    ``share_<agent>`` and an output ``shared_<agent>``. Payloads are the world's
    own (its observation and action spaces set their dtype, shape and units).
    ``edgeloop sim`` adds the node and its wiring from a scenario's ``world:``.

    It runs on its ``rate_hz`` (its role is sensor). At the first step it resets
    the world with the run seed and publishes every wired agent's observation;
    at each later step it steps the world with the latest action of every
    wired agent (a no-op for an agent that is not wired) and publishes the new
    observations. When the episode ends (no agents left), the next step resets
    it with the run seed plus the episodes finished, and the node records
    ``<id>.episode_end`` (steps so far) and each agent's return
    ``<id>.return.<agent>``. Each numeric entry of a wired agent's ``infos`` is
    recorded as the series ``<id>.<key>.<agent>``.

    Per agent it measures the sense-to-act latency (an action's creation time
    minus the sensing time of the observation it answers), recorded as
    ``<id>.latency_ms.<agent>``, and counts a deadline miss when the answer to
    the last observation has not arrived by the next step: the agent then gets
    a no-op (zeros, or action 0 of a discrete space). With ``relay`` it is also
    the team's radio: what an agent publishes on ``share`` reaches every other
    agent on ``shared`` at the next step, as a list of the teammates' payloads
    (``edgeloop sim`` wires the ``share_<agent>`` inputs as fifo queues, so
    nothing said between two steps is lost). The run report notes each agent's
    misses, the steps and the returns of the episode under way.

    The episode count, returns and misses carry over between steps; a restart
    makes the world anew and starts again from the first episode.

    Faults:
        a world that cannot be imported or made, that is not a PettingZoo
        parallel env, or that lacks one of ``agents`` fails setup, saying which.
        An action that does not fit the agent's action space, or is not finite,
        is counted as a miss and replaced with a no-op, not a fault. An
        exception raised by the world's ``reset`` or ``step`` is an
        ``exception`` fault.

    YAML::

        - id: world
          type: world
          rate_hz: 20
          config:
            env: edgeloop.sims.sensing_field:SensingField
            kwargs: {n_agents: 2, size: 20.0}
            agents: [robot_0, robot_1]
          inputs:
            action_robot_0: {from: robot_0_search/action, feedback: true}
            action_robot_1: {from: robot_1_search/action, feedback: true}
    """

    role = "sensor"

    @dataclass(frozen=True)
    class Config:
        env: str
        """``module:factory`` of a PettingZoo parallel environment (a module alone
        means its ``parallel_env``)."""
        kwargs: dict[str, Any] = field(default_factory=dict)
        """Keyword arguments for the factory (e.g. ``{n_agents: 4, size: 20.0}``)."""
        agents: tuple[str, ...] = ()
        """The agents wired to this node (ports ``obs_<agent>``, ``action_<agent>``)."""
        relay: bool = False
        """Relay each agent's ``share`` to the others' ``shared``."""

        def __post_init__(self) -> None:  # code a graph names: installed or allowed only
            check_config_path(self.env, node_type="world", key="env")

    @classmethod
    def ports(cls, config: Any) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        inputs = [Port(f"action_{a}", doc=f"{a}'s action") for a in config.agents]
        outputs = [Port(f"obs_{a}", doc=f"{a}'s observation") for a in config.agents]
        if config.relay:
            inputs += [Port(f"share_{a}", doc=f"what {a} shares") for a in config.agents]
            outputs += [
                Port(f"shared_{a}", doc=f"what {a}'s teammates shared") for a in config.agents
            ]
        return tuple(inputs), tuple(outputs)

    def setup(self, ctx: NodeContext) -> None:
        self.env = make_world(self.config.env, dict(self.config.kwargs))
        unknown = sorted(set(self.config.agents) - set(self.env.possible_agents))
        if unknown:
            raise NodeConfigError(
                f"world has no agents {unknown}",
                node_type="world",
                key="agents",
                fix=f"name agents it has: {', '.join(self.env.possible_agents)}",
            )
        self.episode = 0
        self.obs_time = -math.inf  # sensing time of the last observations sent
        self.misses = dict.fromkeys(self.config.agents, 0)
        self.steps = 0
        self.returns = dict.fromkeys(self.config.agents, 0.0)
        self.answered = dict.fromkeys(self.config.agents, -1)  # seq of the last action used
        self.observations: dict[str, Any] | None = None

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        ctx = self.ctx
        env = self.env
        if self.observations is None or not env.agents:
            if self.observations is not None:
                self._episode_done()
            self.observations, _ = env.reset(seed=ctx.seed + self.episode)
        else:
            actions = {}
            for agent in env.agents:
                actions[agent] = (
                    self._action(agent) if agent in self.misses else no_op(env.action_space(agent))
                )
            self.observations, rewards, _, _, infos = env.step(actions)
            self.steps += 1
            for agent, reward in rewards.items():
                if agent in self.returns:
                    self.returns[agent] += float(reward)
            for agent in self.config.agents:
                for key, value in infos.get(agent, {}).items():
                    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                        ctx.record(f"{key}.{agent}", float(value))
        self.obs_time = ctx.now()
        out: dict[str, Any] = {
            f"obs_{a}": self.observations[a] for a in self.config.agents if a in self.observations
        }
        if self.config.relay:
            out.update(self._relay(inputs))
        return out

    def _action(self, agent: str) -> Any:
        space = self.env.action_space(agent)
        message = self.ctx.message(f"action_{agent}")
        if message is None or message.sensed < self.obs_time:  # no answer to the last obs
            self.misses[agent] += 1
            return no_op(space)
        if message.seq != self.answered[agent]:
            self.answered[agent] = message.seq
            self.ctx.record(f"latency_ms.{agent}", (message.created - message.sensed) * 1e3)
        try:
            return as_action(space, message.data)
        except (ValueError, TypeError):
            self.misses[agent] += 1
            return no_op(space)

    def _relay(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Every agent hears what its teammates shared since the last step."""
        said = {}
        for agent in self.config.agents:
            payloads = inputs.get(f"share_{agent}")
            said[agent] = payloads if isinstance(payloads, list) else [payloads]
        out = {}
        for agent in self.config.agents:
            heard = [p for other, ps in said.items() if other != agent for p in ps if p is not None]
            if heard:
                out[f"shared_{agent}"] = heard
        return out

    def _episode_done(self) -> None:
        self.episode += 1
        self.ctx.record("episode_end", float(self.steps))  # where trajectories break
        for agent in self.config.agents:
            self.ctx.record(f"return.{agent}", self.returns[agent])
            self.returns[agent] = 0.0

    def close(self) -> None:
        self.ctx.note("misses", json.dumps(self.misses))
        self.ctx.note("steps", str(self.steps))
        self.ctx.note("returns", json.dumps(self.returns))
        close = getattr(getattr(self, "env", None), "close", None)
        if callable(close):
            close()
