"""Where an export's model and example inputs come from on the command line:
``package.module:factory``, a weights-only checkpoint, and ``NAME=SHAPE`` examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.exporters.onnx_export import ExportError, _first_line, _torch


def load_factory(path: str, *, checkpoint: str | Path | None = None) -> Any:
    """The torch module at ``package.module:name`` (a module object, or a function or
    class called with no arguments), with a checkpoint's weights loaded if given.

    Raises:
        ExportError: the path does not import, or does not give a torch.nn.Module.
    """
    import importlib

    torch = _torch()
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ExportError(f"'{path}' is not MODULE:NAME", fix="e.g. mypkg.policies:make_policy")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except ImportError as exc:
        raise ExportError(
            f"cannot import {module_name}: {exc}",
            fix="check the module path and that its package is installed",
        ) from None
    except AttributeError:
        raise ExportError(f"{module_name} has no '{attribute}'", fix="check the name") from None
    model = target if isinstance(target, torch.nn.Module) else target()
    if not isinstance(model, torch.nn.Module):
        raise ExportError(
            f"{path} gave {type(model).__name__}, not a torch.nn.Module",
            fix="point at a module or a function that returns one",
        )
    if checkpoint is not None:
        try:  # weights only: a checkpoint never runs code on load
            state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
            model.load_state_dict(
                state.get("state_dict", state) if isinstance(state, dict) else state
            )
        except Exception as exc:
            raise ExportError(
                f"cannot load weights from {checkpoint}: {_first_line(exc)}",
                fix="save it with torch.save(model.state_dict(), path)",
            ) from None
    return model


def sample_inputs(specs: list[str]) -> tuple[list[str], tuple[Any, ...]]:
    """Names and random float32 example tensors from ``NAME=SHAPE`` strings (``obs=1x3``).

    Raises:
        ExportError: a spec that is not NAME=SHAPE.
    """
    torch = _torch()
    generator = torch.Generator().manual_seed(0)
    names, samples = [], []
    for spec in specs:
        name, _, shape = spec.partition("=")
        try:
            dims = [int(d) for d in shape.lower().split("x")]
            if not name or any(d <= 0 for d in dims):
                raise ValueError
        except ValueError:
            raise ExportError(f"--input '{spec}' is not NAME=SHAPE", fix="e.g. obs=1x3") from None
        names.append(name)
        samples.append(torch.randn(dims, generator=generator))
    return names, tuple(samples)
