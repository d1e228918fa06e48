"""The onnx.model node's step against a raw InferenceSession.run on the same inputs.

Two models, built here with onnx.helper (needs the `onnx` package, in the dev
extra): a 2x64 tanh MLP (3 -> 1) and a small conv net (1x3x96x96 -> 10).
Both are timed in the same run, interleaved, on the CPU provider.

    python benchmarks/model_node_overhead.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgeloop
from edgeloop.testing import start_node


def mlp(path: Path) -> Path:
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.normal(0, 0.5, (3, 64)),
        "b1": rng.normal(0, 0.1, 64),
        "w2": rng.normal(0, 0.5, (64, 64)),
        "b2": rng.normal(0, 0.1, 64),
        "w3": rng.normal(0, 0.5, (64, 1)),
        "b3": rng.normal(0, 0.1, 1),
    }
    nodes = [
        helper.make_node("MatMul", ["obs", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Tanh", ["a1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["a2"]),
        helper.make_node("Tanh", ["a2"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w3"], ["m3"]),
        helper.make_node("Add", ["m3", "b3"], ["action"]),
    ]
    return _save(
        helper.make_graph(
            nodes,
            "mlp",
            [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 3])],
            [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 1])],
            [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
        ),
        path,
    )


def conv_net(path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = {
        "k1": rng.normal(0, 0.1, (8, 3, 3, 3)),
        "c1": np.zeros(8),
        "k2": rng.normal(0, 0.1, (16, 8, 3, 3)),
        "c2": np.zeros(16),
        "fc": rng.normal(0, 0.1, (16, 10)),
        "fb": np.zeros(10),
    }
    nodes = [
        helper.make_node("Conv", ["image", "k1", "c1"], ["x1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x1"], ["r1"]),
        helper.make_node("Conv", ["r1", "k2", "c2"], ["x2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["m"]),
        helper.make_node("Add", ["m", "fb"], ["logits"]),
    ]
    return _save(
        helper.make_graph(
            nodes,
            "conv",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 96, 96])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
            [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
        ),
        path,
    )


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def model_node(path: Path) -> edgeloop.Node:
    cls = edgeloop.PluginRegistry().node_type("onnx.model").cls
    return start_node(cls, {"model": str(path)}, node_id="bench")


def measure(
    path: Path, port: str, sample: np.ndarray, calls: int
) -> tuple[list[float], list[float]]:
    node = model_node(path)
    session = node.session  # the same session: only the node's own work differs
    names = node.output_names
    tensor = node.feeds[0][1].name
    feed_batched = {tensor: sample[None]}
    inputs = {port: sample}
    node.step(inputs)  # the first call checks dtype and shape
    raw, wrapped = [], []
    perf = time.perf_counter_ns
    for _ in range(calls):
        t0 = perf()
        session.run(names, feed_batched)
        t1 = perf()
        node.step(inputs)
        t2 = perf()
        raw.append((t1 - t0) / 1e3)
        wrapped.append((t2 - t1) / 1e3)
    return raw, wrapped


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000, help="calls per model (interleaved)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cases = [
            (
                "2x64 tanh MLP (3 -> 1)",
                mlp(Path(folder) / "mlp.onnx"),
                "obs",
                np.array([0.1, -0.2, 0.3], np.float32),
                args.calls,
            ),
            (
                "conv net (1x3x96x96)",
                conv_net(Path(folder) / "conv.onnx"),
                "image",
                np.random.default_rng(0).random((3, 96, 96), dtype=np.float32),
                args.calls // 5,
            ),
        ]
        print(
            "onnx.model node vs raw InferenceSession.run, CPU provider, same session, "
            "interleaved calls"
        )
        for label, path, port, sample, calls in cases:
            raw, wrapped = measure(path, port, sample, calls)
            added = statistics.median(wrapped) - statistics.median(raw)
            print(
                f"  {label:24s} {calls:6,} calls  raw p50 {pct(raw, 50):8.1f} us  "
                f"p99 {pct(raw, 99):8.1f} us | node p50 {pct(wrapped, 50):8.1f} us  "
                f"p99 {pct(wrapped, 99):8.1f} us | added {added:+6.2f} us, "
                f"ratio {statistics.median(wrapped) / statistics.median(raw):.3f}"
            )
    print("targets: MLP under 2 us added; conv net within 5% (ratio <= 1.05)")


if __name__ == "__main__":
    sys.exit(main())
