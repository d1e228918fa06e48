"""Fixed-rate against adaptive sensing on the pendulum: readings, inferences, energy, return.

The loops are examples/adaptive-sensing/{fixed,adaptive,event}.yaml with a
perception model spliced in after the sensor: a small ONNX model, run by ONNX
Runtime on every reading, standing in for the network that turns a camera frame
into a state (it passes the observation through, so the comparison measures
sensing alone). Same seeds, one 1000-step episode each, simulated time:

- fixed: the sensor at 50 Hz;
- urgency: 50 Hz within 0.3 rad of upright, down to 5 Hz far from it;
- event: 1 Hz floor, plus a reading whenever the Kalman predictor's largest
  standard deviation passes 0.05.

Energy is an estimate: ``--reading-mj`` per reading plus ``--inference-mj`` per
inference (defaults 1 and 5 mJ, placeholders for a camera frame and a small
network on a Jetson-class GPU: set your own).

    python benchmarks/action_to_sensing.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import edgeloop
from edgeloop.runtime.graph import InputSpec

EXAMPLES = Path(__file__).parents[1] / "examples" / "adaptive-sensing"
LOOPS = {"fixed": "fixed.yaml", "urgency": "adaptive.yaml", "event": "event.yaml"}


def perception_model(path: Path) -> Path:
    """obs (1, 3) -> obs (1, 3) through a 3x3 MatMul and an Add: one real inference."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["obs_in", "W"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["obs"]),
        ],
        "perception",
        [helper.make_tensor_value_info("obs_in", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 3])],
        [
            numpy_helper.from_array(np.eye(3, dtype=np.float32), "W"),
            numpy_helper.from_array(np.zeros(3, np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path


def loop(name: str, model: Path, mass_error: float) -> edgeloop.LoopGraph:
    graph = edgeloop.load_graph(EXAMPLES / LOOPS[name])
    graph.node("predictor").config["mass"] = 1.0 + mass_error
    graph.add_node(
        "perception",
        "onnx.model",
        inputs={"obs_in": "sensor/obs"},
        config={"model": str(model), "providers": ["CPUExecutionProvider"]},
    )
    graph.node("predictor").inputs["measurement"] = InputSpec.model_validate(
        {"from": "perception/obs"}
    )
    return graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--reading-mj", type=float, default=1.0)
    parser.add_argument("--inference-mj", type=float, default=5.0)
    parser.add_argument(
        "--mass-error",
        type=float,
        default=0.0,
        help="the predictor's model assumes this much more mass (0.2: 20%% off)",
    )
    args = parser.parse_args()
    console = Console()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        model = perception_model(Path(folder) / "perception.onnx")
        for name in LOOPS:
            rows = results.setdefault(name, {"return": [], "readings": [], "inferences": []})
            for seed in range(args.seeds):
                report = edgeloop.Executor(
                    loop(name, model, args.mass_error), simulated=True, seed=seed
                ).run(20.01)
                episode = report.series["motor.episode_return"]
                rows["return"].append(episode[0])
                rows["readings"].append(report.node("sensor").sensing["readings"])
                rows["inferences"].append(report.node("perception").calls)
            console.print(
                f"{name}: returns {np.round(rows['return'], 1).tolist()}", highlight=False
            )
    base = results["fixed"]
    table = Table(
        title=f"pendulum, {args.seeds} seeds x one 1000-step episode, simulated time, "
        f"predictor's mass off by {args.mass_error:+.0%} "
        f"(energy: {args.reading_mj:g} mJ/reading + {args.inference_mj:g} mJ/inference)",
        title_justify="left",
    )
    for col in (
        "sensing",
        "readings",
        "inferences",
        "energy mJ",
        "return",
        "vs fixed: readings",
        "inferences",
        "return",
    ):
        table.add_column(col, justify="left" if col == "sensing" else "right")
    for name, rows in results.items():
        readings, inferences = sum(rows["readings"]), sum(rows["inferences"])
        energy = readings * args.reading_mj + inferences * args.inference_mj
        mean = float(np.mean(rows["return"]))
        loss = (mean - np.mean(base["return"])) / abs(np.mean(base["return"]))
        table.add_row(
            name,
            f"{readings:,}",
            f"{inferences:,}",
            f"{energy:,.0f}",
            f"{mean:.1f}",
            f"{readings / sum(base['readings']) - 1:+.0%}",
            f"{inferences / sum(base['inferences']) - 1:+.0%}",
            f"{loss:+.1%}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
