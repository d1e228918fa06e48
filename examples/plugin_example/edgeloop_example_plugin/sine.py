"""``example.sine``: a sensor that measures a sine wave, with optional noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import edgeloop


@dataclass(frozen=True)
class SineConfig:
    amplitude: float = 1.0
    """Peak value of the wave."""
    frequency_hz: float = 0.5
    """Frequency of the wave (Hz)."""
    noise_std: float = 0.0
    """Standard deviation of the gaussian noise added to each sample; 0 for none."""


class SineSensor(edgeloop.Sensor):
    """Samples ``amplitude * sin(2*pi*frequency_hz*t)`` plus optional gaussian noise.

    ``t`` is the loop clock (``ctx.now()``), so a simulated run samples the same
    wave as a real-time one, and the noise comes from ``ctx.rng``, so a run is
    repeatable for a given seed. The sample is in the units of ``amplitude``.
    The sensor has no inputs and runs on its ``rate_hz``; it keeps no state
    between steps.

    Faults:
        ``setup`` raises ValueError for a negative ``noise_std``.

    YAML::

        - id: sine
          type: example.sine
          rate_hz: 100
          config: {amplitude: 1.0, frequency_hz: 0.5, noise_std: 0.01}
    """

    outputs = (
        edgeloop.Port("signal", dtype="float64", shape=(1,), doc="wave sample, noise included"),
    )
    Config = SineConfig

    def setup(self, ctx: edgeloop.NodeContext) -> None:
        if ctx.config.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {ctx.config.noise_std}")

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        cfg: SineConfig = self.config
        value = cfg.amplitude * math.sin(2.0 * math.pi * cfg.frequency_hz * self.ctx.now())
        if cfg.noise_std > 0:
            value += float(self.ctx.rng.normal(0.0, cfg.noise_std))
        return {"signal": np.array([value])}
