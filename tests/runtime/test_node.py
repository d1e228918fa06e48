"""The node API: what the runtime hands a node, and in which order."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop.runtime.node import build_config
from edgeloop.testing import RecordingSink, check_node, start_node


class Offset(edgeloop.Sensor):
    """Emits its config's offset plus the number of setups it has seen.

    Its ``setup`` reads ``self.config`` and ``self.ctx`` without calling
    ``super().setup(ctx)``: the runtime must have bound them already.
    """

    outputs = (edgeloop.Port("value", dtype="float64", shape=(1,), doc="offset + setups"),)

    @dataclass(frozen=True)
    class Config:
        offset: float = 0.0
        """Added to every value."""
        fail_on: int = -1
        """The step (counted across restarts) that raises; -1 for none."""

    def setup(self, ctx: edgeloop.NodeContext) -> None:
        self.base = self.config.offset  # no super().setup(ctx) first
        self.state = self.ctx.shared("offset-state", lambda: {"setups": 0, "steps": 0})
        self.state["setups"] += 1

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.state["steps"] += 1
        if self.state["steps"] - 1 == self.config.fail_on:
            raise RuntimeError("scripted failure")
        return {"value": np.array([self.base + self.state["setups"]])}


class OldStyle(Offset):
    """The same node written the old way, calling ``super().setup(ctx)`` first."""

    def setup(self, ctx: edgeloop.NodeContext) -> None:
        super().setup(ctx)
        self.base = ctx.config.offset + 100


def _run(node_type: type[edgeloop.Node], **config: Any) -> list[float]:
    graph = edgeloop.LoopGraph(name="offset")
    graph.add_node("source", node_type, rate_hz=10, config=config)
    graph.add_node("sink", RecordingSink, inputs={"value": "source/value"})
    executor = edgeloop.Executor(graph, simulated=True)
    executor.run(0.5)
    return [float(v[0]) for v in executor.node("sink").values("value")]


def test_a_setup_without_super_reads_its_config_and_context_in_a_loop():
    assert _run(Offset, offset=5.0) == [6.0] * 5


def test_a_restarted_node_gets_its_config_again_before_its_setup():
    values = _run(Offset, offset=5.0, fail_on=1)
    assert values[0] == 6.0
    assert values[1:] and all(v == 7.0 for v in values[1:])  # the second setup: 5 + 2


def test_a_setup_that_still_calls_super_works_as_before():
    assert _run(OldStyle, offset=1.0) == [102.0] * 5


def test_check_node_and_start_node_bind_before_setup():
    outputs = check_node(Offset, {"offset": 2.0}, steps=2)
    assert [o["value"].tolist() for o in outputs] == [[3.0], [3.0]]
    node = start_node(Offset, {"offset": -1.0}, node_id="alone")
    assert node.ctx.node_id == "alone" and node.config.offset == -1.0
    assert node.step({})["value"].tolist() == [0.0]
    node.close()


@pytest.mark.parametrize(
    ("node_type", "config", "fix"),
    [
        ("scene.edge", {"width": 100_000}, "expected int, above 0, at most 8192"),
        ("scene.edge", {"height": 0}, "expected int, above 0, at most 8192"),
        (
            "onnx.model",
            {"model": "m.onnx", "threads": 100_000},
            "expected int | None, at most 1024",
        ),
        ("clamp", {"low": "minus two"}, "expected float"),
    ],
    ids=["a width past its bound", "a height of 0", "an optional bound", "no bound"],
)
def test_a_config_error_says_the_plain_type_and_the_bound_in_words(
    node_type: str, config: dict[str, Any], fix: str
) -> None:
    cls = edgeloop.PluginRegistry().node_type(node_type).cls

    with pytest.raises(edgeloop.NodeConfigError) as refused:
        build_config(node_type, cls.Config, config)

    assert refused.value.fix == fix
    assert "Annotated" not in str(refused.value) and "MAX_" not in str(refused.value)
