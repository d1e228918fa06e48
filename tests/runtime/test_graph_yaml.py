"""Loading graphs from YAML: schema problems come back with file, line, field and a fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edgeloop import GraphError, GraphProblem, load_graph

WriteGraph = Callable[..., Path]
LineOf = Callable[[Path, str], int]


def load_problems(path: Path) -> list[GraphProblem]:
    with pytest.raises(GraphError) as caught:
        load_graph(path)
    assert caught.value.problems, "a GraphError lists at least one problem"
    return caught.value.problems


def only_problem(path: Path) -> GraphProblem:
    problems = load_problems(path)
    assert len(problems) == 1, problems
    return problems[0]


def test_the_pendulum_example_loads_with_its_file_and_the_line_of_every_entry(
    pendulum_yaml: Path, line_of: LineOf
):
    graph = load_graph(pendulum_yaml)

    assert graph.name == "pendulum"
    assert [n.id for n in graph.nodes] == ["sensor", "controller", "safe_torque", "safety", "motor"]
    assert graph.node("sensor").rate_hz == 50
    controller = graph.node("controller")
    assert controller.inputs["obs"].source == "sensor/obs"
    assert controller.inputs["obs"].stale_ms == 100
    assert controller.on_fault.action == "fallback"
    assert controller.on_fault.fallback == "safe_torque"
    assert graph.contracts[0].path == ["sensor", "controller", "safety", "motor"]
    assert graph.file == str(pendulum_yaml)
    assert graph.line_of(("nodes", 1)) == line_of(pendulum_yaml, "id: controller")
    assert graph.line_of(("nodes", 1, "type")) == line_of(pendulum_yaml, "pendulum.swing_up")
    assert graph.line_of(("contracts", 0, "path")) == line_of(pendulum_yaml, "path:")
    # A location that is not written falls back to its closest written parent.
    assert graph.line_of(("nodes", 2, "rate_hz")) == line_of(pendulum_yaml, "id: safe_torque")


def test_text_is_read_instead_of_the_file_and_problems_name_the_source_given():
    with pytest.raises(GraphError) as caught:
        load_graph("inline.yaml", text="name: x\nnodes:\n  - id: a\n    type: pid\n    rate: 5\n")

    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("inline.yaml", 5)


def test_a_missing_file_is_a_graph_error_that_names_it(tmp_path: Path):
    path = tmp_path / "nowhere.yaml"

    problem = only_problem(path)

    assert problem.file == str(path)
    assert "cannot read" in problem.message and "No such file" in problem.message
    assert "path" in problem.fix
    assert str(path) in str(problem)


def test_a_directory_instead_of_a_file_is_a_graph_error(tmp_path: Path):
    problem = only_problem(tmp_path)

    assert "cannot read" in problem.message


def test_a_file_that_is_not_text_is_a_graph_error(tmp_path: Path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: x\n\xff\xfe\x00nodes: []\n")

    problem = only_problem(path)

    assert problem.file == str(path)
    assert "not a text file" in problem.message
    assert "UTF-8" in problem.fix


@pytest.mark.parametrize(
    ("text", "bad_line"),
    [
        # an unclosed flow list
        ("name: x\nnodes:\n  - id: a\n    type: constant\n    config: {value: [0.0}\n", 5),
        # a key indented under a scalar
        ("name: x\nnodes:\n  - id: a\n    type: constant\n      rate_hz: 10\n", 5),
        # a tab used for indentation
        ("name: x\nnodes:\n  - id: a\n\ttype: constant\n", 4),
        # an unterminated quoted string
        ('name: x\nnodes:\n  - id: a\n    type: "constant\n', 5),
    ],
)
def test_malformed_yaml_is_reported_with_its_line(
    write_graph: WriteGraph, text: str, bad_line: int
):
    path = write_graph(text)

    problem = only_problem(path)

    assert problem.message.startswith("not valid YAML")
    assert (problem.file, problem.line) == (str(path), bad_line)
    assert "YAML syntax" in problem.fix


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just words\n"])
def test_a_file_that_is_not_a_mapping_is_reported_with_an_example_to_follow(
    write_graph: WriteGraph, text: str
):
    path = write_graph(text)

    problem = only_problem(path)

    assert "must be a mapping" in problem.message
    assert problem.line == 1
    assert "examples/pendulum" in problem.fix


def test_an_unknown_node_field_is_reported_with_a_close_match(
    write_graph: WriteGraph, line_of: LineOf
):
    path = write_graph(
        """
        name: typo
        nodes:
          - id: sensor
            type: gym.sensor
            rate: 50
        """
    )

    problem = only_problem(path)

    assert problem.message == "unknown field 'rate'"
    assert problem.field == "nodes[0].rate"
    assert (problem.file, problem.line) == (str(path), line_of(path, "rate: 50"))
    assert "rate_hz" in problem.fix


def test_an_unknown_top_level_field_is_reported_with_a_close_match(
    write_graph: WriteGraph, line_of: LineOf
):
    path = write_graph(
        """
        name: typo
        nodes:
          - id: a
            type: constant
            rate_hz: 10
        contract:
          - name: c
        """
    )

    problem = only_problem(path)

    assert problem.field == "contract"
    assert problem.line == line_of(path, "contract:")
    assert "contracts" in problem.fix


def test_an_unknown_top_level_field_without_a_close_match_lists_the_known_fields(
    write_graph: WriteGraph,
):
    path = write_graph("name: x\nnodes: []\ncolour: blue\n")

    problem = only_problem(path)

    assert (problem.field, problem.line) == ("colour", 3)
    assert all(f in problem.fix for f in ("name", "profile", "nodes", "contracts"))


@pytest.mark.parametrize(
    ("entry", "field", "suggestion"),
    [
        ("inputs: {action: {from: a/action, queu: fifo}}", "nodes[1].inputs.action.queu", "queue"),
        # A port named like a field of another level must not change the suggestions.
        (
            "inputs: {restart: {from: a/action, trigge: false}}",
            "nodes[1].inputs.restart.trigge",
            "trigger",
        ),
        (
            "on_fault: {restart: {max_restart: 3}}",
            "nodes[1].on_fault.restart.max_restart",
            "max_restarts",
        ),
        ("on_fault: {action: stop, fallbak: a}", "nodes[1].on_fault.fallbak", "fallback"),
    ],
)
def test_an_unknown_field_further_down_suggests_a_field_of_its_own_level(
    write_graph: WriteGraph, line_of: LineOf, entry: str, field: str, suggestion: str
):
    path = write_graph(
        f"""
        name: nested
        nodes:
          - id: a
            type: constant
            rate_hz: 10
          - id: b
            type: clamp
            {entry}
        """
    )

    problem = only_problem(path)

    assert problem.field == field
    assert problem.line == line_of(path, entry)
    assert problem.fix == f"did you mean '{suggestion}'?"


@pytest.mark.parametrize("rate", ["-1", "0", "-0.5"])
def test_a_rate_that_is_not_positive_is_reported(
    write_graph: WriteGraph, line_of: LineOf, rate: str
):
    path = write_graph(
        f"""
        name: rates
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: {rate}
        """
    )

    problem = only_problem(path)

    assert problem.field == "nodes[0].rate_hz"
    assert (problem.file, problem.line) == (str(path), line_of(path, "rate_hz:"))
    assert "greater than or equal to 0.000001" in problem.message and rate in problem.message
    assert "positive" in problem.fix


@pytest.mark.parametrize(
    ("rate", "fix"),
    [(".inf", "finite"), (".nan", "finite"), ("1.0e+12", "smaller")],
)
def test_a_rate_that_is_not_finite_or_too_fast_to_schedule_is_reported(
    write_graph: WriteGraph, rate: str, fix: str
):
    # A period that rounds to 0 ns made the executor spin forever.
    path = write_graph(f"name: fast\nnodes:\n  - id: a\n    type: constant\n    rate_hz: {rate}\n")

    problem = only_problem(path)

    assert (problem.field, problem.line) == ("nodes[0].rate_hz", 5)
    assert fix in problem.fix


@pytest.mark.parametrize(
    "inputs",
    [
        "inputs: {tick: timer/20xs}",
        "inputs: {tick: {from: timer/20xs, queue: fifo}}",
        "inputs:\n              tick: timer/20xs",  # block style, indented inside the f-string
    ],
)
def test_bad_timer_syntax_is_reported_with_how_to_write_a_timer(
    write_graph: WriteGraph, line_of: LineOf, inputs: str
):
    path = write_graph(
        f"""
        name: timers
        nodes:
          - id: blink
            type: constant
            {inputs}
        """
    )

    problem = only_problem(path)

    assert problem.field == "nodes[0].inputs.tick.from"
    assert problem.line == line_of(path, "timer/20xs")
    assert "timer/20xs" in problem.message
    assert "timer/20ms" in problem.fix and "us, ms, s or hz" in problem.fix


def test_a_source_that_is_neither_node_output_nor_timer_is_reported(
    write_graph: WriteGraph, line_of: LineOf
):
    path = write_graph(
        """
        name: sources
        nodes:
          - id: a
            type: constant
            rate_hz: 10
          - id: b
            type: clamp
            inputs: {action: a}
        """
    )

    problem = only_problem(path)

    assert problem.field == "nodes[1].inputs.action.from"
    assert problem.line == line_of(path, "{action: a}")
    assert "other_node/output" in problem.fix


def test_a_fallback_without_a_node_is_reported_with_how_to_name_one(
    write_graph: WriteGraph, line_of: LineOf
):
    path = write_graph(
        """
        name: fallback
        nodes:
          - id: a
            type: constant
            rate_hz: 10
            on_fault: fallback
        """
    )

    problem = only_problem(path)

    assert problem.field == "nodes[0].on_fault"
    assert problem.line == line_of(path, "on_fault:")
    assert "{fallback: <node id>}" in problem.fix


def test_an_unknown_fault_action_lists_the_actions(write_graph: WriteGraph, line_of: LineOf):
    path = write_graph("name: x\nnodes:\n  - id: a\n    type: constant\n    on_fault: explode\n")

    problem = only_problem(path)

    assert (problem.field, problem.line) == ("nodes[0].on_fault.action", 5)
    assert all(a in problem.fix for a in ("restart", "hold_last", "fallback", "stop"))


def test_missing_required_fields_are_reported_at_their_entry(write_graph: WriteGraph):
    path = write_graph(
        """
        nodes:
          - type: constant
            rate_hz: 10
          - id: b
            rate_hz: 10
        """
    )

    problems = load_problems(path)

    assert {(p.field, p.line) for p in problems} == {
        ("name", 1),
        ("nodes[0].id", 2),
        ("nodes[1].type", 4),
    }
    assert all(p.fix.startswith("add '") for p in problems)


def test_an_id_that_is_not_a_name_is_reported(write_graph: WriteGraph, line_of: LineOf):
    path = write_graph("name: x\nnodes:\n  - id: 9 lives\n    type: constant\n")

    problem = only_problem(path)

    assert (problem.field, problem.line) == ("nodes[0].id", 3)
    assert "not a valid id" in problem.message
    assert "letters" in problem.fix


def test_a_node_written_as_a_bare_word_is_reported_as_needing_fields(write_graph: WriteGraph):
    path = write_graph("name: x\nnodes:\n  - sensor\n")

    problem = only_problem(path)

    assert (problem.field, problem.line) == ("nodes[0]", 3)
    assert "sensor" in problem.message
    assert problem.fix


def test_a_contract_needs_two_nodes_and_a_positive_deadline(
    write_graph: WriteGraph, line_of: LineOf
):
    path = write_graph(
        """
        name: contracts
        nodes:
          - id: a
            type: constant
            rate_hz: 10
        contracts:
          - name: c
            path: [a]
            deadline_ms: 0
        """
    )

    problems = load_problems(path)

    assert {(p.field, p.line) for p in problems} == {
        ("contracts[0].path", line_of(path, "path:")),
        ("contracts[0].deadline_ms", line_of(path, "deadline_ms:")),
    }


def test_every_schema_problem_in_a_file_is_reported_at_once(
    write_graph: WriteGraph, line_of: LineOf
):
    path = write_graph(
        """
        name: many
        nodes:
          - id: sensor
            type: gym.sensor
            rate: 50
          - id: motor
            type: gym.actuator
            rate_hz: -2
            inputs: {action: timer/20xs}
        contracts:
          - name: c
            path: [sensor, motor]
            deadline_ms: 0
        """
    )

    problems = load_problems(path)

    assert sorted((p.field, p.line) for p in problems) == sorted(
        [
            ("nodes[0].rate", line_of(path, "rate: 50")),
            ("nodes[1].rate_hz", line_of(path, "rate_hz: -2")),
            ("nodes[1].inputs.action.from", line_of(path, "timer/20xs")),
            ("contracts[0].deadline_ms", line_of(path, "deadline_ms: 0")),
        ]
    )
    assert all(p.file == str(path) and p.fix for p in problems)
    message = str(GraphError(problems))
    assert message.startswith("4 problems in loop graph")
    assert f"{path}:{line_of(path, 'rate: 50')}: nodes[0].rate" in message


def test_a_key_written_twice_in_one_mapping_is_reported_at_its_second_line(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(
        "name: twice\nnodes:\n  - id: a\n    type: constant\n    rate_hz: 5\n    rate_hz: 50\n"
    )
    with pytest.raises(GraphError) as caught:
        load_graph(path)
    (problem,) = caught.value.problems
    assert problem.line == 6 and problem.field == "nodes[0].rate_hz"
    assert "written twice (first at line 5)" in problem.message


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("stale_ms: .inf", "nodes[0].inputs.obs.stale_ms"),
        ("deadline_ms: .inf", "nodes[0].deadline_ms"),
        ("rate_hz: 1e-300", "nodes[0].rate_hz"),
        ("size: 4", "nodes[0].inputs.obs"),
    ],
)
def test_values_the_executor_cannot_use_are_refused_at_load(
    write_graph: WriteGraph, line_of: LineOf, entry: str, field: str
):
    key = entry.split(":")[0]
    node_level = key in ("deadline_ms", "rate_hz")
    path = write_graph(
        f"""
        name: bounds
        nodes:
          - id: ctl
            type: pid
            {entry if node_level else "rate_hz: 10"}
            inputs:
              obs: {{from: ctl/action, {"" if node_level else entry}}}
        """.replace(", }", "}")
    )
    problem = only_problem(path)
    assert problem.field == field
    assert problem.line == line_of(path, entry)


def test_a_yaml_alias_bomb_is_refused_quickly(write_graph: WriteGraph):
    levels = ['  a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 7):
        levels.append(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    path = write_graph("name: bomb\nx:\n" + "\n".join(levels) + "\nnodes: []\n")
    problem = only_problem(path)
    assert "expands to more than 100,000 entries" in problem.message
