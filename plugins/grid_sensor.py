"""A synthetic grid sensor that senses only what it is told to, and a policy that tells it.

``grid.camera`` looks at a scene of Gaussian blobs moving across a square grid
and bouncing off its edges (:class:`BlobScene`, deterministic from the seed and
the time). It takes sensing commands: a region or a mask (only those cells are
read; the others come out as 0), and a resolution (16x16 or 8x8: cells read in
2x2 blocks, a quarter of the cost). It publishes the ``frame``, the ``mask`` of
cells read, and, for evaluation only, the true ``scene`` and blob ``positions``.

``sensing.roi`` picks the cells to read: those where the current estimate of the
full view (a predictor's) is brightest, plus a share of random cells to find
what moved in, within a budget (a fraction of the grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    blobs: int = 2
    sigma: float = 1.5
    speed: float = 3.0
    """Cells per second."""

    def __post_init__(self) -> None:
        if self.size != 16 or self.blobs < 1:
            raise ValueError("size is 16 (its sensing spec is 16x16 and 8x8); blobs >= 1")


class GridCamera(Sensor):
    """Reads the cells of a synthetic scene that it is told to read."""

    outputs = (
        Port("frame", "float32", doc="the cells read; 0 where not read"),
        Port("mask", "float32", doc="1 where read"),
        Port("scene", "float32", doc="the whole true scene (for evaluation only)"),
        Port("positions", "float64", doc="true blob positions, row/col (evaluation only)"),
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

    Inputs: ``estimate`` (the full view, e.g. a masked autoencoder's
    reconstruction). Outputs: ``command`` with the next reading's ``mask``.
    """

    inputs = (Port("estimate"),)
    outputs = (Port("command"),)
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
