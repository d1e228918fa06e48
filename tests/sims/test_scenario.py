"""Multi-agent scenarios: a world process and agent processes over real ZeroMQ.

The shipped collaborative-sensing world passes PettingZoo's own API test; a
third-party PettingZoo world (mpe2) runs as a world; the same seed gives the
same run twice, in processes or in one; sharing what was sensed makes the team
sense less for the same result; the CLI prints its table and draws the plot.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("gymnasium")

from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims.scenario import Scenario, build_graph, load_scenario, run_scenario
from edgeloop.sims.sensing_field import SensingField

FIELD = Path(__file__).parents[2] / "examples" / "field-search" / "scenario.yaml"


def field(relay: bool = True, **changes: object) -> Scenario:
    scenario = load_scenario(FIELD)
    data = scenario.model_dump()
    data["world"]["relay"] = relay
    data["agent"]["nodes"][0]["config"]["share"] = relay
    if not relay:
        data["agent"]["share"] = None
        data["agent"]["nodes"][0]["inputs"] = {"obs": "world/obs"}
    data.update(changes)
    return Scenario.model_validate(data)


def test_the_sensing_field_passes_the_pettingzoo_api_test() -> None:
    api_test = pytest.importorskip("pettingzoo.test").parallel_api_test
    api_test(SensingField(n_agents=3, targets=5, max_steps=60), num_cycles=200)


def test_a_sense_finds_the_targets_in_its_radius_and_costs_energy() -> None:
    env = SensingField(n_agents=1, targets=3, radius=1.0, sense_cost=2.5)
    env.reset(seed=0)
    env.targets = np.array([[5.0, 5.0], [5.5, 5.0], [9.0, 9.0]])
    env.positions[0] = [5.0, 5.0]
    _, rewards, _, _, infos = env.step({"robot_0": np.array([0, 0, 1], np.float32)})
    assert rewards["robot_0"] == 2.0
    assert infos["robot_0"]["energy"] == 2.5
    _, rewards, _, _, infos = env.step({"robot_0": np.array([0, 0, 0], np.float32)})
    assert rewards["robot_0"] == 0.0 and infos["robot_0"]["energy"] == 0.0


def test_the_graph_places_each_agent_in_its_own_group() -> None:
    graph = build_graph(field(), 3)
    assert [n.group for n in graph.nodes] == ["world", "robot_0", "robot_1", "robot_2"]
    search = graph.node("robot_1_search")
    assert search.inputs["obs"].source == "world/obs_robot_1"
    assert search.inputs["shared"].source == "world/shared_robot_1"
    world = graph.node("world")
    assert world.inputs["action_robot_2"].source == "robot_2_search/action"
    assert world.inputs["share_robot_2"].queue == "fifo"
    packed = build_graph(field(agents_per_process=2), 3)
    assert [n.group for n in packed.nodes] == ["world", "agents0", "agents0", "agents1"]


def test_auto_packs_agents_only_when_they_outnumber_the_cores_many_times() -> None:
    from edgeloop.sims.scenario import PROCESSES_PER_CORE, agents_per_process

    auto = field()
    assert auto.agents_per_process == "auto"
    assert agents_per_process(auto, 16, cores=2) == 1  # 16 processes on 2 cores: one each
    assert agents_per_process(auto, 17, cores=2) == 2
    assert agents_per_process(auto, 1000, cores=2) == 63  # 16 processes of 63 at most
    assert agents_per_process(field(agents_per_process=5), 1000, cores=2) == 5
    cores = os.cpu_count() or 1
    many = PROCESSES_PER_CORE * cores + 1
    groups = {n.group for n in build_graph(auto, many).nodes} - {"world"}
    assert len(groups) == math.ceil(many / 2)


def test_same_seed_same_run_in_processes_and_in_one() -> None:
    scenario = field()
    first, m1 = run_scenario(scenario, agents=3, seed=5, duration_s=8)
    second, m2 = run_scenario(scenario, agents=3, seed=5, duration_s=8)
    alone, m3 = run_scenario(scenario, agents=3, seed=5, duration_s=8, one_process=True)
    assert first.series == second.series == alone.series
    assert m1["team_return"] == m2["team_return"] == m3["team_return"] > 0
    assert m1["messages"] == m2["messages"] > 0  # between processes; none in one
    assert m3["messages"] == 0
    assert m1["miss_rate"] == 0.0  # lockstep: every answer is in time
    other, _ = run_scenario(scenario, agents=3, seed=6, duration_s=8, one_process=True)
    assert other.series["world.x.robot_0"] != first.series["world.x.robot_0"]


def test_sharing_what_was_sensed_saves_sensing() -> None:
    """With the relay, robots skip cells a teammate sensed: less energy per target."""
    shared = run_scenario(field(relay=True), agents=4, seed=1, duration_s=30, one_process=True)[1]
    alone = run_scenario(field(relay=False), agents=4, seed=1, duration_s=30, one_process=True)[1]
    assert shared["episodes"] > alone["episodes"] >= 1  # the team finishes searches sooner
    assert shared["energy_per_return"] < 0.8 * alone["energy_per_return"]  # 0.65 measured


def test_a_pettingzoo_world_from_another_package(tmp_path: Path) -> None:
    pytest.importorskip("mpe2")
    scenario = Scenario.model_validate(
        {
            "name": "spread",
            "world": {
                "env": "mpe2.simple_spread_v3:parallel_env",
                "kwargs": {"max_cycles": 30},
                "agents_kwarg": "N",
                "rate_hz": 10,
            },
            "agent": {
                "nodes": [
                    {
                        "id": "policy",
                        "type": "constant",
                        "inputs": {"obs": "world/obs"},
                        "config": {"value": [2], "dtype": "int64"},
                    }
                ],
                "action": "policy/action",
            },
            "agents": 3,
            "duration_s": 10,
        }
    )
    report, metrics = run_scenario(scenario, seed=0)
    assert [a["agent"] for a in metrics["per_agent"]] == ["agent_0", "agent_1", "agent_2"]
    assert metrics["episodes"] >= 3  # 99 steps of 30-step episodes
    assert metrics["miss_rate"] == 0.0
    assert report.node("agent_1_policy").calls == 100
    again, _ = run_scenario(scenario, seed=0)
    assert again.series == report.series


def test_bad_scenarios_are_refused_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    data = yaml.safe_load(FIELD.read_text())
    data["world"]["rate"] = 20
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(EdgeloopError, match=r"world\.rate"):
        load_scenario(path)
    data = yaml.safe_load(FIELD.read_text())
    data["world"]["env"] = "no_such_module:World"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(EdgeloopError, match="cannot be imported"):
        build_graph(load_scenario(path))
    with pytest.raises(EdgeloopError, match="has 2 agents, 3 asked"):
        build_graph(
            Scenario.model_validate(
                {
                    **load_scenario(FIELD).model_dump(),
                    "world": {"env": "mpe2.simple_spread_v3:parallel_env", "kwargs": {"N": 2}},
                }
            ),
            3,
        )


def test_cli_sim_prints_the_table_plots_and_writes_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = subprocess.run(
        [
            sys.executable, "-m", "edgeloop", "sim", str(FIELD), "--agents", "3",
            "--duration", "10", "--plot", "t.png", "--json", "m.json", "--record", "r.mcap",
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "robot_2" in result.stdout and "sensing energy" in result.stdout
    assert (tmp_path / "t.png").stat().st_size > 10_000
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["agents"] == 3
    assert metrics["steps"] + metrics["episodes"] + 1 == 200  # 10 s at 20 Hz: steps and resets
    assert "recorded" in result.stdout and (tmp_path / "r.mcap").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "edgeloop", "sim", "missing.yaml"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "missing.yaml: cannot read scenario file" in bad.stderr
    (tmp_path / "broken.yaml").write_text("name: s\nworld: {env: x\nagent: {}\n")
    broken = subprocess.run(
        [sys.executable, "-m", "edgeloop", "sim", "broken.yaml"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "broken.yaml:3: not valid YAML" in broken.stderr and "(fix: " in broken.stderr


def test_sim_loads_the_plugin_of_an_agent_loop_that_is_not_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeloop.cli import main

    (tmp_path / "mysearch.py").write_text(
        "import edgeloop\n"
        "from edgeloop.sims.sensing_field import FieldSearch\n\n\n"
        "class MySearch(FieldSearch):\n"
        '    """The field search under a name of our own."""\n\n\n'
        "@edgeloop.hookimpl\n"
        "def edgeloop_register_node_types():\n"
        '    return {"my.search": MySearch}\n'
    )
    data = yaml.safe_load(FIELD.read_text())
    data["agent"]["nodes"][0]["type"] = "my.search"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)  # the plugin's module imports from the current folder
    args = ["sim", "mine.yaml", "--agents", "2", "--duration", "2", "--one-process"]
    assert main(args) == 2
    assert "unknown node type 'my.search'" in capsys.readouterr().err
    assert main([*args, "--plugin", "mysearch"]) == 0, capsys.readouterr().err
    assert "robot_1" in capsys.readouterr().out
