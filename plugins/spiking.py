"""``snn.torch``: a spiking network (snntorch) stepped once per tick, its state explicit.

:class:`SpikingNode` documents the node type; :func:`load_network` makes a
network and checks that it keeps no state of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.errors import MissingDependencyError, ModelError, NodeConfigError
from edgeloop.runtime.imports import check_config_path, import_named
from edgeloop.runtime.node import Model, NodeContext, Port
from edgeloop.runtime.spiking import PJ_PER_AC, PJ_PER_MAC, SpikeEnergyMeter, refuse_hidden_state


def load_network(path: str, kwargs: dict[str, Any]) -> Any:
    """The network ``module:factory(**kwargs)`` makes, checked for explicit state."""
    try:
        factory = import_named(path)
    except (ImportError, AttributeError) as exc:
        raise NodeConfigError(
            f"network '{path}' cannot be imported: {exc}",
            node_type="snn.torch",
            key="network",
            fix="module:factory of an importable module",
        ) from None
    network = factory(**kwargs)
    refuse_hidden_state(network, f"network '{path}'")
    for needed in ("initial_state", "state_names"):
        if not hasattr(network, needed):
            raise ModelError(
                f"network '{path}' has no {needed}",
                fix="give it initial_state(batch) and state_names, with "
                "forward(x, *state) -> (out, *new_state)",
            )
    return network


@dataclass(frozen=True)
class SpikingConfig:
    network: str
    """``module:factory`` making the network."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the factory."""
    checkpoint: str | None = None
    """A state_dict file to load into it."""
    reset_every: int | None = None
    """Reset the state every this many steps (an episode's length)."""
    pj_per_ac: float = PJ_PER_AC
    """Energy of one synaptic operation (an accumulate) in pJ; the default is a 45 nm figure."""
    pj_per_mac: float = PJ_PER_MAC
    """Energy of one multiply-accumulate in pJ: a layer fed real values, and the
    non-spiking network it is compared with."""

    def __post_init__(self) -> None:
        check_config_path(self.network, node_type="snn.torch", key="network")
        if self.reset_every is not None and self.reset_every < 1:
            raise ValueError("reset_every must be at least 1 step")
        if self.pj_per_ac < 0 or self.pj_per_mac < 0:
            raise ValueError("energies per operation cannot be negative")


class SpikingNode(Model):
    """Steps a spiking network once per tick, its membrane state kept between ticks.

    The network comes from ``network`` (``module:factory``, called with
    ``kwargs``, then ``checkpoint`` loaded into it): a torch module (snntorch)
    that keeps no state of its own, with ``forward(x, *state) -> (out,
    *new_state)`` for one time step, ``initial_state(batch)`` and
    ``state_names``. Each step feeds ``x`` with a batch dimension of 1 added and
    publishes ``out`` without it. The node keeps the state between steps, per
    node: two spiking nodes in one process never share it.

    It steps on a fresh ``x`` (or on its ``rate_hz``, stepping the network only
    when ``x`` is new). A message on ``reset`` (wire it with ``trigger:
    false``) sets the state back to its start, as does every ``reset_every``
    steps (an episode's length); a reset alone never steps the network. A
    restart rebuilds the network and starts from the initial state.

    Per step it counts spikes per layer, synaptic operations (spikes reaching
    synapses), the MACs of layers fed real values (the first, usually) and the
    MACs a non-spiking network of the same shape would do, and records the
    energy estimate (series ``<id>.energy_pj``: ``pj_per_ac`` per synaptic
    operation plus ``pj_per_mac`` per real-valued MAC); the report notes the
    run's totals and firing rates. The exported form runs without torch:
    ``edgeloop.exporters.spiking.export_spiking`` and the ``onnx.model`` node.

    Faults:
        ``setup`` raises MissingDependencyError (naming the ``train`` extra)
        without torch, and EdgeloopError for a ``network`` that cannot be
        imported, one built with snntorch's ``init_hidden=True`` (class-level
        hidden state; the message says how to rebuild it) or one without
        ``initial_state`` and ``state_names``. A ``reset_every`` below 1 or a
        negative energy is a config error, reported when the graph is
        validated. An ``x`` the network cannot take is an ``exception`` fault;
        non-finite outputs are ``non_finite`` faults.

    YAML::

        - id: snn
          type: snn.torch
          inputs: {x: encoder/spikes}
          config: {network: mylab.nets:policy, kwargs: {n_in: 3}, reset_every: 1000}
    """

    inputs = (
        Port("x", "float32", doc="network input for one step, without the batch dimension"),
        Port("reset", doc="any message resets the state; it never steps the network"),
    )
    outputs = (Port("out", "float32", doc="network output for the step, batch dimension removed"),)
    Config = SpikingConfig

    def setup(self, ctx: NodeContext) -> None:
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("torch", "train", "the snn.torch node") from None
        self.torch = torch
        cfg: SpikingConfig = ctx.config
        self.network = load_network(cfg.network, dict(cfg.kwargs)).eval()
        if cfg.checkpoint is not None:
            self.network.load_state_dict(
                torch.load(cfg.checkpoint, weights_only=True, map_location="cpu")
            )
        self.meter = SpikeEnergyMeter(self.network, cfg.pj_per_ac, cfg.pj_per_mac)
        self.reset_state()
        self.reset_seen = -1
        self.x_seen = -1

    def reset_state(self) -> None:
        self.state = tuple(self.network.initial_state(1))
        self.steps_since_reset = 0

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        x = inputs.get("x")
        message = self.ctx.message("x")
        if x is None or message is None:
            return None
        fresh = message.seq != self.x_seen
        self.x_seen = message.seq
        reset = self.ctx.message("reset")
        every = self.config.reset_every
        if (reset is not None and reset.seq != self.reset_seen) or (
            every is not None and self.steps_since_reset >= every
        ):
            self.reset_seen = reset.seq if reset is not None else self.reset_seen
            self.reset_state()
        if not fresh:  # only a reset arrived: no step on an input already stepped on
            return None
        torch = self.torch
        before = self.meter.energy_pj()
        with torch.no_grad():
            out, *state = self.network(
                torch.as_tensor(np.asarray(x, np.float32))[None], *self.state
            )
        self.state = tuple(state)
        self.steps_since_reset += 1
        self.meter.step_done()
        self.ctx.record("energy_pj", self.meter.energy_pj() - before)
        return {"out": out[0].numpy()}

    def close(self) -> None:
        meter = getattr(self, "meter", None)
        if meter is not None:
            self.ctx.note("energy", json.dumps(meter.summary()))
            meter.close()
