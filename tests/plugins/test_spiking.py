"""Spiking networks in loops: explicit state, two networks in one process, the
init_hidden refusal, state reset, energy counted by hand, and the explicit-state
ONNX export run by the model node with its state carried across ticks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop import Executor
from edgeloop.runtime.errors import EdgeloopError, NodeSetupError
from edgeloop.runtime.node import Port, Sensor
from edgeloop.testing import RecordingSink

torch = pytest.importorskip("torch")
pytest.importorskip("snntorch")

import spiking_nets  # noqa: E402  (tests/, after the skips: it needs torch)


class Wave(Sensor):
    """A 3-vector that changes every tick (a different phase per config)."""

    outputs = (Port("x", "float32"),)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        t = self.ctx.now()
        return {"x": np.array([np.sin(3 * t), np.cos(2 * t), 0.5], np.float32)}


def spiking(graph: edgeloop.LoopGraph, node_id: str, **config: Any) -> None:
    graph.add_node(
        node_id,
        "snn.torch",
        inputs={"x": "wave/x"},
        config={"network": "spiking_nets:tiny", **config},
    )


def outputs(graph: edgeloop.LoopGraph, *ids: str, duration: float = 2.0) -> dict[str, list]:
    graph.add_node("sink", RecordingSink, inputs={i: f"{i}/out" for i in ids})
    executor = Executor(graph, simulated=True)
    executor.run(duration)
    sink = executor.node("sink")
    return {i: [np.asarray(v).copy() for v in sink.values(i) if v is not None] for i in ids}


def test_the_state_is_kept_across_ticks_and_spikes_come() -> None:
    graph = edgeloop.LoopGraph(name="one")
    graph.add_node("wave", Wave, rate_hz=50)
    spiking(graph, "snn")
    out = outputs(graph, "snn")["snn"]
    assert len(out) == 100
    spikes = np.array(out)
    assert 0 < spikes.sum() < spikes.size  # it spikes, and not always
    assert set(np.unique(spikes)) <= {0.0, 1.0}


def test_two_spiking_nodes_in_one_process_do_not_disturb_each_other() -> None:
    alone = edgeloop.LoopGraph(name="alone")
    alone.add_node("wave", Wave, rate_hz=50)
    spiking(alone, "a")
    both = edgeloop.LoopGraph(name="both")
    both.add_node("wave", Wave, rate_hz=50)
    spiking(both, "a")
    spiking(both, "b", kwargs={"seed": 7})  # another network, stepped in between
    a_alone = outputs(alone, "a")["a"]
    together = outputs(both, "a", "b")
    assert all(np.array_equal(x, y) for x, y in zip(a_alone, together["a"], strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(together["a"], together["b"], strict=True))


def test_hidden_state_is_refused_with_the_fix() -> None:
    graph = edgeloop.LoopGraph(name="hidden")
    graph.add_node("wave", Wave, rate_hz=50)
    spiking(graph, "snn", kwargs={"init_hidden": True})
    with pytest.raises(NodeSetupError, match="init_hidden=False"):
        Executor(graph, simulated=True).run(1.0)
    from edgeloop.exporters.spiking import export_spiking

    with pytest.raises(EdgeloopError, match="init_hidden=True"):
        export_spiking(spiking_nets.tiny(init_hidden=True), torch.zeros(1, 3), "unused")


def test_reset_every_starts_the_state_over() -> None:
    graph = edgeloop.LoopGraph(name="reset")
    graph.add_node("still", "constant", rate_hz=50, config={"value": [0.3, -0.2, 0.5]})
    graph.add_node(
        "snn",
        "snn.torch",
        inputs={"x": "still/action"},
        config={"network": "spiking_nets:tiny", "reset_every": 25},
    )
    out = outputs(graph, "snn")["snn"]
    assert len(out) == 100
    for k in range(25):  # a constant input: each 25-step episode repeats exactly
        assert np.array_equal(out[k], out[25 + k]) and np.array_equal(out[k], out[75 + k])


def test_synops_and_energy_counted_by_hand() -> None:
    from edgeloop.runtime.spiking import SpikeEnergyMeter

    net = spiking_nets.counted()
    meter = SpikeEnergyMeter(net)
    mem1, mem2 = net.initial_state(1)
    with torch.no_grad():
        _, mem1, mem2 = net(torch.tensor([[0.5, 0.3]]), mem1, mem2)
    meter.step_done()
    summary = meter.summary()
    assert summary["spikes"]["lif1"] == 2  # hidden units 0 and 2 fire
    assert summary["real_macs"] == 2 * 3  # fc1 is fed real values: 6 MACs
    assert summary["synops"] == 2 * 2  # 2 spikes, each reaching fc2's 2 outputs
    assert summary["ann_macs"] == 2 * 3 + 3 * 2
    assert summary["energy_pj"] == pytest.approx(4 * 0.9 + 6 * 4.6)
    assert summary["ann_energy_pj"] == pytest.approx(12 * 4.6)
    assert summary["firing_rate"]["lif1"] == pytest.approx(2 / 3)


def test_energy_figures_reach_the_report() -> None:
    graph = edgeloop.LoopGraph(name="energy")
    graph.add_node("wave", Wave, rate_hz=50)
    spiking(graph, "snn")
    report = Executor(graph, simulated=True).run(1.0)
    energy = json.loads(report.node("snn").notes["energy"])
    assert energy["steps"] == 50 and energy["synops"] > 0
    assert sum(report.series["snn.energy_pj"]) == pytest.approx(energy["energy_pj"])
    assert energy["energy_pj"] < energy["ann_energy_pj"]


def test_explicit_state_export_matches_torch_over_100_steps(tmp_path: Path) -> None:
    from edgeloop.exporters.spiking import export_spiking
    from edgeloop.runtime.bundles import read_manifest

    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    net = spiking_nets.tiny()
    result = export_spiking(net, torch.zeros(1, 3), tmp_path / "snn")
    manifest = read_manifest(result.bundle)
    assert [(p.input, p.output, p.shape) for p in manifest.state] == [
        ("mem1", "mem1_out", [1, 16]),
        ("mem2", "mem2_out", [1, 2]),
    ]
    session = ort.InferenceSession(
        str(result.bundle / manifest.model), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    t_state = net.initial_state(1)
    o_state = [s.numpy() for s in t_state]
    fired = 0
    for _ in range(100):
        x = rng.normal(0, 1, (1, 3)).astype(np.float32)
        with torch.no_grad():
            t_out, *t_state = net(torch.from_numpy(x), *t_state)
        o_out, *o_state = session.run(None, {"x": x, "mem1": o_state[0], "mem2": o_state[1]})
        assert np.array_equal(t_out.numpy(), o_out)  # identical spikes
        for t, o in zip(t_state, o_state, strict=True):
            assert np.max(np.abs(t.numpy() - o)) < 1e-5  # membranes
        fired += int(o_out.sum())
    assert fired > 0  # the comparison saw spikes


def test_the_model_node_carries_the_state_like_the_torch_node(tmp_path: Path) -> None:
    from edgeloop.exporters.spiking import export_spiking

    bundle = export_spiking(spiking_nets.tiny(), torch.zeros(1, 3), tmp_path / "snn").bundle
    graph = edgeloop.LoopGraph(name="board")
    graph.add_node("wave", Wave, rate_hz=50)
    spiking(graph, "torch_snn")
    graph.add_node(
        "onnx_snn",
        "onnx.model",
        inputs={"x": "wave/x"},
        config={"model": str(bundle), "providers": ["CPUExecutionProvider"]},
    )
    got = outputs(graph, "torch_snn", "onnx_snn")
    assert len(got["onnx_snn"]) == 100
    assert all(np.array_equal(a, b) for a, b in zip(got["torch_snn"], got["onnx_snn"], strict=True))


def test_nir_round_trip_keeps_the_graph_the_parameters_and_the_spikes(tmp_path: Path) -> None:
    nir = pytest.importorskip("nir")
    from edgeloop.exporters.nir_export import export_nir

    net = spiking_nets.tiny(reset="zero")
    export_nir(net, 3, tmp_path / "net.nir")
    graph = nir.read(str(tmp_path / "net.nir"))
    assert sorted(graph.edges) == sorted(
        [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    )
    assert np.array_equal(graph.nodes["fc2"].weight, net.fc2.weight.detach().numpy())
    assert np.array_equal(graph.nodes["fc1"].bias, net.fc1.bias.detach().numpy())
    beta = 1 - 1e-4 / graph.nodes["lif1"].tau
    assert np.allclose(beta, 0.9) and np.allclose(graph.nodes["lif2"].v_threshold, 1.0)
    # snntorch reads it back, and the network it makes spikes exactly as ours.
    pytest.importorskip("nirtorch")
    from snntorch.import_nir import import_from_nir

    imported = import_from_nir(graph)
    rng = np.random.default_rng(0)
    state = net.initial_state(1)
    fired = 0
    with torch.no_grad():
        for _ in range(50):
            x = torch.from_numpy(rng.normal(0, 1, (1, 3)).astype(np.float32))
            ours, *state = net(x, *state)
            theirs = imported(x)
            theirs = theirs[0] if isinstance(theirs, tuple) else theirs
            assert torch.equal(ours, theirs)
            fired += int(ours.sum())
    assert fired > 0


def test_nir_export_refuses_a_reset_nir_cannot_express(tmp_path: Path) -> None:
    pytest.importorskip("nir")
    from edgeloop.exporters.nir_export import export_nir

    with pytest.raises(EdgeloopError, match="reset_mechanism='zero'"):
        export_nir(spiking_nets.tiny(), 3, tmp_path / "net.nir")


def test_a_reset_alone_does_not_step_the_network(tmp_path: Path) -> None:
    from edgeloop.exporters.spiking import export_spiking

    bundle = export_spiking(spiking_nets.tiny(), torch.zeros(1, 3), tmp_path / "snn").bundle
    graph = edgeloop.LoopGraph(name="resets")
    graph.add_node("wave", Wave, rate_hz=50)
    graph.add_node("tick", "constant", rate_hz=5, config={"value": [1.0]})
    both = {"x": "wave/x", "reset": "tick/action"}
    graph.add_node("torch_snn", "snn.torch", inputs=both, config={"network": "spiking_nets:tiny"})
    graph.add_node(
        "onnx_snn",
        "onnx.model",
        inputs=both,
        config={"model": str(bundle), "providers": ["CPUExecutionProvider"]},
    )
    got = outputs(graph, "torch_snn", "onnx_snn", duration=1.0)
    assert len(got["torch_snn"]) == len(got["onnx_snn"]) == 50  # one step per input, not 55
    assert all(np.array_equal(a, b) for a, b in zip(got["torch_snn"], got["onnx_snn"], strict=True))


def test_conv_counts_respect_groups_and_stride() -> None:
    from edgeloop.runtime.spiking import SpikeEnergyMeter

    net = torch.nn.Sequential(
        torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.Conv2d(8, 4, 1, stride=2)
    )
    meter = SpikeEnergyMeter(net)
    net(torch.rand(1, 8, 10, 10))
    # depthwise 3x3 on 8 channels: 8 x 8 x 8 outputs x 9 products; then 1x1 stride 2:
    # 4 x 4 x 4 outputs x 8 products
    assert meter.real_macs == 8 * 8 * 8 * 9 + 4 * 4 * 4 * 8


def test_nir_export_refuses_layers_out_of_forward_order(tmp_path: Path) -> None:
    pytest.importorskip("nir")
    import snntorch as snn

    from edgeloop.exporters.nir_export import export_nir

    class Backwards(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lif = snn.Leaky(beta=0.9, reset_mechanism="zero", reset_delay=False)
            self.fc = torch.nn.Linear(3, 2)

    with pytest.raises(EdgeloopError, match=r"takes 3 inputs where 2 come"):
        export_nir(Backwards(), 2, tmp_path / "n.nir")
    with pytest.raises(EdgeloopError, match="beta 1"):
        net = spiking_nets.tiny(reset="zero")
        with torch.no_grad():
            net.lif1.beta.fill_(1.0)
        export_nir(net, 3, tmp_path / "n.nir")


def test_a_model_node_stepped_by_hand_steps_its_state_on_every_call(tmp_path: Path) -> None:
    from edgeloop.exporters.spiking import export_spiking
    from edgeloop.plugins.onnx_model import OnnxModel
    from edgeloop.testing import start_node

    bundle = export_spiking(spiking_nets.tiny(), torch.zeros(1, 3), tmp_path / "snn").bundle
    node = start_node(OnnxModel, {"model": str(bundle), "providers": ["CPUExecutionProvider"]})
    assert node.ctx.notes["verified"] == "on the bundle's sample inputs"  # samples.npz
    x = {"x": np.full(3, 2.0, np.float32), "reset": None}
    states = []
    for _ in range(3):  # the same input each call: still one step each (no wired inputs)
        assert node.step(x)
        states.append({k: v.copy() for k, v in node.state.items()})
    assert not all(np.array_equal(states[0][k], states[1][k]) for k in states[0])


def test_a_spiking_bundle_steps_a_batch_of_any_size_like_torch(tmp_path: Path) -> None:
    from edgeloop.exporters.spiking import export_spiking
    from edgeloop.plugins.onnx_model import OnnxModel
    from edgeloop.testing import start_node

    net = spiking_nets.tiny()
    bundle = export_spiking(net, torch.zeros(1, 3), tmp_path / "snn").bundle  # batch 1
    node = start_node(OnnxModel, {"model": str(bundle), "providers": ["CPUExecutionProvider"]})
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    state = list(net.initial_state(8))
    for _ in range(5):  # eight networks a tick, each with its own state, as torch
        with torch.no_grad():
            expected, *state = net(torch.from_numpy(x), *state)
        got = node.step({"x": x, "reset": None})["out"]
        assert got.shape == (8, 2) and np.allclose(got, expected.numpy(), atol=1e-5)
    assert "state" not in node.ctx.notes  # the first batch is no change
    assert node.step({"x": x[:2], "reset": None})["out"].shape == (2, 2)
    assert node.ctx.notes["state"] == "batch 2; restarted 1 time(s) when the batch changed"
