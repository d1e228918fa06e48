"""How many agents, each a process of its own, hold a 20 Hz world on this machine?

Runs the collaborative-sensing scenario (examples/field-search) in real time
with N = 2, 4, 8, ... agents: one world process plus one process per agent (or
``--per-process K`` agents each), all over ZeroMQ. For each N it prints the
p50/p99 sense-to-act latency (an action's creation minus the sensing time of
the observation it answers, over all agents) and the deadline-miss rate (an
answer not back at the world by its next step), then the largest N held with
under 1% misses.

    python benchmarks/agents_scaling.py                  # N = 2, 4, ..., until misses pass 5%
    python benchmarks/agents_scaling.py --agents 2 4 8 --duration 10
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgeloop.runtime.processes.supervisor import GroupCrashed
from edgeloop.sims.scenario import Scenario, load_scenario, run_scenario

SCENARIO = Path(__file__).parents[1] / "examples" / "field-search" / "scenario.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="*", default=None, help="values of N")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per N")
    parser.add_argument("--per-process", type=int, default=1, help="agents per process")
    parser.add_argument("--rate", type=float, default=20.0, help="world rate, Hz")
    args = parser.parse_args()
    base = load_scenario(SCENARIO).model_dump()
    base["world"]["rate_hz"] = args.rate
    base["agents_per_process"] = args.per_process
    scenario = Scenario.model_validate(base)
    sizes = args.agents or [
        2**k for k in range(1, 8)
    ]  # 128 at most: 4 sockets per agent in the world
    console = Console()
    table = Table(
        title=f"agents at {args.rate:g} Hz, real time, {os.cpu_count()} CPUs, "
        f"{args.per_process} agent(s) per process, {args.duration:g} s each",
        title_justify="left",
    )
    for col in (
        "agents",
        "processes",
        "world steps",
        "p50 ms",
        "p99 ms",
        "misses",
        "miss %",
        "wall s",
    ):
        table.add_column(col, justify="right")
    held = None
    for n in sizes:
        start = time.perf_counter()
        try:
            _, m = run_scenario(scenario, agents=n, seed=0, realtime=True, duration_s=args.duration)
        except GroupCrashed as exc:  # e.g. out of memory or sockets at this size
            console.print(f"N={n}: did not run: {exc}", highlight=False)
            break
        wall = time.perf_counter() - start
        if m["steps"] == 0 or len(m["per_agent"]) != n:  # nothing ran: nothing to report
            raise SystemExit(f"N={n}: the world stepped {m['steps']} times for {n} agents")
        misses = sum(a["misses"] for a in m["per_agent"])
        p50s = [a["latency_p50_ms"] for a in m["per_agent"]]
        table.add_row(
            str(n),
            str(1 + -(-n // args.per_process)),
            f"{m['steps']:,}",
            f"{sorted(p50s)[len(p50s) // 2]:.2f}",
            f"{m['latency_p99_ms']:.2f}",
            f"{misses:,}",
            f"{100 * m['miss_rate']:.2f}",
            f"{wall:.1f}",
        )
        console.print(
            f"N={n}: p99 {m['latency_p99_ms']:.2f} ms, misses {100 * m['miss_rate']:.2f}%",
            highlight=False,
        )
        if m["miss_rate"] < 0.01:
            held = n
        if m["miss_rate"] > 0.05:
            break
    console.print(table)
    console.print(
        f"largest N held with under 1% deadline misses: {held if held is not None else 'none'}"
    )


if __name__ == "__main__":
    main()
