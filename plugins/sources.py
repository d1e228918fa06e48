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


class ConstantAction(Controller):
    """Emits a fixed action: a safe default, and the usual ``fallback`` target.

    Outputs:
        | port | dtype/shape | meaning |
        | action | ``dtype`` (n,) | ``config.value`` |

    Config: ``value`` (list of numbers), ``dtype``.

    Runs on its own ``rate_hz``, on any input, or only as a fault fallback.

    Faults: none.

    YAML::

        - id: safe_stop
          type: constant
          config: {value: [0.0]}
    """

    outputs = (Port("action", dtype="float32"),)
    Config = ConstantConfig
    accepts_any_inputs = True

    def setup(self, ctx: NodeContext) -> None:
        super().setup(ctx)
        self.value = np.asarray(ctx.config.value, dtype=ctx.config.dtype)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"action": self.value.copy()}
