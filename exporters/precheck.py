"""Checking an ONNX model against a hardware profile before it reaches the board.

Each check gives a line: ``pass``, ``warn`` (it will run, but not as well as it
could: ops that fall back from TensorRT, dynamic dimensions without shape
profiles) or ``fail`` (it will not run as asked: an opset above the profile's
TensorRT, a model over the memory budget, an invalid graph), plus ``info``
lines with estimates. Needs the ``onnx`` package (``train`` extra).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgeloop.exporters.onnx_export import _first_line
from edgeloop.runtime.bundles import open_model, specs_of_session, zeros_for
from edgeloop.runtime.errors import MissingDependencyError
from edgeloop.runtime.profiles import HardwareProfile

_TENSORRT_OPS = "tensorrt_ops.yaml"


@dataclass
class Check:
    """One line of a precheck."""

    name: str
    status: str  # pass | warn | fail | info
    detail: str
    items: list[str] = field(default_factory=list)


@dataclass
class PrecheckReport:
    """Every check of one model against one profile."""

    model: str
    profile: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        """No check failed."""
        return all(c.status != "fail" for c in self.checks)

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError if none)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "profile": self.profile,
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
        }


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "train", "prechecking a model") from None
    return onnx


def tensorrt_ops(version: str) -> tuple[str, set[str], str] | None:
    """(table version, supported ops, source) for the newest table at or below ``version``."""
    source = resources.files("edgeloop.exporters").joinpath(_TENSORRT_OPS)
    if not source.is_file():
        return None
    table = yaml.safe_load(source.read_text())
    wanted = _version_key(version)
    usable = [v for v in table if _version_key(v) <= wanted]
    if not usable:
        return None
    best = max(usable, key=_version_key)
    return best, set(table[best]["ops"]), table[best]["source"]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit())


def precheck(
    model: str | Path, profile: HardwareProfile, *, measure: bool = True
) -> PrecheckReport:
    """Check a model file or bundle against ``profile``.

    Raises:
        BundleError: the model is missing or a bundle is tampered with.
        MissingDependencyError: onnx is not installed.
    """
    onnx = _onnx()
    model_file, _ = open_model(model)
    checks: list[Check] = []
    try:
        proto = onnx.load(str(model_file))
        onnx.checker.check_model(proto, full_check=True)
        checks.append(Check("onnx checker", "pass", "the graph is valid ONNX"))
    except Exception as exc:
        checks.append(Check("onnx checker", "fail", _first_line(exc)))
        return PrecheckReport(str(model), profile.name, checks)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
        checks.append(Check("shape inference", "pass", "every tensor's shape is known"))
    except Exception as exc:
        inferred = proto
        checks.append(Check("shape inference", "fail", _first_line(exc)))
    # Each check on its own: one that cannot run is a line saying why, and the
    # others still run (never a traceback).
    checks.append(_guarded("opset", _opset, proto, profile))
    checks.append(_guarded("TensorRT ops", _ops, proto, profile))
    checks.append(_guarded("dynamic dims", _dynamic_dims, proto, profile))
    checks.append(_guarded("memory", _memory_budget, inferred, profile))
    checks.append(_guarded("compute", _compute, inferred, profile))
    if measure:
        checks.append(_guarded("host latency", _host_latency, model_file))
    return PrecheckReport(str(model), profile.name, checks)


def _guarded(name: str, check: Any, *args: Any) -> Check:
    """``check(*args)``, or a ``warn`` line with the reason when it cannot run."""
    try:
        return check(*args)
    except Exception as exc:
        return Check(name, "warn", f"could not be checked: {_first_line(exc)}")


def _memory_budget(proto: Any, profile: HardwareProfile) -> Check:
    params, activations = _memory(proto)
    return _budget(params, activations, profile)


def _opset(proto: Any, profile: HardwareProfile) -> Check:
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    limit = profile.software.max_onnx_opset
    if limit is None:
        return Check("opset", "pass", f"opset {opset}; {profile.name} sets no limit")
    if opset is not None and opset > limit:
        return Check(
            "opset",
            "fail",
            f"opset {opset} is above {limit}, the newest "
            f"TensorRT {profile.software.tensorrt} parses (export again at {limit})",
        )
    return Check(
        "opset", "pass", f"opset {opset} <= {limit} (TensorRT {profile.software.tensorrt})"
    )


def _ops(proto: Any, profile: HardwareProfile) -> Check:
    used = sorted(
        {
            n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
            for n in proto.graph.node
        }
    )
    if "TensorrtExecutionProvider" not in profile.provider_names():
        return Check("TensorRT ops", "pass", f"{len(used)} op types; the profile runs no TensorRT")
    if not profile.software.tensorrt:
        return Check(
            "TensorRT ops",
            "warn",
            f"{profile.name} names no TensorRT version: "
            f"{len(used)} op types not checked (set software.tensorrt)",
        )
    table = tensorrt_ops(profile.software.tensorrt)
    if table is None:
        return Check(
            "TensorRT ops",
            "warn",
            f"no op table for TensorRT {profile.software.tensorrt}: ops not checked",
        )
    version, supported, source = table
    parser = f"TensorRT {version}'s ONNX parser"
    if version != profile.software.tensorrt:
        parser += f" (the newest op table at or below {profile.software.tensorrt})"
    missing = [op for op in used if op not in supported]
    if missing:
        return Check(
            "TensorRT ops",
            "warn",
            f"{len(missing)} of {len(used)} op types are not in {parser} and fall back to "
            f"CUDA/CPU (source: {source})",
            missing,
        )
    return Check(
        "TensorRT ops", "pass", f"all {len(used)} op types are in {parser} (source: {source})"
    )


def _dynamic_dims(proto: Any, profile: HardwareProfile) -> Check:
    initializers = {i.name for i in proto.graph.initializer}
    dynamic = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        free = [d.dim_param or "?" for d in dims if not d.HasField("dim_value")]
        if free:
            dynamic.append(f"{value.name}: {', '.join(free)}")
    if not dynamic:
        return Check("dynamic dims", "pass", "every input shape is fixed")
    uses_trt = "TensorrtExecutionProvider" in profile.provider_names()
    return Check(
        "dynamic dims",
        "warn" if uses_trt else "pass",
        "dynamic input dimensions: TensorRT needs shape profiles "
        "(trt_profile_min_shapes / opt / max) or builds an engine per shape"
        if uses_trt
        else "dynamic input dimensions (fine without TensorRT)",
        dynamic,
    )


def _memory(proto: Any) -> tuple[int, int]:
    """Parameter bytes, and an activation estimate: every tensor at batch 1 at once."""
    onnx = _onnx()
    params = sum(
        int(np.prod(i.dims, dtype=np.int64)) * _itemsize(onnx, i.data_type)
        for i in proto.graph.initializer
    )
    activations = 0
    for value in list(proto.graph.value_info) + list(proto.graph.output):
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        size = 1
        for d in tensor.shape.dim:
            size *= d.dim_value if d.HasField("dim_value") else 1
        activations += size * _itemsize(onnx, tensor.elem_type)
    return params, activations


def _budget(params: int, activations: int, profile: HardwareProfile) -> Check:
    total_mb = (params + activations) / 2**20
    text = (
        f"parameters {_size(params)} + activations about {_size(activations)} (batch 1) "
        f"= {_size(params + activations)}"
    )
    budget = profile.budgets.model_memory_mb
    if budget is None:
        return Check("memory", "pass", text + f"; {profile.name} sets no budget")
    if total_mb > budget:
        return Check("memory", "fail", text + f", over the {budget:g} MB budget of {profile.name}")
    return Check("memory", "pass", text + f", within the {budget:g} MB budget")


def _compute(proto: Any, profile: HardwareProfile) -> Check:
    shapes = _shapes(proto)
    macs = 0
    for node in proto.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) >= 2:
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a and b:
                trans_b = any(x.name == "transB" and x.i for x in node.attribute)
                rows = math.prod(a[:-1]) if len(a) > 1 else 1
                macs += rows * a[-1] * (b[0] if trans_b and len(b) == 2 else b[-1])
        elif node.op_type == "Conv" and len(node.input) >= 2:
            w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
            if w and y:
                macs += math.prod(y) * math.prod(w[1:])
    flops = 2 * macs
    peak = profile.throughput.fp16_tflops
    line = (
        f"about {macs:,} MACs ({flops:,} FLOP) in MatMul, Gemm and Conv per "
        "batch-1 inference (other ops not counted)"
    )
    if peak:
        line += (
            f"; at {profile.name}'s peak {peak:g} FP16 TFLOPS that is at least "
            f"{_seconds(flops / (peak * 1e12))} (real runs take longer)"
        )
    elif profile.throughput.int8_tops:
        tops = profile.throughput.int8_tops
        line += (
            f"; at {profile.name}'s peak {tops:g} INT8 TOPS"
            f"{' (sparse)' if profile.throughput.int8_tops_sparse else ''} that is at least "
            f"{_seconds(flops / (tops * 1e12))} (a bound, not a prediction)"
        )
    return Check("compute", "info", line)


def _seconds(value: float) -> str:
    """A duration with three significant digits in a unit that suits it: a tiny
    model's bound reads 0.955 ps, not 0.000 µs."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-12:.3g} ps"


def _host_latency(model_file: Path) -> Check:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # its reason goes on the line, not to the console
    try:
        session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # an op or opset this ONNX Runtime cannot run
        return Check(
            "host latency",
            "fail",
            f"ONNX Runtime {ort.__version__} cannot load it: {_first_line(exc)} (fix: export "
            "with an opset and operators this ONNX Runtime supports, or upgrade it)",
        )
    feed = {t.name: zeros_for(t) for t in specs_of_session(session.get_inputs())}
    try:
        session.run(None, feed)
    except Exception as exc:  # shape inputs, strings: zeros are no valid input
        return Check(
            "host latency",
            "warn",
            f"not timed: the model does not run on zero inputs ({_first_line(exc)}); "
            "it may still run on real ones (the model node checks on its first input)",
        )
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e6)
    return Check(
        "host latency",
        "info",
        f"this host, CPU provider, batch 1: p50 "
        f"{np.percentile(times, 50):.1f} µs, p99 {np.percentile(times, 99):.1f} µs",
    )


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _shapes(proto: Any) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for i in proto.graph.initializer:
        shapes[i.name] = list(i.dims)
    for value in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = [
                d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim
            ]
    return shapes


def _itemsize(onnx: Any, elem_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:
        return 4
