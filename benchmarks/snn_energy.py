"""A spiking pendulum policy against the non-spiking policy it was distilled from.

1. Trains a PPO policy on the pendulum task space (``edgeloop train``, ERM,
   150k steps, ~30 s) and exports it (``edgeloop export``): the teacher.
2. Distils it into a spiking policy (``edgeloop.sims.snn_policy``: Leaky
   neurons, surrogate gradients, DAgger; a few minutes on CPU) and exports
   that as an explicit-state ONNX step.
3. Runs both from their ONNX bundles in the same loop (gym plant at 20 Hz,
   the nominal task), same seeds, one 200-step episode each, and prints task
   return, the model node's per-step latency, SynOps against MACs, and the
   energy estimate (0.9 pJ per accumulate, 4.6 pJ per MAC).

    python benchmarks/snn_energy.py [--seeds 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import edgeloop
from edgeloop.exporters.spiking import export_spiking
from edgeloop.runtime.spiking import PJ_PER_MAC
from edgeloop.sims.snn_policy import train


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgeloop", *args], check=True, capture_output=True)


def loop(name: str, bundle: Path, *, with_task: bool, checkpoint: Path | None = None) -> Any:
    graph = edgeloop.LoopGraph(name=name)
    if with_task:  # the teacher is told the task (nominal: mass 1, length 1), before the
        # first observation
        graph.add_node("task", "constant", rate_hz=1, config={"value": [1.0, 1.0]})
    graph.add_node("sensor", "gym.sensor", rate_hz=20, config={"env": "Pendulum-v1"})
    if with_task:
        inputs = {"obs": "sensor/obs", "task": {"from": "task/action", "trigger": False}}
        out = "policy/action"
    else:
        inputs = {"x": "sensor/obs"}
        out = "policy/out"
    graph.add_node(
        "policy",
        "onnx.model",
        inputs=inputs,
        config={"model": str(bundle), "providers": ["CPUExecutionProvider"], "threads": 1},
    )
    graph.add_node("safety", "clamp", inputs={"action": out}, config={"low": -2.0, "high": 2.0})
    graph.add_node(
        "motor", "gym.actuator", inputs={"action": "safety/action"}, config={"env": "Pendulum-v1"}
    )
    if checkpoint is not None:  # the same network in torch beside it, for the spike count
        graph.add_node(
            "count",
            "snn.torch",
            inputs={"x": "sensor/obs"},
            config={
                "network": "edgeloop.sims.snn_policy:make_policy",
                "checkpoint": str(checkpoint),
            },
        )
    return graph


def dense_macs(bundle: Path) -> int:
    """MACs per step of an MLP bundle: the sizes of its MatMul/Gemm weights."""
    import onnx
    from onnx import numpy_helper

    from edgeloop.runtime.bundles import open_model

    model = onnx.load(str(open_model(bundle)[0]))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return sum(
        int(weights[name].size)
        for node in model.graph.node
        if node.op_type in ("MatMul", "Gemm")
        for name in node.input
        if name in weights and weights[name].ndim == 2
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--work", type=Path, help="keep the runs and bundles here")
    args = parser.parse_args()
    console = Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="snn-energy-"))
    work.mkdir(parents=True, exist_ok=True)
    teacher = work / "teacher"
    if not (teacher / "manifest.json").exists():
        console.print("training the teacher (PPO, 150k steps) ...")
        cli("train", "--task-space", "pendulum", "--sampler", "erm", "--steps", "150000",
            "-o", str(work / "run"))  # fmt: skip
        cli("export", str(work / "run"), "-o", str(teacher))
    console.print("distilling it into a spiking policy ...")
    student = train(teacher, progress=lambda r, e, loss: None)
    checkpoint = work / "snn.pt"
    torch.save(student.state_dict(), checkpoint)
    snn_bundle = export_spiking(student, torch.zeros(1, 3), work / "snn").bundle
    rows = {}
    for name, graph_of in (
        ("non-spiking (teacher)", lambda: loop("ann", teacher, with_task=True)),
        (
            "spiking (distilled)",
            lambda: loop("snn", snn_bundle, with_task=False, checkpoint=checkpoint),
        ),
    ):
        returns, latency, energy = [], [], None
        for seed in range(args.seeds):
            report = edgeloop.Executor(graph_of(), simulated=True, seed=seed).run(10.0)
            returns.append(report.series["motor.episode_return"][0])
            latency.append(report.node("policy").p50_us)
            if "count" in {n.id for n in report.nodes}:
                figures = json.loads(report.node("count").notes["energy"])
                energy = (energy or []) + [figures]
        rows[name] = (returns, latency, energy)
    macs = dense_macs(teacher)
    table = Table(
        title=f"pendulum, {args.seeds} seeds x one 200-step episode at 20 Hz, from ONNX bundles",
        title_justify="left",
    )
    for col in ("policy", "mean return", "node p50 µs", "ops per step", "energy per step (pJ)"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name, (returns, latency, energy) in rows.items():
        if energy is None:
            ops, pj = f"{macs:,} MACs", macs * PJ_PER_MAC
        else:
            steps = sum(e["steps"] for e in energy)
            synops = sum(e["synops"] for e in energy) / steps
            real = sum(e["real_macs"] for e in energy) / steps
            ops = f"{synops:,.0f} SynOps + {real:,.0f} MACs"
            pj = sum(e["energy_pj"] for e in energy) / steps
            rates = {k: round(v, 3) for k, v in energy[0]["firing_rate"].items()}
            console.print(f"spiking firing rates (seed 0): {rates}", highlight=False)
        table.add_row(name, f"{np.mean(returns):.1f}", f"{np.mean(latency):.1f}", ops, f"{pj:,.0f}")
    console.print(table)
    console.print(f"bundles and runs in {work}")


if __name__ == "__main__":
    main()
