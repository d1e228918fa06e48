"""Sources of fixed values: a constant action, also the usual fault fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.node import Controller, NodeContext, Port


@dataclass(frozen=True)
class ConstantConfig:
    value: list[float] = field(default_factory=lambda: [0.0])
    """The action, one number per element."""
    dtype: str = "float32"
    """numpy dtype of the action."""

    def __post_init__(self) -> None:
        try:
            np.dtype(self.dtype)
        except TypeError:
            raise ValueError(f"'{self.dtype}' is not a numpy dtype (e.g. float32)") from None


class ConstantAction(Controller):
    """Emits a fixed action: a safe default, and the usual ``fallback`` target.

    Each step publishes a copy of ``value`` as a 1-D array of the configured
    ``dtype``, one element per number (the port's declared float32 is only the
    default). The value means what its consumer takes it to mean: a torque in
    N*m for the pendulum's actuator, say.

    It takes inputs of any name and ignores their values; they only trigger
    steps, like any input. Without inputs it runs on its ``rate_hz``, or only as
    the ``fallback`` of another node, which steps it on that node's inputs in
    its place. It keeps no state between steps.

    Faults:
        a ``dtype`` numpy does not know is a config error, reported when the
        graph is validated. A non-finite ``value`` is a ``non_finite`` fault on
        every step.

    YAML::

        - id: safe_stop
          type: constant
          config: {value: [0.0]}
    """

    outputs = (Port("action", dtype="float32", doc="``value`` as an array of ``dtype``"),)
    Config = ConstantConfig
    accepts_any_inputs = True

    @classmethod
    def ports(cls, config: ConstantConfig) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        (action,) = cls.outputs
        shape = (len(config.value),)
        return (), (Port(action.name, dtype=config.dtype, shape=shape, doc=action.doc),)

    def setup(self, ctx: NodeContext) -> None:
        self.value = np.asarray(ctx.config.value, dtype=ctx.config.dtype)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"action": self.value.copy()}
