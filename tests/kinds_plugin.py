"""Node types for the recording and live-view tests: a synthetic camera (an RGB frame,
a uint16 depth image and a float array each step) and a model of its frame.

Tests copy this file beside their graph and load it with ``--plugin kinds_plugin``.
"""

from __future__ import annotations

import numpy as np

import edgeloop


class Frames(edgeloop.Sensor):
    """A synthetic camera: a gradient frame that moves, and a typed array beside it."""

    outputs = (
        edgeloop.Port("image", dtype="uint8"),
        edgeloop.Port("depth", dtype="uint16"),
        edgeloop.Port("stats", dtype="float32"),
    )

    def step(self, inputs):
        k = round(self.ctx.now() * 10)
        yy, xx = np.mgrid[0:24, 0:32]
        image = np.stack([xx * 7 + k, yy * 10, (xx + yy) * 4], axis=-1).astype(np.uint8)
        depth = (yy * 1000 + xx + k).astype(np.uint16)
        stats = np.array([k, 0.1, -1e30] + [0.5] * 70, dtype=np.float32)
        return {"image": image, "depth": depth, "stats": stats}


class Mean(edgeloop.Model):
    """The frame's mean colour and the frame itself, passed on."""

    inputs = (edgeloop.Port("image", dtype="uint8"),)
    outputs = (edgeloop.Port("mean", dtype="float64"), edgeloop.Port("copy", dtype="uint8"))

    def step(self, inputs):
        image = inputs["image"]
        return {"mean": image.reshape(-1, 3).mean(axis=0), "copy": image.copy()}


@edgeloop.hookimpl
def edgeloop_register_node_types():
    return {"test.frames": Frames, "test.mean": Mean}
