"""CUDA and TensorRT providers here: do they run, agree with the CPU, and how fast.

Builds a small conv net (onnx.helper; needs the `onnx` package), runs it on
the CPU provider as the reference, then on CUDA and TensorRT when ONNX
Runtime can use them, and prints parity and latency per provider. On a
machine without a usable NVIDIA GPU it says why and exits 0.

    python benchmarks/gpu_providers_check.py [--runs 200]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

PROVIDERS = {
    "CPUExecutionProvider": {},
    "CUDAExecutionProvider": {},
    "TensorrtExecutionProvider": {"trt_fp16_enable": False, "trt_engine_cache_enable": False},
}


def conv_net(path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = {
        "k": rng.normal(0, 0.1, (16, 3, 3, 3)),
        "c": np.zeros(16),
        "fc": rng.normal(0, 0.1, (16, 10)),
        "fb": np.zeros(10),
    }
    nodes = [
        helper.make_node("Conv", ["image", "k", "c"], ["x"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["m"]),
        helper.make_node("Add", ["m", "fb"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 96, 96])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def session(path: Path, provider: str) -> tuple[ort.InferenceSession | None, str]:
    """A session that really runs on ``provider``, or None and why not."""
    if provider not in ort.get_available_providers():
        return None, "not in this ONNX Runtime build"
    said = io.StringIO()
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(said):
            s = ort.InferenceSession(str(path), providers=[(provider, PROVIDERS[provider])])
    except Exception as exc:
        return None, str(exc).strip().splitlines()[-1][:160]
    finally:
        ort.set_default_logger_severity(2)
    if s.get_providers()[0] != provider:
        lines = said.getvalue().splitlines()
        reason = next((ln for ln in lines if ln.startswith("EP Error")), "").removeprefix(
            "EP Error"
        )
        reason = reason.split(") ", 1)[-1].strip()[:120]
        return None, f"ONNX Runtime fell back to {s.get_providers()[0]}" + (
            f" ({reason})" if reason else ""
        )
    return s, ""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    image = np.random.default_rng(1).random((1, 3, 96, 96), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = conv_net(Path(folder) / "conv.onnx")
        reference = None
        usable_gpu = False
        for provider in PROVIDERS:
            s, why = session(path, provider)
            name = provider.removesuffix("ExecutionProvider")
            if s is None:
                print(f"{name:9s} not usable: {why}")
                continue
            t0 = time.perf_counter()
            out = s.run(None, {"image": image})[0]  # first run builds TensorRT engines
            first_ms = (time.perf_counter() - t0) * 1e3
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                s.run(None, {"image": image})
                times.append((time.perf_counter() - t0) * 1e6)
            if reference is None:
                reference = out
            usable_gpu |= provider != "CPUExecutionProvider"
            error = float(np.abs(out - reference).max())
            print(
                f"{name:9s} first run {first_ms:8.1f} ms, p50 {np.percentile(times, 50):8.1f} us, "
                f"p99 {np.percentile(times, 99):8.1f} us, max |diff| vs CPU {error:.2e}"
            )
        if not usable_gpu:
            print("no NVIDIA GPU usable here: only the CPU provider ran (exit 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
