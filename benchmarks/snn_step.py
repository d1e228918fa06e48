"""Per-step latency of a spiking network: snntorch eager against its exported ONNX step.

A 16-64-2 network of Leaky neurons (explicit state), one step per call with
the state fed back, batch 1. Measured in the same run: torch eager (no grad), the
exported step in ONNX Runtime (CPU), and the whole ``onnx.model`` node step
(its state carried inside the node), each over ``--steps`` steps after a warm-up.

    python benchmarks/snn_step.py [--steps 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the tests' small networks
import spiking_nets

from edgeloop.exporters.spiking import export_spiking
from edgeloop.plugins.onnx_model import OnnxModel
from edgeloop.testing import start_node


def per_step_us(fn, steps: int) -> tuple[float, float]:
    """p50 and p99 of ``fn``; every call must return the step's output (a call that
    skipped the network would time nothing)."""
    done = 0
    for _ in range(200):
        done += fn() is not None
    times = []
    for _ in range(steps):
        start = time.perf_counter_ns()
        out = fn()
        times.append(time.perf_counter_ns() - start)
        done += out is not None and len(out) > 0
    if done != 200 + steps:
        raise SystemExit(f"{fn.__name__}: {done} of {200 + steps} calls produced an output")
    return float(np.median(times)) / 1e3, float(np.percentile(times, 99)) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = spiking_nets.tiny(n_in=16, hidden=64, n_out=2).eval()
    x = torch.randn(1, 16)
    state = list(net.initial_state(1))

    def torch_step() -> torch.Tensor:
        nonlocal state
        with torch.no_grad():
            out, *state = net(x, *state)
        return out

    with tempfile.TemporaryDirectory() as folder:
        bundle = export_spiking(net, torch.zeros(1, 16), Path(folder) / "snn").bundle
        config = {"model": str(bundle), "providers": ["CPUExecutionProvider"], "threads": 1}
        node = start_node(OnnxModel, config, node_id="snn")
        session = node.session
        feed = {
            "x": x.numpy(),
            "mem1": np.zeros((1, 64), np.float32),
            "mem2": np.zeros((1, 2), np.float32),
        }

        def ort_step() -> list[np.ndarray]:
            out = session.run(None, feed)
            feed["mem1"], feed["mem2"] = out[1], out[2]
            return out

        xs = {"x": x.numpy()[0], "reset": None}
        if not node.step(xs):  # a step that returns early times nothing (issue 18)
            raise SystemExit(
                "the onnx.model node returned no output for the input it was fed: its "
                "line would time a step that skips the model, so there is no figure"
            )

        def node_step() -> dict[str, np.ndarray] | None:
            return node.step(xs)

        rows = [
            ("snntorch eager (torch, no grad)", per_step_us(torch_step, args.steps)),
            ("exported step, ONNX Runtime session", per_step_us(ort_step, args.steps)),
            ("exported step in the onnx.model node", per_step_us(node_step, args.steps)),
        ]
    base = rows[0][1][0]
    print(f"16-64-2 Leaky network, batch 1, one thread, {args.steps} steps each (p50 / p99 µs):")
    for name, (p50, p99) in rows:
        print(f"  {name:40s} {p50:8.1f} / {p99:8.1f}   {base / p50:5.1f}x faster than eager")


if __name__ == "__main__":
    main()
