"""Small spiking networks for the tests, built with explicit state (or, to test
the refusal, without)."""

from __future__ import annotations

from typing import Any


def tiny(
    n_in: int = 3,
    hidden: int = 16,
    n_out: int = 2,
    init_hidden: bool = False,
    seed: int = 0,
    reset: str = "subtract",
) -> Any:
    import snntorch as snn
    import torch
    from torch import nn

    class TinySnn(nn.Module):
        state_names = ("mem1", "mem2")

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.fc1 = nn.Linear(n_in, hidden)
            zero = {"reset_mechanism": "zero", "reset_delay": False} if reset == "zero" else {}
            self.lif1 = snn.Leaky(beta=0.9, init_hidden=init_hidden, **zero)
            self.fc2 = nn.Linear(hidden, n_out)
            self.lif2 = snn.Leaky(beta=0.9, init_hidden=init_hidden, **zero)
            with torch.no_grad():  # random weights alone may never spike
                self.fc1.bias += 0.6
                self.fc2.bias += 0.4

        def initial_state(self, batch: int) -> tuple[Any, Any]:
            return torch.zeros(batch, hidden), torch.zeros(batch, n_out)

        def forward(self, x: Any, mem1: Any, mem2: Any) -> tuple[Any, Any, Any]:
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            return spk2, mem1, mem2

    return TinySnn()


def counted() -> Any:
    """2 -> 3 -> 2 with weights chosen so the hidden layer's spikes are known."""
    import torch

    net = tiny(n_in=2, hidden=3, n_out=2)
    with torch.no_grad():
        net.fc1.weight.zero_()
        net.fc1.bias.copy_(torch.tensor([2.0, 0.0, 2.0]))  # hidden spikes: 1, 0, 1
        net.fc2.weight.fill_(0.1)
        net.fc2.bias.zero_()
    return net


def flat_events() -> Any:
    """(2, 8, 16) event tensors flattened into a 256-32-4 spiking network."""
    import torch
    from torch import nn

    net = tiny(n_in=256, hidden=32, n_out=4)
    forward = net.forward

    class Flat(nn.Module):
        state_names = net.state_names

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def initial_state(self, batch: int) -> Any:
            return net.initial_state(batch)

        def forward(self, x: Any, mem1: Any, mem2: Any) -> Any:
            return forward(torch.flatten(x, 1), mem1, mem2)

    return Flat()
