"""A synthetic grid sensor that senses only what it is told to, and a policy that tells it.

``grid.camera`` (:class:`GridCamera`) reads the cells of a scene of moving
Gaussian blobs (:class:`BlobScene`) that its sensing commands select;
``sensing.roi`` (:class:`RoiSelection`) picks those cells from an estimate of
the full view. Each class documents its node type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from edgeloop.runtime.node import Controller, NodeContext, Port, Sensor
from edgeloop.runtime.sensing import SensingSpec, sensing_command


class BlobScene:
    """Blobs at seeded positions and velocities; :meth:`render` draws the scene at a time."""

    def __init__(
        self, rng: np.random.Generator, size: int, blobs: int, sigma: float, speed: float
    ) -> None:
        self.size, self.sigma = size, sigma
        self.start = rng.uniform(0, size - 1, (blobs, 2))
        angle = rng.uniform(0, 2 * math.pi, blobs)
        self.velocity = speed * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        self.grid = np.mgrid[0:size, 0:size].astype(np.float64)  # rows, cols

    def positions(self, t: float) -> np.ndarray:
        """(blobs, 2) row, column positions: straight lines folded at the edges."""
        span = self.size - 1
        raw = (self.start + self.velocity * t) % (2 * span)
        return np.where(raw > span, 2 * span - raw, raw)

    def render(self, t: float) -> np.ndarray:
        frame = np.zeros((self.size, self.size))
        for row, col in self.positions(t):
            d2 = (self.grid[0] - row) ** 2 + (self.grid[1] - col) ** 2
            frame = np.maximum(frame, np.exp(-d2 / (2 * self.sigma**2)))
        return frame.astype(np.float32)


@dataclass(frozen=True)
class GridCameraConfig:
    size: int = 16
    """Cells per side of the grid; only 16 is supported (its sensing spec is 16x16)."""
    blobs: Annotated[int, Field(le=16 * 16)] = 2
    """Blobs in the scene, at most 256 (one per cell; each is drawn every step)."""
    sigma: float = 1.5
    """Standard deviation of each blob (cells)."""
    speed: float = 3.0
    """Cells per second."""

    def __post_init__(self) -> None:
        if self.size != 16 or self.blobs < 1:
            raise ValueError("size is 16 (its sensing spec is 16x16 and 8x8); blobs >= 1")


class GridCamera(Sensor):
    """Reads the cells of a synthetic scene that it is told to read.

    The scene is ``blobs`` Gaussian blobs (peak 1, standard deviation ``sigma``
    cells) on a dark 16x16 grid, each moving in a straight line at ``speed``
    cells/s and bouncing off the edges. Start positions and directions come
    from the node's seeded generator; positions are a function of clock time,
    so a run is repeatable. Each step renders the scene at the clock time and
    reads the cells its sensing settings allow.

    It runs on its ``rate_hz``. It is a steerable sensor: commands on its
    ``sensing`` input change its rate, turn it off and on, take one reading
    now, set a region or a mask (only those cells are read; the others come out
    as 0) and pick a resolution (16x16, or 8x8: cells read as the mean of 2x2
    blocks, the frame still 16x16). A reading costs 1 energy unit at full
    region and resolution, scaled by the share of cells and pixels read. The
    scene carries over between steps; a restart draws a new one from the
    generator.

    Faults:
        a ``size`` other than 16 or fewer than one blob is a config error,
        reported when the graph is validated. None at run time: commands the
        sensor cannot follow are rejected and counted by the runtime.

    YAML::

        - id: camera
          type: grid.camera
          rate_hz: 20
          inputs: {sensing: roi/command}
          config: {blobs: 2, speed: 3.0}
    """

    outputs = (
        Port("frame", "float32", doc="intensities of the cells read, 0 where not read"),
        Port("mask", "float32", doc="1 where a cell was read, 0 elsewhere"),
        Port("scene", "float32", doc="the whole true scene (for evaluation only)"),
        Port("positions", "float64", doc="true blob positions, (blobs, 2) row and column in cells"),
    )
    Config = GridCameraConfig
    sensing = SensingSpec(
        min_rate_hz=0.5,
        max_rate_hz=200.0,
        resolutions=((16, 16), (8, 8)),
        region=True,
        grid=(16, 16),
        cost_per_reading=1.0,
    )

    def setup(self, ctx: NodeContext) -> None:
        cfg: GridCameraConfig = ctx.config
        self.scene = BlobScene(ctx.rng, cfg.size, cfg.blobs, cfg.sigma, cfg.speed)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        t = self.ctx.now()
        scene = self.scene.render(t)
        mask = read_mask(self.ctx.sensing, scene.shape)
        frame = scene
        resolution = self.ctx.sensing.resolution if self.ctx.sensing else None
        if resolution is not None and resolution[0] < scene.shape[0]:
            k = scene.shape[0] // resolution[0]
            coarse = scene.reshape(resolution[0], k, resolution[1], k).mean(axis=(1, 3))
            frame = np.repeat(np.repeat(coarse, k, axis=0), k, axis=1)
        return {
            "frame": (frame * mask).astype(np.float32),
            "mask": mask.astype(np.float32),
            "scene": scene,
            "positions": self.scene.positions(t),
        }


def read_mask(state: Any, shape: tuple[int, int]) -> np.ndarray:
    """The cells a reading covers under the sensor's current region or mask."""
    mask = np.ones(shape, bool)
    if state is None:
        return mask
    if state.mask is not None and state.mask.shape == shape:
        return state.mask.astype(bool)
    if state.region is not None:
        r0, c0, r1, c1 = state.region
        mask[:] = False
        mask[r0:r1, c0:c1] = True
    return mask


@dataclass(frozen=True)
class RoiConfig:
    fraction: float = 0.25
    """Cells read per reading, as a share of the grid."""
    explore: float = 0.25
    """Share of those picked at random, to find what moved in."""

    def __post_init__(self) -> None:
        if not (0 < self.fraction <= 1 and 0 <= self.explore <= 1):
            raise ValueError("need 0 < fraction <= 1 and 0 <= explore <= 1")


class RoiSelection(Controller):
    """Reads the cells the estimate says matter (the brightest), plus a few at random.

    Each step it picks the cells of a sensor's next reading: a budget of
    ``fraction`` of the grid (at least one cell), of which the share
    ``explore`` is drawn at random from the rest (from the node's seeded
    generator), to find what moved in, and the others are the cells where the
    estimate is brightest. The estimate is a full view (a masked autoencoder's
    reconstruction, say), reshaped to ``isqrt(size)`` rows. Wire ``command`` to
    a steerable sensor's ``sensing`` input, e.g. ``grid.camera``'s.

    It steps when an estimate arrives, or on its ``rate_hz``. It keeps no
    state between steps.

    Faults:
        a ``fraction`` outside (0, 1] or an ``explore`` outside [0, 1] is a
        config error, reported when the graph is validated. No output until the
        first estimate. An estimate whose size does not split into
        ``isqrt(size)`` rows is an ``exception`` fault; a mask the sensor cannot
        take (another grid) is rejected and counted by the runtime.

    YAML::

        - id: roi
          type: sensing.roi
          inputs: {estimate: mae/recon}
          config: {fraction: 0.25, explore: 0.25}
    """

    inputs = (Port("estimate", doc="estimated full view of the grid"),)
    outputs = (Port("command", doc="sensing command with the next reading's ``mask``"),)
    Config = RoiConfig

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        estimate = inputs.get("estimate")
        if estimate is None:
            return None
        estimate = np.asarray(estimate, dtype=np.float64).reshape(
            math.isqrt(np.asarray(estimate).size), -1
        )
        return {"command": sensing_command(mask=self.select(estimate))}

    def select(self, estimate: np.ndarray) -> np.ndarray:
        cfg: RoiConfig = self.config
        cells = estimate.size
        budget = max(1, round(cfg.fraction * cells))
        random_cells = round(cfg.explore * budget)
        order = np.argsort(-estimate.ravel(), kind="stable")
        chosen = set(order[: budget - random_cells].tolist())
        rest = np.array([c for c in range(cells) if c not in chosen])
        if random_cells and rest.size:
            chosen.update(
                self.ctx.rng.choice(rest, min(random_cells, rest.size), replace=False).tolist()
            )
        mask = np.zeros(cells, bool)
        mask[list(chosen)] = True
        return mask.reshape(estimate.shape)
