"""Exporting a spiking network as one explicit-state step, for boards without torch.

The network's step ``(x, *state) -> (out, *new_state)`` becomes an ONNX bundle
whose manifest pairs each state input with its output (shape, initial value),
so the ``onnx.model`` node carries the state across ticks. The export goes
through :func:`~edgeloop.exporters.onnx_export.export_bundle`: parity-checked
against torch, and refused for a network that hides its state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.exporters.onnx_export import ExportResult, export_bundle
from edgeloop.runtime.spiking import refuse_hidden_state


def export_spiking(
    network: Any,
    sample_input: Any,
    folder: str | Path,
    *,
    input_name: str = "x",
    output_name: str = "out",
    profile: str | None = None,
    overwrite: bool = True,
) -> ExportResult:
    """Export one step of ``network`` (``sample_input`` batch-first, e.g. 1 x 3).

    Raises:
        EdgeloopError: the network hides its state (``init_hidden=True``).
        ExportError: the export fails or torch and ONNX Runtime disagree.
    """
    refuse_hidden_state(network, "export")
    state = tuple(network.initial_state(int(sample_input.shape[0])))
    names = list(network.state_names)
    return export_bundle(
        network,
        (sample_input, *state),
        folder,
        input_names=[input_name, *names],
        output_names=[output_name, *(f"{n}_out" for n in names)],
        profile=profile,
        state={n: f"{n}_out" for n in names},
        overwrite=overwrite,
    )
