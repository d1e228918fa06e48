"""torch.nn.Module -> ONNX bundle, at an opset the target profile accepts, checked for parity.

The bundle is a folder with ``model.onnx`` and ``manifest.json`` (see
:mod:`edgeloop.runtime.bundles`), which the ``onnx.model`` node runs on a board
that has no torch. torch, onnx and onnxscript (the ``train`` extra) are
imported only when exporting.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import edgeloop
from edgeloop.exporters.parity import Parity, check_parity
from edgeloop.runtime.bundles import (
    BundleManifest,
    StatePair,
    TensorSpec,
    sha256_of,
    write_manifest,
)
from edgeloop.runtime.errors import ExportError, MissingDependencyError
from edgeloop.runtime.profiles import HardwareProfile, load_profile

if TYPE_CHECKING:
    import torch

DEFAULT_OPSET = 18
"""Opset when the profile sets no limit: what current torch exports by default."""


@dataclass
class ExportResult:
    """What :func:`export_bundle` made."""

    bundle: Path
    manifest: BundleManifest
    parity: Parity
    warnings: list[str] = field(default_factory=list)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "train", "exporting a model") from None
    return torch


def choose_opset(profile: HardwareProfile | None, requested: int | None) -> int:
    """The opset to export at: the request, else the profile's limit capped at the
    default, never above the limit.

    Raises:
        ExportError: the request is above the profile's limit.
    """
    limit = profile.software.max_onnx_opset if profile is not None else None
    if requested is not None:
        if limit is not None and requested > limit:
            raise ExportError(
                f"opset {requested} is above {profile.name}'s limit of {limit} (its TensorRT "
                f"{profile.software.tensorrt} parses no newer)",
                fix=f"--opset {limit} or lower",
            )
        return requested
    return min(DEFAULT_OPSET, limit) if limit is not None else DEFAULT_OPSET


def export_bundle(
    module: torch.nn.Module,
    sample_inputs: tuple[torch.Tensor, ...],
    output_dir: str | Path,
    *,
    input_names: list[str],
    output_names: list[str],
    profile: str | HardwareProfile | None = None,
    opset: int | None = None,
    dynamic_batch: bool = True,
    tolerance: float = 1e-4,
    fp16: bool = False,
    fp16_tolerance: float = 1e-2,
    random_cases: int = 8,
    constants: dict[str, Any] | None = None,
    overwrite: bool = False,
    state: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``module`` to an ONNX bundle and check ONNX Runtime against torch.

    Args:
        module: The model; put in eval mode for the export.
        sample_inputs: One example per model input (batch first when ``dynamic_batch``).
        output_dir: The bundle folder to create.
        input_names: Names of the model inputs (become the model node's ports).
        output_names: Names of the model outputs.
        profile: Target hardware profile (name, file or object); sets the opset limit.
        opset: Opset to export at (default: see :func:`choose_opset`).
        dynamic_batch: Make the first dimension of every input and output dynamic.
        tolerance: Largest absolute difference allowed between torch and ONNX Runtime.
        fp16: Also write an fp16 variant (``model_fp16.onnx``; inputs and outputs stay
            fp32) with its own parity figures.
        fp16_tolerance: Largest difference allowed for the fp16 variant.
        random_cases: Random inputs checked besides the samples (batch sizes 1 and 3).
        constants: Pre/post-processing constants recorded in the manifest.
        overwrite: Replace an existing bundle folder.
        state: State input name -> state output name, for a model exported as one
            step ``(inputs..., state...) -> (outputs..., new_state...)``: the
            manifest pairs them (shape from the sample, initial value 0), and the
            model node carries the state across ticks instead of making ports.

    Raises:
        ExportError: the export fails, or parity is above ``tolerance``.
        MissingDependencyError: torch, onnx or onnxscript is not installed.
    """
    _torch()
    target = load_profile(profile) if isinstance(profile, (str, Path)) else profile
    opset = choose_opset(target, opset)
    if len(input_names) != len(sample_inputs):
        raise ExportError(
            f"{len(sample_inputs)} sample inputs but {len(input_names)} input names",
            fix="name every input",
        )
    if dynamic_batch and any(s.dim() < 2 for s in sample_inputs):
        raise ExportError(
            "a dynamic batch needs every example to have the batch first and at least one "
            "more dimension",
            fix="e.g. obs=1x3, or export with a static batch",
        )
    for state_in, state_out in (state or {}).items():
        if state_in not in input_names or state_out not in output_names:
            raise ExportError(
                f"state pairs '{state_in}' -> '{state_out}', but the inputs are {input_names} "
                f"and the outputs {output_names}",
                fix="name a state input and its output",
            )
    final = Path(output_dir)
    _check_target_folder(final, overwrite)
    # Build beside the target and move it in at the end: a failed export leaves nothing.
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    except OSError as exc:
        raise ExportError(
            f"cannot create {final}: {exc.strerror}", fix="choose a writable folder"
        ) from None
    try:
        result = _export_into(
            work,
            final,
            module,
            sample_inputs,
            input_names,
            output_names,
            target,
            opset,
            dynamic_batch,
            tolerance,
            fp16,
            fp16_tolerance,
            random_cases,
            constants,
            state or {},
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    result.bundle = final
    return result


def _check_target_folder(folder: Path, overwrite: bool) -> None:
    if not folder.exists():
        return
    if not overwrite:
        raise ExportError(f"{folder} exists", fix="choose another folder, or overwrite")
    if not folder.is_dir() or (any(folder.iterdir()) and not (folder / "manifest.json").exists()):
        raise ExportError(
            f"{folder} is not a bundle: overwriting would delete other files",
            fix="choose another folder",
        )


def _export_into(
    folder: Path,
    final: Path,
    module: Any,
    sample_inputs: tuple[Any, ...],
    input_names: list[str],
    output_names: list[str],
    target: HardwareProfile | None,
    opset: int,
    dynamic_batch: bool,
    tolerance: float,
    fp16: bool,
    fp16_tolerance: float,
    random_cases: int,
    constants: dict[str, Any] | None,
    state: dict[str, str],
) -> ExportResult:
    torch = _torch()
    model_path = folder / "model.onnx"
    module = module.eval()
    _check_outputs(torch, module, sample_inputs, output_names)
    notes = _export(
        torch, module, sample_inputs, model_path, input_names, output_names, opset, dynamic_batch
    )
    written = _opset_of(model_path)
    if written != opset:  # torch's version converter can fail quietly and keep its own
        raise ExportError(
            f"torch wrote opset {written}, not the {opset} asked for (its version converter "
            f"could not lower some op)",
            fix=f"export at opset {written} for a profile that "
            "allows it, or replace the op that needs the newer opset",
        )
    parity = check_parity(
        module,
        model_path,
        sample_inputs,
        input_names,
        output_names,
        tolerance=tolerance,
        random_cases=random_cases,
        dynamic_batch=dynamic_batch,
    )
    if not parity.passed:
        raise ExportError(
            f"ONNX Runtime differs from torch by up to {parity.max_abs_error:.3g} "
            f"(relative {parity.max_rel_error:.3g}) over {parity.cases} inputs, above the "
            f"tolerance {tolerance:g}",
            fix="look for ops that export inexactly, or raise the "
            "tolerance if the difference is acceptable",
        )
    files = {model_path.name: sha256_of(model_path)}
    # Real example inputs beside the model: the model node checks providers on them.
    import numpy as np

    examples = {
        name: sample.detach().cpu().numpy()
        for name, sample in zip(input_names, sample_inputs, strict=True)
        if name not in (state or {})
    }
    np.savez(folder / SAMPLES, **examples)
    files[SAMPLES] = sha256_of(folder / SAMPLES)
    parity_figures: dict[str, Any] = {
        "max_abs_error": parity.max_abs_error,
        "max_rel_error": parity.max_rel_error,
        "cases": parity.cases,
        "tolerance": tolerance,
    }
    variants = {}
    if fp16:
        half_path = _fp16_variant(model_path)
        half = check_parity(
            module,
            half_path,
            sample_inputs,
            input_names,
            output_names,
            tolerance=fp16_tolerance,
            random_cases=random_cases,
            dynamic_batch=dynamic_batch,
        )
        if not half.passed:
            raise ExportError(
                f"the fp16 variant differs from torch by up to {half.max_abs_error:.3g}, above "
                f"{fp16_tolerance:g}",
                fix="export without fp16, or raise its tolerance",
            )
        variants["fp16"] = half_path.name
        files[half_path.name] = sha256_of(half_path)
        parity_figures["fp16"] = {
            "max_abs_error": half.max_abs_error,
            "max_rel_error": half.max_rel_error,
            "cases": half.cases,
            "tolerance": fp16_tolerance,
        }
    checked = None
    if target is not None:
        from edgeloop.exporters.precheck import precheck

        checked = precheck(model_path, target, measure=False).to_dict()
    manifest = BundleManifest(
        edgeloop_version=edgeloop.__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=model_path.name,
        variants=variants,
        profile=target.name if target is not None else None,
        opset=opset,
        inputs=_specs(model_path, "input"),
        outputs=_specs(model_path, "output"),
        constants=dict(constants or {}),
        files=files,
        samples=SAMPLES,
        parity=parity_figures,
        precheck=checked or {},
        state=[
            StatePair(
                input=state_in,
                output=state_out,
                shape=[1, *sample_inputs[input_names.index(state_in)].shape[1:]],
            )
            for state_in, state_out in state.items()
        ],
    )
    write_manifest(folder, manifest)
    return ExportResult(folder, manifest, parity, notes)


def _fp16_variant(model_path: Path) -> Path:
    """An fp16 copy of the model beside it, with fp32 inputs and outputs kept."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingDependencyError("onnxconverter-common", "train", "an fp16 export") from None
    half = float16.convert_float_to_float16(onnx.load(str(model_path)), keep_io_types=True)
    path = model_path.with_name(model_path.stem + "_fp16.onnx")
    onnx.save(half, str(path))
    return path


SAMPLES = "samples.npz"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException) -> str:
    """The most telling line of an error: torch's export errors wrap the cause in a
    banner, so prefer the cause; colour codes removed."""
    while exc.__cause__ is not None and "torch.export" in str(exc):
        exc = exc.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Failed to export", "This is step"))]
    return (useful or lines or [type(exc).__name__])[0][:300]


def _export(
    torch: Any,
    module: Any,
    samples: tuple[Any, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    opset: int,
    dynamic_batch: bool,
) -> list[str]:
    """torch.onnx.export through the torch.export-based (dynamo) path torch recommends."""
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic_shapes = tuple({0: batch} for _ in samples)
        # torch.export fixes a dimension whose example size is 1: trace with two.
        samples = tuple(torch.cat([s, s]) if s.shape and s.shape[0] == 1 else s for s in samples)
    said = io.StringIO()
    # Their progress notes would flood the console; what matters is in the result.
    quiet = [
        logging.getLogger(name)
        for name in (
            "torch.onnx",
            "onnxscript",
            "torch.export",
            "torch._subclasses",
            "torch._dynamo",
        )
    ]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(said):
            warnings.simplefilter("always")
            program = torch.onnx.export(
                module,
                tuple(samples),
                input_names=input_names,
                output_names=output_names,
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
            program.save(str(path))
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            exc.name or "onnxscript", "train", "exporting a model"
        ) from None
    except Exception as exc:
        reason = _first_line(exc)
        raise ExportError(
            f"torch could not export the model at opset {opset}: {reason}",
            fix="see the torch.export docs for the construct it names",
        ) from None
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return [str(w.message).splitlines()[0] for w in caught][:5]


def _check_outputs(torch: Any, module: Any, samples: tuple[Any, ...], names: list[str]) -> None:
    """Refuse, before exporting, a model whose outputs the bundle cannot name."""
    try:
        with torch.no_grad():
            out = module(*samples)
    except Exception as exc:
        raise ExportError(
            f"the model raised on the example inputs: {type(exc).__name__}: {_first_line(exc)}",
            fix="check --input shapes",
        ) from None
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if not all(isinstance(o, torch.Tensor) for o in outs):
        kinds = ", ".join(type(o).__name__ for o in outs)
        raise ExportError(
            f"the model returns {type(out).__name__} ({kinds}); an exported model "
            "returns a tensor or a flat tuple of tensors",
            fix="wrap it so it does",
        )
    if len(outs) != len(names):
        raise ExportError(
            f"the model returns {len(outs)} output(s) but {len(names)} output "
            f"name(s) were given: {', '.join(names)}",
            fix="name each output once",
        )


def _opset_of(model_path: Path) -> int | None:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _specs(model_path: Path, kind: str) -> list[TensorSpec]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    values = model.graph.input if kind == "input" else model.graph.output
    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for v in values:
        if v.name in initializers:
            continue
        tensor = v.type.tensor_type
        specs.append(
            TensorSpec(
                name=v.name,
                dtype=onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                shape=[
                    d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                    for d in tensor.shape.dim
                ],
            )
        )
    return specs
