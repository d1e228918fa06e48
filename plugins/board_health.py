"""The ``board.health`` sensor: the board's load, temperatures and power as messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.runtime.board_health import BoardReader
from edgeloop.runtime.node import NodeContext, Port, Sensor


@dataclass(frozen=True)
class BoardHealthConfig:
    root: str = "/"
    """Where ``/proc`` and ``/sys`` are: ``/`` on the board; a copy of a board's tree
    elsewhere."""
    input_rail: str | None = None
    """The power rail that is the whole board's input; default: the hardware
    profile's, else VDD_IN or POM_5V_IN, else the sum of the rails."""


class BoardHealth(Sensor):
    """Reads the board's health from /proc and /sys: CPU load, memory, temperatures,
    GPU load, power rails, and its performance settings.

    Each step publishes ``health``, a mapping of every field the board has:
    ``cpu_percent`` and ``cpu_percent_per_core`` (load since the previous step),
    ``mem_total_mib``, ``mem_used_mib``, ``temp_c`` (per thermal zone) and
    ``temp_max_c`` in °C, ``rails_w`` (per power rail) and ``power_w`` (the input
    rail, else their sum) in W, ``gpu_percent``, ``cpu_governor``,
    ``jetson_clocks`` and ``power_mode`` (nvpmodel's). A field the board lacks is
    never guessed: it is named in ``absent`` and its port below is not published.
    ``cpu_percent``, ``temp_max_c`` and ``power_w`` are also ports of their own (a
    float64 scalar each) for a monitor to act on, and series of the report.

    The files and their units are those the kernel drivers document (INA3221 and
    INA238 power monitors, thermal zones, cpufreq), and on a Jetson the ones
    jetson_stats reads (GPU load, L4T's ina3221x, nvpmodel's status); see
    ``runtime/board_health.py`` for each. It runs on its ``rate_hz`` (1-10 Hz is
    plenty: the power monitors average over milliseconds). It notes the fields
    absent at setup and, at the end, the energy the board drew: its power
    integrated over the run, in J.

    Faults:
        none of its own: a file that cannot be read is an absent field.

    YAML::

        - id: health
          type: board.health
          rate_hz: 2
    """

    outputs = (
        Port("health", doc="every field the board has, and ``absent``: those it lacks"),
        Port("cpu_percent", dtype="float64", shape=(), units="%", doc="CPU load, all cores"),
        Port("temp_max_c", dtype="float64", shape=(), units="°C", doc="hottest thermal zone"),
        Port("power_w", dtype="float64", shape=(), units="W", doc="the board's input power"),
    )
    Config = BoardHealthConfig

    def setup(self, ctx: NodeContext) -> None:
        expected = ctx.profile.health if ctx.profile is not None else None
        input_rail = ctx.config.input_rail or (expected.input_rail if expected else None)
        self.reader = BoardReader(ctx.config.root, input_rail=input_rail)
        if expected is not None and expected.rails:
            missing = [r for r in expected.rails if r not in self.reader.rails]
            if missing:  # another carrier board or kernel: say so, read what is there
                ctx.note("rails", f"{ctx.profile.name} lists {', '.join(missing)}, not found")
        self.energy_j = 0.0
        self.last_power: tuple[float, float] | None = None  # (time, watts)
        ctx.note("absent", ", ".join(self.reader.absent) or "none")

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        health = self.reader.read()
        out: dict[str, Any] = {"health": health}
        now = self.ctx.now()
        for port in ("cpu_percent", "temp_max_c", "power_w"):
            if port in health:
                out[port] = np.float64(health[port])
                self.ctx.record(port, health[port])
        if "power_w" in health:
            if self.last_power is not None:  # the trapezoid since the last reading
                then, watts = self.last_power
                self.energy_j += (now - then) * (watts + health["power_w"]) / 2
            self.last_power = (now, health["power_w"])
        return out

    def close(self) -> None:
        if self.last_power is not None:
            self.ctx.note("energy_j", f"{self.energy_j:.3f}")
