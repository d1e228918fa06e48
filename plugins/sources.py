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

    Each step publishes a copy of ``value`` as a ``dtype`` array. As the
    ``fallback`` of another node it is stepped on that node's inputs in its
    place.

    Inputs: any ports, all ignored; they trigger steps like any input. Without
    them the node runs on its ``rate_hz``, or only as a fault fallback.

    Outputs:
        | port | dtype/shape | units | meaning |
        | action | ``dtype`` (len(value),) | as the consumer expects | ``config.value`` |

    Config:
        | key | type | default | meaning |
        | value | list[float] | ``[0.0]`` | the action, one number per element |
        | dtype | str | ``float32`` | numpy dtype of the action |

    Faults: a ``dtype`` numpy does not know is a config error, reported when
    the graph is validated. A
    non-finite ``value`` is a ``non_finite`` fault on every step.

    YAML::

        - id: safe_stop
          type: constant
          config: {value: [0.0]}
    """

    outputs = (Port("action", dtype="float32"),)
    Config = ConstantConfig
    accepts_any_inputs = True

    def setup(self, ctx: NodeContext) -> None:
        self.value = np.asarray(ctx.config.value, dtype=ctx.config.dtype)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"action": self.value.copy()}
