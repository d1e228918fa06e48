"""Parity: how far ONNX Runtime's outputs are from torch's on the same inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _torch() -> Any:
    from edgeloop.exporters.onnx_export import _torch as torch_or_error

    return torch_or_error()


@dataclass
class Parity:
    """How far ONNX Runtime's outputs are from torch's, over the checked inputs."""

    max_abs_error: float
    max_rel_error: float
    cases: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.tolerance


def check_parity(
    module: Any,
    model_path: Path,
    samples: tuple[Any, ...],
    input_names: list[str],
    output_names: list[str],
    *,
    tolerance: float,
    random_cases: int = 8,
    dynamic_batch: bool = True,
) -> Parity:
    """Run torch and ONNX Runtime on the samples and on random inputs like them."""
    import onnxruntime as ort

    torch = _torch()
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    cases = [tuple(samples)]
    for k in range(random_cases):
        batch = (1 if k % 2 == 0 else 3) if dynamic_batch else None
        cases.append(tuple(_random_like(torch, s, batch, generator) for s in samples))
    worst_abs = worst_rel = 0.0
    for case in cases:
        with torch.no_grad():
            expected = module(*case)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        got = session.run(
            output_names, {n: t.numpy() for n, t in zip(input_names, case, strict=True)}
        )
        for e, g in zip(expected, got, strict=True):
            e = e.detach().numpy()
            if not np.array_equal(np.isfinite(e), np.isfinite(g)):
                return Parity(math.inf, math.inf, len(cases), tolerance)  # NaN/inf where not
            diff = np.abs(e.astype(np.float64) - g.astype(np.float64))
            diff[~np.isfinite(e)] = 0.0  # the same inf or NaN on both sides
            worst_abs = max(worst_abs, float(diff.max(initial=0.0)))
            scale = np.maximum(np.abs(e.astype(np.float64)), 1e-12)
            worst_rel = max(worst_rel, float((diff / scale).max(initial=0.0)))
    return Parity(worst_abs, worst_rel, len(cases), tolerance)


def _random_like(torch: Any, sample: Any, batch: int | None, generator: Any) -> Any:
    shape = list(sample.shape)
    if batch is not None and shape:
        shape[0] = batch
    if sample.dtype.is_floating_point:
        return torch.randn(shape, generator=generator, dtype=sample.dtype)
    return torch.randint(0, 2, shape, generator=generator, dtype=sample.dtype)
