"""The ``edgeloop`` command, run as a real subprocess: exit codes, messages, reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeloop import GraphError, PluginRegistry, load_graph, validate_graph
from edgeloop.runtime.validation import check_graph

WriteGraph = Callable[..., Path]
LineOf = Callable[[Path, str], int]

BROKEN = """
name: broken
nodes:
  - id: sensor
    type: gym.sensor
    rate_hz: 50
    config: {env: Pendulum-v1, dtt: 0.02}
  - id: controller
    type: pendulum.swingup
    inputs: {obs: sensr/obs}
  - id: safety
    type: clamp
    inputs: {action: controller/action, speed: sensor/obs}
  - id: motor
    type: gym.actuator
    inputs: {action: safety/action}
contracts:
  - name: sense_to_act
    path: [sensor, motor]
    deadline_ms: 20
"""


def edgeloop(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edgeloop ARGS``, as a user's shell would (no colours, no terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "edgeloop", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def words(text: str) -> str:
    """Text with runs of whitespace made one space (the console wraps long lines)."""
    return " ".join(text.split())


def assert_user_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    assert result.stderr.startswith("error:")


def test_validate_accepts_the_pendulum_example(pendulum_yaml: Path):
    result = edgeloop("validate", pendulum_yaml)

    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "5 nodes" in words(result.stdout)


def test_validate_prints_every_problem_with_file_and_line_and_exits_2(
    write_graph: WriteGraph, registry: PluginRegistry
):
    path = write_graph(BROKEN, name="broken.yaml")
    expected = validate_graph(load_graph(path), registry)
    assert len(expected) >= 5

    result = edgeloop("validate", "broken.yaml", cwd=path.parent)

    assert_user_error(result)
    text = words(result.stderr)
    assert f"{len(expected)} problems in loop graph" in text
    for problem in expected:
        assert f"broken.yaml:{problem.line}: {problem.field}:" in text
        assert problem.message in text
        assert f"(fix: {problem.fix})" in text
    assert "did you mean pendulum.swing_up?" in text
    assert "did you mean sensor?" in text


def test_validate_reports_schema_problems_with_file_and_line_and_exits_2(
    write_graph: WriteGraph, line_of: LineOf
):
    path = write_graph(
        """
        name: schema
        nodes:
          - id: sensor
            type: gym.sensor
            rate: 50
          - id: blink
            type: constant
            rate_hz: 0
            inputs: {tick: timer/20xs}
        """,
        name="schema.yaml",
    )

    result = edgeloop("validate", "schema.yaml", cwd=path.parent)

    assert_user_error(result)
    text = words(result.stderr)
    assert f"schema.yaml:{line_of(path, 'rate: 50')}: nodes[0].rate:" in text
    assert "did you mean 'rate_hz'?" in text
    assert f"schema.yaml:{line_of(path, 'rate_hz: 0')}: nodes[1].rate_hz:" in text
    assert f"schema.yaml:{line_of(path, 'timer/20xs')}: nodes[1].inputs.tick.from:" in text


def test_validate_reports_malformed_yaml_with_its_line(write_graph: WriteGraph):
    path = write_graph("name: x\nnodes:\n  - id: a\n    type: [constant\n", name="torn.yaml")

    result = edgeloop("validate", "torn.yaml", cwd=path.parent)

    assert_user_error(result)
    assert "torn.yaml:5: not valid YAML" in words(result.stderr)


def test_validate_keeps_a_long_file_path_and_its_line_on_one_line(tmp_path: Path):
    folder = tmp_path / ("a_folder_with_a_long_name_" * 3)
    folder.mkdir()
    path = folder / "loop.yaml"
    path.write_text("name: x\nnodes:\n  - id: a\n    type: constant\n    rate: 5\n")

    result = edgeloop("validate", path)

    assert_user_error(result)
    assert f"{path}:5: nodes[0].rate: unknown field 'rate'" in result.stderr


def test_validate_of_a_missing_file_exits_2_naming_the_file(tmp_path: Path):
    result = edgeloop("validate", "nowhere.yaml", cwd=tmp_path)

    assert_user_error(result)
    assert "nowhere.yaml: cannot read graph file" in words(result.stderr)


def test_run_on_a_bad_graph_exits_2_listing_its_problems_without_a_traceback(
    write_graph: WriteGraph,
):
    path = write_graph(BROKEN, name="broken.yaml")

    result = edgeloop("run", "broken.yaml", "--sim", "--duration", "1", cwd=path.parent)

    assert_user_error(result)
    assert "broken.yaml:" in result.stderr
    assert "unknown node type 'pendulum.swingup'" in words(result.stderr)


def test_run_on_a_missing_file_exits_2(tmp_path: Path):
    result = edgeloop("run", "nowhere.yaml", "--sim", cwd=tmp_path)

    assert_user_error(result)
    assert "nowhere.yaml" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--duration", "0", "--duration must be a positive number of seconds"),
        ("--duration", "nan", "--duration must be a positive number of seconds"),
        ("--duration", "inf", "--duration must be a positive number of seconds"),
        ("--seed", "-1", "--seed must be >= 0"),
    ],
)
def test_run_with_a_bad_duration_or_seed_exits_2(
    pendulum_yaml: Path, option: str, value: str, says: str
):
    result = edgeloop("run", pendulum_yaml, "--sim", option, value)

    assert_user_error(result)
    assert says in words(result.stderr)


def test_run_with_a_json_report_into_a_missing_folder_exits_2_before_running(
    pendulum_yaml: Path, tmp_path: Path
):
    result = edgeloop("run", pendulum_yaml, "--sim", "--json", tmp_path / "no" / "r.json")

    assert_user_error(result)
    assert "is not an existing folder" in words(result.stderr)


def test_a_run_that_a_stop_policy_ends_exits_1(write_graph: WriteGraph):
    path = write_graph(
        """
        name: stops
        nodes:
          - id: plant
            type: gym.sensor
            rate_hz: 10
            config: {env: Pendulum-v1}
          - id: watcher
            type: log
            rate_hz: 50
            on_fault: stop
            inputs: {obs: {from: plant/obs, stale_ms: 30}}
        """
    )
    result = edgeloop("run", path, "--sim", "--duration", "1")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "faulted (stale_input" in words(result.stdout)


def test_graph_prints_the_nodes_and_edges_as_text(pendulum_yaml: Path):
    result = edgeloop("graph", pendulum_yaml)

    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines[0] == "pendulum"
    assert "sensor (gym.sensor) @ 50 Hz" in lines
    assert "obs <- sensor/obs  (latest, stale 100 ms)" in lines
    assert "action <- controller/action  (latest)" in lines
    assert "action <- safety/action  (latest)" in lines
    assert any(line.startswith("controller (pendulum.swing_up)") for line in lines)
    assert any("fallback -> safe_torque" in line for line in lines)
    assert "contract sense_to_act: sensor -> controller -> safety -> motor within 20 ms" in lines


def test_graph_mermaid_prints_the_nodes_and_edges_as_a_flowchart(pendulum_yaml: Path):
    result = edgeloop("graph", pendulum_yaml, "--mermaid")

    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines[0] == "flowchart LR"
    for node_id, node_type in [
        ("sensor", "gym.sensor @ 50 Hz"),
        ("controller", "pendulum.swing_up"),
        ("safe_torque", "constant"),
        ("safety", "clamp"),
        ("motor", "gym.actuator"),
    ]:
        mermaid_id = "n_" + node_id.replace("_", "__")
        assert f'{mermaid_id}["{node_id}<br/><small>{node_type}</small>"]' in lines
    assert "n_sensor -->|obs| n_controller" in lines
    assert "n_controller -->|action| n_safety" in lines
    assert "n_safety -->|action| n_motor" in lines
    assert "n_controller -. fallback .-> n_safe__torque" in lines


def test_graph_mermaid_draws_timers_and_feedback_edges(write_graph: WriteGraph):
    path = write_graph(
        """
        name: shapes
        nodes:
          - id: pid
            type: pid
            inputs:
              measurement: timer/20ms
              setpoint: {from: safety/action, feedback: true}
          - id: safety
            type: clamp
            inputs: {action: pid/action}
        """
    )

    result = edgeloop("graph", path, "--mermaid")

    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert 'timer_0(("timer/20ms")) -->|measurement| n_pid' in lines
    assert "n_safety -.->|action : setpoint| n_pid" in lines
    assert "n_pid -->|action| n_safety" in lines


def test_graph_mermaid_keeps_ids_that_differ_only_by_dash_and_underscore_apart(
    write_graph: WriteGraph,
):
    path = write_graph(
        """
        name: ids
        nodes:
          - id: left-arm
            type: constant
            rate_hz: 10
          - id: left_arm
            type: log
            inputs: {value: left-arm/action}
        """
    )

    result = edgeloop("graph", path, "--mermaid")

    assert result.returncode == 0, result.stderr
    declared = [
        line.split("[")[0].strip() for line in result.stdout.splitlines() if "<br/>" in line
    ]
    assert len(set(declared)) == 2
    edge = next(line.strip() for line in result.stdout.splitlines() if "-->" in line)
    source, _, target = edge.partition(" -->|action : value| ")
    assert source != target and {source, target} == set(declared)


def test_graph_of_a_bad_file_exits_2(write_graph: WriteGraph):
    path = write_graph("name: x\nnodes:\n  - id: a\n    type: constant\n    rate: 5\n")

    result = edgeloop("graph", path)

    assert_user_error(result)
    assert "unknown field 'rate'" in words(result.stderr)


def test_help_lists_the_commands(tmp_path: Path):
    result = edgeloop("--help")

    assert result.returncode == 0, result.stderr
    for command in ("run", "validate", "plugins", "graph"):
        assert command in result.stdout
    assert "examples/pendulum/loop.yaml" in result.stdout


def test_run_help_explains_every_option():
    result = edgeloop("run", "--help")

    assert result.returncode == 0, result.stderr
    text = words(result.stdout)
    for option in ("--duration S", "--sim", "--seed N", "--json FILE", "--quiet", "--verbose"):
        assert option in text
    assert "simulated clock" in text
    assert "write the report as JSON" in text


def test_no_command_prints_usage_and_exits_2():
    result = edgeloop()

    assert result.returncode == 2
    assert "usage: edgeloop" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_lists_the_built_in_node_types():
    result = edgeloop("plugins")

    assert result.returncode == 0, result.stderr
    for name in ("gym.sensor", "gym.actuator", "pid", "pendulum.swing_up", "clamp", "constant"):
        assert name in result.stdout


def test_plugins_show_prints_a_type_in_full_from_its_code():
    result = edgeloop("plugins", "show", "pid")

    assert result.returncode == 0, result.stderr
    text = words(result.stdout)
    assert text.startswith("pid (controller, plugin builtin) PID control of one element")
    for fragment in (
        "measurement │ float64",  # an input with its dtype
        "action │ float64 │ (1,)",  # an output with its shape
        "kp │ float │ 1.0 │ Proportional gain.",  # a config key: type, default, doc
        "limit │ float | None │ null",
        "faults",
        "- id: pid type: pid",  # the YAML snippet
    ):
        assert fragment in text, fragment
    typo = edgeloop("plugins", "show", "pdi")
    assert_user_error(typo)
    assert "did you mean pid?" in typo.stderr


def test_plugins_docs_writes_the_markdown_reference(tmp_path: Path):
    result = edgeloop("plugins", "docs", "--only", "builtin", "-o", tmp_path / "n.md")

    assert result.returncode == 0, result.stderr
    text = (tmp_path / "n.md").read_text()
    assert text.startswith("# Node types") and "## `gym.sensor`" in text
    assert "## `field.search`" not in text  # registered by the worlds plugin, not builtin
    unknown = edgeloop("plugins", "docs", "--only", "nosuch")
    assert_user_error(unknown)
    assert "--only nosuch: no such plugin" in unknown.stderr


def test_profiles_help_shows_show_as_optional():
    result = edgeloop("profiles", "--help")

    assert result.returncode == 0, result.stderr
    assert "usage: edgeloop profiles [-h] [show NAME]" in result.stdout


def installed_script() -> Path:
    script = Path(sys.executable).parent / "edgeloop"
    if not script.exists():
        found = shutil.which("edgeloop")
        if found is None:
            pytest.skip("the edgeloop console script is not installed")
        script = Path(found)
    return script


def check_pendulum_report(report: dict) -> None:
    assert report["graph"] == "pendulum"
    assert report["simulated"] is True
    assert report["duration_s"] == 2.0
    nodes = {n["id"]: n for n in report["nodes"]}
    assert set(nodes) == {"sensor", "controller", "safe_torque", "safety", "motor"}
    # 50 Hz for 2 s of simulated time; every sensor reading flows through to the motor.
    for node_id in ("sensor", "controller", "safety", "motor"):
        assert nodes[node_id]["calls"] == 100, node_id
        assert nodes[node_id]["faults"] == {}
    assert nodes["safe_torque"]["calls"] == 0  # only used when the controller faults
    (contract,) = report["contracts"]
    assert contract["name"] == "sense_to_act"
    assert contract["path"] == ["sensor", "controller", "safety", "motor"]
    assert contract["count"] == 100
    assert contract["deadline_misses"] == 0
    timers = {t["source"]: t for t in report["timers"]}
    assert timers["sensor@50Hz"]["period_ms"] == 20.0
    assert timers["sensor@50Hz"]["fired"] == 100
    # the controller's obs has stale_ms 100 and the controller is event-driven
    assert timers["controller.obs stale watchdog"]["period_ms"] == 50.0


def test_run_of_the_pendulum_example_in_simulated_time_writes_a_json_report(
    pendulum_yaml: Path, tmp_path: Path
):
    pytest.importorskip("gymnasium")
    out = tmp_path / "out.json"

    result = edgeloop("run", pendulum_yaml, "--sim", "--duration", "2", "--json", out)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "sensor" in result.stdout  # the report table
    check_pendulum_report(json.loads(out.read_text()))


def test_the_installed_edgeloop_script_runs_the_pendulum_example(
    pendulum_yaml: Path, tmp_path: Path
):
    pytest.importorskip("gymnasium")
    script = installed_script()
    out = tmp_path / "out.json"

    result = subprocess.run(
        [
            str(script),
            "run",
            str(pendulum_yaml),
            "--sim",
            "--duration",
            "2",
            "--quiet",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet
    check_pendulum_report(json.loads(out.read_text()))


def test_the_cli_and_the_library_agree_on_what_is_wrong(write_graph: WriteGraph):
    # The library raises the same problems the CLI prints, as one GraphError.
    path = write_graph(BROKEN, name="broken.yaml")
    with pytest.raises(GraphError) as caught:
        check_graph(load_graph("broken.yaml", text=path.read_text()), PluginRegistry())

    result = edgeloop("validate", "broken.yaml", cwd=path.parent)

    assert_user_error(result)
    assert words(str(caught.value)) in words(result.stderr)


def test_run_prints_the_contract_fault_and_series_tables(write_graph: WriteGraph):
    path = write_graph(
        """
        name: tables
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
            config: {env: Pendulum-v1, max_episode_steps: 20}
          - id: controller
            type: pid
            inputs: {measurement: sensor/obs}
            config: {index: 7}
            on_fault: {fallback: safe}
          - id: safe
            type: constant
            config: {dtype: float64}
          - id: motor
            type: gym.actuator
            inputs: {action: controller/action}
        contracts:
          - name: sense_to_act
            path: [sensor, controller, motor]
            deadline_ms: 20
        """
    )
    result = edgeloop("run", path, "--sim", "--duration", "1")

    assert result.returncode == 0, result.stderr
    out = words(result.stdout)
    assert "sense-to-act contracts" in out and "sense_to_act" in out
    assert "faults (last 10 of 50)" in out and "fallback:safe" in out
    assert "motor.episode_return" in out


def test_run_with_the_same_seed_gives_the_same_episode_returns(
    write_graph: WriteGraph, tmp_path: Path
):
    path = write_graph(
        """
        name: seeded
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
            config: {env: Pendulum-v1, dt: 0.02, max_episode_steps: 50}
          - id: controller
            type: pendulum.swing_up
            inputs: {obs: sensor/obs}
          - id: motor
            type: gym.actuator
            inputs: {action: controller/action}
        """
    )

    def returns(seed: int) -> list[float]:
        report = tmp_path / f"seed{seed}.json"
        result = edgeloop("run", path, "--sim", "--duration", "3", "--seed", seed, "--json", report)
        assert result.returncode == 0, result.stderr
        return json.loads(report.read_text())["series"]["motor.episode_return"]

    first = returns(1)
    assert len(first) == 3
    assert returns(1) == first
    assert returns(2) != first


def test_keys_makes_a_curve_pair_once_and_never_overwrites_it(tmp_path: Path):
    import zmq.auth

    made = edgeloop("keys", "board", "-o", tmp_path / "keys")
    assert made.returncode == 0, made.stderr
    public, secret = zmq.auth.load_certificate(str(tmp_path / "keys" / "board.key_secret"))
    assert len(public) == 40 and len(secret) == 40  # Z85 text of 32-byte keys
    assert (tmp_path / "keys" / "board.key_secret").stat().st_mode & 0o077 == 0
    again = edgeloop("keys", "board", "-o", tmp_path / "keys")
    assert_user_error(again)
    assert "exists already" in again.stderr
