"""``example.recorder``: an actuator that appends every command to a CSV file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

import numpy as np

import edgeloop


@dataclass(frozen=True)
class RecorderConfig:
    path: str = "commands.csv"
    """CSV file to append to, relative to the working directory."""
    width: int = 1
    """Elements in each command: the CSV columns after ``t``."""


class CsvRecorder(edgeloop.Actuator):
    """Appends each command it receives to a CSV file as a ``t,value...`` line.

    ``t`` is the loop clock in seconds; the values are written as they come, in
    the command's units. A new (or empty) file gets the header ``t,value``
    (``t,value_0,value_1,...`` when ``width`` > 1) at setup; an existing one is
    appended to, so a restarted node keeps its earlier lines. It has no
    outputs. At close the node records its last command's first element as the
    series ``<node id>.last_command`` of the run report.

    It steps on each command, or on its ``rate_hz`` with the latest one. The
    file stays open between steps; a restart opens it again.

    Faults:
        ``setup`` raises ValueError for ``width`` < 1 and OSError when ``path``
        cannot be opened; a command with other than ``width`` elements is an
        ``exception`` fault.

    YAML::

        - id: recorder
          type: example.recorder
          inputs: {command: pid/action}
          config: {path: commands.csv}
    """

    inputs = (
        edgeloop.Port("command", dtype="float64", doc="command to record, ``width`` elements"),
    )
    Config = RecorderConfig

    def setup(self, ctx: edgeloop.NodeContext) -> None:
        cfg: RecorderConfig = ctx.config
        if cfg.width < 1:
            raise ValueError(f"width must be >= 1, got {cfg.width}")
        self.count = 0
        self.last: float | None = None
        self.file: IO[str] | None = open(cfg.path, "a")  # closed in close()
        if self.file.tell() == 0:
            names = ["value"] if cfg.width == 1 else [f"value_{i}" for i in range(cfg.width)]
            self.file.write(",".join(["t", *names]) + "\n")

    def step(self, inputs: dict[str, Any]) -> None:
        command = inputs["command"]
        if command is None or self.file is None:
            return
        values = np.asarray(command, dtype=np.float64).reshape(-1)
        if len(values) != self.config.width:
            raise ValueError(f"command has {len(values)} elements, expected {self.config.width}")
        self.file.write(",".join(repr(float(v)) for v in (self.ctx.now(), *values)) + "\n")
        self.count += 1
        self.last = float(values[0])

    def close(self) -> None:
        if self.file is None:
            return
        self.file.close()
        self.file = None
        if self.last is not None:
            self.ctx.record("last_command", self.last)
