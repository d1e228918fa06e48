"""Event sensing: the DVS-style sensor on a synthetic moving edge, refractory
periods, event-driven execution of a spiking node, and the spike encoders."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor
from edgeloop.testing import RecordingSink, start_node


def edge_events(speed: float, duration: float = 1.0, **dvs: Any) -> tuple[list, Any]:
    graph = edgeloop.LoopGraph(name="edge")
    graph.add_node(
        "edge", "scene.edge", rate_hz=20, config={"width": 16, "height": 8, "speed": speed}
    )
    graph.add_node("dvs", "events.dvs", inputs={"frame": "edge/frame"}, config=dvs)
    graph.add_node("sink", RecordingSink, inputs={"events": "dvs/events"})
    executor = Executor(graph, simulated=True)
    report = executor.run(duration)
    return executor.node("sink").values("events"), report


# dark 0.05 -> bright 1.0: log-intensity rises 2.97, 14 thresholds of 0.2 (plus eps)
PER_PIXEL = int(np.log((1.0 + 1e-3) / (0.05 + 1e-3)) / 0.2)


def test_a_moving_edge_makes_on_events_in_the_column_it_reaches() -> None:
    events, report = edge_events(speed=20.0, duration=0.79)  # one column per tick, no wrap
    assert len(events) == 15  # ticks 1..15 each light one more column
    for k, ev in enumerate(events, start=1):
        on, off = ev
        assert on.sum() == 8 * PER_PIXEL and off.sum() == 0
        assert (on[:, k] == PER_PIXEL).all()  # exactly the column the edge reached
    assert report.node("dvs").notes["events"].startswith(f"{15 * 8 * PER_PIXEL} events")


def test_a_wrapping_edge_makes_off_events_where_it_left() -> None:
    events, _ = edge_events(speed=20.0, duration=1.2)  # wraps at t = 0.8
    wrap = events[15]  # tick 16: the edge is back at column 0
    assert wrap[1].sum() == 8 * 15 * PER_PIXEL and wrap[0].sum() == 0


def test_a_slow_edge_leaves_ticks_without_events_and_the_snn_skips_them() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    graph = edgeloop.LoopGraph(name="driven")
    graph.add_node(
        "edge", "scene.edge", rate_hz=20, config={"width": 16, "height": 8, "speed": 5.0}
    )
    graph.add_node("dvs", "events.dvs", inputs={"frame": "edge/frame"})
    graph.add_node("flat", "encode.delta", inputs={"x": "dvs/events"}, config={"threshold": 0.5})
    graph.add_node(
        "snn",
        "snn.torch",
        inputs={"x": "dvs/events"},
        config={"network": "spiking_nets:flat_events"},
    )
    report = Executor(graph, simulated=True).run(2.0)
    dvs_notes = report.node("dvs").notes["events"]
    event_ticks = report.node("snn").calls
    assert event_ticks == 9  # a new column every 4th tick over 2 s (t = 0.2, 0.4, ...)
    assert dvs_notes.endswith("30 ticks without (skipped downstream)")  # 39 ticks after the first


def test_refractory_period_silences_a_flickering_pixel() -> None:
    graph = edgeloop.LoopGraph(name="flicker")
    graph.add_node(
        "edge", "scene.edge", rate_hz=20, config={"width": 2, "height": 1, "speed": 20.0}
    )
    graph.add_node(
        "dvs", "events.dvs", inputs={"frame": "edge/frame"}, config={"refractory_s": 0.3}
    )
    graph.add_node("sink", RecordingSink, inputs={"events": "dvs/events"})
    executor = Executor(graph, simulated=True)
    executor.run(2.0)
    events = executor.node("sink").values("events")
    # Column 1 flips every tick; with a 0.3 s refractory period it fires every ~0.35 s.
    assert 4 <= len(events) <= 7


def encode(kind: str, values: list[list[float]], **config: Any) -> list:
    graph = edgeloop.LoopGraph(name="enc")
    graph.add_node("src", "constant", rate_hz=20, config={"value": values[0]})
    graph.add_node("enc", kind, inputs={"x": "src/action"}, config=config)
    graph.add_node("sink", RecordingSink, inputs={"s": "enc/spikes"})
    executor = Executor(graph, simulated=True, seed=1)
    executor.run(5.0)
    return executor.node("sink").values("s")


def test_rate_coding_fires_in_proportion() -> None:
    spikes = np.array(encode("encode.rate", [[-1.0, 0.0, 0.6, 1.0]]))
    rates = spikes.mean(axis=0)
    assert rates[0] == 0.0 and rates[3] == 1.0
    assert 0.4 < rates[1] < 0.6 and 0.7 < rates[2] < 0.9


def test_latency_coding_fires_larger_values_first() -> None:
    spikes = np.array(encode("encode.latency", [[1.0, 0.0, -1.0]], steps=10))
    first = [int(np.argmax(spikes[:10, i])) for i in range(3)]
    assert first == [0, 4, 9] or first == [0, 5, 9]
    assert spikes[:10].sum() == 3  # once each per window


def test_delta_coding_sends_only_changes() -> None:
    from edgeloop.plugins.events import DeltaEncoder

    node = start_node(DeltaEncoder, {"threshold": 0.1})
    assert node.step({"x": np.array([0.0, 0.0])}) is None  # the first value: a reference
    assert node.step({"x": np.array([0.05, 0.0])}) is None  # below the threshold
    out = node.step({"x": np.array([0.15, -0.2])})["spikes"]
    assert out.tolist() == [1.0, -1.0]
    assert node.step({"x": np.array([0.15, -0.2])}) is None  # no change, no message
