"""How many agents hold a 20 Hz world on this machine, and how fast do 1,000 step?

Runs the collaborative-sensing scenario (examples/field-search): one world
process plus the agents' processes (``agents_per_process: auto`` packs agents
once there are more than 8 processes per core; ``--per-process K`` fixes it),
all over ZeroMQ.

In real time (the default), for each core count (``--cores``: the run is pinned
to the first K CPUs) and N = 2, 4, 8, ... agents, it prints the p50/p99
sense-to-act latency (an action's creation minus the sensing time of the
observation it answers, over all agents) and the deadline-miss rate (an answer
not back at the world by its next step), then the largest N held with under 1%
misses per core count.

With ``--lockstep`` it runs simulated time instead (every process in turn, as
deterministic as one process) and prints the wall time per simulated world step.

    python benchmarks/agents_scaling.py                       # real time, 1 and all cores
    python benchmarks/agents_scaling.py --agents 2 4 8 --duration 10 --cores 2
    python benchmarks/agents_scaling.py --lockstep --agents 100 1000 --duration 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeloop.runtime.processes.supervisor import GroupCrashed
from edgeloop.sims.scenario import Scenario, agents_per_process, load_scenario, run_scenario

SCENARIO = Path(__file__).parents[1] / "examples" / "field-search" / "scenario.yaml"


def run(scenario: Scenario, n: int, *, realtime: bool, duration: float) -> dict[str, Any]:
    """One run of ``n`` agents: its metrics, its world's steps and its wall time."""
    start = time.perf_counter()
    report, m = run_scenario(scenario, agents=n, seed=0, realtime=realtime, duration_s=duration)
    m["wall_s"] = time.perf_counter() - start  # start-up included
    m["loop_wall_s"] = report.wall_s  # from the start signal: the loop alone
    m["world_ticks"] = report.node("world").calls
    if m["world_ticks"] == 0 or len(m["per_agent"]) != n:  # nothing ran: nothing to report
        raise SystemExit(f"N={n}: the world stepped {m['world_ticks']} times for {n} agents")
    return m


def realtime_sweep(scenario: Scenario, args: argparse.Namespace, console: Console) -> None:
    everything = sorted(os.sched_getaffinity(0))
    held: dict[int, int | None] = {}
    for cores in args.cores or sorted({1, len(everything)}):
        os.sched_setaffinity(0, everything[:cores])  # the groups inherit it
        table = Table(
            title=f"agents at {args.rate:g} Hz, real time, {cores} CPU(s), "
            f"{args.duration:g} s each",
            title_justify="left",
        )
        for col in ("agents", "processes", "world ticks", "p50 ms", "p99 ms", "misses", "miss %"):
            table.add_column(col, justify="right")
        held[cores] = None
        for n in args.agents or [2**k for k in range(1, 10)]:
            try:
                m = run(scenario, n, realtime=True, duration=args.duration)
            except GroupCrashed as exc:  # e.g. out of memory at this size
                console.print(f"N={n}: did not run: {exc}", highlight=False)
                break
            misses = sum(a["misses"] for a in m["per_agent"])
            p50s = sorted(a["latency_p50_ms"] for a in m["per_agent"])
            processes = 1 + -(-n // agents_per_process(scenario, n))
            table.add_row(
                str(n),
                str(processes),
                f"{m['world_ticks']:,}",
                f"{p50s[len(p50s) // 2]:.2f}",
                f"{m['latency_p99_ms']:.2f}",
                f"{misses:,}",
                f"{100 * m['miss_rate']:.2f}",
            )
            console.print(
                f"{cores} CPU(s), N={n}: p99 {m['latency_p99_ms']:.2f} ms, "
                f"misses {100 * m['miss_rate']:.2f}%",
                highlight=False,
            )
            if m["miss_rate"] < 0.01:
                held[cores] = n
            if m["miss_rate"] > 0.05:
                break
        console.print(table)
    os.sched_setaffinity(0, everything)
    for cores, n in held.items():
        console.print(
            f"{cores} CPU(s): largest N held with under 1% deadline misses: "
            f"{n if n is not None else 'none'}",
            highlight=False,
        )


def lockstep_sweep(scenario: Scenario, args: argparse.Namespace, console: Console) -> None:
    table = Table(
        title=f"agents in lockstep simulated time, {args.rate:g} Hz world, "
        f"{args.duration:g} simulated s each, {os.cpu_count()} CPUs",
        title_justify="left",
    )
    for col in ("agents", "processes", "world ticks", "start-up s", "loop s", "s per step"):
        table.add_column(col, justify="right")
    for n in args.agents or [10, 100, 1000]:
        m = run(scenario, n, realtime=False, duration=args.duration)
        per_step = m["loop_wall_s"] / m["world_ticks"]
        processes = 1 + -(-n // agents_per_process(scenario, n))
        table.add_row(
            str(n),
            str(processes),
            f"{m['world_ticks']:,}",
            f"{m['wall_s'] - m['loop_wall_s']:.1f}",
            f"{m['loop_wall_s']:.1f}",
            f"{per_step:.3f}",
        )
        console.print(f"N={n}: {per_step:.3f} s of wall time per simulated step", highlight=False)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="*", default=None, help="values of N")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per N")
    parser.add_argument(
        "--per-process", type=int, default=None, help="agents per process (default: auto)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="world rate, Hz")
    parser.add_argument("--cores", type=int, nargs="*", default=None, help="CPU counts to pin to")
    parser.add_argument("--lockstep", action="store_true", help="simulated time, in lockstep")
    args = parser.parse_args()
    base = load_scenario(SCENARIO).model_dump()
    base["world"]["rate_hz"] = args.rate
    base["agents_per_process"] = args.per_process or "auto"
    scenario = Scenario.model_validate(base)
    console = Console()
    if args.lockstep:
        lockstep_sweep(scenario, args, console)
    else:
        realtime_sweep(scenario, args, console)


if __name__ == "__main__":
    main()
