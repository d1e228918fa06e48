"""Every number that could exhaust memory or time is refused at load, with its place.

Each case is a real file (a graph, a scenario, a task space) or argument run
through the real CLI in-process (``validate``, ``run``, ``sim``, ``train``): a
refused one exits 2 and names the file, line and field (or the option), and
nothing prints a traceback (issue 13, item 6). The
bounds are in :mod:`edgeloop.runtime.limits`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import edgeloop
from edgeloop.cli import main
from edgeloop.runtime.limits import MAX_FILE_BYTES, MAX_STRING_CHARS, MAX_YAML_DEPTH
from edgeloop.runtime.validation import validate_graph
from edgeloop.sims.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# A node that runs, with room for one line of trouble in its entry and in its input.
GRAPH = """\
name: bounds
nodes:
  - id: source
    type: constant
    rate_hz: 10
{node}
  - id: sink
    type: log
    inputs:
      action: {{from: source/action{inputs}}}
"""


def graph(node: str = "", inputs: str = "") -> str:
    """GRAPH with ``node`` (lines of the source's entry) and ``inputs`` (fields of the
    sink's input) filled in."""
    return GRAPH.format(node=node, inputs=inputs)


def nested(levels: int) -> str:
    """A graph whose extra key ``x`` holds flow lists nested so that the file's
    deepest entry is ``levels`` deep (the top mapping is level 1)."""
    inner = levels - 1
    return f"name: deep\nnodes: []\nx: {'[' * inner}{']' * inner}\n"


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``edgeloop validate PATH``: the exit code and what it printed, one space a gap."""
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def refused(code: int, text: str, where: str, *parts: str) -> None:
    assert code == 2, text
    assert "Traceback" not in text
    assert where in text, text
    for part in parts:
        assert part in text, text


# (case id, file text, line of the problem, words the message must hold)
SCHEMA_CASES = [
    (
        "a fifo queue of 10**21 slots",
        graph(inputs=", queue: fifo, size: 1000000000000000000000"),
        10,
        ["nodes[1].inputs.action.size", "100,000"],
    ),
    (
        "a rate of 1e9 Hz",
        graph().replace("rate_hz: 10", "rate_hz: 1.0e+9"),
        5,
        ["nodes[0].rate_hz", "1,000,000"],
    ),
    (
        "a stale age of 1e300 ms",
        graph(inputs=", stale_ms: 1.0e+300"),
        10,
        ["nodes[1].inputs.action.stale_ms", "86,400,000"],
    ),
    (
        "a deadline of 1e12 ms",
        graph(node="    deadline_ms: 1.0e+12"),
        6,
        ["nodes[0].deadline_ms", "86,400,000"],
    ),
    (
        "a watchdog of 1e12 ms",
        graph(node="    watchdog_ms: 1.0e+12"),
        6,
        ["nodes[0].watchdog_ms"],
    ),
    (
        "a trillion restarts",
        graph(node="    on_fault: {restart: {max_restarts: 1000000000000}}"),
        6,
        ["nodes[0].on_fault.restart.max_restarts", "1,000,000"],
    ),
    (
        "a backoff of a year",
        graph(node="    on_fault: {restart: {backoff_ms: 31536000000}}"),
        6,
        ["nodes[0].on_fault.restart.backoff_ms", "86,400,000"],
    ),
    (
        "a timer of 1 ns written in us",
        graph().replace("rate_hz: 10", "inputs: {tick: timer/0.001us}"),
        5,
        ["nodes[0].inputs.tick.from", "1 us to one day", "timer/1us"],
    ),
    (
        "a timer of 1 ns written in hz",
        graph().replace("rate_hz: 10", "inputs: {tick: timer/1000000000hz}"),
        5,
        ["nodes[0].inputs.tick.from", "1 us to one day"],
    ),
    (
        "a timer of more than a day",
        graph().replace("rate_hz: 10", "inputs: {tick: timer/100000s}"),
        5,
        ["nodes[0].inputs.tick.from", "timer/86400s"],
    ),
    (
        "a timer whose period overflows a float",
        graph().replace("rate_hz: 10", f"inputs: {{tick: timer/1{'0' * 400}s}}"),
        5,
        ["nodes[0].inputs.tick.from", "inf s"],
    ),
    (
        "a contract deadline of 1e12 ms",
        graph() + "contracts:\n  - {name: c, path: [source, sink], deadline_ms: 1.0e+12}\n",
        12,
        ["contracts[0].deadline_ms"],
    ),
    (
        "a heartbeat timeout of 1e15 ms",
        graph() + "groups:\n  main: {heartbeat_timeout_ms: 1.0e+15}\n",
        12,
        ["groups.main.heartbeat_timeout_ms"],
    ),
    (
        "a sensing rate bound of 1e9 Hz",
        graph(node="    sensing: {max_rate_hz: 1.0e+9}"),
        6,
        ["nodes[0].sensing.max_rate_hz"],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "parts"),
    [case[1:] for case in SCHEMA_CASES],
    ids=[case[0] for case in SCHEMA_CASES],
)
def test_validate_refuses_a_number_past_its_bound_with_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, parts: list[str]
):
    path = tmp_path / "loop.yaml"
    path.write_text(text)

    code, out = validate(path, capsys)

    refused(code, out, f"{path}:{line}:", *parts)


def test_the_values_at_the_bounds_are_accepted(tmp_path: Path):
    path = tmp_path / "loop.yaml"
    path.write_text(
        graph(
            node="    deadline_ms: 86400000\n    on_fault: {restart: {max_restarts: 1000000}}",
            inputs=", queue: fifo, size: 100000, stale_ms: 86400000",
        ).replace("rate_hz: 10", "rate_hz: 1000000")
        + "  - {id: fast, type: log, inputs: {a: timer/1us, b: timer/1000000hz}}\n"
        + "  - {id: slow, type: log, inputs: {tick: timer/86400s}}\n"
    )

    graph_ = edgeloop.load_graph(path)

    assert graph_.node("sink").inputs["action"].size == 100_000
    assert validate_graph(graph_, edgeloop.PluginRegistry()) == []


def test_the_python_builder_refuses_the_same_numbers():
    built = edgeloop.LoopGraph(name="built")

    with pytest.raises(edgeloop.GraphError) as caught:
        built.add_node("source", "constant", rate_hz=1e9)

    assert caught.value.problems[0].field == "nodes[0].rate_hz"


# -- the YAML itself -------------------------------------------------------------------


def test_yaml_nested_as_deep_as_allowed_loads_and_one_level_more_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "loop.yaml"
    path.write_text(nested(MAX_YAML_DEPTH))
    with pytest.raises(edgeloop.GraphError, match="unknown field 'x'"):
        edgeloop.load_graph(path)  # parsed; only the schema objects to the extra key

    path.write_text(nested(MAX_YAML_DEPTH + 1))
    code, out = validate(path, capsys)

    refused(code, out, f"{path}:3:", f"nested deeper than {MAX_YAML_DEPTH} levels")


@pytest.mark.parametrize(
    "text",
    [
        "name: deep\nnodes: []\nx: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "name: deep\nnodes: []\nx: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n",
        "name: deep\nnodes: []\nx: " + "[" * 100_000 + "\n",  # never closed
        "name: deep\nnodes: []\nx:\n  " + "- " * 100_000 + "1\n",
        "name: deep\nnodes: []\nx:\n"
        + "".join(" " * i + "a:\n" for i in range(1, 200))
        + " " * 200
        + "1\n",
    ],
    ids=[
        "flow lists 100,000 deep",
        "flow mappings 100,000 deep",
        "flow lists 100,000 deep never closed",
        "block lists 100,000 deep",
        "block mappings 200 deep",
    ],
)
def test_yaml_nested_far_too_deep_is_a_graph_error_not_a_recursion_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
):
    path = tmp_path / "loop.yaml"
    path.write_text(text)

    code, out = validate(path, capsys)

    refused(code, out, f"{path}:", f"nested deeper than {MAX_YAML_DEPTH} levels")
    assert "RecursionError" not in out


def test_an_alias_inside_its_own_anchor_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "loop.yaml"
    path.write_text(graph(node="    config: {value: &v [*v]}"))

    code, out = validate(path, capsys)

    refused(code, out, f"{path}:6:", "the alias *v stands for an entry that contains it")


def test_a_string_longer_than_the_bound_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "loop.yaml"
    path.write_text(graph(node=f"    config: {{dtype: {'x' * (MAX_STRING_CHARS + 1)}}}"))

    code, out = validate(path, capsys)

    refused(code, out, f"{path}:6:", f"a value of {MAX_STRING_CHARS + 1:,} characters")
    assert len(out) < 1000  # the value is not echoed


def test_a_file_larger_than_the_bound_is_refused_before_it_is_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "loop.yaml"
    padding = "# padding\n" * (MAX_FILE_BYTES // 10 + 1)
    path.write_text(graph() + padding)

    code, out = validate(path, capsys)

    refused(code, out, f"{path}:", "edgeloop reads YAML files up to 16,777,216 bytes")


def test_text_larger_than_the_bound_is_refused_as_well():
    text = graph() + "# padding\n" * (MAX_FILE_BYTES // 10 + 1)

    with pytest.raises(edgeloop.GraphError, match="up to 16,777,216 bytes"):
        edgeloop.load_graph("<sent by the supervisor>", text=text)


# -- node configs ------------------------------------------------------------------------

CONFIG_CASES = [
    ("scene.edge", "{width: 100000}", "nodes[0].config.width", "8192"),
    ("grid.camera", "{blobs: 10000000}", "nodes[0].config.blobs", "256"),
    (
        "predictor.kalman",
        "{dt: 0.1, model: constant_velocity, dims: 100000}",
        "config.dims",
        "1000",
    ),
    ("inject", "{mode: delay, scale: 1.0e+9}", "nodes[0].config", "at most 60 s"),
    ("guard", "{full_rate_hz: 1.0e+9}", "nodes[0].config.full_rate_hz", "1000000"),
    ("sensing.event", "{floor_rate_hz: 1.0e+9}", "nodes[0].config.floor_rate_hz", "1000000"),
]


@pytest.mark.parametrize(
    ("node_type", "config", "field", "bound"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_a_node_config_number_past_its_bound_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    node_type: str,
    config: str,
    field: str,
    bound: str,
):
    path = tmp_path / "loop.yaml"
    path.write_text(
        f"name: config\nnodes:\n  - id: n\n    type: {node_type}\n    rate_hz: 10\n"
        f"    config: {config}\n"
    )

    code, out = validate(path, capsys)

    refused(code, out, f"{path}:6:", field, bound)


# -- the command line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--duration", "1e300", "--duration must be at most 315,576,000 seconds"),
        ("--seed", "100000000000000000000", "--seed must be at most 1,000,000,000,000"),
        ("--seed", "1" + "0" * 5000, "--seed must be a whole number"),
    ],
    ids=["a duration of 1e300 s", "a seed of 10**20", "a seed of 5,000 digits"],
)
def test_run_refuses_an_option_past_its_bound(
    pendulum_yaml: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    expected: str,
):
    with pytest.raises(SystemExit) as exited:
        main(["run", str(pendulum_yaml), "--sim", option, value])
    out = " ".join(capsys.readouterr().err.split())

    assert exited.value.code == 2
    assert expected in out and "Traceback" not in out
    assert len(out) < 1000  # a huge value is not echoed whole


# -- the examples still fit --------------------------------------------------------------

LOOPS = sorted(p for p in EXAMPLES.rglob("*.yaml") if p.name != "scenario.yaml")
# Made by the example's training step (see its README), not committed.
NOT_COMMITTED = {"pendulum-mpts/loop.yaml": "no such model file or bundle folder"}


@pytest.mark.parametrize("path", LOOPS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_graph_is_within_the_bounds(path: Path, monkeypatch: pytest.MonkeyPatch):
    registry = edgeloop.PluginRegistry()
    if "example.sine" not in registry.node_types:  # the example plugin, not installed
        monkeypatch.syspath_prepend(str(EXAMPLES / "plugin_example"))
        registry = edgeloop.PluginRegistry(
            plugins={"edgeloop_example_plugin": __import__("edgeloop_example_plugin")}
        )

    problems = validate_graph(edgeloop.load_graph(path), registry)

    expected = NOT_COMMITTED.get(str(path.relative_to(EXAMPLES)))
    assert [p for p in problems if expected is None or expected not in p.message] == []


def test_every_example_scenario_is_within_the_bounds():
    for path in sorted(EXAMPLES.rglob("scenario.yaml")):
        load_scenario(path)


# -- scenarios, task spaces, training settings and third-party sensors ---------------------

SCENARIO = (EXAMPLES / "field-search" / "scenario.yaml").read_text()


def line_with(text: str, snippet: str) -> int:
    """1-based line of the first line of ``text`` that holds ``snippet``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if snippet in line)


@pytest.mark.parametrize(
    ("written", "field", "expected"),
    [
        ("duration_s: 1.0e+300", "duration_s", "315,576,000"),
        ("duration_s: .inf", "duration_s", "must be a finite number"),
        ("agents: 100000", "agents", "10,000"),
    ],
    ids=["a duration of 1e300 s", "an infinite duration", "100,000 agents"],
)
def test_sim_refuses_a_scenario_number_past_its_bound_with_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, field: str, expected: str
):
    text = SCENARIO.replace("duration_s: 60", "duration_s: 60\n" + written)
    text = text.replace(f"{field}: ", f"# {field}: ", 1)  # the example's own value, out
    path = tmp_path / "scenario.yaml"
    path.write_text(text)

    code = main(["sim", str(path), "--quiet"])
    captured = capsys.readouterr()
    out = " ".join((captured.out + captured.err).split())

    refused(code, out, f"{path}:{line_with(text, written)}:", field, expected)


def test_sim_refuses_more_agents_than_a_scenario_runs_before_making_its_world(
    capsys: pytest.CaptureFixture[str],
):
    path = EXAMPLES / "field-search" / "scenario.yaml"

    with pytest.raises(SystemExit) as exited:
        main(["sim", str(path), "--agents", "100000", "--quiet"])
    out = " ".join(capsys.readouterr().err.split())

    assert exited.value.code == 2
    assert "--agents must be at most 10,000" in out and "Traceback" not in out


def test_the_scenario_bounds_themselves_are_accepted(tmp_path: Path):
    path = tmp_path / "scenario.yaml"
    path.write_text(
        SCENARIO.replace("agents: 4", "agents: 10000").replace(
            "duration_s: 60", "duration_s: 315576000"
        )
    )

    scenario = load_scenario(path)

    assert (scenario.agents, scenario.duration_s) == (10_000, 315_576_000)


def train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``edgeloop train ARGV``: the exit code and what it printed, one space a gap."""
    code = main(["train", *argv])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


TASK_SPACE = (
    "name: deep\nenv_id: Pendulum-v1\nparameters:\n  - {name: m, attribute: m, low: 1, high: 2}\n"
)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (
            TASK_SPACE + "env_kwargs: {x: " + "[" * 100_000 + "]" * 100_000 + "}\n",
            5,
            f"nested deeper than {MAX_YAML_DEPTH} levels",
        ),
        (
            TASK_SPACE + "env_kwargs: {x: &v [*v]}\n",
            5,
            "the alias *v stands for an entry that contains it",
        ),
        (
            TASK_SPACE + f"env_kwargs: {{x: {'x' * (MAX_STRING_CHARS + 1)}}}\n",
            5,
            f"a value of {MAX_STRING_CHARS + 1:,} characters",
        ),
        (TASK_SPACE + "# padding\n" * (MAX_FILE_BYTES // 10 + 1), None, "up to 16,777,216 bytes"),
    ],
    ids=["nested 100,000 deep", "an alias inside its own anchor", "a long string", "a 16 MiB file"],
)
def test_train_refuses_a_task_space_file_past_the_yaml_bounds_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int | None, expected: str
):
    path = tmp_path / "space.yaml"
    path.write_text(text)

    code, out = train(["--task-space", str(path), "-o", str(tmp_path / "run")], capsys)

    refused(code, out, f"{path}:{line}:" if line else f"{path}:", expected)
    assert "RecursionError" not in out and len(out) < 1000
    assert not (tmp_path / "run").exists()


def test_a_task_space_schema_problem_has_its_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "space.yaml"
    path.write_text(TASK_SPACE.replace("high: 2", "high: 0.5"))

    code, out = train(["--task-space", str(path), "-o", str(tmp_path / "run")], capsys)

    refused(code, out, f"{path}:4: parameters[0]:", "low 1.0 must be below high 0.5")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[" * 100_000 + "]" * 100_000, f"nested deeper than {MAX_YAML_DEPTH} levels"),
        ("{a: " * 100_000 + "1" + "}" * 100_000, f"nested deeper than {MAX_YAML_DEPTH} levels"),
        ("[1", "not valid YAML"),
    ],
    ids=["flow lists 100,000 deep", "flow mappings 100,000 deep", "not YAML"],
)
def test_train_refuses_a_set_value_past_the_yaml_bounds_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str
):
    code, out = train(["--set", f"gamma={value}", "-o", str(tmp_path / "run")], capsys)

    refused(code, out, "--set gamma:", expected)
    assert "RecursionError" not in out and len(out) < 1000


def test_a_node_config_bound_is_said_in_words_in_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "loop.yaml"
    path.write_text(
        "name: config\nnodes:\n  - id: n\n    type: scene.edge\n    rate_hz: 10\n"
        "    config: {width: 100000}\n"
    )

    code, out = validate(path, capsys)

    refused(code, out, f"{path}:6:", "(fix: expected int, above 0, at most 8192)")
    assert "Annotated" not in out and "MAX_IMAGE_SIDE" not in out


def test_a_third_party_sensor_declaring_a_rate_past_the_bound_is_refused_where_declared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    plugin = tmp_path / "fast_sensor.py"
    plugin.write_text(
        "import edgeloop\n"
        "\n"
        "\n"
        "class Fast(edgeloop.Sensor):\n"
        "    outputs = (edgeloop.Port('value'),)\n"
        "    sensing = edgeloop.SensingSpec(max_rate_hz=1e9)\n"
        "\n"
        "    def step(self, inputs):\n"
        "        return {'value': 1.0}\n"
        "\n"
        "\n"
        "@edgeloop.hookimpl\n"
        "def edgeloop_register_node_types():\n"
        "    return {'fast': Fast}\n"
    )
    path = tmp_path / "loop.yaml"
    path.write_text("name: fast\nnodes:\n  - {id: n, type: fast, rate_hz: 10}\n")
    monkeypatch.chdir(tmp_path)  # the plugin imports from the current folder

    code = main(["validate", str(path), "--plugin", "fast_sensor"])
    out = " ".join(capsys.readouterr().err.split())

    refused(code, out, f"{plugin}:6:", "SensingSpec max_rate_hz", "1,000,000 Hz", "1000000000.0")


def test_an_evaluation_grid_or_episode_past_the_bound_is_refused():
    from pydantic import ValidationError

    from edgeloop.runtime.errors import UsageError
    from edgeloop.sims.task_space import BUILTIN

    space = next(s for s in BUILTIN.values() if s.dim >= 2)
    assert len(space.grid(3)) == 3**space.dim  # a usual grid is fine
    with pytest.raises(UsageError, match="at most 1,000,000 are evaluated"):
        space.grid(10_000)
    with pytest.raises(ValidationError, match="less than or equal to 10000000"):
        space.model_copy(update={}).model_validate(
            {**space.model_dump(), "max_episode_steps": 10**9}
        )
