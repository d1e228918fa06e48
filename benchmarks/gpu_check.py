"""One GPU check: export, precheck, every provider, parity, and a latency table.

For ResNet-18 at batch 1 (random weights, defined here in torch; nothing is
downloaded), or a small conv net with ``--model small``:

1. export a bundle (fp32, an fp16 variant, an int8 variant calibrated on random
   images) and a two-model split of it (backbone -> head) for the chain;
2. precheck the model against the profile (desktop-cuda with a GPU, else desktop-cpu);
3. the ``onnx.model`` node on every provider present (CPU, CUDA, TensorRT), and
   once with the profile's measured choice;
4. parity of each provider and variant against the CPU's fp32 logits on the
   bundle's samples and random images (exit 1 on a failure);
5. a latency table: bare ``session.run`` against the node; plain, I/O binding,
   fixed buffers (the CPU) or CUDA graphs (CUDA); the two-model chain with host
   copies between the nodes against a device tensor, and the copy alone.

On a machine without a usable GPU it runs the CPU part and says what it skipped.

    python benchmarks/gpu_check.py [--model resnet18|small] [--runs 200] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgeloop.exporters.onnx_export import export_bundle
from edgeloop.exporters.precheck import precheck
from edgeloop.exporters.quantize import add_int8_variant
from edgeloop.plugins.onnx_model import OnnxModel
from edgeloop.runtime.bundles import open_model, read_samples
from edgeloop.runtime.device_tensors import DeviceTensor
from edgeloop.runtime.profiles import load_profile
from edgeloop.testing import start_node

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
"""Largest |logits - CPU fp32 logits| allowed, relative to the largest CPU logit."""
INT8_COSINE = 0.98
"""Smallest cosine similarity of int8 logits to the CPU's fp32 logits allowed."""
console = Console()


def networks(kind: str) -> tuple[Any, Any, tuple[int, ...]]:
    """(backbone, head, input shape): ResNet-18 or a small conv net, random weights
    with batch norm statistics taken on random images (so activations stay sane)."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout, momentum=None)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout, momentum=None)
            self.down: nn.Module = nn.Identity()
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, momentum=None)
                )

        def forward(self, x: Any) -> Any:
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + self.down(x))

    if kind == "resnet18":
        stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64, momentum=None)]
        layers = [*stem, nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        plan = [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]
        width, classes, shape = 64, 1000, (1, 3, 224, 224)
    else:
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16, momentum=None)]
        layers.append(nn.ReLU())
        plan, width, classes, shape = [(32, 2), (32, 1)], 16, 10, (1, 3, 96, 96)
    for cout, stride in plan:
        layers.append(Block(width, cout, stride))
        width = cout
    backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Linear(width, classes)
    backbone.train()
    with torch.no_grad():
        for _ in range(4):  # cumulative batch-norm statistics (momentum None)
            backbone(torch.randn(8, *shape[1:]))
    return backbone.eval(), head.eval(), shape


def export_all(kind: str, folder: Path, profile: str) -> dict[str, Path]:
    """The full model (fp32, fp16, int8), the backbone and the head, as bundles."""
    import torch

    backbone, head, shape = networks(kind)
    full = torch.nn.Sequential(backbone, head).eval()
    image = torch.randn(*shape)
    features = backbone(image).detach()
    common = {"profile": profile, "dynamic_batch": False, "random_cases": 2}
    bundles = {
        "model": folder / "model",
        "backbone": folder / "backbone",
        "head": folder / "head",
    }
    with console.status("exporting (fp32, fp16, int8, and the split for the chain)"):
        export_bundle(
            full, (image,), bundles["model"], input_names=["image"], output_names=["logits"],
            fp16=True, **common,
        )  # fmt: skip
        export_bundle(
            backbone, (image,), bundles["backbone"], input_names=["image"],
            output_names=["features"], **common,
        )  # fmt: skip
        export_bundle(
            head, (features,), bundles["head"], input_names=["features"],
            output_names=["logits"], **common,
        )  # fmt: skip
        rng = np.random.default_rng(1)
        calibration = folder / "calibration.npy"
        np.save(calibration, rng.normal(0, 1, (40, *shape[1:])).astype(np.float32))
        add_int8_variant(bundles["model"], calibration)
    return bundles


def node_for(model: Path, providers: list[str], **config: Any) -> Any:
    return start_node(
        OnnxModel,
        {"model": str(model), "providers": providers, "provider_choice": "order", **config},
    )


def probe_provider(model: Path, name: str) -> str | None:
    """None when ``name`` runs the model here, else why not (the node's own reason)."""
    try:
        node = node_for(model, [name])
    except Exception as exc:  # the node's own reason, less its advice
        reason = str(exc).split("could run it: ", 1)[-1].split(" (fix:", 1)[0]
        return reason.split(": ", 1)[-1]
    node.close()
    return None


def timed(call: Any, runs: int, check: Any) -> tuple[float, float]:
    """p50 and p99 in µs of ``call()`` over ``runs`` runs after 20 warm-up runs;
    ``check(result)`` must hold for each (the work happened)."""
    for _ in range(20):
        assert check(call()), "a warm-up step returned no output"
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        result = call()
        times.append(time.perf_counter_ns() - start)
        if not check(result):
            raise SystemExit(
                "a timed step returned no output: the figure would not be a measurement"
            )
    return float(np.percentile(times, 50)) / 1e3, float(np.percentile(times, 99)) / 1e3


def logits_of(out: Any) -> np.ndarray:
    value = out["logits"]
    return value.host("parity") if type(value) is DeviceTensor else value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["resnet18", "small"], default="resnet18")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write the figures here as gpu_check.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        return check(args, Path(folder))


def check(args: argparse.Namespace, folder: Path) -> int:
    """Every step above, with the bundles in ``folder``; 1 on a parity failure."""
    import onnxruntime as ort

    gpu_build = CUDA in ort.get_available_providers()
    profile_name = "desktop-cuda" if gpu_build else "desktop-cpu"
    bundles = export_all(args.model, folder, profile_name)
    model = bundles["model"]

    report = precheck(model, load_profile(profile_name))
    for check in report.checks:
        console.print(f"precheck {check.name}: {check.status} - {check.detail}", highlight=False)

    providers, skipped = [CPU], {}
    for name in (CUDA, TRT):
        why = probe_provider(model, name)
        if why is None:
            providers.append(name)
        else:
            skipped[name] = why
    chosen = start_node(OnnxModel, {"model": str(model)}, profile=load_profile(profile_name))
    console.print(
        f"measured choice on {profile_name}: {chosen.ctx.notes.get('provider')} "
        f"({chosen.ctx.notes.get('measured', 'one provider')})",
        highlight=False,
    )
    chosen.close()

    # Parity against the CPU's fp32 logits, on the samples and random images.
    _, manifest = open_model(model)
    samples = read_samples(model, manifest) or {}
    rng = np.random.default_rng(7)
    shape = tuple(manifest.inputs[0].shape)
    images = [samples["image"]] + [rng.normal(0, 1, shape).astype(np.float32) for _ in range(3)]
    reference = node_for(model, [CPU])
    expected = [logits_of(reference.step({"image": x})) for x in images]
    reference.close()
    parity_rows, failed = [], False
    for provider in providers:
        for variant in ("fp32", "fp16", "int8"):
            node = node_for(model, [provider], variant=None if variant == "fp32" else variant)
            got = [logits_of(node.step({"image": x})) for x in images]
            node.close()
            scale = max(float(np.abs(e).max()) for e in expected)
            worst = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
            cosine = min(
                float(np.dot(g.ravel(), e.ravel()) / (np.linalg.norm(g) * np.linalg.norm(e)))
                for g, e in zip(got, expected, strict=True)
            )
            ok = cosine >= INT8_COSINE if variant == "int8" else worst / scale <= TOLERANCE[variant]
            failed |= not ok
            parity_rows.append((provider, variant, worst, worst / scale, cosine, ok))

    # Latency: bare session against the node, the node's run paths, the chain.
    latency: list[tuple[str, str, float, float, float | None]] = []
    x = samples["image"]
    for provider in providers:
        short = provider.removesuffix("ExecutionProvider")
        plain = node_for(model, [provider])
        bare_p50, bare_p99 = timed(
            lambda s=plain.session: s.run(["logits"], {"image": x}), args.runs, lambda r: r
        )
        latency.append((short, "bare session.run", bare_p50, bare_p99, None))
        paths = {"node, plain run": {}, "node, I/O binding": {"io_binding": True}}
        if provider == CPU:
            paths["node, fixed buffers"] = {"io_binding": "fixed"}
        else:
            paths["node, CUDA graph"] = {"cuda_graph": True}
        for label, config in paths.items():
            node = node_for(model, [provider], **config)
            p50, p99 = timed(lambda n=node: n.step({"image": x}), args.runs, lambda r: r)
            node.close()
            latency.append((short, label, p50, p99, p50 / bare_p50))
        plain.close()
        for label, on_device in (
            ("chain, host copy between", False),
            ("chain, device tensor", True),
        ):
            kept = {"device_outputs": ["features"], "check_device_outputs": False}
            first = node_for(bundles["backbone"], [provider], **(kept if on_device else {}))
            second = node_for(bundles["head"], [provider])

            def chain(a: Any = first, b: Any = second) -> Any:
                return b.step({"features": a.step({"image": x})["features"]})

            p50, p99 = timed(chain, args.runs, lambda r: r)
            latency.append((short, label, p50, p99, None))
            if on_device:  # the copy a host reader would cost: one per message
                copies = []
                for _ in range(args.runs):
                    tensor = first.step({"image": x})["features"]
                    start = time.perf_counter_ns()
                    tensor.host("timing")
                    copies.append(time.perf_counter_ns() - start)
                p50, p99 = (float(np.percentile(copies, q)) / 1e3 for q in (50, 99))
                latency.append((short, "features copied to the host alone", p50, p99, None))
            first.close()
            second.close()

    table = Table(title=f"parity against CPU fp32 ({args.model}, batch 1)")
    for column in ("provider", "variant", "max |diff|", "relative", "cosine", "ok"):
        table.add_column(column)
    for provider, variant, worst, relative, cosine, ok in parity_rows:
        table.add_row(
            provider.removesuffix("ExecutionProvider"), variant, f"{worst:.2e}",
            f"{relative:.2e}", f"{cosine:.5f}", "yes" if ok else "NO",
        )  # fmt: skip
    console.print(table)
    table = Table(title=f"latency ({args.model}, batch 1, {args.runs} runs, µs)")
    for column in ("provider", "path", "p50", "p99", "vs bare"):
        table.add_column(column, justify="left" if column in ("provider", "path") else "right")
    for short, label, p50, p99, ratio in latency:
        table.add_row(short, label, f"{p50:,.1f}", f"{p99:,.1f}", f"{ratio:.3f}" if ratio else "")
    console.print(table)
    for name, why in skipped.items():
        short = name.removesuffix("ExecutionProvider")
        console.print(
            f"skipped {short} (its parity, latency and chain rows): {why}", highlight=False
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        parity_keys = ("provider", "variant", "max_abs", "relative", "cosine", "ok")
        latency_keys = ("provider", "path", "p50_us", "p99_us", "vs_bare")
        figures = {
            "model": args.model,
            "onnxruntime": ort.__version__,
            "providers": providers,
            "skipped": skipped,
            "parity": [dict(zip(parity_keys, r, strict=True)) for r in parity_rows],
            "latency": [dict(zip(latency_keys, r, strict=True)) for r in latency],
        }
        (args.out / "gpu_check.json").write_text(json.dumps(figures, indent=2) + "\n")
    if failed:
        console.print("[bold red]parity failed[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
