"""Multi-agent scenarios: a world and N agent loops, each agent in a process of its own.

A scenario file names a world (any PettingZoo parallel env, see
:mod:`edgeloop.plugins.world`) and one agent's loop as graph nodes. ``world/obs``
in the agent's wiring is its own observation, ``world/shared`` what its
teammates shared. :func:`build_graph` turns it into one loop graph: the
``world`` node in group ``world``, and each agent's nodes, prefixed with its
name, in a group of their own (or ``agents_per_process`` agents to a group), so
the supervisor runs it as processes over ZeroMQ, in lockstep simulated time by
default (deterministic from the seed) or in real time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeloop.plugins.world import make_world
from edgeloop.runtime.errors import (
    GraphProblem,
    GroupCrashed,
    PluginError,
    ScenarioError,
    UsageError,
)
from edgeloop.runtime.graph import LoopGraph, nearest_line
from edgeloop.runtime.graph_yaml import load_graph, problem_from_pydantic
from edgeloop.runtime.imports import check_named
from edgeloop.runtime.limits import MAX_AGENTS, MAX_DURATION_S
from edgeloop.runtime.metrics import RunReport
from edgeloop.runtime.yaml_files import read_yaml_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorldSpec(_Strict):
    env: str
    """``module:factory`` of a PettingZoo parallel environment."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    agents_kwarg: str | None = None
    """The factory's argument for the number of agents (``--agents`` sets it)."""
    rate_hz: float = Field(default=20.0, gt=0, le=10_000)
    relay: bool = False
    """Relay what agents publish on ``share`` to their teammates (``world/shared``)."""


class AgentSpec(_Strict):
    nodes: list[dict[str, Any]] = Field(min_length=1)
    """One agent's loop, as graph nodes (ids without the agent's prefix)."""
    action: str
    """``node/port`` whose messages are the agent's actions."""
    share: str | None = None
    """``node/port`` whose messages the world relays to the teammates."""


class Scenario(_Strict):
    name: str
    world: WorldSpec
    agent: AgentSpec
    agents: int = Field(default=2, ge=1, le=MAX_AGENTS)
    """At most ``MAX_AGENTS`` (10,000)."""
    agents_per_process: Annotated[int, Field(ge=1, le=MAX_AGENTS)] | Literal["auto"] = "auto"
    """Agents packed into one process; ``auto``: one each while there are at most
    ``PROCESSES_PER_CORE`` per CPU core, else as few as keep to that many processes."""
    duration_s: float = Field(default=30.0, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    """Simulated (or wall-clock) seconds; at most ``MAX_DURATION_S`` (ten years), as
    ``--duration``."""


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file.

    Raises:
        ScenarioError: it is missing, not YAML, or breaks the schema; every problem
            with its file, line, field and fix, as for a loop graph. A world the
            import policy in force does not allow is one
            (:mod:`edgeloop.runtime.imports`).
    """
    file = str(path)
    data, lines, duplicates = read_yaml_file(path, ScenarioError, what="scenario")
    if not isinstance(data, dict):
        problem = GraphProblem(
            "a scenario must be a mapping with 'name', 'world' and 'agent'",
            file=file,
            line=1,
            fix="see examples/field-search/scenario.yaml",
        )
        raise ScenarioError([problem])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [problem_from_pydantic(e, file, lines, root=Scenario) for e in exc.errors()]
        raise ScenarioError(duplicates + problems) from None
    if duplicates:
        raise ScenarioError(duplicates)
    try:  # the world is code the file names: refused before anything imports it
        check_named(scenario.world.env)
    except PluginError as exc:
        line = nearest_line(lines, ("world", "env"))
        raise ScenarioError(
            [GraphProblem(exc.message, field="world.env", file=file, line=line, fix=exc.fix or "")]
        ) from None
    return scenario


def world_agents(scenario: Scenario, n_agents: int) -> tuple[dict[str, Any], list[str]]:
    """The world's factory arguments for ``n_agents`` and the agents that get a loop.

    Raises:
        UsageError: ``n_agents`` is below 1 or above ``MAX_AGENTS``, or more than the
            world has.
    """
    if not 1 <= n_agents <= MAX_AGENTS:  # before the world is made for them
        raise UsageError(
            f"{n_agents:,} agents asked for; a scenario runs 1 to {MAX_AGENTS:,}",
            fix=f"at most {MAX_AGENTS:,} agents",
            where="--agents",
        )
    kwargs = dict(scenario.world.kwargs)
    if scenario.world.agents_kwarg is not None:
        kwargs[scenario.world.agents_kwarg] = n_agents
    env = make_world(scenario.world.env, kwargs)
    try:
        agents = list(env.possible_agents)
    finally:
        close = getattr(env, "close", None)
        if callable(close):
            close()
    if n_agents > len(agents):
        raise UsageError(
            f"the world has {len(agents)} agents, {n_agents} asked for",
            fix="fewer agents, or set world.agents_kwarg",
        )
    return kwargs, agents[:n_agents]


PROCESSES_PER_CORE = 8
"""Agent processes per CPU core before ``agents_per_process: auto`` packs them: an
agent's loop mostly waits, but each process costs memory, a Python and its
wake-ups."""


def usable_cores() -> int:
    """CPUs this process may run on (its affinity: ``taskset``, a cgroup's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def agents_per_process(scenario: Scenario, n_agents: int, cores: int | None = None) -> int:
    """How many agents share a process: the scenario's number, or for ``auto`` one
    each up to ``PROCESSES_PER_CORE`` processes per core (the cores this process may
    run on, by default), else just enough to stay within that."""
    if scenario.agents_per_process != "auto":
        return scenario.agents_per_process
    most = PROCESSES_PER_CORE * (cores or usable_cores())
    return 1 if n_agents <= most else math.ceil(n_agents / most)


def build_graph(scenario: Scenario, n_agents: int | None = None) -> LoopGraph:
    """The scenario as one loop graph, one process group per agent (or per
    ``agents_per_process`` agents) and one for the world.

    Raises:
        NodeConfigError, GraphError: the world cannot be made or the agent's loop is invalid.
        ScenarioError: the world relays shares but the agent names no port to share.
    """
    n = n_agents if n_agents is not None else scenario.agents
    per_process = agents_per_process(scenario, n)
    kwargs, agents = world_agents(scenario, n)
    spec = scenario.agent
    world: dict[str, Any] = {
        "id": "world",
        "type": "world",
        "rate_hz": scenario.world.rate_hz,
        "group": "world",
        "config": {
            "env": scenario.world.env,
            "kwargs": kwargs,
            "agents": agents,
            "relay": scenario.world.relay,
        },
        "inputs": {},
    }
    nodes: list[dict[str, Any]] = [world]
    for k, agent in enumerate(agents):
        group = agent if per_process == 1 else f"agents{k // per_process}"
        for node in spec.nodes:
            entry = dict(node)
            entry["id"] = f"{agent}_{node['id']}"
            entry["group"] = group
            entry["inputs"] = {
                port: _rewire(source, agent) for port, source in (node.get("inputs") or {}).items()
            }
            nodes.append(entry)
        world["inputs"][f"action_{agent}"] = {
            "from": _prefixed(spec.action, agent),
            "feedback": True,
        }
        if scenario.world.relay:
            if spec.share is None:
                problem = GraphProblem(
                    "world.relay is on but agent.share names no port to relay",
                    field="agent.share",
                    fix="name the agent's output to share, e.g. share: search/share",
                )
                raise ScenarioError([problem])
            world["inputs"][f"share_{agent}"] = {
                "from": _prefixed(spec.share, agent),
                "feedback": True,
                "queue": "fifo",
                "size": 64,
            }
    text = yaml.safe_dump({"name": scenario.name, "nodes": nodes}, sort_keys=False)
    return load_graph(f"<scenario {scenario.name}>", text=text)


def _prefixed(source: str, agent: str) -> str:
    return f"{agent}_{source}"


def _rewire(source: Any, agent: str) -> Any:
    """An agent's input source with its agent's names: ``world/obs`` -> ``world/obs_<agent>``."""
    if isinstance(source, dict):
        return {**source, "from": _rewire(source.get("from", ""), agent)}
    if not isinstance(source, str) or source.startswith("timer/"):
        return source
    node, _, port = source.partition("/")
    if node == "world":
        return f"world/{port}_{agent}"
    return f"{agent}_{node}/{port}"


# -- metrics ------------------------------------------------------------------------------


def scenario_metrics(report: RunReport, agents: list[str], period_s: float) -> dict[str, Any]:
    """Task score, messages and bytes, sensing energy, and per agent: p50/p99
    sense-to-act latency and deadline misses, from a scenario run's report."""
    try:
        world = report.node("world")
    except KeyError:
        raise GroupCrashed(
            "the world's process sent no report: the run's figures are lost",
            fix="see the run's fault log for why",
        ) from None
    misses = json.loads(world.notes.get("misses", "{}"))
    returns = json.loads(world.notes.get("returns", "{}"))
    steps = int(world.notes.get("steps", "0"))
    series = report.series
    per_agent = []
    for agent in agents:
        latency = np.asarray(series.get(f"world.latency_ms.{agent}", []), dtype=float)
        per_agent.append(
            {
                "agent": agent,
                "return": returns.get(agent, 0.0) + sum(series.get(f"world.return.{agent}", [])),
                "energy": float(np.sum(series.get(f"world.energy.{agent}", []))),
                "latency_p50_ms": float(np.percentile(latency, 50)) if latency.size else math.nan,
                "latency_p99_ms": float(np.percentile(latency, 99)) if latency.size else math.nan,
                "misses": misses.get(agent, 0),
                "miss_rate": misses.get(agent, 0) / steps if steps else math.nan,
            }
        )
    groups = report.groups or []
    team_return = float(sum(a["return"] for a in per_agent))
    energy = float(sum(a["energy"] for a in per_agent))
    return {
        "agents": len(agents),
        "steps": steps,
        "period_ms": period_s * 1e3,
        "team_return": team_return,
        "episodes": len(series.get(f"world.return.{agents[0]}", [])) if agents else 0,
        "sensing_energy": energy,
        "energy_per_return": energy / team_return if team_return > 0 else math.nan,
        "messages": sum(g["sent"] for g in groups),
        "bytes": sum(g["bytes"] for g in groups),
        "dropped": sum(g["dropped"] for g in groups),
        "miss_rate": sum(a["misses"] for a in per_agent) / (steps * len(agents))
        if steps
        else math.nan,
        "latency_p99_ms": max((a["latency_p99_ms"] for a in per_agent), default=math.nan),
        "per_agent": per_agent,
    }


def run_scenario(
    scenario: Scenario,
    *,
    agents: int | None = None,
    seed: int = 0,
    realtime: bool = False,
    duration_s: float | None = None,
    record: str | Path | None = None,
    one_process: bool = False,
    plugins: Sequence[str] = (),
    on_started: Any = None,
) -> tuple[RunReport, dict[str, Any]]:
    """Run a scenario (lockstep simulated time unless ``realtime``); the report and
    :func:`scenario_metrics`.

    Args:
        one_process: Every agent in this process (no ZeroMQ; for debugging).
        plugins: Plugins that are not installed, as ``module:attribute`` import
            paths, loaded in every process (node types of the agent's loop).
        on_started: Called with ``{group: pid}`` once every process runs.
    """
    graph = build_graph(scenario, agents)
    names = list(graph.node("world").config["agents"])
    duration = duration_s if duration_s is not None else scenario.duration_s
    metadata = {"scenario": scenario.name, "seed": seed, "simulated": not realtime}
    if one_process:
        from edgeloop.runtime.executor import Executor
        from edgeloop.runtime.plugins import PluginRegistry, import_plugin
        from edgeloop.runtime.recording import Recorder

        registry = PluginRegistry(plugins={p: import_plugin(p) for p in plugins})
        recorder = Recorder(record, simulated=not realtime) if record is not None else None
        try:
            executor = Executor(
                graph, registry=registry, simulated=not realtime, seed=seed, recorder=recorder
            )
            report = executor.run(duration)
        finally:
            if recorder is not None:
                recorder.add_metadata(metadata | {"duration": duration})
                recorder.close()
    else:
        from edgeloop.runtime.processes.supervisor import Supervisor

        supervisor = Supervisor(
            graph,
            simulated=not realtime,
            seed=seed,
            plugins=list(plugins),
            record=record,
            metadata=metadata | {"duration": duration},
            on_started=on_started,
        )
        report = supervisor.run(duration)
    return report, scenario_metrics(report, names, 1.0 / scenario.world.rate_hz)
