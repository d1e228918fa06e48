"""Does int8 pay? A trained classifier, fp32 against its calibrated int8 variant.

The benchmark trains a small conv net (two 3x3 conv layers and a linear head)
here, in seconds, to tell which quadrant of a noisy 16x16 image holds a bright
blob (4 classes). It exports the net as a bundle and adds the int8 variant
(``edgeloop export --int8``: QDQ, symmetric, per channel), calibrated on 256
training images. It then runs both on 1,000 test images the net never saw
(neither in training nor in calibration), through the ``onnx.model`` node on one
CPU thread, and prints accuracy and step time p50 for each, and the ratio.
It fails unless every test image got a prediction from both.

    python benchmarks/int8_variant.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeloop.exporters.onnx_export import export_bundle
from edgeloop.exporters.quantize import add_int8_variant
from edgeloop.plugins.onnx_model import OnnxModel
from edgeloop.testing import start_node


def images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 16x16 images with a blob in one quadrant; the label is the quadrant."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    yy, xx = np.mgrid[0:16, 0:16]
    out = rng.normal(0.0, 0.3, (count, 1, 16, 16)).astype(np.float32)
    for k, label in enumerate(labels):
        cy = rng.uniform(1, 7) + 8 * (label // 2)
        cx = rng.uniform(1, 7) + 8 * (label % 2)
        out[k, 0] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    return out, labels


def train(x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 4),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    data, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(6):
        for start in range(0, len(data), 64):
            loss = torch.nn.functional.cross_entropy(
                net(data[start : start + 64]), labels[start : start + 64]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def evaluate(bundle: Path, variant: str | None, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Predictions for every test image through the model node, and its step p50 (µs)."""
    config = {"model": str(bundle), "variant": variant, "threads": 1}
    config["providers"] = ["CPUExecutionProvider"]
    node = start_node(OnnxModel, config)
    predictions, times = [], []
    for image in x:
        start = time.perf_counter_ns()
        out = node.step({"image": image})
        times.append(time.perf_counter_ns() - start)
        if out is not None:
            predictions.append(int(np.argmax(out["logits"])))
    node.close()
    return np.array(predictions), float(np.median(times)) / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test", type=int, default=1000, help="test images")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_x, train_y = images(2048, seed=1)
    test_x, test_y = images(args.test, seed=2)
    net = train(train_x, train_y)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bundle = export_bundle(
            net,
            (torch.zeros(1, 1, 16, 16),),
            folder / "bundle",
            input_names=["image"],
            output_names=["logits"],
        ).bundle
        np.save(folder / "calibration.npy", train_x[:256])
        figures = add_int8_variant(bundle, folder / "calibration.npy")
        rows = []
        for name, variant in (("fp32", None), ("int8", "int8")):
            predictions, p50 = evaluate(bundle, variant, test_x)
            if len(predictions) != len(test_x):
                raise SystemExit(f"{name}: {len(predictions)} of {len(test_x)} images predicted")
            rows.append((name, float(np.mean(predictions == test_y)), p50))
    print(
        f"a trained 2-conv classifier, 16x16 images, {args.test} test images, one CPU "
        f"thread; int8 calibrated on 256 training images (held-out check: max abs "
        f"{figures['max_abs_error']:.3g} on the logits)"
    )
    for name, accuracy, p50 in rows:
        print(f"  {name}: accuracy {accuracy:.3f}, node step p50 {p50:7.1f} us")
    (_, fp32_accuracy, fp32_us), (_, int8_accuracy, int8_us) = rows
    print(
        f"  int8 runs at {fp32_us / int8_us:.2f}x the fp32 speed, accuracy "
        f"{int8_accuracy - fp32_accuracy:+.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
