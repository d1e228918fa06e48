"""The board.health sensor in a loop, on a board tree the test builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class HeaterConfig:
    root: str


class Heater(edgeloop.Sensor):
    """Writes the CPU zone's temperature into the board tree: 95 °C from 1 s, back
    to 60 °C from 4 s (a board heating up under load, then cooling)."""

    outputs = ("t",)
    Config = HeaterConfig

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        now = self.ctx.now()
        celsius = 95.0 if 1.0 <= now < 4.0 else 60.0
        zone = Path(self.config.root) / "sys/class/thermal/thermal_zone0/temp"
        zone.write_text(f"{int(celsius * 1000)}\n")
        return {"t": now}


def test_a_hot_board_slows_sensing_and_lightens_the_model_until_it_cools(tmp_path):
    orin_nano(tmp_path)
    graph = edgeloop.LoopGraph(name="hot")
    graph.add_node("heater", Heater, rate_hz=10, config={"root": str(tmp_path)})
    graph.add_node("health", "board.health", rate_hz=10, config={"root": str(tmp_path)})
    graph.add_node(
        "limits",
        "board.limits",
        inputs={"temp_max_c": "health/temp_max_c", "power_w": "health/power_w"},
        config={"temp_c": 85, "hold_s": 0.5, "slow_rate_hz": 2, "rate_hz": 30, "variant": "small"},
    )
    graph.add_node("sink", RecordingSink, inputs={"s": "limits/sensing", "v": "limits/variant"})
    executor = edgeloop.Executor(graph, simulated=True)
    report = executor.run(7.0)
    received = executor.node("sink").received
    assert [(round(t, 1), i["s"], i["v"]) for t, i in received] == [
        (1.5, {"rate_hz": 2.0}, "small"),  # 95 °C since 1.0 s, held 0.5 s
        (4.5, {"rate_hz": 30.0}, "auto"),  # under 85 less 5 % since 4.0 s
    ]
    assert report.series["limits.over"] == [1.0, 0.0]
    assert report.node("limits").notes["state"].startswith("normal since 4.5 s")


def test_limits_that_watch_nothing_or_do_nothing_are_refused(tmp_path):
    from edgeloop.plugins.board_limits import BoardLimits
    from edgeloop.runtime.errors import NodeConfigError
    from edgeloop.runtime.node import build_config

    for config, problem in (
        ({"slow_rate_hz": 1, "rate_hz": 10}, "nothing to watch"),
        ({"temp_c": 80}, "nothing to do"),
        ({"temp_c": 80, "slow_rate_hz": 1}, "go together"),
    ):
        with pytest.raises(NodeConfigError, match=problem):
            build_config("board.limits", BoardLimits.Config, config)


def test_the_report_divides_the_measured_energy_by_readings_and_inferences(tmp_path):
    import onnx_models
    from rich.console import Console

    from edgeloop.runtime.report_table import report_tables
    from edgeloop.testing import CounterSensor

    orin_nano(tmp_path / "board")
    graph = health_loop(tmp_path / "board")
    graph.add_node("counter", CounterSensor, rate_hz=10)
    graph.add_node("obs", "constant", rate_hz=10, config={"value": [0.1, 0.2, 0.3]})
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    graph.add_node(
        "policy", "onnx.model", inputs={"obs": "obs/action"}, config={"model": str(model)}
    )
    report = edgeloop.Executor(graph, simulated=True).run(2.0)
    energy = report.energy
    joules = float(report.node("health").notes["energy_j"])
    assert energy["joules"] == joules and energy["meters"] == ["health"]
    assert energy["readings"] == 20 and energy["inferences"] == 20  # health's own not counted
    assert energy["per_reading_mj"] == pytest.approx(1e3 * joules / 20)
    assert energy["per_inference_mj"] == pytest.approx(1e3 * joules / 20)
    console = Console(record=True, width=200)
    console.print(report_tables(report))
    assert "mJ per inference (20 inferences)" in console.export_text()


def test_the_profile_says_which_rails_to_expect_and_a_board_that_differs_is_noted(tmp_path):
    orin_nano(tmp_path)
    for profile, note in (
        ("jetson-orin-nano-8gb", None),
        ("jetson-agx-orin-32gb", "lists VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO"),
    ):
        graph = health_loop(tmp_path)
        graph.profile = profile
        report = edgeloop.Executor(graph, simulated=True).run(1.0)
        notes = report.node("health").notes
        assert (note in notes["rails"]) if note else ("rails" not in notes)
        assert report.series["health.power_w"][0] == pytest.approx(5.072 * 1.25)
