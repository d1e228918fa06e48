"""An int8 variant of a bundle's model, calibrated on the user's own data.

ONNX Runtime's static quantization in QDQ format with **symmetric** activations
and weights (TensorRT refuses activation zero points other than 0), calibrated on
real inputs: arrays (``.npy``/``.npz`` files, or a folder of them) or an edgeloop
recording of the model's input port. A share of the data is held out: the
variant is compared with the fp32 model on it (never on the calibration data),
and timed against it on one CPU thread. The manifest records both, and a model
node runs the variant with ``variant: int8``.

int8 is not faster everywhere: on a CPU without int8 dot-product instructions a
small network can run slower (the figures say so); TensorRT and the Jetson's DLA
are where it pays.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.bundles import (
    TensorSpec,
    read_manifest,
    sha256_of,
    verify_bundle,
    write_manifest,
)
from edgeloop.runtime.errors import ExportError, MissingDependencyError

INT8_FILE = "model_int8.onnx"
TIMED_RUNS = 200


def calibration_inputs(
    data: str | Path, inputs: list[TensorSpec], topic: str | None = None
) -> list[dict[str, np.ndarray]]:
    """One feed (batch 1) per example in ``data``.

    ``data`` is a ``.npy`` file (examples stacked on the first axis; a model with
    one input), an ``.npz`` file (one stacked array per input name), a folder of
    such files (each one example or a stack), or an ``.mcap`` recording with
    ``topic`` the model's input port (``/node/port``).

    Raises:
        ExportError: no examples, or examples that do not fit the model's inputs.
    """
    data = Path(data)
    names = [t.name for t in inputs]
    if data.suffix == ".mcap":
        if topic is None:
            raise ExportError(
                f"{data} is a recording: say which topic holds the model's input",
                fix="--calibrate-topic /camera/image (the port that feeds the model)",
            )
        if len(names) != 1:
            raise ExportError(f"a recording feeds a model with one input; this one has {names}")
        from edgeloop.runtime.recording import read_recording

        stacks = [
            {names[0]: np.asarray(m["value"])}
            for t, _, m in read_recording(data)
            if t == topic and isinstance(m["value"], np.ndarray)
        ]
    elif data.is_dir():
        stacks = [_load(f, names) for f in sorted(data.iterdir()) if f.suffix in (".npy", ".npz")]
    elif data.suffix in (".npy", ".npz"):
        stacks = [_load(data, names)]
    else:
        raise ExportError(
            f"{data}: calibration data is a .npy or .npz file, a folder of them, or a "
            ".mcap recording",
        )
    feeds = [feed for stack in stacks for feed in _examples(stack, inputs, data)]
    if not feeds:
        raise ExportError(f"{data} holds no examples for {', '.join(names)}")
    return feeds


def _load(file: Path, names: list[str]) -> dict[str, np.ndarray]:
    try:
        found = np.load(file, allow_pickle=False)
        if isinstance(found, np.ndarray):
            if len(names) != 1:
                raise ExportError(
                    f"{file} is one array; the model has inputs {names}: use an .npz "
                    "with an array per input"
                )
            return {names[0]: found}
        with found:
            return {name: found[name] for name in found.files}
    except (OSError, ValueError) as exc:
        raise ExportError(f"{file} is not a readable .npy/.npz file: {exc}") from None


def _examples(
    stack: dict[str, np.ndarray], inputs: list[TensorSpec], where: Path
) -> list[dict[str, np.ndarray]]:
    """A stack of examples (or one example) split into batch-1 feeds."""
    count = None
    arrays = {}
    for t in inputs:
        if t.name not in stack:
            raise ExportError(f"{where} has no examples for the model input '{t.name}'")
        array = np.asarray(stack[t.name], dtype=t.dtype)
        if array.ndim == len(t.shape) - 1:  # one example without its batch dimension
            array = array[None]
        if array.ndim != len(t.shape) or any(
            isinstance(want, int) and got != want
            for got, want in zip(array.shape[1:], t.shape[1:], strict=True)
        ):
            raise ExportError(
                f"{where}: examples for '{t.name}' have shape {array.shape}; the model "
                f"wants {tuple(t.shape)}"
            )
        arrays[t.name] = array
        count = len(array) if count is None else min(count, len(array))
    return [{name: a[k : k + 1] for name, a in arrays.items()} for k in range(count or 0)]


def add_int8_variant(
    bundle: str | Path,
    data: str | Path,
    *,
    topic: str | None = None,
    held_out: float = 0.2,
) -> dict[str, Any]:
    """Write ``model_int8.onnx`` into ``bundle``, calibrated on ``data`` less its last
    ``held_out`` share, and record how it compares on that share.

    Returns:
        The figures the manifest records under ``parity["int8"]``.

    Raises:
        ExportError: too few examples, or quantization fails.
        MissingDependencyError: ``onnx`` is missing (ONNX Runtime's quantizer needs it).
    """
    try:
        import onnx  # noqa: F401
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise MissingDependencyError("onnx", "train", "an int8 variant") from None
    folder = Path(bundle)
    manifest = read_manifest(folder)
    verify_bundle(folder, manifest)
    state = {p.input for p in manifest.state}
    if state:
        raise ExportError("an int8 variant of a model with state is not supported yet")
    feeds = calibration_inputs(data, manifest.inputs, topic)
    held = max(1, round(len(feeds) * held_out))
    if len(feeds) - held < 1:
        raise ExportError(
            f"{data} has {len(feeds)} example(s): at least 2 are needed (one to calibrate, "
            "one held out to check the variant)"
        )
    calibrate, check = feeds[:-held], feeds[-held:]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(calibrate)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    prepared = folder / "model_int8_prepared.onnx"
    try:
        # Shapes inferred and the graph folded first, as ONNX Runtime's quantizer asks.
        quant_pre_process(str(folder / manifest.model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(folder / INT8_FILE),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # TensorRT takes symmetric int8 only: zero points of 0 everywhere.
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
    except Exception as exc:
        raise ExportError(f"ONNX Runtime could not quantize the model: {exc}") from None
    finally:
        prepared.unlink(missing_ok=True)
    figures = compare(folder / manifest.model, folder / INT8_FILE, check)
    figures.update(calibration=len(calibrate), format="QDQ, symmetric int8, per channel")
    manifest.variants["int8"] = INT8_FILE
    manifest.files[INT8_FILE] = sha256_of(folder / INT8_FILE)
    manifest.parity["int8"] = figures
    write_manifest(folder, manifest)
    return figures


def compare(fp32: Path, int8: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Output differences of ``int8`` from ``fp32`` on ``feeds``, and their speeds (p50
    on one CPU thread, alternating)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    sessions = [
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for path in (fp32, int8)
    ]
    errors = []
    for feed in feeds:
        reference, quantized = (s.run(None, feed) for s in sessions)
        for a, b in zip(reference, quantized, strict=True):
            if np.issubdtype(np.asarray(a).dtype, np.floating):
                errors.append(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
    flat = np.concatenate([e.ravel() for e in errors]) if errors else np.zeros(1)
    times: list[list[float]] = [[], []]
    feed = feeds[0]
    for _ in range(TIMED_RUNS):
        for k, session in enumerate(sessions):
            start = time.perf_counter_ns()
            session.run(None, feed)
            times[k].append(time.perf_counter_ns() - start)
    fp32_us, int8_us = (float(np.median(t)) / 1e3 for t in times)
    return {
        "held_out": len(feeds),
        "max_abs_error": float(flat.max()),
        "mean_abs_error": float(flat.mean()),
        "fp32_p50_us": fp32_us,
        "int8_p50_us": int8_us,
        "speedup": fp32_us / int8_us,
    }
