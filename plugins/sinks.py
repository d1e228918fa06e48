"""Sinks: log what flows, to the logger and optionally a JSON-lines file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from edgeloop.runtime.node import Monitor, NodeContext


@dataclass(frozen=True)
class LogConfig:
    every: int = 1
    """Log one step in this many."""
    path: str | None = None
    """JSON-lines file to append to; None logs through the ``edgeloop.node.<id>`` logger."""

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")


class LogSink(Monitor):
    """Logs the values on all of its inputs (any port names).

    One step in ``every`` is logged (the first, then every ``every``-th) as a
    record ``{"t": clock time (s), "inputs": {port: value}}``, numpy values as
    plain lists and numbers, an input with no message yet as ``None``. Without
    ``path`` the record goes to the ``edgeloop.node.<id>`` logger at INFO; with
    it, it is appended to the file as one JSON object per line. It has no
    outputs.

    It steps when an input arrives, or on its ``rate_hz``. The step count
    carries over between steps; a restart starts it again (its first step is
    logged) and appends to the same file.

    Faults:
        ``every`` below 1 is a config error, reported when the graph is
        validated; ``setup`` raises OSError when ``path`` cannot be opened. With
        ``path``, a value JSON cannot encode is an ``exception`` fault.

    YAML::

        - id: log
          type: log
          inputs: {obs: sensor/obs, action: controller/action}
          config: {every: 10, path: run.jsonl}
    """

    accepts_any_inputs = True
    Config = LogConfig

    def setup(self, ctx: NodeContext) -> None:
        self.count = 0
        self.file: IO[str] | None = open(ctx.config.path, "a") if ctx.config.path else None

    def step(self, inputs: dict[str, Any]) -> None:
        self.count += 1
        if (self.count - 1) % self.config.every:
            return
        record = {
            "t": round(self.ctx.now(), 9),
            "inputs": {k: _plain(v) for k, v in inputs.items()},
        }
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
        else:
            self.ctx.logger.info("%s", record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
