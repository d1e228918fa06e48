"""The graph schema and the Python builder: same graph as the YAML, lossless round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop import FaultPolicy, GraphError, InputSpec, LoopGraph, load_graph
from edgeloop.runtime.graph import timer_period_ns
from edgeloop.testing import CounterSensor


def build_pendulum() -> LoopGraph:
    """examples/pendulum/loop.yaml, written with the builder."""
    plant = {"env": "Pendulum-v1", "dt": 0.02, "max_episode_steps": 1000}
    graph = LoopGraph(name="pendulum")
    graph.add_node("sensor", "gym.sensor", rate_hz=50, config=plant)
    graph.add_node(
        "controller",
        "pendulum.swing_up",
        inputs={"obs": {"from": "sensor/obs", "stale_ms": 100}},
        deadline_ms=5,
        on_fault={"fallback": "safe_torque"},
    )
    graph.add_node("safe_torque", "constant", config={"value": [0.0]})
    graph.add_node(
        "safety", "clamp", inputs={"action": "controller/action"}, config={"low": -2.0, "high": 2.0}
    )
    graph.add_node("motor", "gym.actuator", inputs={"action": "safety/action"}, config=plant)
    graph.add_contract("sense_to_act", ["sensor", "controller", "safety", "motor"], deadline_ms=20)
    return graph


def build_everything() -> LoopGraph:
    """A graph that sets every field the schema has, most to non-defaults."""
    graph = LoopGraph(name="everything", profile="jetson-orin-nano-8gb")
    graph.add_node("imu", "my.imu", rate_hz=200, group="sensors", config={"port": "/dev/ttyUSB0"})
    graph.add_node(
        "model",
        "my.model",
        inputs={
            "imu": {"from": "imu/obs", "queue": "fifo", "size": 4, "stale_ms": 20},
            "tick": "timer/5ms",
            "hint": {"from": "ctl/action", "feedback": True},
            "mode": {"from": "imu/mode", "trigger": False},
        },
        outputs=["pose"],
        deadline_ms=2.5,
        on_fault={"restart": {"max_restarts": 5, "backoff_ms": 1, "max_backoff_ms": 50}},
    )
    graph.add_node("ctl", "pid", inputs={"measurement": "model/pose"}, on_fault="hold_last")
    graph.add_node("stop", "constant", on_fault="stop")
    graph.add_contract("imu_to_ctl", ["imu", "model", "ctl"], deadline_ms=4)
    return graph


def test_the_builder_makes_the_same_graph_as_the_pendulum_example(pendulum_yaml: Path):
    loaded = load_graph(pendulum_yaml)
    built = build_pendulum()

    assert built.to_dict() == loaded.to_dict()
    assert built == loaded
    assert built.file is None and loaded.file == str(pendulum_yaml)


@pytest.mark.parametrize("build", [build_pendulum, build_everything])
def test_to_yaml_loads_back_to_an_equal_graph(build: Any):
    graph = build()

    again = load_graph("copy.yaml", text=graph.to_yaml())

    assert again == graph
    assert again.to_dict() == graph.to_dict()
    assert again.to_yaml() == graph.to_yaml()


def test_the_example_survives_a_round_trip_through_to_yaml(pendulum_yaml: Path):
    graph = load_graph(pendulum_yaml)

    assert load_graph("copy.yaml", text=graph.to_yaml()) == graph


def test_write_saves_a_file_that_loads_back_equal(tmp_path: Path):
    graph = build_everything()
    path = tmp_path / "saved.yaml"

    graph.write(path)

    assert load_graph(path) == graph


@pytest.mark.parametrize(
    "on_fault",
    [
        "restart",
        "stop",
        "hold_last",
        {"fallback": "safe"},
        {"restart": {"max_restarts": 7}},
        {"restart": None},
        {"action": "hold_last", "restart": {"max_restarts": 7}},
        {"action": "fallback", "fallback": "safe", "restart": {"backoff_ms": 2.0}},
        {"action": "restart", "fallback": "safe"},
    ],
)
def test_every_form_of_fault_policy_survives_a_round_trip(on_fault: Any):
    graph = LoopGraph(name="faults")
    graph.add_node("ctl", "constant", rate_hz=10, on_fault=on_fault)

    again = load_graph("copy.yaml", text=graph.to_yaml())

    assert again.node("ctl").on_fault == graph.node("ctl").on_fault


def test_fault_policies_read_their_short_forms():
    assert FaultPolicy.model_validate("stop").action == "stop"
    fallback = FaultPolicy.model_validate({"fallback": "safe"})
    assert (fallback.action, fallback.fallback) == ("fallback", "safe")
    restart = FaultPolicy.model_validate({"restart": {"max_restarts": 1}})
    assert (restart.action, restart.restart.max_restarts) == ("restart", 1)


def test_an_input_written_short_is_the_same_as_written_long():
    short = InputSpec.model_validate("sensor/obs")
    long = InputSpec.model_validate({"from": "sensor/obs", "queue": "latest"})

    assert short == long
    assert (short.node, short.port, short.is_timer) == ("sensor", "obs", False)
    assert InputSpec.model_validate("timer/20ms").is_timer


def test_graphs_loaded_from_different_files_with_the_same_content_are_equal(
    write_graph: Any, pendulum_yaml: Path
):
    copy = write_graph(pendulum_yaml.read_text(), name="copy.yaml")

    assert load_graph(copy) == load_graph(pendulum_yaml)


def test_graphs_that_differ_in_one_field_are_not_equal():
    changed = build_pendulum()
    changed.node("sensor").rate_hz = 49

    assert changed != build_pendulum()
    assert build_pendulum() != build_pendulum().to_dict()


@pytest.mark.parametrize(
    ("source", "period_ns"),
    [
        ("timer/20ms", 20_000_000),
        ("timer/50hz", 20_000_000),
        ("timer/50Hz", 20_000_000),
        ("timer/1s", 1_000_000_000),
        ("timer/250us", 250_000),
        ("timer/0.5ms", 500_000),
        ("timer/20 ms", 20_000_000),
    ],
)
def test_timer_periods_are_read_in_every_unit(source: str, period_ns: int):
    assert timer_period_ns(source) == period_ns


@pytest.mark.parametrize(
    "source",
    [
        "timer/20xs",
        "timer/ms",
        "timer/0ms",
        "timer/-5ms",
        "timer/20",
        "sensor/obs",
        "timer/0.0001us",
    ],
)
def test_a_timer_that_is_malformed_or_shorter_than_a_nanosecond_has_no_period(source: str):
    assert timer_period_ns(source) is None


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"rate_hz": 0}, "nodes[0].rate_hz", "greater than or equal to 0.000001"),
        ({"rate_hz": -5}, "nodes[0].rate_hz", "greater than or equal to 0.000001"),
        ({"inputs": {"obs": "timer/20xs"}}, "nodes[0].inputs.obs.from", "bad timer"),
        ({"inputs": {"obs": "sensor"}}, "nodes[0].inputs.obs.from", "bad source"),
        ({"inputs": {"obs": {"from": "a/b", "queu": "fifo"}}}, "nodes[0].inputs.obs.queu", "queu"),
        ({"on_fault": "explode"}, "nodes[0].on_fault.action", "explode"),
    ],
)
def test_the_builder_reports_a_bad_field_as_a_graph_error_naming_it(
    kwargs: dict[str, Any], field: str, expected: str
):
    graph = LoopGraph(name="bad")

    with pytest.raises(GraphError) as caught:
        graph.add_node("node", "constant", **kwargs)

    (problem,) = caught.value.problems
    assert problem.field == field
    assert expected in problem.message
    assert problem.fix
    assert problem.file is None and problem.line is None
    assert graph.nodes == []


def test_the_builder_reports_a_bad_contract_as_a_graph_error():
    graph = build_pendulum()

    with pytest.raises(GraphError) as caught:
        graph.add_contract("short", ["sensor"], deadline_ms=0)

    fields = {p.field for p in caught.value.problems}
    assert fields == {"contracts[1].path", "contracts[1].deadline_ms"}
    assert len(graph.contracts) == 1


def test_a_node_class_given_to_the_builder_is_kept_as_a_local_type():
    graph = LoopGraph(name="local")

    spec = graph.add_node("counter", CounterSensor, rate_hz=10)

    assert spec.type == "CounterSensor"
    assert graph.local_types == {"CounterSensor": CounterSensor}


def test_node_finds_a_spec_by_id_and_raises_key_error_for_an_unknown_one():
    graph = build_pendulum()

    assert graph.node("safety").type == "clamp"
    with pytest.raises(KeyError):
        graph.node("nope")


def test_a_whole_graph_has_no_dropped_fields_and_no_unparsed_ids(pendulum_yaml: Path):
    # Only the partial graph of a file that broke the schema has them (test_graph_yaml).
    for graph in (build_pendulum(), load_graph(pendulum_yaml)):
        assert graph.dropped_fields("nodes", 0) == {}
        assert graph.unparsed_ids == frozenset()


# -- any graph the schema accepts survives to_yaml -> load_graph ------------------------

_ids = st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,6}", fullmatch=True)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=8)
)
_config = st.dictionaries(
    _ids,
    st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6),
    max_size=3,
)
_sources = st.one_of(
    st.builds(lambda n, p: f"{n}/{p}", _ids, _ids),
    st.sampled_from(["timer/20ms", "timer/50hz", "timer/1s", "timer/0.25ms"]),
)
_positive = st.floats(min_value=1e-3, max_value=1e6)
_inputs = st.dictionaries(
    _ids,
    st.one_of(
        _sources,
        st.fixed_dictionaries(
            {"from": _sources},
            optional={
                "queue": st.just("latest"),
                "feedback": st.booleans(),
                "trigger": st.booleans(),
                "stale_ms": _positive,
            },
        ),
        st.fixed_dictionaries(  # a size only bounds a fifo
            {"from": _sources, "queue": st.just("fifo")},
            optional={"size": st.integers(1, 64), "stale_ms": _positive},
        ),
    ),
    max_size=3,
)
_on_fault = st.one_of(
    st.sampled_from(["restart", "stop", "hold_last"]),
    st.builds(lambda n: {"fallback": n}, _ids),
    st.builds(
        lambda k, b: {"restart": {"max_restarts": k, "backoff_ms": b}},
        st.integers(0, 9),
        _positive,
    ),
)
_nodes = st.lists(
    st.fixed_dictionaries(
        {"id": _ids, "type": st.sampled_from(["pid", "clamp", "my.node", "x"])},
        optional={
            "config": _config,
            "inputs": _inputs,
            "outputs": st.lists(_ids, max_size=2),
            "rate_hz": _positive,
            "deadline_ms": _positive,
            "on_fault": _on_fault,
            "group": _ids,
            "record": st.dictionaries(
                _ids,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "frame_id": _ids,
                        "image": st.sampled_from(["auto", "mono", "never"]),
                        "compress": st.sampled_from(["jpeg", "png"]),
                        "quality": st.integers(1, 100),
                    },
                ),
                max_size=2,
            ),
        },
    ),
    max_size=4,
)
_contracts = st.lists(
    st.fixed_dictionaries(
        {"name": _ids, "path": st.lists(_ids, min_size=2, max_size=4), "deadline_ms": _positive}
    ),
    max_size=2,
)


_realtime = st.fixed_dictionaries(
    {},
    optional={
        "cpus": st.lists(st.integers(0, 63), min_size=1, max_size=3),
        "priority": st.integers(1, 99),
        "policy": st.sampled_from(["fifo", "rr"]),
        "lock_memory": st.booleans(),
        "gc": st.sampled_from(["default", "between_ticks", "off"]),
        "spin_us": st.floats(0, 1000),
        "best_effort": st.booleans(),
    },
)


@settings(max_examples=75, deadline=None)
@given(
    name=_ids,
    profile=st.none() | _ids,
    nodes=_nodes,
    contracts=_contracts,
    realtime=_realtime,
)
def test_any_graph_the_builder_accepts_loads_back_equal_from_its_yaml(
    name: str,
    profile: str | None,
    nodes: list[dict[str, Any]],
    contracts: list[dict[str, Any]],
    realtime: dict[str, Any],
):
    graph = LoopGraph(name=name, profile=profile, realtime=realtime)
    for node in nodes:
        graph.add_node(
            node["id"], node["type"], **{k: v for k, v in node.items() if k not in ("id", "type")}
        )
    for contract in contracts:
        graph.add_contract(contract["name"], contract["path"], deadline_ms=contract["deadline_ms"])

    again = load_graph("copy.yaml", text=graph.to_yaml())

    assert again == graph
    assert again.to_dict() == graph.to_dict()
