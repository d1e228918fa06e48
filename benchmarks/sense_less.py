"""Sense less, predict the rest, on a grid sensor: task error against the fraction sensed.

A grid camera (16x16, two moving blobs, 20 Hz) reads only the cells a mask
allows. Three ways to fill in the rest, at each fraction of cells read per
reading, same seeds, simulated time:

- zero-fill: cells not read are 0 (no predictor);
- learned, random cells: the masked autoencoder (trained here on generated
  scenes, exported to ONNX and run by the onnx.model node) reconstructs the view
  from randomly chosen cells;
- learned, region of interest: the same model, with sensing.roi reading the
  cells its last reconstruction says are brightest (plus 25% at random).

Task error: mean absolute error of the view, and the tracking error (cells
from the brightest point of the view to the nearest true blob centre).

    python benchmarks/sense_less.py [--steps 1500] [--bundle DIR] [--plot sense_less.png]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import edgeloop
from edgeloop.testing import RecordingSink

FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05)
MODES = ("zero-fill", "learned, random cells", "learned, region of interest")


def loop(mode: str, fraction: float, bundle: Path) -> edgeloop.LoopGraph:
    graph = edgeloop.LoopGraph(name="grid")
    view = "camera/frame"
    if mode != "zero-fill":
        graph.add_node(
            "mae",
            "onnx.model",
            inputs={"frame": "camera/frame", "mask": {"from": "camera/mask", "trigger": False}},
            config={"model": str(bundle), "providers": ["CPUExecutionProvider"]},
        )
        view = "mae/recon"
    explore = 0.25 if mode.endswith("interest") else 1.0
    graph.add_node(
        "roi",
        "sensing.roi",
        inputs={"estimate": view},
        config={"fraction": fraction, "explore": explore},
    )
    graph.add_node("camera", "grid.camera", rate_hz=20, inputs={"sensing": "roi/command"})
    graph.add_node(
        "sink",
        RecordingSink,
        inputs={
            "view": view,
            "scene": {"from": "camera/scene", "trigger": False},
            "positions": {"from": "camera/positions", "trigger": False},
        },
    )
    return graph


def errors(sink: RecordingSink) -> tuple[float, float]:
    views, scenes, positions = sink.values("view"), sink.values("scene"), sink.values("positions")
    view_errors, track_errors = [], []
    for view, scene, pos in list(zip(views, scenes, positions, strict=True))[5:]:
        view = np.asarray(view).reshape(scene.shape)
        view_errors.append(float(np.abs(view - scene).mean()))
        peak = np.array(np.unravel_index(np.argmax(view), view.shape))
        track_errors.append(float(np.min(np.hypot(*(pos - peak).T))))
    return float(np.mean(view_errors)), float(np.mean(track_errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the model")
    parser.add_argument("--bundle", type=Path, help="use this exported model instead of training")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--plot", type=Path, default=Path("sense_less.png"))
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        bundle = args.bundle
        if bundle is None:
            from edgeloop.sims.masked_autoencoder import export, train

            start = time.perf_counter()
            model = train(steps=args.steps)
            bundle = export(model, Path(folder) / "mae")
            console.print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f} s")
        results: dict[str, dict[float, tuple[float, float, float]]] = {m: {} for m in MODES}
        for mode in MODES:
            for fraction in FRACTIONS:
                view_err, track_err, cost = [], [], []
                for seed in range(args.seeds):
                    executor = edgeloop.Executor(
                        loop(mode, fraction, bundle), simulated=True, seed=seed
                    )
                    report = executor.run(args.duration)
                    v, t = errors(executor.node("sink"))
                    view_err.append(v)
                    track_err.append(t)
                    sensing = report.node("camera").sensing
                    cost.append(sensing["cost"] / sensing["readings"])
                results[mode][fraction] = (
                    float(np.mean(view_err)),
                    float(np.mean(track_err)),
                    float(np.mean(cost)),
                )
    table = Table(
        title=f"grid camera 16x16, 2 blobs, {args.seeds} seeds x {args.duration:g} s at 20 Hz",
        title_justify="left",
    )
    table.add_column("cells read", justify="right")
    for mode in MODES:
        table.add_column(f"{mode}: view error / tracking error (cells)", justify="right")
    for fraction in FRACTIONS:
        table.add_row(
            f"{fraction:.0%}",
            *(f"{results[m][fraction][0]:.4f} / {results[m][fraction][1]:.2f}" for m in MODES),
        )
    console.print(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode in MODES:
        xs = [f * 100 for f in FRACTIONS]
        axes[0].plot(xs, [results[mode][f][0] for f in FRACTIONS], "o-", label=mode)
        axes[1].plot(xs, [results[mode][f][1] for f in FRACTIONS], "o-", label=mode)
    for ax, label in zip(axes, ("view error (mean abs)", "tracking error (cells)"), strict=True):
        ax.set_xlabel("cells read per reading (%)")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("sense less, predict the rest: task error against the fraction sensed")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    console.print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
