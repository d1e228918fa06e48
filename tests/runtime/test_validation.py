"""Validating graphs against the real registry: every problem, with file, line, field and fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edgeloop import GraphError, GraphProblem, LoopGraph, PluginRegistry, load_graph, validate_graph
from edgeloop.runtime.validation import check_graph
from edgeloop.testing import CounterSensor

WriteGraph = Callable[..., Path]
LineOf = Callable[[Path, str], int]


@pytest.fixture
def problems_in(registry: PluginRegistry) -> Callable[[Path], list[GraphProblem]]:
    def validate(path: Path) -> list[GraphProblem]:
        return validate_graph(load_graph(path), registry)

    return validate


@pytest.fixture
def only_problem(
    problems_in: Callable[[Path], list[GraphProblem]],
) -> Callable[[Path], GraphProblem]:
    def validate(path: Path) -> GraphProblem:
        problems = problems_in(path)
        assert len(problems) == 1, problems
        assert problems[0].file == str(path)
        return problems[0]

    return validate


def test_the_pendulum_example_is_valid(pendulum_yaml: Path, registry: PluginRegistry):
    graph = load_graph(pendulum_yaml)

    assert validate_graph(graph, registry) == []
    check_graph(graph, registry)  # does not raise


def test_an_unknown_node_type_is_reported_with_close_matches(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        """
        name: typo
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: controller
            type: pendulum.swingup
            inputs: {obs: sensor/obs}
        """
    )

    problem = only_problem(path)

    assert problem.message == "unknown node type 'pendulum.swingup'"
    assert problem.field == "nodes[1].type"
    assert problem.line == line_of(path, "pendulum.swingup")
    assert problem.fix == "did you mean pendulum.swing_up?"


def test_an_unknown_node_type_with_no_close_match_points_to_the_plugin_list(
    write_graph: WriteGraph, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        "name: x\nnodes:\n  - id: lidar\n    type: velodyne.vlp16\n    rate_hz: 10\n"
    )

    problem = only_problem(path)

    assert (problem.field, problem.line) == ("nodes[0].type", 4)
    assert "edgeloop plugins" in problem.fix


def test_a_node_of_unknown_type_causes_no_further_problems_about_its_ports(
    write_graph: WriteGraph, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        """
        name: cascade
        nodes:
          - id: cam
            type: camera.usb
            inputs: {whatever: timer/10ms}
          - id: log
            type: log
            inputs: {frame: cam/image}
        """
    )

    assert only_problem(path).field == "nodes[0].type"


def test_an_input_wired_to_a_missing_node_is_reported_with_a_close_match(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        """
        name: wiring
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: controller
            type: pendulum.swing_up
            inputs:
              obs: sensr/obs
        """
    )

    problem = only_problem(path)

    assert problem.message == "input wired to missing node 'sensr'"
    assert problem.field == "nodes[1].inputs.obs"
    assert problem.line == line_of(path, "obs: sensr/obs")
    assert problem.fix == "did you mean sensor?"


def test_an_input_wired_to_a_missing_output_of_an_existing_node_names_its_outputs(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        """
        name: wiring
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: controller
            type: pendulum.swing_up
            inputs:
              obs: sensor/observation
        """
    )

    problem = only_problem(path)

    assert problem.message == "node 'sensor' has no output 'observation'"
    assert problem.field == "nodes[1].inputs.obs"
    assert problem.line == line_of(path, "sensor/observation")
    assert "obs" in problem.fix


def test_an_input_port_the_node_type_does_not_declare_is_reported(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        """
        name: ports
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: controller
            type: pendulum.swing_up
            inputs:
              ob: sensor/obs
        """
    )

    problem = only_problem(path)

    assert problem.message == "node type 'pendulum.swing_up' has no input 'ob'"
    assert problem.field == "nodes[1].inputs.ob"
    assert problem.line == line_of(path, "ob: sensor/obs")
    assert problem.fix == "did you mean obs?"


def test_a_node_type_that_accepts_any_inputs_takes_any_port_name(
    write_graph: WriteGraph, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        """
        name: logging
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: log
            type: log
            inputs: {anything_at_all: sensor/obs}
        """
    )

    assert problems_in(path) == []


def test_an_output_the_node_type_does_not_declare_is_reported(
    write_graph: WriteGraph, line_of: LineOf, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        """
        name: outputs
        nodes:
          - id: source
            type: constant
            rate_hz: 10
            outputs: [actoin]
        """
    )

    (problem,) = problems_in(path)

    assert problem.field == "nodes[0].outputs"
    assert problem.line == line_of(path, "outputs:")
    assert problem.fix == "did you mean action?"


def test_duplicate_ids_are_reported_at_the_second_entry(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        """
        name: twins
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: source   # again
            type: constant
            rate_hz: 20
        """
    )

    problem = only_problem(path)

    assert problem.message == "duplicate node id 'source' (first at nodes[0])"
    assert problem.field == "nodes[1].id"
    assert problem.line == line_of(path, "# again")
    assert "unique" in problem.fix


def test_the_reserved_id_timer_is_reported(
    write_graph: WriteGraph, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph("name: x\nnodes:\n  - id: timer\n    type: constant\n    rate_hz: 10\n")

    problem = only_problem(path)

    assert (problem.field, problem.line) == ("nodes[0].id", 3)
    assert "reserved" in problem.message and problem.fix


CYCLE = """
name: cycle
nodes:
  - id: sensor
    type: gym.sensor
    rate_hz: 50
  - id: pid
    type: pid
    inputs:
      measurement: sensor/obs
      setpoint: {SETPOINT}
  - id: safety
    type: clamp
    inputs: {{action: pid/action}}
"""


def test_a_cycle_not_marked_as_feedback_is_reported_at_the_edge_that_closes_it(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(CYCLE.format(SETPOINT="safety/action"))

    problem = only_problem(path)

    assert problem.message == "cycle without a feedback edge: pid -> safety -> pid"
    assert problem.field == "nodes[1].inputs.setpoint"
    assert problem.line == line_of(path, "setpoint:")
    assert "feedback: true" in problem.fix


def test_marking_one_edge_of_a_cycle_as_feedback_makes_the_graph_valid(
    write_graph: WriteGraph, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(CYCLE.format(SETPOINT="{from: safety/action, feedback: true}"))

    assert problems_in(path) == []


def test_a_node_wired_to_itself_is_a_cycle(
    write_graph: WriteGraph, line_of: LineOf, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        """
        name: self
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: filter
            type: clamp
            inputs:
              action: filter/action
        """
    )

    (problem,) = problems_in(path)

    assert problem.message == "cycle without a feedback edge: filter -> filter"
    assert problem.line == line_of(path, "action: filter/action")


def test_every_cycle_of_a_graph_is_reported(
    write_graph: WriteGraph, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        """
        name: cycles
        nodes:
          - id: a
            type: clamp
            inputs: {action: b/action}
          - id: b
            type: clamp
            inputs: {action: a/action}
          - id: c
            type: clamp
            inputs: {action: d/action}
          - id: d
            type: clamp
            inputs: {action: c/action}
        """
    )

    messages = sorted(p.message for p in problems_in(path))

    assert messages == [
        "cycle without a feedback edge: a -> b -> a",
        "cycle without a feedback edge: c -> d -> c",
    ]


PENDULUM_WITH_CONTRACT = """
name: contracts
nodes:
  - id: sensor
    type: gym.sensor
    rate_hz: 50
  - id: controller
    type: pendulum.swing_up
    inputs: {{obs: sensor/obs}}
  - id: safety
    type: clamp
    inputs: {{action: controller/action}}
  - id: motor
    type: gym.actuator
    inputs: {{action: safety/action}}
contracts:
  - name: sense_to_act
    deadline_ms: 20
    path:
{PATH}
"""


def test_a_contract_naming_a_missing_node_is_reported_at_that_entry(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path_entries = "      - sensor\n      - controler\n      - safety\n      - motor"
    path = write_graph(PENDULUM_WITH_CONTRACT.format(PATH=path_entries))

    problem = only_problem(path)

    assert problem.message == "contract path names missing node 'controler'"
    assert problem.field == "contracts[0].path[1]"
    assert problem.line == line_of(path, "- controler")
    assert problem.fix.startswith("did you mean controller")


def test_a_contract_over_nodes_that_are_not_connected_is_reported_at_the_gap(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path_entries = "      - sensor\n      - safety\n      - motor"
    path = write_graph(PENDULUM_WITH_CONTRACT.format(PATH=path_entries))

    problem = only_problem(path)

    assert problem.message == "contract path has no edge sensor -> safety"
    assert problem.field == "contracts[0].path[1]"
    assert problem.line == line_of(path, "- safety")
    assert "wire an input of 'safety'" in problem.fix


def test_a_contract_in_flow_style_is_reported_at_its_path_line(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(PENDULUM_WITH_CONTRACT.format(PATH="      [motor, safety]"))

    problem = only_problem(path)

    assert problem.message == "contract path has no edge motor -> safety"
    assert problem.line == line_of(path, "[motor, safety]")


def test_an_unknown_config_key_is_reported_with_a_close_match(
    write_graph: WriteGraph, line_of: LineOf, only_problem: Callable[[Path], GraphProblem]
):
    path = write_graph(
        """
        name: config
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
            config:
              env: Pendulum-v1
              dtt: 0.02
        """
    )

    problem = only_problem(path)

    assert problem.message == "unknown config key 'dtt' for node type 'gym.sensor'"
    assert problem.field == "nodes[0].config.dtt"
    assert problem.line == line_of(path, "dtt: 0.02")
    assert problem.fix == "did you mean dt?"


@pytest.mark.parametrize(
    ("node", "key", "value", "expected"),
    [
        ("clamp", "low", "minus two", "float"),
        ("constant", "value", "3", "list"),
        ("gym.sensor", "max_episode_steps", "lots", "int"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_reported_with_the_type_expected(
    write_graph: WriteGraph,
    line_of: LineOf,
    problems_in: Callable[[Path], list[GraphProblem]],
    node: str,
    key: str,
    value: str,
    expected: str,
):
    path = write_graph(
        f"""
        name: config
        nodes:
          - id: node
            type: {node}
            rate_hz: 10
            config:
              {key}: {value}
        """
    )

    (problem,) = problems_in(path)

    assert problem.field == f"nodes[0].config.{key}"
    assert problem.line == line_of(path, f"{key}: {value}")
    assert f"'{key}'" in problem.message and value in problem.message
    assert problem.fix.startswith("expected") and expected in problem.fix


def test_a_fallback_to_a_missing_node_is_reported_with_a_close_match(
    write_graph: WriteGraph, line_of: LineOf, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        """
        name: fallback
        nodes:
          - id: source
            type: constant
            rate_hz: 10
            on_fault: {fallback: safe_stp}
          - id: safe_stop
            type: constant
            rate_hz: 1
        """
    )

    (problem,) = problems_in(path)

    assert problem.message == "fallback node 'safe_stp' does not exist"
    assert problem.field == "nodes[0].on_fault"
    assert problem.line == line_of(path, "on_fault:")
    assert problem.fix == "did you mean safe_stop?"


def test_a_node_cannot_be_its_own_fallback(
    write_graph: WriteGraph, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        "name: x\nnodes:\n  - id: a\n    type: constant\n    rate_hz: 10\n"
        "    on_fault: {fallback: a}\n"
    )

    (problem,) = problems_in(path)

    assert (problem.field, problem.line) == ("nodes[0].on_fault", 6)
    assert "own fallback" in problem.message and problem.fix


def test_a_fallback_without_the_outputs_of_its_node_is_reported(
    write_graph: WriteGraph, line_of: LineOf, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        """
        name: fallback
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: controller
            type: pendulum.swing_up
            inputs: {obs: sensor/obs}
            on_fault: {fallback: sensor}
        """
    )

    (problem,) = problems_in(path)

    assert problem.message == "fallback node 'sensor' lacks output(s) action of 'controller'"
    assert problem.line == line_of(path, "on_fault:")
    assert "same outputs" in problem.fix


@pytest.mark.parametrize(
    "inputs",
    [
        "",
        "inputs: {action: {from: source/action, feedback: true}}",
        "inputs: {action: {from: source/action, trigger: false}}",
    ],
    ids=["no inputs", "only a feedback input", "only a non-triggering input"],
)
def test_a_node_that_never_runs_is_reported(
    write_graph: WriteGraph,
    line_of: LineOf,
    problems_in: Callable[[Path], list[GraphProblem]],
    inputs: str,
):
    path = write_graph(
        f"""
        name: idle
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: idle
            type: clamp
            {inputs}
        """
    )

    (problem,) = problems_in(path)

    assert problem.message == "node 'idle' never runs: it has no rate and no triggering input"
    assert problem.field == "nodes[1]"
    assert problem.line == line_of(path, "id: idle")
    assert "rate_hz" in problem.fix and "timer/" in problem.fix


@pytest.mark.parametrize(
    "schedule",
    ["rate_hz: 5", "inputs: {tick: timer/20ms}", "inputs: {action: source/action}"],
)
def test_a_node_with_a_rate_a_timer_or_a_triggering_input_runs(
    write_graph: WriteGraph, problems_in: Callable[[Path], list[GraphProblem]], schedule: str
):
    path = write_graph(
        f"""
        name: busy
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: log
            type: log
            {schedule}
        """
    )

    assert problems_in(path) == []


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
    config: {low: minus two}
    inputs:
      action: sensor/action
      speed: sensor/obs
  - id: motor
    type: gym.actuator
    inputs: {action: safety/action}
    on_fault: {fallback: safe}
  - id: motor
    type: log
  - id: loop
    type: clamp
    inputs: {action: loop/action}
contracts:
  - name: c
    path: [sensor, motor]
    deadline_ms: 20
"""


def test_validate_graph_returns_every_problem_at_once(
    write_graph: WriteGraph, line_of: LineOf, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(BROKEN)

    problems = problems_in(path)

    assert sorted((p.field, p.line) for p in problems) == sorted(
        [
            ("nodes[0].config.dtt", line_of(path, "dtt: 0.02")),
            ("nodes[1].type", line_of(path, "pendulum.swingup")),
            ("nodes[1].inputs.obs", line_of(path, "sensr/obs")),
            ("nodes[2].config.low", line_of(path, "low: minus two")),
            ("nodes[2].inputs.action", line_of(path, "action: sensor/action")),
            ("nodes[2].inputs.speed", line_of(path, "speed: sensor/obs")),
            ("nodes[3].on_fault", line_of(path, "fallback: safe")),
            ("nodes[4].id", line_of(path, "type: log") - 1),
            ("nodes[4]", line_of(path, "type: log") - 1),  # the second 'motor' never runs
            ("nodes[5].inputs.action", line_of(path, "loop/action")),
            ("contracts[0].path[1]", line_of(path, "path: [sensor, motor]")),
        ]
    )
    assert all(p.file == str(path) and p.message and p.fix for p in problems)


def test_check_graph_raises_one_graph_error_listing_every_problem(
    write_graph: WriteGraph, registry: PluginRegistry
):
    path = write_graph(BROKEN)
    graph = load_graph(path)

    with pytest.raises(GraphError) as caught:
        check_graph(graph, registry)

    assert caught.value.problems == validate_graph(graph, registry)
    text = str(caught.value)
    assert text.startswith(f"{len(caught.value.problems)} problems in loop graph")
    assert all(str(p) in text for p in caught.value.problems)


def test_a_graph_built_in_python_is_validated_without_file_or_line(registry: PluginRegistry):
    graph = LoopGraph(name="built")
    graph.add_node("counter", CounterSensor, rate_hz=10, config={"strat": 1})
    graph.add_node("controller", "pendulum.swingup", inputs={"obs": "counter/value"})

    problems = validate_graph(graph, registry)

    assert [(p.field, p.file, p.line) for p in problems] == [
        ("nodes[0].config.strat", None, None),
        ("nodes[1].type", None, None),
    ]
    assert problems[0].fix == "did you mean start?"
    assert str(problems[1]).startswith("<graph>: nodes[1].type: unknown node type")


def test_schema_problems_do_not_hide_the_problems_the_registry_finds(
    write_graph, line_of, registry: PluginRegistry
):
    from edgeloop.runtime.validation import load_and_check

    path = write_graph(
        """
        name: multi
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 0
          - id: ctl
            type: pendulum.swingup
            inputs: {obs: sensr/obs}
          - id: motor
            type: gym.actuator
            inputs: {action: ctl/action}
            config: {envv: Pendulum-v1}
        contracts:
          - name: c
            path: [sensor, ctl, motor]
            deadline_ms: 10
        """
    )
    with pytest.raises(GraphError) as caught:
        load_and_check(path, registry)
    found = [(p.line, p.field) for p in caught.value.problems]
    assert found == [
        (line_of(path, "rate_hz: 0"), "nodes[0].rate_hz"),
        (line_of(path, "pendulum.swingup"), "nodes[1].type"),
        (line_of(path, "sensr/obs"), "nodes[1].inputs.obs"),
        (line_of(path, "envv"), "nodes[2].config.envv"),
    ]
    assert "did you mean sensor?" in caught.value.problems[2].fix
