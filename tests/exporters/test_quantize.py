"""int8 variants (issue 18, item 4): calibrated on real inputs (arrays or a recording),
symmetric QDQ as TensorRT takes it, checked on held-out data, run by the model node."""

from __future__ import annotations

import numpy as np
import pytest
from cli_runner import edgeloop_cli

import edgeloop
from edgeloop.plugins.onnx_model import OnnxModel
from edgeloop.runtime.bundles import read_manifest
from edgeloop.runtime.errors import ExportError
from edgeloop.testing import start_node

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edgeloop.exporters.onnx_export import export_bundle  # noqa: E402
from edgeloop.exporters.quantize import add_int8_variant, calibration_inputs  # noqa: E402

FACTORY = """
import torch

def make():
    torch.manual_seed(5)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
    )
"""


def inputs(count: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((count, 8)).astype(np.float32)


def test_export_int8_from_the_command_line_calibrates_checks_and_the_node_runs_it(tmp_path):
    (tmp_path / "nets.py").write_text(FACTORY)
    np.save(tmp_path / "calibration.npy", inputs(60))
    command = ["export", "nets:make", "--input", "x=1x8", "--output", "y", "-o", "bundle"]
    done = edgeloop_cli(tmp_path, *command, "--int8", "--calibrate", "calibration.npy", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "calibrated on 48 examples; on 12 held out" in " ".join(done.stdout.split())
    manifest = read_manifest(tmp_path / "bundle")
    figures = manifest.parity["int8"]
    assert manifest.variants["int8"] == "model_int8.onnx" and "model_int8.onnx" in manifest.files
    assert figures["held_out"] == 12 and 0 < figures["max_abs_error"] < 0.1
    assert figures["fp32_p50_us"] > 0 and figures["int8_p50_us"] > 0
    # Symmetric: every quantization's zero point is 0 (TensorRT refuses others).
    model = onnx.load(str(tmp_path / "bundle" / "model_int8.onnx"))
    zero_points = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantizers and all(
        not zero_points[n.input[2]].any() and zero_points[n.input[2]].dtype == np.int8
        for n in quantizers
    )
    fp32 = start_node(OnnxModel, {"model": str(tmp_path / "bundle")})
    int8 = start_node(OnnxModel, {"model": str(tmp_path / "bundle"), "variant": "int8"})
    x = inputs(70)[-1]  # neither calibration nor held-out data
    assert np.abs(fp32.step({"x": x})["y"] - int8.step({"x": x})["y"]).max() < 0.1
    missing = edgeloop_cli(tmp_path, *command, "--int8", "--overwrite")
    assert missing.returncode == 2 and "--int8 needs --calibrate" in missing.stderr


def test_a_recording_of_the_models_input_port_calibrates_it(tmp_path):
    from edgeloop.runtime.recording import Recorder

    net = torch.nn.Sequential(torch.nn.Linear(8, 4))
    bundle = export_bundle(
        net, (torch.zeros(1, 8),), tmp_path / "b", input_names=["x"], output_names=["y"]
    ).bundle
    recorder = Recorder(tmp_path / "run.mcap", flush_ms=0)
    for k, x in enumerate(inputs(10)):
        recorder.write("/sensor/x", x, k, k * 0.1, k * 0.1)
        recorder.write("/other/y", np.zeros(3), k, k * 0.1, k * 0.1)
    recorder.close()
    feeds = calibration_inputs(tmp_path / "run.mcap", read_manifest(bundle).inputs, "/sensor/x")
    assert len(feeds) == 10 and feeds[0]["x"].shape == (1, 8)
    quantize = ["quantize", str(bundle), "--calibrate", str(tmp_path / "run.mcap")]
    done = edgeloop_cli(tmp_path, *quantize, "--calibrate-topic", "/sensor/x", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "calibrated on 8 examples; on 2 held out" in done.stdout
    figures = read_manifest(bundle).parity["int8"]
    assert (figures["calibration"], figures["held_out"]) == (8, 2)
    with pytest.raises(ExportError, match="say which topic"):
        add_int8_variant(bundle, tmp_path / "run.mcap")
    no_topic = edgeloop_cli(tmp_path, *quantize, timeout=300)
    assert no_topic.returncode != 0 and "say which topic" in no_topic.stderr
    assert "Traceback" not in no_topic.stderr
    np.save(tmp_path / "wrong.npy", np.zeros((5, 7), np.float32))
    with pytest.raises(ExportError, match=r"shape \(5, 7\)"):
        add_int8_variant(bundle, tmp_path / "wrong.npy")
    assert edgeloop.__version__  # the bundle keeps working with its fp32 model
    assert start_node(OnnxModel, {"model": str(bundle)}).step({"x": inputs(1)[0]})["y"].shape == (
        4,
    )
