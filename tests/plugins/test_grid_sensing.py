"""A grid sensor that reads only some cells, the region-of-interest policy, and the
masked autoencoder that fills in the rest (trained here, exported to ONNX, run by
the onnx.model node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor
from edgeloop.plugins.grid_sensor import BlobScene, RoiSelection
from edgeloop.runtime.node import Controller, NodeContext, Port
from edgeloop.testing import RecordingSink, start_node


class Commands(Controller):
    """Sends one fixed command at its first step."""

    inputs = (Port("tick"),)
    outputs = (Port("command"),)

    def setup(self, ctx: NodeContext) -> None:
        self.sent = False

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if self.sent:
            return None
        self.sent = True
        mask = np.zeros((16, 16), bool)
        mask[4:8, :] = True
        return {"command": {"mask": mask, "resolution": [8, 8]}}


def test_the_camera_reads_only_the_cells_it_is_told_to() -> None:
    graph = edgeloop.LoopGraph(name="grid")
    graph.add_node("camera", "grid.camera", rate_hz=10, inputs={"sensing": "cmd/command"})
    graph.add_node("cmd", Commands, inputs={"tick": "timer/1s"})  # after the first reading
    graph.add_node("sink", RecordingSink, inputs={"frame": "camera/frame", "scene": "camera/scene"})
    executor = Executor(graph, simulated=True)
    report = executor.run(1.0)
    sink = executor.node("sink")
    first, later = sink.values("frame")[0], sink.values("frame")[5]
    assert np.count_nonzero(first) > 100  # before the command: every cell
    assert not later[:4].any() and not later[8:].any()  # outside the mask: 0
    scene = sink.values("scene")[5]
    coarse = scene.reshape(8, 2, 8, 2).mean(axis=(1, 3))
    assert np.allclose(later[4:8], np.repeat(np.repeat(coarse, 2, 0), 2, 1)[4:8])
    # the first reading (before the command) costs 1, the 9 others a quarter of
    # the cells at a quarter of the resolution each
    assert report.node("camera").sensing["cost"] == pytest.approx(1 + 9 / 16)


def test_blobs_bounce_inside_the_grid() -> None:
    scene = BlobScene(np.random.default_rng(0), 16, 3, 1.5, 7.0)
    positions = np.array([scene.positions(t) for t in np.linspace(0, 30, 600)])
    assert positions.min() >= 0 and positions.max() <= 15
    assert np.ptp(positions[:, 0, 0]) > 10  # it crossed the grid


def test_roi_reads_the_brightest_cells_within_its_budget() -> None:
    policy = start_node(RoiSelection, {"fraction": 0.25, "explore": 0.25})
    estimate = np.zeros((16, 16))
    estimate[2:5, 2:5] = np.arange(9).reshape(3, 3) + 1
    mask = policy.select(estimate)
    assert mask.sum() == 64
    assert mask[2:5, 2:5].all()  # the bright cells are among the 48 chosen by estimate


def test_the_masked_autoencoder_fills_in_better_than_zeros(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgeloop.sims.masked_autoencoder import export, train

    bundle = export(train(steps=100, seed=0), tmp_path / "mae")  # fills in at ~0.4 x zeros
    errors = {}
    for name, view in (("zero", "camera/frame"), ("mae", "mae/recon")):
        graph = edgeloop.LoopGraph(name="fill")
        graph.add_node(
            "mae",
            "onnx.model",
            inputs={"frame": "camera/frame", "mask": {"from": "camera/mask", "trigger": False}},
            config={"model": str(bundle), "providers": ["CPUExecutionProvider"]},
        )
        graph.add_node(
            "roi",
            "sensing.roi",
            inputs={"estimate": view},
            config={"fraction": 0.25, "explore": 1.0},
        )
        graph.add_node("camera", "grid.camera", rate_hz=20, inputs={"sensing": "roi/command"})
        graph.add_node(
            "sink",
            RecordingSink,
            inputs={"view": view, "scene": {"from": "camera/scene", "trigger": False}},
        )
        executor = Executor(graph, simulated=True, seed=3)
        executor.run(5.0)
        sink = executor.node("sink")
        pairs = list(zip(sink.values("view"), sink.values("scene"), strict=True))[5:]
        errors[name] = np.mean(
            [np.abs(np.asarray(v).reshape(s.shape) - s).mean() for v, s in pairs]
        )
    assert errors["mae"] < 0.6 * errors["zero"]
