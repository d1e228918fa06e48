"""The board.health sensor in a loop, on a board tree the test builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from board_trees import orin_nano

import edgeloop
from edgeloop.testing import RecordingSink


def health_loop(root: Path) -> edgeloop.LoopGraph:
    graph = edgeloop.LoopGraph(name="health")
    graph.add_node("health", "board.health", rate_hz=2, config={"root": str(root)})
    graph.add_node(
        "sink",
        RecordingSink,
        inputs={p: f"health/{p}" for p in ("health", "power_w", "temp_max_c", "cpu_percent")},
    )
    return graph


def test_it_publishes_the_board_and_integrates_its_power_into_energy(tmp_path):
    orin_nano(tmp_path)
    executor = edgeloop.Executor(health_loop(tmp_path), simulated=True)
    report = executor.run(2.0)
    sink = executor.node("sink")
    watts = 5.072 * 1.25
    assert [float(w) for w in sink.values("power_w")] == pytest.approx([watts] * 4)
    assert float(sink.values("temp_max_c")[-1]) == 48.531
    assert sink.values("health")[-1]["power_mode"] == "7W"
    notes = report.node("health").notes
    assert notes["absent"] == "none"
    # Readings at 0, 0.5, 1.0 and 1.5 s: 1.5 s of the same power.
    assert float(notes["energy_j"]) == pytest.approx(1.5 * watts, abs=1e-3)
    assert report.series["health.power_w"] == pytest.approx([watts] * 4)


def test_fields_a_board_lacks_are_named_and_their_ports_stay_silent(tmp_path):
    executor = edgeloop.Executor(health_loop(tmp_path), simulated=True)
    report = executor.run(1.0)
    sink = executor.node("sink")
    assert sink.values("power_w") == [None, None]
    assert sink.values("health")[0] == {"absent": sink.values("health")[0]["absent"]}
    notes = report.node("health").notes
    assert notes["absent"].startswith("cpu_percent, mem_used_mib, temp_max_c, power_w")
    assert "energy_j" not in notes and "health.power_w" not in report.series
