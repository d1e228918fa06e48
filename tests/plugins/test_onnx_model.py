"""The onnx.model node: real ONNX Runtime sessions on small models the tests build."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_models
import pytest

import edgeloop
from edgeloop import Executor, LoopGraph, Port
from edgeloop.plugins.onnx_model import OnnxModel
from edgeloop.runtime.errors import NodeConfigError, NodeSetupError
from edgeloop.runtime.node import build_config
from edgeloop.testing import RecordingSink, start_node

PENDULUM = Path(__file__).parents[2] / "examples" / "pendulum" / "loop.yaml"


class ObsSource(edgeloop.Sensor):
    """Emits [t, 2t, 3t] as float32 (or float64 with dtype)."""

    outputs = (Port("obs", dtype="float32", shape=(3,)),)

    def step(self, inputs):
        t = self.ctx.now()
        return {"obs": np.array([t, 2 * t, 3 * t], dtype=np.float32)}


class Float64Source(ObsSource):
    """Emits float64, which a float32 model does not take."""

    outputs = (Port("obs", dtype="float64", shape=(3,)),)

    def step(self, inputs):
        return {"obs": np.zeros(3)}


def model_loop(model: Path | str, source: type = ObsSource, **config: Any) -> LoopGraph:
    graph = LoopGraph(name="model_loop")
    graph.add_node("source", source, rate_hz=10)
    graph.add_node(
        "policy", "onnx.model", config={"model": str(model), **config}, inputs={"obs": "source/obs"}
    )
    graph.add_node("sink", RecordingSink, inputs={"action": "policy/action"})
    return graph


def run(graph: LoopGraph, duration_s: float = 0.5, **kwargs: Any) -> tuple[Executor, Any]:
    executor = Executor(graph, simulated=True, **kwargs)
    return executor, executor.run(duration_s)


def test_the_model_node_computes_what_the_model_computes(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    executor, report = run(model_loop(model))
    actions = executor.node("sink").values("action")
    weights = onnx_models.mlp_weights()
    for k, action in enumerate(actions):
        t = k * 0.1
        expected = onnx_models.mlp_reference(np.array([t, 2 * t, 3 * t], np.float32), weights)
        assert action.shape == (1,)  # the batch dimension added for the model is dropped
        np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-6)
    assert report.node("policy").notes["provider"] == "CPU"
    # Which provider took the graph's nodes (after ONNX Runtime fused its five).
    placed = re.fullmatch(r"CPU (\d) nodes?", report.node("policy").notes["placement"])
    assert placed is not None and 1 <= int(placed.group(1)) <= 5


def test_its_ports_are_the_models_tensors_renamed_as_asked(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx", input_name="input.1", output_name="out.0")
    policy = edgeloop.PluginRegistry().node_type("onnx.model").cls
    config = policy.Config(model=str(model), ports={"obs": "input.1", "action": "out.0"})
    inputs, outputs = policy.ports(config)
    assert [(p.name, p.dtype, p.shape) for p in inputs] == [("obs", "float32", (None, 3))]
    # Its shape depends on whether the input came with the batch dimension: not declared.
    assert [(p.name, p.dtype, p.shape) for p in outputs] == [("action", "float32", None)]
    _, report = run(model_loop(model, ports={"obs": "input.1", "action": "out.0"}))
    assert report.node("sink").calls == 5


def test_a_port_mapped_to_a_tensor_the_model_lacks_is_a_graph_problem(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    graph = model_loop(model, ports={"obs": "observation"})
    problems = edgeloop.validate_graph(graph, edgeloop.PluginRegistry())
    assert [p.field for p in problems] == ["nodes[1].config"]
    assert "does not have" in problems[0].message and "obs" in problems[0].fix


def test_a_model_with_two_inputs_and_two_outputs_runs_with_all_its_ports(tmp_path):
    model = onnx_models.make_two_by_two(tmp_path / "two.onnx")

    class Pair(edgeloop.Sensor):
        """Emits a and b."""

        outputs = (Port("a", dtype="float32"), Port("b", dtype="float32"))

        def step(self, inputs):
            return {"a": np.array([1.0, 2.0], np.float32), "b": np.array([1, 2, 3], np.float32)}

    graph = LoopGraph(name="two")
    graph.add_node("pair", Pair, rate_hz=10)
    graph.add_node(
        "model", "onnx.model", config={"model": str(model)}, inputs={"a": "pair/a", "b": "pair/b"}
    )
    graph.add_node("sink", RecordingSink, inputs={"total": "model/total", "twice": "model/twice"})
    executor, _ = run(graph, 0.2)
    _, last = executor.node("sink").received[-1]
    assert last["total"].tolist() == [3.0]
    assert last["twice"].tolist() == [2.0, 4.0, 6.0]


def test_a_batch_of_inputs_passes_through_a_dynamic_batch_dimension(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")

    class Batch(edgeloop.Sensor):
        """Emits four observations at once."""

        outputs = (Port("obs", dtype="float32"),)

        def step(self, inputs):
            return {"obs": np.ones((4, 3), np.float32)}

    executor, _ = run(model_loop(model, source=Batch), 0.1)
    (action,) = executor.node("sink").values("action")
    assert action.shape == (4, 1)


def test_the_profiles_providers_are_tried_in_order_and_skips_are_reported(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    graph = model_loop(model, provider_choice="order")
    graph.profile = "desktop-cuda"  # TensorRT -> CUDA -> CPU; this machine has no GPU
    _, report = run(graph)
    notes = report.node("policy").notes
    assert notes["provider"] == "CPU" and "measured" not in notes
    assert "Tensorrt:" in notes["skipped"] and "CUDA:" in notes["skipped"]
    assert report.node("sink").calls == 5


def test_a_provider_list_in_the_config_overrides_the_profile(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    graph = model_loop(
        model,
        providers=["NoSuchExecutionProvider", "CPUExecutionProvider"],
        provider_choice="order",
    )
    graph.profile = "desktop-cuda"
    _, report = run(graph)
    notes = report.node("policy").notes
    del notes["placement"]
    assert notes == {
        "provider": "CPU",
        "skipped": "NoSuch: not in this ONNX Runtime build",
        "verified": "on the first input (no sample inputs to check it before)",  # a bare file
    }


def test_a_desktop_profile_measures_every_provider_that_runs_and_keeps_the_fastest(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    graph = model_loop(model)
    graph.profile = "desktop-cuda"  # measured by default on a desktop
    _, report = run(graph)
    notes = report.node("policy").notes
    assert "Tensorrt:" in notes["skipped"] and "CUDA:" in notes["skipped"]  # no GPU here
    figures = dict(
        re.fullmatch(r"(.+) ([\d.]+) µs", part).groups()
        for part in notes["measured"].removeprefix("p50 over 30 runs: ").split(", ")
    )
    assert set(figures) == {"CPU", "CPU (1 thread)"}  # the thread pool, and one thread
    # The fastest (figures print to 0.1 µs: two may tie there, either may be chosen).
    assert float(figures[notes["provider"]]) == min(float(f) for f in figures.values())
    assert report.node("sink").calls == 5 and "measured on it" in notes["verified"]
    jetson = model_loop(model, providers=["CPUExecutionProvider"])
    jetson.profile = "jetson-orin-nano-8gb"  # a board: the profile's order
    assert "measured" not in run(jetson)[1].node("policy").notes


def test_no_provider_that_runs_is_a_setup_error_listing_why(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    with pytest.raises(edgeloop.NodeSetupError, match="no execution provider could run"):
        run(model_loop(model, providers=["NoSuchExecutionProvider"]))


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x07\x12\xff\xff"])
def test_a_file_that_is_not_a_loadable_model_is_a_clear_graph_problem(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    problems = edgeloop.validate_graph(model_loop(path), edgeloop.PluginRegistry())
    assert len(problems) == 1 and "not a loadable ONNX model" in problems[0].message


def test_a_missing_model_file_is_a_clear_graph_problem(tmp_path):
    problems = edgeloop.validate_graph(
        model_loop(tmp_path / "nowhere.onnx"), edgeloop.PluginRegistry()
    )
    assert len(problems) == 1 and "no such model file" in problems[0].message


def test_an_input_of_the_wrong_dtype_is_a_fault_saying_what_the_model_wants(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    _, report = run(model_loop(model, source=Float64Source), 0.1)
    (fault,) = report.fault_log[:1]
    assert fault["node"] == "policy" and fault["kind"] == "exception"
    assert "is float64; model input 'obs' wants float32" in fault["error"]


def test_an_input_of_the_wrong_shape_is_a_fault_saying_what_the_model_wants(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx", in_dim=4)
    _, report = run(model_loop(model), 0.1)
    assert "has shape (3,); model input 'obs' wants (batch, 4)" in report.fault_log[0]["error"]


def test_a_non_finite_model_output_is_a_fault(tmp_path):
    model = onnx_models.make_log(tmp_path / "log.onnx")

    class Negative(edgeloop.Sensor):
        """Emits -1."""

        outputs = (Port("x", dtype="float32"),)

        def step(self, inputs):
            return {"x": np.array([-1.0], np.float32)}

    graph = LoopGraph(name="nan")
    graph.add_node("source", Negative, rate_hz=10)
    graph.add_node(
        "model",
        "onnx.model",
        config={"model": str(model)},
        inputs={"x": "source/x"},
        on_fault="hold_last",
    )
    _, report = run(graph, 0.3)
    assert report.node("model").faults == {"non_finite": 3}


def test_a_bundle_is_verified_and_runs(tmp_path):
    bundle = onnx_models.make_bundle(tmp_path / "bundle", onnx_models.make_mlp(tmp_path / "m.onnx"))
    executor, _ = run(model_loop(bundle))
    assert len(executor.node("sink").values("action")) == 5


@pytest.mark.parametrize("damage", ["append", "truncate", "delete"])
def test_a_tampered_truncated_or_incomplete_bundle_is_refused(tmp_path, damage):
    bundle = onnx_models.make_bundle(tmp_path / "bundle", onnx_models.make_mlp(tmp_path / "m.onnx"))
    model = bundle / "model.onnx"
    if damage == "append":
        model.write_bytes(model.read_bytes() + b"\x00")
    elif damage == "truncate":
        model.write_bytes(model.read_bytes()[:-10])
    else:
        model.unlink()
    problems = edgeloop.validate_graph(model_loop(bundle), edgeloop.PluginRegistry())
    (problem,) = problems
    expected = "is missing from the bundle" if damage == "delete" else "does not match its sha256"
    assert expected in problem.message


def test_a_folder_without_a_manifest_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (problem,) = edgeloop.validate_graph(model_loop(tmp_path / "empty"), edgeloop.PluginRegistry())
    assert "no manifest.json in this folder" in problem.message


def test_an_onnx_policy_drives_the_gymnasium_pendulum(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    graph = edgeloop.load_graph(PENDULUM)
    controller = graph.node("controller")
    controller.type = "onnx.model"
    controller.config = {"model": str(model)}
    graph.add_node("watch", RecordingSink, inputs={"action": "controller/action"})
    executor, report = run(graph, 2.0)
    assert report.node("motor").calls == 100
    assert report.node("controller").faults == {}
    assert all(
        a.dtype == np.float32 and a.shape == (1,) for a in executor.node("watch").values("action")
    )


def test_the_warmup_command_reports_the_provider_that_runs(tmp_path):
    import subprocess
    import sys

    bundle = onnx_models.make_bundle(tmp_path / "bundle", onnx_models.make_mlp(tmp_path / "m.onnx"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeloop",
            "warmup",
            str(bundle),
            "--profile",
            "desktop-cuda",
            "--runs",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "warm-up on profile desktop-cuda" in out and "model: skipped Tensorrt:" in out
    (row,) = [line for line in result.stdout.splitlines() if "bundle" in line]
    assert re.search(r"model\W+\S*bundle\W+CPU\W+CPU \d+ nodes?\W+[\d.]+\W+[\d.]+\W+[\d.]+", row)
    assert "EP Error" not in result.stdout + result.stderr  # ORT's noise is turned into reasons
    (bundle / "model.onnx").write_bytes(b"tampered")
    refused = subprocess.run(
        [sys.executable, "-m", "edgeloop", "warmup", str(bundle), "--profile", "desktop-cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "does not match its sha256" in " ".join(
        refused.stderr.split()
    )


def test_warmup_of_a_graph_builds_every_model_node_on_the_graphs_profile(tmp_path):
    from cli_runner import edgeloop_cli

    model = onnx_models.make_mlp(tmp_path / "m.onnx")
    (tmp_path / "loop.yaml").write_text(
        "name: two\nprofile: desktop-cpu\nnodes:\n"
        "  - {id: source, type: constant, rate_hz: 10, config: {value: [0, 0, 0]}}\n"
        f"  - {{id: first, type: onnx.model, inputs: {{obs: source/action}}, "
        f"config: {{model: {model}}}}}\n"
        f"  - {{id: second, type: onnx.model, inputs: {{obs: source/action}}, "
        f"config: {{model: {model}, io_binding: true}}}}\n"
    )
    result = edgeloop_cli(tmp_path, "warmup", "loop.yaml", "--runs", "3")
    assert result.returncode == 0, result.stderr
    assert "warm-up on profile desktop-cpu" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "m.onnx" in line]
    assert [row.split()[1] for row in rows] == ["first", "second"]
    empty = edgeloop_cli(tmp_path, "warmup", model)
    assert empty.returncode == 2 and "a model needs --profile" in empty.stderr


def test_a_bundles_own_port_mapping_names_the_ports(tmp_path):
    import json

    model = onnx_models.make_mlp(tmp_path / "mlp.onnx", input_name="input.1", output_name="out.0")
    bundle = onnx_models.make_bundle(tmp_path / "bundle", model)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["ports"] = {"obs": "input.1", "action": "out.0"}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    executor, _ = run(model_loop(bundle))
    assert len(executor.node("sink").values("action")) == 5


def test_only_outputs_that_carry_the_batch_dimension_lose_it_again(tmp_path):
    model = onnx_models.make_mixed_outputs(tmp_path / "mixed.onnx")
    graph = LoopGraph(name="mixed")
    graph.add_node("source", ObsSource, rate_hz=10)
    graph.add_node(
        "model", "onnx.model", config={"model": str(model)}, inputs={"obs": "source/obs"}
    )
    graph.add_node(
        "sink",
        RecordingSink,
        inputs={"doubled": "model/doubled", "total": "model/total", "bias": "model/bias"},
    )
    executor, report = run(graph, 0.2)
    assert report.node("model").faults == {}
    _, last = executor.node("sink").received[-1]
    assert last["doubled"].tolist() == pytest.approx([0.2, 0.4, 0.6])  # (3,), not (1, 3)
    assert last["total"].shape == () and float(last["total"]) == pytest.approx(0.6)
    assert last["bias"].tolist() == [0.5, -0.5]  # a fixed (2,) output is left whole


def test_a_variant_the_manifest_does_not_hash_is_refused(tmp_path):
    import json

    bundle = onnx_models.make_bundle(tmp_path / "bundle", onnx_models.make_mlp(tmp_path / "m.onnx"))
    (bundle / "other.onnx").write_bytes((bundle / "model.onnx").read_bytes())
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["variants"] = {"fp16": "other.onnx"}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (problem,) = edgeloop.validate_graph(
        model_loop(bundle, variant="fp16"), edgeloop.PluginRegistry()
    )
    assert "lists no sha256 for the model file 'other.onnx'" in problem.message


def test_a_model_with_a_shape_input_runs_checked_on_its_first_real_input(tmp_path):
    """Zeros are no valid shape for Reshape: the node never probes with made-up zeros."""
    model = onnx_models.make_reshape(tmp_path / "reshape.onnx")
    node = start_node(OnnxModel, {"model": str(model), "providers": ["CPUExecutionProvider"]})
    assert node.ctx.notes["verified"].startswith("on the first input")
    out = node.step({"x": np.arange(6, dtype=np.float32), "shape": np.array([2, 3])})
    assert out["y"].shape == (2, 3) and out["y"][1, 2] == 5
    assert node.step({"x": np.ones(6, np.float32), "shape": np.array([3, 2])})["y"].shape == (3, 2)
    wrong = start_node(OnnxModel, {"model": str(model), "providers": ["CPUExecutionProvider"]})
    with pytest.raises(RuntimeError, match="no execution provider runs the model on its first"):
        wrong.step({"x": np.ones(6, np.float32), "shape": np.array([4, 4])})
    assert "CPU: failed on the first input" in wrong.skipped[0]


def test_a_string_model_runs_and_a_sequence_model_is_refused_with_the_reason(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("RegexFullMatch", ["text"], ["match"], pattern="ab+c")],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("match", TensorProto.BOOL, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "regex.onnx"))
    config = {"model": str(tmp_path / "regex.onnx"), "add_batch_dim": False}
    node = start_node(OnnxModel, config)
    got = node.step({"text": np.array(["abbc", "ac", "abc"])})
    assert got["match"].tolist() == [True, False, True]
    sequence = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["items"])],
        "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_sequence_value_info("items", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(sequence, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "seq.onnx"))
    with pytest.raises(NodeConfigError, match=r"model output 'items' is a seq\(tensor\(float\)\)"):
        OnnxModel.ports(OnnxModel.Config(model=str(tmp_path / "seq.onnx")))


def switching_bundle(folder: Path) -> Path:
    """A bundle of an 8-wide MLP with two variants of the same signature: wider and
    narrower networks (stand-ins for int8 and a smaller net)."""
    from edgeloop.exporters.variants import add_variant

    bundle = onnx_models.make_bundle(folder / "b", onnx_models.make_mlp(folder / "main.onnx"))
    for name, hidden in (("fast", 4), ("fastest", 2)):
        model = onnx_models.make_mlp(folder / f"{name}.onnx", hidden=hidden)
        add_variant(bundle, name, model)
    return bundle


class Selector(edgeloop.Sensor):
    """Commands for the model node: a variant's name at 0.3 s, auto at 0.6 s."""

    outputs = (Port("name"),)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        t = round(self.ctx.now(), 3)
        return {"name": "fastest"} if t == 0.3 else {"name": "auto"} if t == 0.6 else None


def test_a_model_over_its_budget_falls_back_through_its_variants_and_a_command_picks_one(
    tmp_path,
):
    bundle = switching_bundle(tmp_path)
    tiny = {"variants": ["fast", "fastest"], "budget_ms": 1e-9, "window": 5, "hold_s": 0}
    graph = model_loop(bundle, switch=tiny)  # every step is over a 1 fs budget
    _, report = run(graph, duration_s=2.0)
    notes = report.node("policy").notes
    assert report.series["policy.variant"] == [1.0, 2.0]  # down the ladder, then no further
    assert notes["variant"].startswith("fastest since") and notes["switches"] == "2"
    assert report.node("sink").calls == 20  # no step lost to a switch
    # Two steps over the budget fall a rung (the first step checks, untimed).
    assert notes["variant_steps"] == "main 3, fast 2, fastest 15"
    huge = {"variants": ["fast", "fastest"], "budget_ms": 1e6, "window": 5, "hold_s": 0.2}
    graph = model_loop(bundle, switch=huge)
    graph.add_node("selector", Selector, rate_hz=10)
    graph.node("policy").inputs["variant"] = edgeloop.runtime.graph.InputSpec.model_validate(
        {"from": "selector/name", "trigger": False}
    )
    _, report = run(graph, duration_s=2.0)
    # Commanded to the fastest at 0.3 s; at 0.6 s back to the budget, under half of
    # which it climbs back a rung at a time, each after hold_s.
    assert report.series["policy.variant"] == [2.0, 1.0, 0.0]
    lacking = {"model": str(bundle), "switch": {"variants": ["int8"], "budget_ms": 1}}
    with pytest.raises(NodeConfigError, match="switch names variants the bundle lacks: int8"):
        OnnxModel.ports(build_config("onnx.model", OnnxModel.Config, lacking))


def test_without_a_budget_the_switch_keeps_the_node_deadline_and_without_either_it_says_so(
    tmp_path,
):
    bundle = switching_bundle(tmp_path)
    switch = {"variants": ["fast"], "window": 5, "hold_s": 0}
    graph = model_loop(bundle, switch=switch)
    graph.node("policy").deadline_ms = 1e-6  # a nanosecond: every step misses it
    _, report = run(graph, duration_s=1.0)
    assert report.series["policy.variant"] == [1.0]
    assert "over 1e-06 ms" in report.node("policy").notes["variant"]
    with pytest.raises(NodeSetupError) as refused:
        run(model_loop(bundle, switch=switch))
    assert "switch has no time budget" in str(refused.value)
    assert "switch.budget_ms, or deadline_ms on the node" in str(refused.value)
