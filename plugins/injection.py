"""Fault injection for robustness tests: corrupt a stream part of the time.

The ``inject`` node type (:class:`FaultInjector`) documents its modes
(``MODES``) and windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.limits import MAX_DELAY_S
from edgeloop.runtime.node import Model, NodeContext, Port

MODES = ("noise", "stuck", "offset", "dropout", "delay")


@dataclass(frozen=True)
class InjectConfig:
    mode: str = "noise"
    """noise (Gaussian, std ``scale``), stuck, offset (+ ``scale``), dropout, or
    delay (by ``scale`` seconds)."""
    scale: float = 1.0
    """Noise standard deviation, offset, or delay (s), in the stream's units; a delay
    is at most 60 s (every message of that span is held in memory)."""
    windows: list[list[float]] = field(default_factory=list)
    """[start_s, end_s] pairs of clock time (s) when the stream is corrupted."""
    every_s: float | None = None
    """Periodic bursts: one every ``every_s`` seconds ..."""
    duty: float = 0.3
    """... lasting this share of the period, at its end."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode '{self.mode}' is not one of {MODES}")
        if any(len(w) != 2 or w[0] >= w[1] for w in self.windows):
            raise ValueError("each window is [start_s, end_s] with start < end")
        if self.every_s is not None and not (self.every_s > 0 and 0 < self.duty <= 1):
            raise ValueError("every_s must be positive and duty in (0, 1]")
        if self.mode == "delay" and not self.scale <= MAX_DELAY_S:
            raise ValueError(f"a delay (scale) is at most {MAX_DELAY_S:g} s, got {self.scale}")


class FaultInjector(Model):
    """Corrupts the stream passing through it inside its windows.

    For robustness tests: it passes ``in`` to ``out`` unchanged outside its
    corruption windows, and inside them (by ``mode``):

    - ``noise``: adds Gaussian noise of standard deviation ``scale``, from the
      node's seeded generator, so a run is repeatable;
    - ``stuck``: repeats the first value of the window (a stuck sensor);
    - ``offset``: adds ``scale``;
    - ``dropout``: publishes nothing;
    - ``delay``: holds each message until ``scale`` seconds after it was
      sensed. Each keeps the time it was sensed, so latency downstream grows
      by the delay; it releases the newest message due and drops those sensed
      before it. The node then needs a ``rate_hz``, the rate it releases
      delayed messages at.

    ``noise`` and ``offset`` keep the payload's dtype (an integer payload is
    truncated). ``scale`` is in the stream's units (seconds for ``delay``).
    Windows are explicit (``windows``, clock times in s) or periodic bursts
    (``every_s`` and ``duty``); a time in either is corrupted.

    It steps when ``in`` arrives, or on its ``rate_hz``. The stuck value and
    the delayed messages carry over between steps; a restart drops them. The
    report notes how many messages it corrupted.

    Faults:
        an unknown ``mode``, a window that is not ``[start_s, end_s]`` with
        start before end, or a non-positive ``every_s`` or a ``duty`` outside
        (0, 1] is a config error, reported when the graph is validated.
        ``noise`` or ``offset`` on a payload that is not numeric is an
        ``exception`` fault.

    YAML::

        - id: corrupt
          type: inject
          inputs: {in: sensor/obs}
          config: {mode: noise, scale: 0.5, every_s: 4.0, duty: 0.25}
    """

    inputs = (Port("in", doc="stream to corrupt"),)
    outputs = (Port("out", doc="stream as passed on: unchanged, corrupted, held or dropped"),)
    Config = InjectConfig

    def setup(self, ctx: NodeContext) -> None:
        self.frozen: Any = None
        self.corrupted = 0
        self.seen = -1
        self.delayed: list[tuple[float, float, Any]] = []  # (due, sensed, value) held back

    def active(self, t: float) -> bool:
        cfg: InjectConfig = self.config
        if any(start <= t < end for start, end in cfg.windows):
            return True
        if cfg.every_s is not None:
            return (t % cfg.every_s) >= cfg.every_s * (1 - cfg.duty)
        return False

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        value = inputs.get("in")
        if value is None:
            return None
        cfg: InjectConfig = self.config
        if cfg.mode == "delay":
            return self._delay(value)
        if not self.active(self.ctx.now()):
            self.frozen = None
            return {"out": value}
        self.corrupted += 1
        data = np.asarray(value)
        if cfg.mode == "dropout":
            return None
        if cfg.mode == "stuck":
            if self.frozen is None:
                self.frozen = data.copy()
            return {"out": self.frozen.copy()}
        if cfg.mode == "offset":
            return {"out": (data + cfg.scale).astype(data.dtype)}
        noise = self.ctx.rng.normal(0.0, cfg.scale, data.shape)
        return {"out": (data + noise).astype(data.dtype)}

    def _delay(self, value: Any) -> dict[str, Any] | None:
        """Hold each new message until ``scale`` seconds after it was sensed (outside
        the windows: pass it on at once); release the newest one due."""
        message = self.ctx.message("in")
        now = self.ctx.now()
        if message is not None and message.seq != self.seen:
            self.seen = message.seq
            wait = self.config.scale if self.active(now) else 0.0
            self.delayed.append((message.sensed + wait, message.sensed, value))
            self.corrupted += wait > 0
        due = [item for item in self.delayed if item[0] <= now + 1e-9]
        if not due:
            return None
        _, sensed, data = due[-1]
        # Never older after newer: what was sensed before the one going out is dropped.
        self.delayed = [item for item in self.delayed if item[0] > now + 1e-9 and item[1] > sensed]
        self.ctx.sensed_at(sensed)
        return {"out": data}

    def close(self) -> None:
        self.ctx.note("corrupted", str(self.corrupted))
