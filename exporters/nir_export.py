"""Export a spiking network to NIR, the neuromorphic intermediate representation.

NIR (the ``nir`` package) is what Lava-DL (Loihi), SpiNNaker2, Xylo (rockpool),
Speck (sinabs) and other toolchains read. :func:`export_nir` maps a sequential
explicit-state network, its children in forward order, layer by layer:

- ``Linear`` -> ``nir.Affine`` (weight, bias);
- snntorch ``Leaky`` -> ``nir.LIF`` with snntorch's own conventions: a step of
  ``dt`` (1e-4), ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``, and
  the threshold, each per neuron. NIR's LIF resets to zero at once, so a Leaky
  layer must be built with ``reset_mechanism="zero", reset_delay=False``; any
  other reset is refused rather than exported to behave differently.

snntorch's ``export_to_nir`` traces only networks that hide their state, and
fails type inference with nir 1.0.8 and nirtorch 2.6. So the mapping is written
here for the explicit-state form, and checked by a round trip: write, read back,
compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.errors import ExportError, MissingDependencyError

DT = 1e-4


def _nir() -> Any:
    try:
        import nir
    except ImportError:
        raise MissingDependencyError("nir", "train", "NIR export") from None
    return nir


def to_nir_graph(network: Any, n_inputs: int) -> Any:
    """The network as a ``nir.NIRGraph``: input -> layers in order -> output.

    The layers must be defined in the order ``forward`` runs them (each linear
    layer's inputs must match the width before it).

    Raises:
        EdgeloopError: a layer NIR export does not cover, a chain that does not fit.
    """
    nir = _nir()
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([n_inputs]))}
    edges = []
    previous, width = "input", n_inputs
    if not list(network.named_children()):
        raise ExportError("NIR export: the network has no layers")
    for name, layer in network.named_children():
        kind = type(layer).__name__
        if kind == "Linear":
            if layer.in_features != width:  # children listed out of forward order, or a
                raise ExportError(  # wrong n_inputs: either way not a chain we can map
                    f"NIR export: layer '{name}' takes {layer.in_features} inputs where "
                    f"{width} come",
                    fix="define the layers in the order forward runs them, "
                    "and pass the network's input size",
                )
            weight = layer.weight.detach().numpy().astype(np.float32)
            bias = (
                layer.bias.detach().numpy().astype(np.float32)
                if layer.bias is not None
                else np.zeros(weight.shape[0], np.float32)
            )
            nodes[name] = nir.Affine(weight=weight, bias=bias)
            width = weight.shape[0]
        elif kind == "Leaky":
            if layer.reset_mechanism != "zero" or getattr(layer, "reset_delay", False):
                raise ExportError(
                    f"NIR export: layer '{name}' resets by '{layer.reset_mechanism}'"
                    f"{' with a delay' if getattr(layer, 'reset_delay', False) else ''}; NIR's "
                    "LIF resets to zero at once, so it would run differently on a "
                    "neuromorphic toolchain",
                    fix="build it with reset_mechanism='zero', reset_delay=False",
                )
            beta = np.clip(np.broadcast_to(layer.beta.detach().numpy(), (width,)), 0, 1)
            if np.any(beta >= 1):  # an integrate-and-fire neuron: no finite time constant
                raise ExportError(
                    f"NIR export: layer '{name}' has beta 1 (no leak), which NIR's LIF cannot "
                    "express",
                    fix="beta < 1",
                )
            beta = beta.astype(np.float32)
            threshold = np.broadcast_to(
                np.asarray(layer.threshold.detach().numpy()), (width,)
            ).astype(np.float32)
            tau = DT / (1 - beta)
            nodes[name] = nir.LIF(
                tau=tau, r=tau / DT, v_leak=np.zeros(width, np.float32), v_threshold=threshold
            )
        else:
            raise ExportError(
                f"NIR export: layer '{name}' is a {kind}; covered are Linear and Leaky",
                fix="export a sequential network of those",
            )
        edges.append((previous, name))
        previous = name
    nodes["output"] = nir.Output(output_type=np.array([width]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def export_nir(network: Any, n_inputs: int, path: str | Path) -> Any:
    """Write the network to ``path`` (NIR's HDF5 file); return the graph."""
    nir = _nir()
    graph = to_nir_graph(network, n_inputs)
    nir.write(str(path), graph)
    return graph
