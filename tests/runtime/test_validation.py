"""Validating graphs against the real registry: every problem, with file, line, field and fix."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeloop import GraphError, GraphProblem, LoopGraph, PluginRegistry, load_graph, validate_graph
from edgeloop.runtime.validation import check_graph, load_and_check
from edgeloop.testing import CounterSensor

WriteGraph = Callable[..., Path]
LineOf = Callable[[Path, str], int]


@pytest.fixture
def problems_in(registry: PluginRegistry) -> Callable[[Path], list[GraphProblem]]:
    def validate(path: Path) -> list[GraphProblem]:
        return validate_graph(load_graph(path), registry)

    return validate


@pytest.fixture
def checked(registry: PluginRegistry) -> Callable[[Path], list[GraphProblem]]:
    """The problems ``load_and_check`` raises for a file: schema and registry ones."""

    def check(path: Path) -> list[GraphProblem]:
        with pytest.raises(GraphError) as caught:
            load_and_check(path, registry)
        assert all(p.file == str(path) for p in caught.value.problems)
        return caught.value.problems

    return check


def test_the_pendulum_example_is_valid(pendulum_yaml: Path, registry: PluginRegistry):
    graph = load_graph(pendulum_yaml)

    assert validate_graph(graph, registry) == []
    check_graph(graph, registry)  # does not raise


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

BUSY = """
name: busy
nodes:
  - id: source
    type: constant
    rate_hz: 10
  - id: log
    type: log
    {SCHEDULE}
"""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            """
            name: logging
            nodes:
              - id: sensor
                type: gym.sensor
                rate_hz: 50
              - id: log
                type: log
                inputs: {anything_at_all: sensor/obs}
            """,
            id="a node type that accepts any inputs takes any port name",
        ),
        pytest.param(
            CYCLE.format(SETPOINT="{from: safety/action, feedback: true}"),
            id="a cycle with one edge marked as feedback",
        ),
        pytest.param(BUSY.format(SCHEDULE="rate_hz: 5"), id="a node with a rate runs"),
        pytest.param(
            BUSY.format(SCHEDULE="inputs: {tick: timer/20ms}"), id="a node with a timer runs"
        ),
        pytest.param(
            BUSY.format(SCHEDULE="inputs: {action: source/action}"),
            id="a node with a triggering input runs",
        ),
    ],
)
def test_a_valid_graph_has_no_problems(
    write_graph: WriteGraph, problems_in: Callable[[Path], list[GraphProblem]], text: str
):
    assert problems_in(write_graph(text)) == []


# One mistake each: the graph, then every problem expected as (field, a snippet of
# its line, message, fix), exactly.
MISTAKES = [
    pytest.param(
        """
        name: typo
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: controller
            type: pendulum.swingup
            inputs: {obs: sensor/obs}
        """,
        [
            (
                "nodes[1].type",
                "pendulum.swingup",
                "unknown node type 'pendulum.swingup'",
                "did you mean pendulum.swing_up?",
            )
        ],
        id="an unknown node type, with its close matches",
    ),
    pytest.param(
        "name: x\nnodes:\n  - id: lidar\n    type: velodyne.vlp16\n    rate_hz: 10\n",
        [
            (
                "nodes[0].type",
                "type: velodyne.vlp16",
                "unknown node type 'velodyne.vlp16'",
                "run `edgeloop plugins` to list the registered node types",
            )
        ],
        id="an unknown node type with no close match, pointing to the plugin list",
    ),
    pytest.param(
        """
        name: cascade
        nodes:
          - id: cam
            type: camera.usb
            inputs: {whatever: timer/10ms}
          - id: log
            type: log
            inputs: {frame: cam/image}
        """,
        [
            (
                "nodes[0].type",
                "camera.usb",
                "unknown node type 'camera.usb'",
                "did you mean camera, grid.camera?",
            )
        ],
        id="a node of unknown type, and no guessing at its ports",
    ),
    pytest.param(
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
        """,
        [
            (
                "nodes[1].inputs.obs",
                "obs: sensr/obs",
                "input wired to missing node 'sensr'",
                "did you mean sensor?",
            )
        ],
        id="an input wired to a missing node, with a close match",
    ),
    pytest.param(
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
        """,
        [
            (
                "nodes[1].inputs.obs",
                "sensor/observation",
                "node 'sensor' has no output 'observation'",
                "known outputs: obs",
            )
        ],
        id="an input wired to a missing output of an existing node, naming its outputs",
    ),
    pytest.param(
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
        """,
        [
            (
                "nodes[1].inputs.ob",
                "ob: sensor/obs",
                "node type 'pendulum.swing_up' has no input 'ob'",
                "did you mean obs?",
            )
        ],
        id="an input port the node type does not declare",
    ),
    pytest.param(
        """
        name: outputs
        nodes:
          - id: source
            type: constant
            rate_hz: 10
            outputs: [actoin]
        """,
        [
            (
                "nodes[0].outputs",
                "outputs:",
                "node type 'constant' has no output 'actoin'",
                "did you mean action?",
            )
        ],
        id="an output the node type does not declare",
    ),
    pytest.param(
        """
        name: twins
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: source   # again
            type: constant
            rate_hz: 20
        """,
        [
            (
                "nodes[1].id",
                "# again",
                "duplicate node id 'source' (first at nodes[0])",
                "give every node a unique id",
            )
        ],
        id="duplicate ids, at the second entry",
    ),
    pytest.param(
        "name: x\nnodes:\n  - id: timer\n    type: constant\n    rate_hz: 10\n",
        [("nodes[0].id", "id: timer", "'timer' is reserved", "choose another id")],
        id="the reserved id timer",
    ),
    pytest.param(
        CYCLE.format(SETPOINT="safety/action"),
        [
            (
                "nodes[1].inputs.setpoint",
                "setpoint:",
                "cycle without a feedback edge: pid -> safety -> pid",
                "mark one edge of the cycle with 'feedback: true'",
            )
        ],
        id="a cycle not marked as feedback, at the edge that closes it",
    ),
    pytest.param(
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
        """,
        [
            (
                "nodes[1].inputs.action",
                "action: filter/action",
                "cycle without a feedback edge: filter -> filter",
                "mark one edge of the cycle with 'feedback: true'",
            )
        ],
        id="a node wired to itself, as a cycle",
    ),
    pytest.param(
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
        """,
        [
            (
                "nodes[0].inputs.action",
                "{action: b/action}",
                "cycle without a feedback edge: a -> b -> a",
                "mark one edge of the cycle with 'feedback: true'",
            ),
            (
                "nodes[2].inputs.action",
                "{action: d/action}",
                "cycle without a feedback edge: c -> d -> c",
                "mark one edge of the cycle with 'feedback: true'",
            ),
        ],
        id="every cycle of a graph",
    ),
    pytest.param(
        PENDULUM_WITH_CONTRACT.format(
            PATH="      - sensor\n      - controler\n      - safety\n      - motor"
        ),
        [
            (
                "contracts[0].path[1]",
                "- controler",
                "contract path names missing node 'controler'",
                "did you mean controller, motor?",
            )
        ],
        id="a contract naming a missing node, at that entry",
    ),
    pytest.param(
        PENDULUM_WITH_CONTRACT.format(PATH="      - sensor\n      - safety\n      - motor"),
        [
            (
                "contracts[0].path[1]",
                "- safety",
                "contract path has no edge sensor -> safety",
                "wire an input of 'safety' to an output of 'sensor', or fix the path",
            )
        ],
        id="a contract over nodes that are not connected, at the gap",
    ),
    pytest.param(
        PENDULUM_WITH_CONTRACT.format(PATH="      [motor, safety]"),
        [
            (
                "contracts[0].path[1]",
                "[motor, safety]",
                "contract path has no edge motor -> safety",
                "wire an input of 'safety' to an output of 'motor', or fix the path",
            )
        ],
        id="a contract in flow style, at its path line",
    ),
    pytest.param(
        """
        name: config
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
            config:
              env: Pendulum-v1
              dtt: 0.02
        """,
        [
            (
                "nodes[0].config.dtt",
                "dtt: 0.02",
                "unknown config key 'dtt' for node type 'gym.sensor'",
                "did you mean dt?",
            )
        ],
        id="an unknown config key, with a close match",
    ),
    pytest.param(
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
        """,
        [
            (
                "nodes[0].on_fault",
                "on_fault:",
                "fallback node 'safe_stp' does not exist",
                "did you mean safe_stop?",
            )
        ],
        id="a fallback to a missing node, with a close match",
    ),
    pytest.param(
        "name: x\nnodes:\n  - id: a\n    type: constant\n    rate_hz: 10\n"
        "    on_fault: {fallback: a}\n",
        [
            (
                "nodes[0].on_fault",
                "on_fault:",
                "a node cannot be its own fallback",
                "name another node",
            )
        ],
        id="a node that is its own fallback",
    ),
    pytest.param(
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
        """,
        [
            (
                "nodes[1].on_fault",
                "on_fault:",
                "fallback node 'sensor' lacks output(s) action of 'controller'",
                "use a fallback node with the same outputs",
            )
        ],
        id="a fallback without the outputs of its node",
    ),
    pytest.param(
        """
        name: sensing
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: filter
            type: clamp
            inputs: {action: source/action, sensing: source/action}
        """,
        [
            (
                "nodes[1].inputs.sensing",
                "sensing: source/action",
                "node type 'clamp' takes no sensing commands",
                "wire sensing commands to a sensor type that declares sensing",
            )
        ],
        id="sensing commands wired to a type without sensing, once",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MISTAKES)
def test_a_mistake_is_reported_once_with_its_field_line_message_and_fix(
    write_graph: WriteGraph,
    line_of: LineOf,
    problems_in: Callable[[Path], list[GraphProblem]],
    text: str,
    expected: list[tuple[str, str, str, str]],
):
    path = write_graph(text)

    problems = problems_in(path)

    assert sorted((p.field, p.line, p.message, p.fix) for p in problems) == sorted(
        (field, line_of(path, snippet), message, fix) for field, snippet, message, fix in expected
    )
    assert all(p.file == str(path) for p in problems)


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
    write_graph: WriteGraph, line_of: LineOf, checked: Callable[[Path], list[GraphProblem]]
):
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

    problems = checked(path)

    assert [(p.line, p.field) for p in problems] == [
        (line_of(path, "rate_hz: 0"), "nodes[0].rate_hz"),
        (line_of(path, "pendulum.swingup"), "nodes[1].type"),
        (line_of(path, "sensr/obs"), "nodes[1].inputs.obs"),
        (line_of(path, "envv"), "nodes[2].config.envv"),
    ]
    assert "did you mean sensor?" in problems[2].fix


EVERYTHING_WRONG = """
name: everything_wrong
profile: jetson-orin-nano-9gb
nodes:
  - id: sensor
    type: gym.sensr
    rate_hz: 50
    deadline_ms: 5
    deadline_ms: 6
  - id: camera
    type: gym.sensor
    rate_hz: fast
  - id: ctl
    type: pid
    rate_hz: -5
    config: {kp: 1.0, kpp: 2.0}
    inputs:
      measurement: sensor/state
      setpoint: camera/frame
      speed: camera/obs
  - id: safety
    type: clamp
    inputs:
      action: ctl/actoin
    on_fault: {fallback: safe_stp}
  - id: motor
    type: gym.actuator
    inputs: {action: safety/action}
  - id: ctl   # again
    type: constant
    rate_hz: 1
  - id: filter
    type: clamp
    inputs: {action: smoother/action}
  - id: smoother
    type: clamp
    inputs: {action: filter/action}
  - id: lidar
    type: velodyne.vlp16
    inputs: {points: sensr/obs}
  - id: ticker
    type: constant
    rate: 10
  - id: safe_stop
    type: constant
    on_fault: explode
contracts:
  - name: sense_to_act
    path: [sensor, ctl, safety, motr]
    deadline_ms: 0
"""


def test_every_mistake_seeded_in_one_graph_is_reported_exactly_once(
    write_graph: WriteGraph, line_of: LineOf, checked: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(EVERYTHING_WRONG)

    problems = checked(path)

    assert sorted((p.field, p.line) for p in problems) == sorted(
        [
            ("profile", line_of(path, "profile:")),
            ("nodes[0].type", line_of(path, "gym.sensr")),
            ("nodes[0].deadline_ms", line_of(path, "deadline_ms: 6")),  # written twice
            ("nodes[1].rate_hz", line_of(path, "rate_hz: fast")),
            ("nodes[2].rate_hz", line_of(path, "rate_hz: -5")),
            ("nodes[2].config.kpp", line_of(path, "kpp: 2.0")),
            ("nodes[2].inputs.measurement", line_of(path, "sensor/state")),
            ("nodes[2].inputs.setpoint", line_of(path, "camera/frame")),
            ("nodes[2].inputs.speed", line_of(path, "speed: camera/obs")),
            ("nodes[3].inputs.action", line_of(path, "ctl/actoin")),
            ("nodes[3].on_fault", line_of(path, "safe_stp")),
            ("nodes[5].id", line_of(path, "# again")),
            ("nodes[6].inputs.action", line_of(path, "smoother/action")),
            ("nodes[8].type", line_of(path, "velodyne.vlp16")),
            ("nodes[8].inputs.points", line_of(path, "sensr/obs")),
            ("nodes[9].rate", line_of(path, "rate: 10")),  # and no "never runs"
            ("nodes[10]", line_of(path, "id: safe_stop")),  # never runs
            ("nodes[10].on_fault.action", line_of(path, "on_fault: explode")),
            ("contracts[0].path[3]", line_of(path, "path: [sensor")),
            ("contracts[0].deadline_ms", line_of(path, "deadline_ms: 0")),
        ]
    )
    said = {p.field: p.message for p in problems}
    guessed = " (if 'gym.sensr' means gym.sensor)"
    assert said["nodes[2].inputs.measurement"] == f"node 'sensor' has no output 'state'{guessed}"
    assert said["nodes[2].inputs.setpoint"] == "node 'camera' has no output 'frame'"
    assert said["nodes[3].inputs.action"] == "node 'ctl' has no output 'actoin'"
    assert said["nodes[5].id"] == "duplicate node id 'ctl' (first at nodes[2])"
    assert said["nodes[6].inputs.action"].startswith("cycle without a feedback edge")
    assert said["contracts[0].path[3]"] == "contract path names missing node 'motr'"
    assert said["profile"].startswith("unknown hardware profile 'jetson-orin-nano-9gb'")
    assert all(p.message and p.fix for p in problems)


# What a check can still know when another part of the graph is broken: each case
# expects exactly these problems, as (field, a snippet of its line, part of the message).
KNOWABLE = [
    pytest.param(
        """
        name: slip
        nodes:
          - id: sensor
            type: gym.sensr
            rate_hz: 50
            config: {dtt: 0.02}
          - id: ctl
            type: pendulum.swing_up
            inputs: {obs: sensor/observation}
        """,
        [
            ("nodes[0].type", "gym.sensr", "unknown node type 'gym.sensr'"),
            (
                "nodes[0].config.dtt",
                "dtt: 0.02",
                "unknown config key 'dtt' for node type 'gym.sensor' "
                "(if 'gym.sensr' means gym.sensor)",
            ),
            (
                "nodes[1].inputs.obs",
                "sensor/observation",
                "node 'sensor' has no output 'observation' (if 'gym.sensr' means gym.sensor)",
            ),
        ],
        id="a type with one close match is checked against it, saying so",
    ),
    pytest.param(
        """
        name: slip
        nodes:
          - id: ctl
            type: pidd
            rate_hz: 10
            inputs: {speed: timer/20ms}
        """,
        [
            ("nodes[0].type", "type: pidd", "unknown node type 'pidd'"),
            (
                "nodes[0].inputs.speed",
                "speed: timer/20ms",
                "node type 'pid' has no input 'speed' (if 'pidd' means pid)",
            ),
        ],
        id="a type with one close match has its input ports checked",
    ),
    pytest.param(
        """
        name: slip
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: 50
          - id: ctl
            type: pendulum.swingup
            inputs: {obs: sensor/obs}
            on_fault: {fallback: sensor}
        """,
        [
            ("nodes[1].type", "pendulum.swingup", "unknown node type 'pendulum.swingup'"),
            (
                "nodes[1].on_fault",
                "on_fault:",
                "fallback node 'sensor' lacks output(s) action of 'ctl' "
                "(if 'pendulum.swingup' means pendulum.swing_up)",
            ),
        ],
        id="a type with one close match has its fallback checked",
    ),
    pytest.param(
        """
        name: two_matches
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: enc
            type: encode.late
            inputs: {x: source/action}
          - id: log
            type: log
            inputs: {spikes: enc/bogus}
        """,
        [("nodes[1].type", "encode.late", "unknown node type 'encode.late'")],
        id="a type with two close matches is not guessed at",
    ),
    pytest.param(
        """
        name: bad_rate
        nodes:
          - id: sensor
            type: gym.sensor
            rate_hz: fast
            config: {dtt: 0.02}
          - id: ctl
            type: pendulum.swing_up
            rate_hz: -5
            inputs: {obs: sensor/observation, speed: sensor/obs}
        """,
        [
            ("nodes[0].rate_hz", "rate_hz: fast", "expected a number, got 'fast'"),
            ("nodes[0].config.dtt", "dtt: 0.02", "unknown config key 'dtt'"),
            ("nodes[1].rate_hz", "rate_hz: -5", "must be greater than or equal to"),
            ("nodes[1].inputs.obs", "sensor/observation", "node 'sensor' has no output"),
            ("nodes[1].inputs.speed", "speed: sensor/obs", "has no input 'speed'"),
        ],
        id="nodes with a bad rate keep their config and wiring checked",
    ),
    pytest.param(
        """
        name: typeless
        nodes:
          - id: a
            rate_hz: 10
            inputs: {x: nowhere/out}
        """,
        [
            ("nodes[0].type", "id: a", "required field 'type' is missing"),
            ("nodes[0].inputs.x", "nowhere/out", "input wired to missing node 'nowhere'"),
        ],
        id="a node without a type keeps its wiring checked",
    ),
    pytest.param(
        """
        name: bad_entry
        nodes:
          - id: source
            type: constant
            rate_hz: 10
          - id: filter
            type: clamp
            inputs:
              action: source/action
              speed: timer/20xs
              mode: {from: sensr/obs, queu: fifo}
        """,
        [
            ("nodes[1].inputs.speed.from", "timer/20xs", "bad timer 'timer/20xs'"),
            ("nodes[1].inputs.speed", "timer/20xs", "node type 'clamp' has no input 'speed'"),
            ("nodes[1].inputs.mode.queu", "queu: fifo", "unknown field 'queu'"),
            ("nodes[1].inputs.mode", "sensr/obs", "input wired to missing node 'sensr'"),
            ("nodes[1].inputs.mode", "sensr/obs", "node type 'clamp' has no input 'mode'"),
        ],
        id="a bad input entry keeps its port name and the other inputs checked",
    ),
    pytest.param(
        """
        name: twice
        nodes:
          - id: a
            type: constant
            rate_hz: 5
            rate_hz: 6
          - id: b
            type: clmp
            inputs: {action: a/actoin}
        """,
        [
            ("nodes[0].rate_hz", "rate_hz: 6", "'rate_hz' is written twice (first at line 5)"),
            ("nodes[1].type", "type: clmp", "unknown node type 'clmp'"),
            ("nodes[1].inputs.action", "a/actoin", "node 'a' has no output 'actoin'"),
        ],
        id="a key written twice does not hide the registry's problems",
    ),
    pytest.param(
        """
        name: profile
        profile: jetson-orin-nano-9gb
        nodes:
          - id: a
            type: constant
            rate_hz: 0
        """,
        [
            ("profile", "profile:", "unknown hardware profile 'jetson-orin-nano-9gb'"),
            ("nodes[0].rate_hz", "rate_hz: 0", "must be greater than or equal to"),
        ],
        id="a profile error beside a schema error",
    ),
    pytest.param(
        """
        name: renumbered
        nodes:
          - id: 9 lives
            type: constant
            rate_hz: 1
          - id: a
            type: constant
            rate_hz: 1
          - id: a   # again
            type: constant
            rate_hz: 2
        """,
        [
            ("nodes[0].id", "9 lives", "'9 lives' is not a valid id"),
            ("nodes[2].id", "# again", "duplicate node id 'a' (first at nodes[1])"),
        ],
        id="a duplicate id after a node left out names the first by its place in the file",
    ),
    pytest.param(
        """
        name: contract
        nodes:
          - id: a
            type: constant
            rate_hz: 10
          - id: b
            type: clamp
            rate_hz: fast
            inputs: {action: a/action}
          - id: c
            type: clamp
            inputs: {action: a/action}
        contracts:
          - name: 5
            path: [a, b, c, d]
            deadline_ms: 3
        """,
        [
            ("nodes[1].rate_hz", "rate_hz: fast", "expected a number"),
            ("contracts[0].name", "name: 5", "expected text"),
            ("contracts[0].path[2]", "path: [a, b", "contract path has no edge b -> c"),
            ("contracts[0].path[3]", "path: [a, b", "contract path names missing node 'd'"),
        ],
        id="a contract through a node with a bad rate, with a bad name, is checked",
    ),
]


@pytest.mark.parametrize(("text", "expected"), KNOWABLE)
def test_what_can_be_known_beside_a_broken_part_is_reported(
    write_graph: WriteGraph,
    line_of: LineOf,
    checked: Callable[[Path], list[GraphProblem]],
    text: str,
    expected: list[tuple[str, str, str]],
):
    path = write_graph(text)

    problems = checked(path)

    assert sorted((p.field, p.line) for p in problems) == sorted(
        (field, line_of(path, snippet)) for field, snippet, _ in expected
    )
    for field, _, message in expected:
        said = [p.message for p in problems if p.field == field]
        assert any(message in each for each in said), (field, said)


def test_the_outputs_a_node_lists_are_known_whatever_its_type(
    write_graph: WriteGraph, problems_in: Callable[[Path], list[GraphProblem]]
):
    path = write_graph(
        """
        name: listed
        nodes:
          - id: ctl
            type: pendulum.swingup
            rate_hz: 10
            outputs: [action]
          - id: motor
            type: gym.actuator
            inputs: {action: ctl/torque}
        """
    )

    messages = [p.message for p in problems_in(path)]

    assert messages == [
        "unknown node type 'pendulum.swingup'",
        "node 'ctl' has no output 'torque'",  # no "(if ...)": ctl lists its outputs
    ]


# A check that would read a field that broke the schema is skipped: each graph has
# only schema problems, as (field, a snippet of its line), and nothing else to report.
UNKNOWABLE = [
    pytest.param(
        "name: x\nnodes:\n  - id: a\n    type: constant\n    rate: 10\n",
        [("nodes[0].rate", "rate: 10")],
        id="no never-runs for a node whose rate is misspelt",
    ),
    pytest.param(
        "name: x\nnodes:\n  - id: a\n    type: constant\n    rate_hz: fast\n",
        [("nodes[0].rate_hz", "rate_hz: fast")],
        id="no never-runs for a node whose rate is bad",
    ),
    pytest.param(
        "name: x\nnodes:\n  - id: a\n    type: clamp\n    inputs: 5\n",
        [("nodes[0].inputs", "inputs: 5")],
        id="no never-runs for a node whose inputs are not a mapping",
    ),
    pytest.param(
        """
        name: x
        nodes:
          - id: a
            type: constant
            rate_hz: 10
          - id: b
            type: clamp
            inputs: {action: {from: a/action, trigger: maybe}}
        """,
        [("nodes[1].inputs.action.trigger", "trigger: maybe")],
        id="no never-runs for a node whose input's trigger is bad",
    ),
    pytest.param(
        """
        name: x
        nodes:
          - id: a
            type: constant
            rate_hz: 10
            on_fault: {fallback: spare, restart: {max_restart: 3}}
          - id: spare
            type: constant
        """,
        [("nodes[0].on_fault.restart.max_restart", "max_restart")],
        id="no never-runs for a node a bad on_fault may fall back to",
    ),
    pytest.param(
        """
        name: x
        nodes:
          - id: a
            type: clamp
            inputs: {action: {from: b/action, feedbak: true}}
          - id: b
            type: clamp
            inputs: {action: a/action}
        """,
        [("nodes[0].inputs.action.feedbak", "feedbak: true")],
        id="no cycle through an edge whose feedback mark is misspelt",
    ),
    pytest.param(
        """
        name: x
        nodes:
          - id: a
            type: constant
            rate_hz: 10
          - id: b
            type: clamp
            inputs: {action: {from: a/action, size: 4}}
          - id: c
            type: clamp
            inputs: {action: {from: b/action, size: 4}}
        contracts:
          - name: c
            path: [a, c]
            deadline_ms: 5
        """,
        [
            ("nodes[1].inputs.action", "{action: {from: a/action, size: 4}}"),
            ("nodes[2].inputs.action", "{action: {from: b/action, size: 4}}"),
        ],
        id="no contract gap and no never-runs where an input broke the schema",
    ),
    pytest.param(
        """
        name: x
        nodes:
          - id: a
            type: constant
            rate_hz: 10
            group: [sensors]
          - id: b
            type: constant
            rate_hz: 10
            on_fault: {fallback: a}
        """,
        [("nodes[0].group", "group: [sensors]")],
        id="no group mismatch for a fallback whose group is bad",
    ),
    pytest.param(
        """
        name: x
        nodes:
          - id: a
            type: constant
            rate_hz: 10
          - id: b
            type: clamp
            rate_hz: 10
            outputs: action
            on_fault: {fallback: a}
        """,
        [("nodes[1].outputs", "outputs: action")],
        id="no missing outputs for a node whose outputs are bad",
    ),
    pytest.param(
        """
        name: x
        nodes:
          - id: a
            type: 5
            rate_hz: 10
            config: {nonsense: 1}
        """,
        [("nodes[0].type", "type: 5")],
        id="no config or type problem for a node whose type is bad",
    ),
]


@pytest.mark.parametrize(("text", "expected"), UNKNOWABLE)
def test_a_check_that_depends_on_a_broken_field_is_skipped(
    write_graph: WriteGraph,
    line_of: LineOf,
    checked: Callable[[Path], list[GraphProblem]],
    text: str,
    expected: list[tuple[str, str]],
):
    path = write_graph(text)

    problems = checked(path)

    assert sorted((p.field, p.line) for p in problems) == sorted(
        (field, line_of(path, snippet)) for field, snippet in expected
    )


# -- every mistake whatever other mistake comes with it -------------------------------

# A valid graph, as raw YAML values by node id and field, for flaws to edit.
SEED: dict[str, Any] = {
    "profile": None,
    "nodes": {
        "sensor": {"type": "gym.sensor", "rate_hz": "50"},  # nodes[0]
        "ctl": {"type": "pid", "inputs": {"measurement": "sensor/obs"}},  # nodes[1]
        "safety": {"type": "clamp", "inputs": {"action": "ctl/action"}},  # nodes[2]
        "motor": {"type": "gym.actuator", "inputs": {"action": "safety/action"}},  # nodes[3]
        "safe_stop": {"type": "constant", "rate_hz": "1"},  # nodes[4]
        "spare": {"type": "constant", "rate_hz": "2"},  # nodes[5]
        "monitor": {"type": "log", "inputs": {"obs": "sensor/obs"}},  # nodes[6]
    },
    "contract": {"path": "[sensor, ctl, safety, motor]", "deadline_ms": "20"},
}


@dataclass(frozen=True)
class Flaw:
    """One mistake: what it writes into SEED (a raw YAML value, a list of them for a
    key written twice, None to delete) and the problems it causes, as (field, a
    snippet of its line)."""

    name: str
    edits: dict[tuple[str, ...], str | list[str] | None]
    expected: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return self.name


FLAWS = [
    Flaw("a type with a slip", {("nodes", "ctl", "type"): "pidd"}, (("nodes[1].type", "pidd"),)),
    Flaw(
        "a sender type with a slip, wired to a port it lacks",
        {
            ("nodes", "sensor", "type"): "gym.sensr",
            ("nodes", "ctl", "inputs", "measurement"): "sensor/state",
        },
        (("nodes[0].type", "gym.sensr"), ("nodes[1].inputs.measurement", "sensor/state")),
    ),
    Flaw(
        "a type nothing is close to",
        {("nodes", "monitor", "type"): "velodyne.vlp16"},
        (("nodes[6].type", "velodyne.vlp16"),),
    ),
    Flaw("a negative rate", {("nodes", "ctl", "rate_hz"): "-5"}, (("nodes[1].rate_hz", "-5"),)),
    Flaw(
        "a rate as a word", {("nodes", "ctl", "rate_hz"): "fast"}, (("nodes[1].rate_hz", "fast"),)
    ),
    Flaw(
        "a bad rate on a sender wired to a port it lacks",
        {
            ("nodes", "sensor", "rate_hz"): "quick",
            ("nodes", "monitor", "inputs", "frame"): "sensor/frame",
        },
        (("nodes[0].rate_hz", "quick"), ("nodes[6].inputs.frame", "sensor/frame")),
    ),
    Flaw(
        "a wire to a port the sender lacks",
        {("nodes", "safety", "inputs", "action"): "ctl/actoin"},
        (("nodes[2].inputs.action", "ctl/actoin"),),
    ),
    Flaw(
        "an unknown config key",
        {("nodes", "ctl", "config"): "{kp: 1.0, kpp: 2.0}"},
        (("nodes[1].config.kpp", "kpp: 2.0"),),
    ),
    Flaw(
        "an input port the type lacks",
        {("nodes", "ctl", "inputs", "speed"): "sensor/obs"},
        (("nodes[1].inputs.speed", "speed: sensor/obs"),),
    ),
    Flaw(
        "a wire to a missing node",
        {("nodes", "monitor", "inputs", "obs"): "sensr/obs"},
        (("nodes[6].inputs.obs", "sensr/obs"),),
    ),
    Flaw(
        "a bad timer",
        {("nodes", "ctl", "inputs", "setpoint"): "timer/20xs"},
        (("nodes[1].inputs.setpoint.from", "timer/20xs"),),
    ),
    Flaw(
        "an unmarked cycle",
        {("nodes", "ctl", "inputs", "setpoint"): "safety/action"},
        (("nodes[1].inputs.setpoint", "setpoint: safety/action"),),
    ),
    Flaw(
        "a duplicate id",
        {("nodes", "spare", "id"): "ctl  # again"},
        (("nodes[5].id", "# again"),),
    ),
    Flaw(
        "a fallback to a missing node",
        {("nodes", "ctl", "on_fault"): "{fallback: safe_stp}"},
        (("nodes[1].on_fault", "safe_stp"),),
    ),
    Flaw(
        "an unknown fault action",
        {("nodes", "ctl", "on_fault"): "explode"},
        (("nodes[1].on_fault.action", "explode"),),
    ),
    Flaw(
        "a node that never runs",
        {("nodes", "safe_stop", "rate_hz"): None},
        (("nodes[4]", "id: safe_stop"),),
    ),
    Flaw(
        "an unknown node field",
        {("nodes", "ctl", "colour"): "blue"},
        (("nodes[1].colour", "colour: blue"),),
    ),
    Flaw(
        "a key written twice",
        {("nodes", "sensor", "deadline_ms"): ["5", "6"]},
        (("nodes[0].deadline_ms", "deadline_ms: 6"),),
    ),
    Flaw(
        "a contract through a missing node",
        {("contract", "path"): "[sensor, ctrl, safety, motor]"},
        (("contracts[0].path[1]", "path: [sensor, ctrl"),),
    ),
    Flaw(
        "a contract with a gap",
        {("contract", "path"): "[sensor, safety, motor]"},
        (("contracts[0].path[1]", "path: [sensor, safety"),),
    ),
    Flaw(
        "a contract deadline of zero",
        {("contract", "deadline_ms"): "0"},
        (("contracts[0].deadline_ms", "deadline_ms: 0"),),
    ),
    Flaw(
        "a profile that does not exist",
        {("profile",): "jetson-orin-nano-9gb"},
        (("profile", "jetson-orin-nano-9gb"),),
    ),
]


def seeded(flaws: tuple[Flaw, ...]) -> str:
    """SEED with ``flaws`` written in, as YAML text."""
    graph = {
        "profile": SEED["profile"],
        "nodes": {k: {**v, "inputs": dict(v.get("inputs", {}))} for k, v in SEED["nodes"].items()},
        "contract": dict(SEED["contract"]),
    }
    for flaw in flaws:
        for (*where, key), value in flaw.edits.items():
            entry = graph
            for part in where:
                entry = entry[part]
            if value is None:
                del entry[key]
            else:
                entry[key] = value
    lines = ["name: seeded"]
    if graph["profile"] is not None:
        lines.append(f"profile: {graph['profile']}")
    lines.append("nodes:")
    for node_id, fields in graph["nodes"].items():
        lines.append(f"  - id: {fields.get('id', node_id)}")
        for key, value in fields.items():
            if key == "id" or value == {}:
                continue
            if isinstance(value, dict):
                lines += [f"    {key}:", *(f"      {k}: {v}" for k, v in value.items())]
            else:
                lines += [
                    f"    {key}: {v}" for v in (value if isinstance(value, list) else [value])
                ]
    contract = graph["contract"]
    lines += ["contracts:", "  - name: sense_to_act", f"    path: {contract['path']}"]
    lines.append(f"    deadline_ms: {contract['deadline_ms']}")
    return "\n".join(lines) + "\n"


def compatible(flaws: tuple[Flaw, ...]) -> bool:
    """Whether no two of ``flaws`` write the same entry."""
    edits = [edit for flaw in flaws for edit in flaw.edits]
    return len(edits) == len(set(edits))


def every_flaw_that_fits() -> tuple[Flaw, ...]:
    """The flaws, in order, that fit in one graph with those before them."""
    chosen: tuple[Flaw, ...] = ()
    for flaw in FLAWS:
        if compatible((*chosen, flaw)):
            chosen = (*chosen, flaw)
    return chosen


FLAW_SETS = [
    *(
        pytest.param(flaws, id=" + ".join(map(str, flaws)))
        for size in (1, 2)
        for flaws in itertools.combinations(FLAWS, size)
        if compatible(flaws)
    ),
    pytest.param(every_flaw_that_fits(), id="every flaw that fits in one graph"),
]


def test_the_seed_graph_is_valid(write_graph: WriteGraph, registry: PluginRegistry):
    check_graph(load_graph(write_graph(seeded(()))), registry)  # does not raise


@pytest.mark.parametrize("flaws", FLAW_SETS)
def test_each_mistake_is_reported_whatever_other_mistake_comes_with_it(
    write_graph: WriteGraph,
    line_of: LineOf,
    checked: Callable[[Path], list[GraphProblem]],
    flaws: tuple[Flaw, ...],
):
    path = write_graph(seeded(flaws))

    problems = checked(path)

    assert sorted((p.field, p.line) for p in problems) == sorted(
        (field, line_of(path, snippet)) for flaw in flaws for field, snippet in flaw.expected
    )
