"""``edgeloop sim``: multi-agent scenarios, a world and an agent loop per agent."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from edgeloop.cli._common import (
    add_allow_import,
    add_duration,
    add_json,
    add_plugins,
    add_quiet,
    add_record,
    add_seed,
    check_writable,
    err,
    out,
    under_import_policy,
    whole_number,
    write_text,
)
from edgeloop.runtime.limits import MAX_AGENTS


def register(commands: Any) -> None:
    sim = commands.add_parser(
        "sim",
        help="run a multi-agent scenario: a world and an agent loop per agent, as processes",
        description="Run a scenario: a world process (any PettingZoo parallel env) and N "
        "agent loops, each agent a process of its own talking over ZeroMQ. Simulated time "
        "runs every process in lockstep, deterministic from the seed; --realtime runs them "
        "on the wall clock. Prints per agent: return, sensing energy, sense-to-act latency "
        "and deadline misses, plus the messages and bytes exchanged. The scenario file's "
        "fields are described in the README (Multi-agent scenarios).",
        epilog="example: edgeloop sim examples/field-search/scenario.yaml --agents 8 --plot t.png",
    )
    sim.add_argument("scenario", type=Path, help="scenario YAML file")
    sim.add_argument(
        "--agents",
        type=whole_number(1, MAX_AGENTS),
        default=None,
        metavar="N",
        help=f"agents, at most {MAX_AGENTS:,} (default: the file's)",
    )
    add_seed(sim, what="seed of the world and every agent")
    sim.add_argument("--realtime", action="store_true", help="run on the wall clock")
    add_duration(sim, default_help="the file's")
    add_record(sim)
    add_json(sim, "the metrics and report")
    sim.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="plot the agents' trajectories into a PNG"
    )
    sim.add_argument(
        "--one-process", action="store_true", help="every agent in this process (no ZeroMQ)"
    )
    add_plugins(sim)
    add_allow_import(sim, "scenario")
    add_quiet(sim, "no table")
    sim.set_defaults(handler=sim_command)


@under_import_policy("scenario", "the scenario")
def sim_command(args: argparse.Namespace) -> int:
    from edgeloop.sims.scenario import agents_per_process, load_scenario, run_scenario
    from edgeloop.sims.scenario_report import plot_trajectories, scenario_table

    scenario = load_scenario(args.scenario)
    for path, option in ((args.json, "--json"), (args.plot, "--plot")):
        if path is not None:
            check_writable(path, option)
    if args.record is not None:
        from edgeloop.runtime.recording import mcap_module

        mcap_module()
    agents = args.agents if args.agents is not None else scenario.agents
    if not args.quiet:
        clock = "real time" if args.realtime else "simulated time (lockstep)"
        per = agents_per_process(scenario, agents)
        where = f"{math.ceil(agents / per) + 1} processes" + (
            f" ({per} agents to each)" if per > 1 else ""
        )
        where = "one process" if args.one_process else where
        err.print(f"running {scenario.name}: {agents} agents in {where}, {clock}", highlight=False)
    report, metrics = run_scenario(
        scenario,
        agents=agents,
        seed=args.seed,
        realtime=args.realtime,
        duration_s=args.duration,
        record=args.record,
        one_process=args.one_process,
        plugins=args.plugins,
    )
    if not args.quiet:
        out.print(scenario_table(scenario.name, metrics))
        if report.stop_reason != "duration reached":
            err.print(f"stopped: {report.stop_reason}", highlight=False)
    if args.record is not None and report.recording is not None and not args.quiet:
        out.print(f"recorded {report.recording['written']:,} messages to {args.record}")
    if args.plot is not None:
        names = [a["agent"] for a in metrics["per_agent"]]
        title = f"{scenario.name}: {agents} agents, seed {args.seed}"
        if plot_trajectories(report, names, args.plot, title) is None:
            err.print("no trajectory plot: the world reports no x/y per agent", highlight=False)
        elif not args.quiet:
            out.print(f"trajectories plotted to {args.plot}")
    if args.json is not None:
        document = {"metrics": metrics, "report": report.to_dict()}
        write_text(args.json, json.dumps(document, indent=2, default=str))
    return 1 if report.stopped_by_fault else 0
