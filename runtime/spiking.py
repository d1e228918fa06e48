"""Spiking networks in a loop: the explicit-state rule and the energy count.

Shared by the ``snn.torch`` node and the exporter; it imports no torch (it
walks modules and counts tensors it is handed).

Energy: a synaptic operation (SynOp) is one spike reaching one synapse, an
accumulate; a non-spiking network does a multiply-accumulate (MAC) per synapse
per step. At 45 nm an accumulate costs about 0.9 pJ and a 32-bit float MAC
about 4.6 pJ (M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014), the figures spiking-network papers use; both are configurable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edgeloop.runtime.errors import ModelError

PJ_PER_AC = 0.9
PJ_PER_MAC = 4.6


def refuse_hidden_state(module: Any, where: str) -> None:
    """Raise if any neuron keeps its state inside the module (``init_hidden=True``):
    such a network loses its state when exported and shares snntorch's
    class-level state lists with every other network in the process."""
    for name, sub in module.named_modules():
        if getattr(sub, "init_hidden", False):
            raise ModelError(
                f"layer '{name or type(sub).__name__}' ({type(sub).__name__}) is built "
                "with init_hidden=True, which hides its state",
                fix="build it with init_hidden=False, keep the state yourself, e.g. spk, "
                "mem = lif(cur, mem), and write the step as forward(x, *state) -> "
                "(out, *new_state) with initial_state(batch) and state_names",
                where=where,
            )


class SpikeEnergyMeter:
    """Counts, per step, spikes per spiking layer and the synaptic operations and
    MACs of every linear and convolution layer, through forward hooks.

    A layer whose input is all zeros and ones is fed spikes: it costs one
    accumulate per spike per synapse it reaches (its MACs times the share of
    inputs that spiked). A layer fed real values
    (the first, usually) costs MACs, as a non-spiking network would everywhere.
    """

    def __init__(self, module: Any, pj_per_ac: float = PJ_PER_AC, pj_per_mac: float = PJ_PER_MAC):
        self.pj_per_ac, self.pj_per_mac = pj_per_ac, pj_per_mac
        self.spikes: dict[str, int] = {}
        self.neurons: dict[str, int] = {}
        self.synops = 0
        self.real_macs = 0  # MACs of layers fed real values
        self.ann_macs = 0  # what a non-spiking network of the same shape would do
        self.steps = 0
        self._handles = []
        for name, sub in module.named_modules():
            kind = type(sub).__name__
            if kind in ("Linear", "Conv1d", "Conv2d"):
                self._handles.append(sub.register_forward_hook(self._synapses(name)))
            elif hasattr(sub, "reset_mechanism") or kind in ("Leaky", "Synaptic", "RLeaky"):
                self.spikes[name] = 0
                self._handles.append(sub.register_forward_hook(self._neurons(name)))

    def _synapses(self, name: str) -> Any:
        def hook(layer: Any, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0]
            batch = x.shape[0] if x.dim() > _sample_dims(layer) else 1
            dense = _macs(layer, output) // batch  # MACs for one sample
            self.ann_macs += dense
            if bool(((x == 0) | (x == 1)).all()):
                # each spike costs the accumulates of the synapses it reaches
                share = float((x != 0).sum()) / max(1, x.numel())
                self.synops += round(dense * share)
            else:
                self.real_macs += dense

        return hook

    def _neurons(self, name: str) -> Any:
        def hook(layer: Any, inputs: tuple[Any, ...], output: Any) -> None:
            spk = output[0] if isinstance(output, tuple) else output
            self.spikes[name] += int((spk[0] != 0).sum())
            self.neurons[name] = int(spk[0].numel())

        return hook

    def step_done(self) -> None:
        self.steps += 1

    def energy_pj(self) -> float:
        return self.synops * self.pj_per_ac + self.real_macs * self.pj_per_mac

    def summary(self) -> dict[str, Any]:
        """Per run: spikes and firing rate per layer, SynOps, MACs, energy (pJ)."""
        steps = max(1, self.steps)
        return {
            "steps": self.steps,
            "spikes": dict(self.spikes),
            "firing_rate": {
                k: self.spikes[k] / (steps * self.neurons[k])
                for k in self.spikes
                if self.neurons.get(k)
            },
            "synops": self.synops,
            "real_macs": self.real_macs,
            "ann_macs": self.ann_macs,
            "energy_pj": self.energy_pj(),
            "ann_energy_pj": self.ann_macs * self.pj_per_mac,
            "pj_per_ac": self.pj_per_ac,
            "pj_per_mac": self.pj_per_mac,
        }

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _sample_dims(layer: Any) -> int:
    """Dimensions of one unbatched sample the layer takes."""
    if hasattr(layer, "in_features"):
        return 1
    return 1 + len(tuple(_as_iterable(layer.kernel_size)))  # channels + spatial


def _macs(layer: Any, output: Any) -> int:
    """Multiply-accumulates of the call: each output element of a linear layer sums
    ``in_features`` products; of a convolution, ``in_channels / groups`` times
    the kernel area."""
    if hasattr(layer, "in_features"):
        return int(output.numel()) * int(layer.in_features)
    kernel = 1
    for k in _as_iterable(layer.kernel_size):
        kernel *= int(k)
    return int(output.numel()) * int(layer.in_channels) // int(layer.groups) * kernel


def _as_iterable(value: Any) -> Iterable[Any]:
    return value if isinstance(value, (tuple, list)) else (value,)
