"""Small ONNX models for tests, built with onnx.helper (no torch, nothing downloaded)."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgeloop
from edgeloop.runtime.bundles import BundleManifest, TensorSpec, sha256_of, write_manifest

OPSET = 17


def mlp_weights(in_dim: int = 3, hidden: int = 8, out_dim: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {
        "w1": rng.normal(0, 0.5, (in_dim, hidden)).astype(np.float32),
        "b1": rng.normal(0, 0.1, hidden).astype(np.float32),
        "w2": rng.normal(0, 0.5, (hidden, out_dim)).astype(np.float32),
        "b2": rng.normal(0, 0.1, out_dim).astype(np.float32),
    }


def mlp_reference(obs: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """What the MLP computes, in numpy: tanh(obs @ w1 + b1) @ w2 + b2."""
    return np.tanh(obs @ weights["w1"] + weights["b1"]) @ weights["w2"] + weights["b2"]


def make_mlp(
    path: Path,
    in_dim: int = 3,
    hidden: int = 8,
    out_dim: int = 1,
    input_name: str = "obs",
    output_name: str = "action",
) -> Path:
    """A tanh MLP with a dynamic batch dimension: (batch, in_dim) -> (batch, out_dim)."""
    w = mlp_weights(in_dim, hidden, out_dim)
    nodes = [
        helper.make_node("MatMul", [input_name, "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", out_dim])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    return _save(graph, path)


def make_two_by_two(path: Path) -> Path:
    """Inputs a (batch, 2) and b (batch, 3); outputs total = sum of a (batch, 1), twice = 2*b."""
    nodes = [
        helper.make_node("ReduceSum", ["a", "axes"], ["total"], keepdims=1),
        helper.make_node("Mul", ["b", "two"], ["twice"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_by_two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("twice", TensorProto.FLOAT, ["batch", 3]),
        ],
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        ],
    )
    return _save(graph, path)


def make_log(path: Path) -> Path:
    """log(x) for x of shape (batch, 1): NaN for negative inputs."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
    )
    return _save(graph, path)


def make_bundle(folder: Path, model: Path) -> Path:
    """A bundle folder holding ``model`` and a manifest with its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    shutil.copyfile(model, target)
    loaded = onnx.load(str(target))

    def specs(values: list[onnx.ValueInfoProto]) -> list[TensorSpec]:
        return [
            TensorSpec(
                name=v.name,
                dtype=onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                shape=[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        ]

    write_manifest(
        folder,
        BundleManifest(
            edgeloop_version=edgeloop.__version__,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
            model="model.onnx",
            opset=OPSET,
            inputs=specs(list(loaded.graph.input)),
            outputs=specs(list(loaded.graph.output)),
            files={"model.onnx": sha256_of(target)},
        ),
    )
    return folder


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_unsupported(path: Path, supported: set[str]) -> Path:
    """x (1, 4) through the first of a few ops TensorRT's table lacks."""
    for op in ("Det", "Bernoulli", "StringNormalizer", "BitShift", "Einsum"):
        if op not in supported:
            break
    if op == "Det":
        nodes = [helper.make_node("Det", ["x"], ["y"])]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])]
    else:
        nodes = [helper.make_node("Bernoulli", ["x"], ["y"], seed=0.0)]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]
    return _save(helper.make_graph(nodes, "odd", inputs, outputs), path)


def make_mixed_outputs(path: Path) -> Path:
    """obs (batch, 3) -> doubled (batch, 3), total (a scalar), bias (fixed (2,))."""
    nodes = [
        helper.make_node("Mul", ["obs", "two"], ["doubled"]),
        helper.make_node("ReduceSum", ["obs"], ["total"], keepdims=0),
        helper.make_node("Identity", ["bias_const"], ["bias"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [2]),
        ],
        [
            numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
            numpy_helper.from_array(np.array([0.5, -0.5], dtype=np.float32), "bias_const"),
        ],
    )
    return _save(graph, path)


def make_image_decoder(path: Path) -> Path:
    """Valid ONNX (opset 20's ImageDecoder) that ONNX Runtime has no kernel for."""
    graph = helper.make_graph(
        [helper.make_node("ImageDecoder", ["encoded"], ["image"])],
        "decoder",
        [helper.make_tensor_value_info("encoded", TensorProto.UINT8, [100])],
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def make_reshape(path: Path) -> Path:
    """x (6,) reshaped to the shape its second input gives: zeros are no valid shape."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])],
    )
    return _save(graph, path)
