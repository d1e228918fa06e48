"""I/O binding and device tensors between model nodes, with CPU-side OrtValues.

The rule (runtime/device_tensors.py): a model node takes a device tensor as it
is; every other reader gets one host copy per message, counted in the producer's
report. Each consumer kind is checked here on real ONNX Runtime sessions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx_models
import onnxruntime as ort
import pytest

import edgeloop
from edgeloop import Executor, LoopGraph, Port
from edgeloop.runtime.device_tensors import DeviceTensor, HostCopies
from edgeloop.runtime.faults import bad_output
from edgeloop.runtime.recording import Recorder, read_recording
from edgeloop.runtime.wiring import OutPort
from edgeloop.testing import RecordingSink


class Obs(edgeloop.Sensor):
    """Emits [t, 2t, 3t] as float32, batched (1, 3) so device tensors keep shapes."""

    outputs = (Port("obs", dtype="float32"),)

    def step(self, inputs):
        t = self.ctx.now()
        return {"obs": np.array([[t, 2 * t, 3 * t]], dtype=np.float32)}


class MessageReader(edgeloop.Monitor):
    """Keeps ``ctx.message("x").data`` of every step (what a node reads by message)."""

    inputs = ("x",)

    def setup(self, ctx):
        self.seen: list[Any] = []

    def step(self, inputs):
        self.seen.append(self.ctx.message("x").data)


def models(tmp_path: Path) -> tuple[Path, Path]:
    first = onnx_models.make_mlp(tmp_path / "a.onnx", 3, 8, 4, "obs", "features")
    second = onnx_models.make_mlp(tmp_path / "b.onnx", 4, 8, 1, "features", "action")
    return first, second


def chain(tmp_path: Path, first: dict[str, Any], second: dict[str, Any]) -> LoopGraph:
    a, b = models(tmp_path)
    graph = LoopGraph(name="chain")
    graph.add_node("source", Obs, rate_hz=10)
    graph.add_node(
        "a", "onnx.model", config={"model": str(a), **first}, inputs={"obs": "source/obs"}
    )
    graph.add_node(
        "b", "onnx.model", config={"model": str(b), **second}, inputs={"features": "a/features"}
    )
    graph.add_node("sink", RecordingSink, inputs={"action": "b/action"})
    return graph


def actions(executor: Executor) -> np.ndarray:
    return np.stack(executor.node("sink").values("action"))


def test_io_binding_computes_what_a_plain_run_computes(tmp_path):
    plain = Executor(chain(tmp_path, {}, {}), simulated=True)
    plain_report = plain.run(1.0)
    for mode in (True, "fixed"):
        bound = Executor(
            chain(tmp_path, {"io_binding": mode}, {"io_binding": mode}), simulated=True
        )
        report = bound.run(1.0)
        assert np.array_equal(actions(bound), actions(plain))
        expected = "fixed buffers (cpu:0)" if mode == "fixed" else "on (cpu:0)"
        assert report.node("a").notes["io_binding"] == expected
    assert "io_binding" not in plain_report.node("a").notes


def test_a_device_tensor_passes_between_two_models_without_a_copy(tmp_path):
    plain = Executor(chain(tmp_path, {}, {}), simulated=True)
    plain.run(1.0)
    graph = chain(tmp_path, {"device_outputs": ["features"], "check_device_outputs": False}, {})
    device = Executor(graph, simulated=True)
    report = device.run(1.0)
    assert np.array_equal(actions(device), actions(plain))
    # The one copy: b checks its provider on its first real input (no bundle samples).
    assert report.node("a").notes["device_outputs"] == (
        "features: 10 messages on cpu, 1 copied to the host (for provider check: 1)"
    )
    assert report.node("b").notes["io_binding"] == "on (cpu:0)"  # bound where it came
    # From fixed buffers too: the device tensor is a's one output buffer.
    fixed = {"device_outputs": ["features"], "io_binding": "fixed"}
    device = Executor(chain(tmp_path, fixed, {}), simulated=True)
    device.run(1.0)
    assert np.array_equal(actions(device), actions(plain))


def test_every_other_reader_gets_one_host_copy_a_message_counted(tmp_path):
    graph = chain(tmp_path, {"device_outputs": ["features"], "check_device_outputs": False}, {})
    graph.add_node("raw", RecordingSink, inputs={"features": "a/features"})
    graph.add_node("also", RecordingSink, inputs={"features": "a/features"})
    graph.add_node("reader", MessageReader, inputs={"x": "a/features"})
    graph.add_node(
        "queue", RecordingSink, inputs={"features": {"from": "a/features", "queue": "fifo"}}
    )
    recorder = Recorder(tmp_path / "run.mcap")
    executor = Executor(graph, simulated=True, recorder=recorder)
    report = executor.run(1.0)
    recorder.close()
    raw = executor.node("raw").values("features")
    assert len(raw) == 10 and all(type(x) is np.ndarray and x.shape == (1, 4) for x in raw)
    assert all(type(x) is np.ndarray for x in executor.node("reader").seen)
    assert all(type(x) is np.ndarray for q in executor.node("queue").values("features") for x in q)
    for a, b in zip(raw, executor.node("also").values("features"), strict=True):
        assert a is b  # one copy, shared
    recorded = [
        message["value"]
        for topic, _, message in read_recording(tmp_path / "run.mcap")
        if topic == "/a/features"
    ]
    assert np.array_equal(np.stack(recorded), np.stack(raw))
    note = report.node("a").notes["device_outputs"]
    assert note.startswith("features: 10 messages on cpu, 10 copied to the host (for ")
    assert "recorder or another process: 10" in note  # the recorder asked first, each time


def test_the_nan_check_of_a_device_output_takes_a_host_copy_unless_turned_off(tmp_path):
    log = onnx_models.make_log(tmp_path / "log.onnx")

    class Negative(edgeloop.Sensor):
        """Emits [[-1]]."""

        outputs = (Port("x", dtype="float32"),)

        def step(self, inputs):
            return {"x": np.array([[-1.0]], np.float32)}

    def run(check: bool) -> Any:
        graph = LoopGraph(name="nan")
        graph.add_node("source", Negative, rate_hz=10)
        config = {"model": str(log), "device_outputs": ["y"], "check_device_outputs": check}
        graph.add_node(
            "model", "onnx.model", config=config, inputs={"x": "source/x"}, on_fault="hold_last"
        )
        return Executor(graph, simulated=True).run(0.3).node("model")

    checked, unchecked = run(True), run(False)
    assert checked.faults == {"non_finite": 3}
    assert checked.notes["device_outputs"] == (
        "y: 3 messages on cpu, 3 copied to the host (for NaN check: 3)"
    )
    assert unchecked.faults == {}
    assert unchecked.notes["device_outputs"] == "y: 3 messages on cpu, 0 copied to the host"


def test_a_device_tensors_contract_is_checked_from_its_metadata_without_a_copy():
    tally = HostCopies()
    value = ort.OrtValue.ortvalue_from_numpy(np.ones((1, 4), np.float32))
    tensor = DeviceTensor(value, tally)
    assert (tensor.dtype, tensor.shape, tensor.ndim, tensor.nbytes) == (np.float32, (1, 4), 2, 16)

    class Runner:
        def __init__(self, port: Port) -> None:
            self.out_ports = {"f": OutPort(port)}

    wrong = Runner(Port("f", dtype="float64", shape=(1, 4)))
    kind, why = bad_output(wrong, {"f": tensor})  # type: ignore[arg-type]
    assert kind == "wrong_type" and "expected float64 (1, 4), got float32 (1, 4)" in why
    assert tally.copies == 0
    right = Runner(Port("f", dtype="float32", shape=(1, None)))
    assert bad_output(right, {"f": tensor}) is None  # type: ignore[arg-type]
    assert tally.copies == 1 and tally.asked_by == {"NaN check": 1}
    assert tensor.host("again") is tensor.host("and again")  # made once
    assert tally.copies == 1


def test_device_outputs_naming_no_output_port_is_a_graph_problem(tmp_path):
    graph = chain(tmp_path, {"device_outputs": ["featurs"]}, {})
    problems = edgeloop.validate_graph(graph, edgeloop.PluginRegistry())
    assert len(problems) == 1
    assert "device_outputs names featurs" in problems[0].message
    assert "features" in problems[0].fix


def test_a_cuda_graph_asked_of_a_model_on_the_cpu_fails_setup_saying_so(tmp_path):
    graph = chain(tmp_path, {"cuda_graph": True}, {})
    with pytest.raises(edgeloop.NodeSetupError) as caught:
        Executor(graph, simulated=True).run(0.1)
    text = str(caught.value)
    assert "cuda_graph: true, but the model runs on CPU" in text and "cuda_graph: false" in text


def test_a_cuda_graph_a_profile_asks_for_is_noted_where_the_model_runs_on_the_cpu(tmp_path):
    profile = tmp_path / "gpu.yaml"
    profile.write_text(
        "name: gpu\ndescription: a desktop\nkind: desktop\ncpu: {arch: x86_64}\n"
        "memory: {size_gb: 8, shared_with_gpu: false}\nexecution_providers:\n"
        "  - {name: CUDAExecutionProvider, options: {enable_cuda_graph: 1}}\n"
        "  - {name: CPUExecutionProvider}\n"
    )
    graph = chain(tmp_path, {}, {})
    graph.profile = str(profile)
    notes = Executor(graph, simulated=True).run(0.2).node("a").notes
    assert notes["cuda_graph"] == "asked for CUDA; the model runs on CPU without one"


def test_a_device_tensor_into_fixed_buffers_is_a_fault_with_the_reason(tmp_path):
    graph = chain(tmp_path, {"device_outputs": ["features"]}, {"io_binding": "fixed"})
    report = Executor(graph, simulated=True).run(0.3)
    assert report.node("b").faults["exception"] >= 1
    assert "no device-to-device copy" in report.fault_log[0]["error"]


def test_a_process_boundary_gets_the_host_copy(tmp_path):
    import json

    import yaml

    from edgeloop.runtime.graph_yaml import load_graph
    from edgeloop.runtime.processes.supervisor import Supervisor

    a, b = models(tmp_path)
    graph = {
        "name": "split",
        "nodes": [
            {"id": "source", "type": "constant", "rate_hz": 10, "group": "models",
             "config": {"value": [0.1, 0.2, 0.3]}},
            {"id": "a", "type": "onnx.model", "group": "models",
             "inputs": {"obs": "source/action"},
             "config": {"model": str(a), "device_outputs": ["features"],
                        "check_device_outputs": False}},
            {"id": "b", "type": "onnx.model", "group": "models",
             "inputs": {"features": "a/features"}, "config": {"model": str(b)}},
            {"id": "watch", "type": "log", "group": "watch",
             "inputs": {"features": "a/features"},
             "config": {"path": str(tmp_path / "watch.jsonl")}},
        ],
    }  # fmt: skip
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(graph))
    report = Supervisor(load_graph(path), simulated=True).run(1.0)
    logged = [json.loads(line) for line in (tmp_path / "watch.jsonl").read_text().splitlines()]
    assert len(logged) == 10
    assert np.array(logged[-1]["inputs"]["features"]).shape == (1, 4)
    note = report.node("a").notes["device_outputs"]
    assert note == (
        "features: 10 messages on cpu, 10 copied to the host (for recorder or another process: 10)"
    )


def test_the_cpu_thread_pool_does_not_spin_between_steps_unless_asked(tmp_path):
    from edgeloop.plugins.onnx_model import OnnxModel
    from edgeloop.testing import start_node

    model, _ = models(tmp_path)

    def spinning(**config: Any) -> str | None:
        node = start_node(OnnxModel, {"model": str(model), **config})
        options = node.session.get_session_options()
        node.close()
        try:
            return options.get_session_config_entry("session.intra_op.allow_spinning")
        except Exception:  # not set: ONNX Runtime's default, which spins
            return None

    assert spinning() == "0"  # a spinning pool takes the cores from the next model
    assert spinning(spin=True) is None
