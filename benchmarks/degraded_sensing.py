"""A degraded sensor: adaptive sensing with and without the trust monitor and guard.

The pendulum's sensor is corrupted part of the time (``inject``: by default
Gaussian noise of std 0.5 in bursts, 30% of every 2 s). Three loops, same seeds,
one 1000-step episode each, simulated time:

- clean: event-triggered sensing on a clean sensor (examples/adaptive-sensing/event.yaml);
- unguarded: the same loop on the corrupted sensor;
- guarded: examples/adaptive-sensing/guarded.yaml on the corrupted sensor: the
  predictor's innovation gate and trust score, and the cascade guard that
  returns to full-rate sensing while trust is low.

    python benchmarks/degraded_sensing.py [--seeds 5] [--mode noise|stuck|offset] [--scale 0.5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import edgeloop
from edgeloop.runtime.graph import InputSpec

EXAMPLES = Path(__file__).parents[1] / "examples" / "adaptive-sensing"


def loop(name: str, corruption: dict | None) -> edgeloop.LoopGraph:
    graph = edgeloop.load_graph(EXAMPLES / f"{name}.yaml")
    if corruption is not None:
        graph.add_node("corrupt", "inject", inputs={"in": "sensor/obs"}, config=corruption)
        graph.node("predictor").inputs["measurement"] = InputSpec.model_validate(
            {"from": "corrupt/out"}
        )
    return graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mode", default="noise", choices=["noise", "stuck", "offset", "dropout"])
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between bursts")
    parser.add_argument("--duty", type=float, default=0.3, help="share of the time corrupted")
    args = parser.parse_args()
    corruption = {"mode": args.mode, "scale": args.scale, "every_s": args.every, "duty": args.duty}
    cases = {
        "clean": ("event", None),
        "unguarded": ("event", corruption),
        "guarded": ("guarded", corruption),
    }
    console = Console()
    results: dict[str, dict[str, list]] = {}
    for case, (name, corrupt) in cases.items():
        rows = results.setdefault(case, {"return": [], "readings": [], "trips": [], "rejected": []})
        for seed in range(args.seeds):
            executor = edgeloop.Executor(loop(name, corrupt), simulated=True, seed=seed)
            report = executor.run(20.01)
            rows["return"].append(report.series["motor.episode_return"][0])
            rows["readings"].append(report.node("sensor").sensing["readings"])
            notes = report.node("predictor").notes["predictions"]
            rows["rejected"].append(int(notes.split(", ")[-1].split()[0]))
            rows["trips"].append(len(report.series.get("guard.trip_s", [])))
        console.print(f"{case}: returns {np.round(rows['return'], 1).tolist()}", highlight=False)
    clean = float(np.mean(results["clean"]["return"]))
    table = Table(
        title=f"pendulum, {args.seeds} seeds, sensor corrupted by {args.mode} "
        f"(scale {args.scale:g}) {args.duty:.0%} of every {args.every:g} s",
        title_justify="left",
    )
    for col in (
        "loop",
        "mean return",
        "vs clean",
        "worst return",
        "readings",
        "rejected",
        "guard trips",
    ):
        table.add_column(col, justify="left" if col == "loop" else "right")
    for case, rows in results.items():
        mean = float(np.mean(rows["return"]))
        table.add_row(
            case,
            f"{mean:.1f}",
            f"{(mean - clean) / abs(clean):+.1%}",
            f"{min(rows['return']):.1f}",
            f"{sum(rows['readings']):,}",
            f"{sum(rows['rejected']):,}",
            f"{sum(rows['trips']):,}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
