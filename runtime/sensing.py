"""Action-to-sensing: commands that change how a sensor senses, and what sensing costs.

A sensor type that can be steered declares a :class:`SensingSpec`: its rate
bounds, the resolutions it offers, whether it takes a region of interest, and
the cost of one reading. A graph may narrow the bounds and set the cost per
node (``sensing:``). Its ``sensing`` input takes commands like any other
message, so they are recorded and replayed::

    {"rate_hz": 5.0}                      # re-plan the sensor's timer
    {"enabled": False}                    # stop reading (no timer at all)
    {"read": True}                        # one reading now (event-triggered sensing)
    {"region": [r0, c0, r1, c1]}          # rows r0..r1-1, columns c0..c1-1
    {"mask": bool array}                  # exactly these cells
    {"resolution": [h, w]}                # one of the resolutions it offers

The executor applies a command as it arrives: a rate outside the bounds is
clamped and counted, a field the sensor does not support or a malformed value is
rejected and counted; nothing a command says can crash the loop. The node reads
its current settings from ``ctx.sensing``. The report gives per sensor the
readings taken, those skipped against its full rate (the graph's
``sensing.max_rate_hz``, else its ``rate_hz``: what fixed-rate sensing would
read), and the sensing cost.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.errors import PluginError
from edgeloop.runtime.limits import MAX_RATE_HZ, MIN_RATE_HZ

MIN_SENSING_RATE_HZ = MIN_RATE_HZ
"""Slowest rate a sensing spec may allow: the slowest ``rate_hz`` a graph takes
(one reading in 11.6 days); a command's rate is at least this, so its period
always fits the executor's clock."""


@dataclass(frozen=True)
class SensingSpec:
    """What a sensor type lets a loop change, and what one reading costs.

    Attributes:
        min_rate_hz: Slowest rate a command may set (it is never read slower
            while enabled); at least 1e-6 Hz, the slowest ``rate_hz`` a graph takes.
        max_rate_hz: Fastest rate a command may set; skipped readings are
            counted against it. At most ``MAX_RATE_HZ`` (1,000,000 Hz), the
            fastest ``rate_hz`` a graph takes.
        resolutions: Resolutions a command may pick; empty: fixed.
        region: Takes a region of interest or a mask.
        grid: Rows and columns of the full view, for the cost of a region.
        cost_per_reading: Energy units of one reading at full resolution and region.

    Raises:
        PluginError: a rate bound is not a number within those bounds (NaN and
            infinity included). It is raised when the spec is made, which for a
            node type's ``sensing = SensingSpec(...)`` is when its plugin is
            imported: refused, not clamped, since a sensor type that promises a
            rate the executor cannot run would be counted against that rate in
            every report, and a rate of 0 would put its next reading past the
            end of time. (Issue 13, item 6.)
    """

    min_rate_hz: float = 1e-3
    max_rate_hz: float = 1e3
    resolutions: tuple[tuple[int, ...], ...] = ()
    region: bool = False
    grid: tuple[int, int] | None = None
    cost_per_reading: float = 1.0

    def __post_init__(self) -> None:
        for name, value in (("min_rate_hz", self.min_rate_hz), ("max_rate_hz", self.max_rate_hz)):
            if not (
                isinstance(value, numbers.Real)
                and not isinstance(value, bool)
                and MIN_SENSING_RATE_HZ <= value <= MAX_RATE_HZ
            ):
                error = PluginError(
                    f"SensingSpec {name} must be a number from {MIN_SENSING_RATE_HZ:g} to "
                    f"{MAX_RATE_HZ:,} Hz, got {value!r}",
                    fix=f"declare a {name} within those bounds",
                )
                error.where = _declared_at()
                raise error

    def narrowed(self, bounds: Mapping[str, Any] | None) -> SensingSpec:
        """This spec with a graph's ``sensing:`` bounds and cost applied.

        The result is not checked as a type's spec is: the graph's schema bounds each
        rate, and a range the bounds leave empty (a graph's ``max_rate_hz`` below the
        type's ``min_rate_hz``) is a problem validation reports with its line.
        """
        if not bounds:
            return self
        narrowed = copy.copy(self)  # no __post_init__: see above
        changes = {
            "min_rate_hz": max(self.min_rate_hz, bounds.get("min_rate_hz") or 0.0),
            "max_rate_hz": min(self.max_rate_hz, bounds.get("max_rate_hz") or math.inf),
            "cost_per_reading": bounds.get("cost_per_reading", self.cost_per_reading),
        }
        for name, value in changes.items():
            object.__setattr__(narrowed, name, value)
        return narrowed


def _declared_at() -> str | None:
    """``file:line`` of the code that made the spec being checked (a plugin's
    ``sensing = SensingSpec(...)``): the first frame outside this module and the
    dataclass machinery."""
    frame = sys._getframe(1)
    while frame is not None:
        file = frame.f_code.co_filename
        if file not in (__file__, dataclasses.__file__) and not file.startswith("<"):
            return f"{file}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@dataclass
class SensingState:
    """A sensor's current settings (``ctx.sensing``) and its sensing figures."""

    spec: SensingSpec
    rate_hz: float | None
    full_rate_hz: float = math.inf
    """The rate skipped readings are counted against: the graph's
    ``sensing.max_rate_hz`` if set, else the node's own ``rate_hz``."""
    enabled: bool = True
    region: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = None
    resolution: tuple[int, ...] | None = None
    readings: int = 0
    cost: float = 0.0
    commands: int = 0
    clamped: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    last_problem: str = ""

    def reading_cost(self) -> float:
        """One reading's cost: the full cost scaled by the share of cells and
        pixels read (a region, a mask, a lower resolution)."""
        share = 1.0
        if self.mask is not None and self.mask.size:
            share = float(np.count_nonzero(self.mask)) / self.mask.size
        elif self.region is not None and self.spec.grid is not None:
            rows, cols = self.spec.grid
            r0, c0, r1, c1 = self.region
            share = max(0, min(r1, rows) - r0) * max(0, min(c1, cols) - c0) / (rows * cols)
        if self.resolution is not None and self.spec.resolutions:
            full = max(math.prod(r) for r in self.spec.resolutions)
            share *= math.prod(self.resolution) / full
        return self.spec.cost_per_reading * share

    def figures(self, duration_s: float) -> dict[str, Any]:
        """Readings, readings skipped against the full rate, cost, commands."""
        full = min(self.full_rate_hz, self.spec.max_rate_hz)
        most = math.ceil(duration_s * full - 1e-9)  # grid ticks in [0, duration)
        return {
            "readings": self.readings,
            "skipped": max(0, most - self.readings),
            "full_rate_hz": full,
            "cost": self.cost,
            "rate_hz": self.rate_hz,
            "enabled": self.enabled,
            "commands": self.commands,
            "clamped": self.clamped,
            "rejected": dict(self.rejected),
            "last_problem": self.last_problem,
        }


def sensing_command(
    *,
    rate_hz: float | None = None,
    enabled: bool | None = None,
    read: bool = False,
    region: tuple[int, int, int, int] | None = None,
    mask: np.ndarray | None = None,
    resolution: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """A sensing command as a message payload (the fields left out stay as they are)."""
    command: dict[str, Any] = {}
    if rate_hz is not None:
        command["rate_hz"] = float(rate_hz)
    if enabled is not None:
        command["enabled"] = bool(enabled)
    if read:
        command["read"] = True
    if region is not None:
        command["region"] = [int(v) for v in region]
    if mask is not None:
        command["mask"] = np.asarray(mask, dtype=bool)
    if resolution is not None:
        command["resolution"] = [int(v) for v in resolution]
    return command


class SensingControl:
    """The receiving end of a sensor's ``sensing`` input: applies each command as
    it arrives (the executor queues it like a node, so it runs at once).

    Args:
        state: The sensor's settings, shared with its node as ``ctx.sensing``.
        inputs: The sensor's inputs mapping (the command is its ``sensing`` entry).
        replan: Called with the new rate (or None to stop the timer) when it changes.
        read_now: Steps the sensor once, for a ``read`` command.
    """

    __slots__ = ("inputs", "queued", "read_now", "replan", "state", "timed")

    def __init__(
        self,
        state: SensingState,
        inputs: dict[str, Any],
        replan: Callable[[float | None], None],
        read_now: Callable[[], None],
        *,
        timed: bool = True,
    ) -> None:
        self.state = state
        self.inputs = inputs
        self.replan = replan
        self.read_now = read_now
        self.timed = timed  # it has a rate_hz timer that rate and enabled commands move
        self.queued = False

    def run(self) -> None:
        command = self.inputs.get("sensing")
        state = self.state
        state.commands += 1
        if not isinstance(command, Mapping):
            self._reject("not a mapping", f"a command is a mapping, got {type(command).__name__}")
            return
        rate, enabled = state.rate_hz, state.enabled
        read = False
        for key, value in command.items():
            try:
                self._apply(key, value)
                read = read or (key == "read" and bool(value))
            except Exception as exc:  # whatever a command says, the loop goes on
                self._reject(str(key), f"{key}: {type(exc).__name__}: {exc}")
        if state.enabled != enabled or (state.enabled and state.rate_hz != rate):
            self.replan(state.rate_hz if state.enabled else None)
        if read:
            self.read_now()

    def _apply(self, key: str, value: Any) -> None:
        state, spec = self.state, self.state.spec
        if key in ("rate_hz", "enabled") and not self.timed:
            raise ValueError("this sensor runs on no rate_hz of its own (fix: give it one)")
        if key == "rate_hz":
            rate = float(value)
            if not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"a rate must be a positive number, got {value!r}")
            clamped = min(max(rate, spec.min_rate_hz), spec.max_rate_hz)
            if clamped != rate:
                state.clamped += 1
                state.last_problem = (
                    f"rate {rate:g} Hz clamped to {clamped:g} Hz "
                    f"(bounds {spec.min_rate_hz:g}..{spec.max_rate_hz:g})"
                )
            state.rate_hz = clamped
        elif key == "enabled":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"enabled must be true or false, got {value!r}")
            state.enabled = bool(value)
        elif key == "read":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"read must be true or false, got {value!r}")
        elif key in ("region", "mask"):
            if not spec.region:
                raise ValueError("this sensor takes no region of interest")
            if key == "mask":
                mask = np.asarray(value, dtype=bool)
                if mask.ndim != 2 or (spec.grid is not None and mask.shape != tuple(spec.grid)):
                    raise ValueError(
                        f"a mask is a {spec.grid or '2-D'} array, got shape {mask.shape}"
                    )
                state.mask, state.region = mask, None
            else:
                r0, c0, r1, c1 = (int(v) for v in value)
                if not (0 <= r0 < r1 and 0 <= c0 < c1):
                    raise ValueError(
                        f"a region is [r0, c0, r1, c1] with r0 < r1, c0 < c1, got {value!r}"
                    )
                state.region, state.mask = (r0, c0, r1, c1), None
        elif key == "resolution":
            resolution = tuple(int(v) for v in value)
            if resolution not in spec.resolutions:
                raise ValueError(
                    f"resolution {list(resolution)} is not one of "
                    f"{[list(r) for r in spec.resolutions] or 'none (fixed)'}"
                )
            state.resolution = resolution
        else:
            raise ValueError(
                "unknown field (known: rate_hz, enabled, read, region, mask, resolution)"
            )

    def _reject(self, key: str, why: str) -> None:
        self.state.rejected[key] = self.state.rejected.get(key, 0) + 1
        self.state.last_problem = why
