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


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere.yaml"


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: x\n\xff\xfe\x00nodes: []\n")
    return path


@pytest.mark.parametrize(
    ("make", "message", "fix"),
    [
        pytest.param(
            _missing,
            "cannot read graph file: No such file or directory",
            "check the path",
            id="a missing file",
        ),
        pytest.param(
            lambda tmp_path: tmp_path,
            "cannot read graph file: Is a directory",
            "check the path",
            id="a directory instead of a file",
        ),
        pytest.param(
            _binary,
            "not a text file: invalid start byte at byte 8",
            "save the graph as UTF-8 YAML",
            id="a file that is not text",
        ),
    ],
)
def test_a_file_that_cannot_be_read_as_text_is_a_graph_error_that_names_it(
    tmp_path: Path, make: Callable[[Path], Path], message: str, fix: str
):
    path = make(tmp_path)

    problem = only_problem(path)

    assert (problem.file, problem.line, problem.field) == (str(path), None, "")
    assert (problem.message, problem.fix) == (message, fix)
    assert str(path) in str(problem)


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


# One schema mistake each: the graph, then every problem expected as (field, its line
# (a snippet of it, or its number), message, fix), exactly.
SCHEMA_MISTAKES = [
    pytest.param(
        """
        name: typo
        nodes:
          - id: sensor
            type: gym.sensor
            rate: 50
        """,
        [("nodes[0].rate", "rate: 50", "unknown field 'rate'", "did you mean 'rate_hz'?")],
        id="an unknown node field, with a close match",
    ),
    pytest.param(
        """
        name: typo
        nodes:
          - id: a
            type: constant
            rate_hz: 10
        contract:
          - name: c
        """,
        [("contract", "contract:", "unknown field 'contract'", "did you mean 'contracts'?")],
        id="an unknown top-level field, with a close match",
    ),
    pytest.param(
        "name: x\nnodes: []\ncolour: blue\n",
        [
            (
                "colour",
                3,
                "unknown field 'colour'",
                "known fields: name, profile, nodes, contracts, groups, realtime",
            )
        ],
        id="an unknown top-level field without a close match, listing the known fields",
    ),
    pytest.param(
        """
        name: sources
        nodes:
          - id: a
            type: constant
            rate_hz: 10
          - id: b
            type: clamp
            inputs: {action: a}
        """,
        [
            (
                "nodes[1].inputs.action.from",
                "{action: a}",
                "bad source 'a'",
                "write other_node/output or timer/20ms",
            )
        ],
        id="a source that is neither node output nor timer",
    ),
    pytest.param(
        """
        name: fallback
        nodes:
          - id: a
            type: constant
            rate_hz: 10
            on_fault: fallback
        """,
        [
            (
                "nodes[0].on_fault",
                "on_fault:",
                "fallback needs a node",
                "write on_fault: {fallback: <node id>}",
            )
        ],
        id="a fallback without a node, with how to name one",
    ),
    pytest.param(
        "name: x\nnodes:\n  - id: a\n    type: constant\n    on_fault: explode\n",
        [
            (
                "nodes[0].on_fault.action",
                5,
                "got 'explode'",
                "use 'restart', 'hold_last', 'fallback' or 'stop'",
            )
        ],
        id="an unknown fault action, listing the actions",
    ),
    pytest.param(
        """
        nodes:
          - type: constant
            rate_hz: 10
          - id: b
            rate_hz: 10
        """,
        [
            ("name", 1, "required field 'name' is missing", "add 'name:'"),
            ("nodes[0].id", 2, "required field 'id' is missing", "add 'id:'"),
            ("nodes[1].type", 4, "required field 'type' is missing", "add 'type:'"),
        ],
        id="missing required fields, at their entry",
    ),
    pytest.param(
        "name: x\nnodes:\n  - id: 9 lives\n    type: constant\n",
        [
            (
                "nodes[0].id",
                3,
                "'9 lives' is not a valid id",
                "use letters, digits, '_' and '-', starting with a letter or '_'",
            )
        ],
        id="an id that is not a name",
    ),
    pytest.param(
        "name: x\nnodes:\n  - sensor\n",
        [
            (
                "nodes[0]",
                3,
                "expected a mapping of fields, got 'sensor'",
                "write it as 'key: value' lines; see examples/pendulum/loop.yaml",
            )
        ],
        id="a node written as a bare word, as needing fields",
    ),
    pytest.param(
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
        """,
        [
            (
                "contracts[0].path",
                "path:",
                "needs at least 2 entries, got 1",
                "list at least 2 entries",
            ),
            (
                "contracts[0].deadline_ms",
                "deadline_ms:",
                "must be greater than 0, got 0",
                "use a positive value",
            ),
        ],
        id="a contract with one node and a deadline of zero",
    ),
    pytest.param(
        "name: twice\nnodes:\n  - id: a\n    type: constant\n    rate_hz: 5\n    rate_hz: 50\n",
        [
            (
                "nodes[0].rate_hz",
                6,
                "'rate_hz' is written twice (first at line 5)",
                "keep one of them",
            )
        ],
        id="a key written twice in one mapping, at its second line",
    ),
]


@pytest.mark.parametrize(("text", "expected"), SCHEMA_MISTAKES)
def test_a_schema_mistake_is_reported_with_its_field_line_message_and_fix(
    write_graph: WriteGraph,
    line_of: LineOf,
    text: str,
    expected: list[tuple[str, str | int, str, str]],
):
    path = write_graph(text)

    problems = load_problems(path)

    assert sorted((p.field, p.line, p.message, p.fix) for p in problems) == sorted(
        (field, line if isinstance(line, int) else line_of(path, line), message, fix)
        for field, line, message, fix in expected
    )
    assert all(p.file == str(path) for p in problems)


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


def test_the_partial_graph_keeps_each_entry_without_the_fields_that_broke_it(
    write_graph: WriteGraph,
):
    path = write_graph(
        """
        name: partial
        profile: desktop-cpu
        nodes:
          - id: 9 lives
            type: constant
          - id: sensor
            type: gym.sensor
            rate_hz: fast
            config: {dt: 0.02}
          - id: ctl
            rate: 10
            inputs:
              obs: sensor/obs
              tick: timer/20xs
              hint: {from: sensor/obs, queu: fifo}
          - sensor
        contracts:
          - name: c
            path: [sensor, ctl]
            deadline_ms: 0
          - name: short
            path: [sensor]
            deadline_ms: 5
        """
    )
    with pytest.raises(GraphError) as caught:
        load_graph(path)

    partial = caught.value.partial
    assert (partial.name, partial.profile) == ("partial", "desktop-cpu")
    assert [n.id for n in partial.nodes] == ["sensor", "ctl"]
    assert partial.unparsed_ids == {"9 lives"}
    assert partial.nodes[0].config == {"dt": 0.02} and partial.nodes[0].rate_hz is None
    assert partial.dropped_fields("nodes", 0) == {("rate_hz",): "fast"}
    assert list(partial.nodes[1].inputs) == ["obs", "hint"]
    assert partial.nodes[1].inputs["hint"].source == "sensor/obs"
    assert partial.dropped_fields("nodes", 1) == {
        ("rate_hz",): 10,  # written as 'rate', its close match
        ("type",): None,  # missing
        ("inputs", "tick"): "timer/20xs",
        ("inputs", "hint", "queue"): "fifo",  # written as 'queu'
    }
    assert [c.path for c in partial.contracts] == [["sensor", "ctl"]]
    assert partial.dropped_fields("contracts", 0) == {("deadline_ms",): 0}
    # Problems found in the partial graph point at the file's entries.
    assert partial.source_loc(("nodes", 1, "inputs")) == ("nodes", 2, "inputs")


def test_a_file_whose_only_problem_is_a_key_written_twice_carries_its_graph(
    write_graph: WriteGraph,
):
    path = write_graph("name: x\nnodes:\n  - id: a\n    type: clmp\n    type: clamp\n")

    with pytest.raises(GraphError) as caught:
        load_graph(path)

    assert [p.field for p in caught.value.problems] == ["nodes[0].type"]
    assert caught.value.partial.node("a").type == "clamp"
    assert caught.value.partial.file == str(path)
