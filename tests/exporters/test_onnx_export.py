"""torch -> ONNX bundles: parity for several kinds of model, opset limits, bundles in a loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
onnxruntime = pytest.importorskip("onnxruntime")

import edgeloop  # noqa: E402
from edgeloop.exporters import ExportError, choose_opset, export_bundle  # noqa: E402
from edgeloop.runtime.bundles import open_model  # noqa: E402
from edgeloop.testing import RecordingSink  # noqa: E402

PENDULUM = Path(__file__).parents[2] / "examples" / "pendulum" / "loop.yaml"


class TwoByTwo(torch.nn.Module):
    """Two inputs, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 2)
        self.b = torch.nn.Linear(3, 2)

    def forward(self, x, y):
        return self.a(x) + self.b(y), torch.tanh(self.a(x))


class SmallConv(torch.nn.Module):
    """A small conv net on 3x32x32 images."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 5),
        )

    def forward(self, image):
        return self.body(image)


class LastStepGru(torch.nn.Module):
    """A GRU over a sequence, read out at its last step."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(4, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, seq):
        out, _ = self.gru(seq)
        return self.head(out[:, -1])


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))


CASES = {
    "mlp": (mlp, (torch.randn(1, 3),), ["obs"], ["action"]),
    "conv": (SmallConv, (torch.randn(1, 3, 32, 32),), ["image"], ["logits"]),
    "gru": (LastStepGru, (torch.randn(1, 6, 4),), ["seq"], ["value"]),
    "two_by_two": (TwoByTwo, (torch.randn(1, 4), torch.randn(1, 3)), ["x", "y"], ["sum", "act"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_exported_bundle_matches_torch_and_takes_any_batch_size(case, tmp_path):
    factory, samples, inputs, outputs = CASES[case]
    torch.manual_seed(1)
    module = factory()
    result = export_bundle(
        module,
        samples,
        tmp_path / case,
        input_names=inputs,
        output_names=outputs,
        profile="jetson-orin-nano-8gb",
    )
    assert result.parity.passed and result.parity.max_abs_error < 1e-4
    assert result.manifest.opset == 18 and result.manifest.profile == "jetson-orin-nano-8gb"
    assert [t.name for t in result.manifest.inputs] == inputs
    assert [t.name for t in result.manifest.outputs] == outputs
    assert all(t.shape[0] == "batch" for t in result.manifest.inputs)
    model_file, _ = open_model(result.bundle)  # verifies the sha256 too
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    batch = tuple(torch.randn(5, *s.shape[1:]) for s in samples)
    with torch.no_grad():
        expected = module(*batch)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(outputs, {n: t.numpy() for n, t in zip(inputs, batch, strict=True)})
    for e, g in zip(expected, got, strict=True):
        assert g.shape[0] == 5
        np.testing.assert_allclose(g, e.numpy(), atol=1e-4)


def test_the_opset_never_exceeds_the_profiles_limit():
    nano = edgeloop.load_profile("jetson-nano-4gb")  # TensorRT 8.2: opset 13
    xavier = edgeloop.load_profile("jetson-xavier-nx")  # TensorRT 8.5: opset 17
    assert choose_opset(nano, None) == 13
    assert choose_opset(xavier, None) == 17
    assert choose_opset(None, None) == 18
    with pytest.raises(ExportError, match="above jetson-xavier-nx's limit of 17"):
        choose_opset(xavier, 18)


def test_an_export_whose_onnx_twin_differs_more_than_the_tolerance_fails(tmp_path):
    with pytest.raises(ExportError, match="ONNX Runtime differs from torch by up to"):
        export_bundle(
            mlp(),
            (torch.randn(1, 3),),
            tmp_path / "b",
            input_names=["obs"],
            output_names=["action"],
            tolerance=0.0,
        )


def test_an_existing_folder_is_not_overwritten_unless_asked(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError, match="exists"):
        export_bundle(
            mlp(),
            (torch.randn(1, 3),),
            tmp_path / "taken",
            input_names=["obs"],
            output_names=["action"],
        )


def test_an_exported_policy_runs_in_the_pendulum_loop_with_no_torch_on_the_path(tmp_path):
    bundle = export_bundle(
        mlp(),
        (torch.randn(1, 3),),
        tmp_path / "policy",
        input_names=["obs"],
        output_names=["action"],
        profile="desktop-cpu",
    ).bundle
    graph = edgeloop.load_graph(PENDULUM)
    controller = graph.node("controller")
    controller.type = "onnx.model"
    controller.config = {"model": str(bundle)}
    graph.add_node("watch", RecordingSink, inputs={"action": "controller/action"})
    executor = edgeloop.Executor(graph, simulated=True)
    report = executor.run(1.0)
    assert report.node("motor").calls == 50 and report.node("controller").faults == {}
    with torch.no_grad():
        first_obs = torch.as_tensor(executor.node("watch").received[0][1]["action"])
    assert first_obs.shape == (1,)


def test_the_export_command_makes_a_bundle_from_a_factory_and_a_checkpoint(
    tmp_path, capsys, monkeypatch
):
    import json
    import os
    import shutil
    import subprocess
    import sys

    from edgeloop.cli import main

    (tmp_path / "my_policies.py").write_text(
        "import torch\n\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(),"
        " torch.nn.Linear(16, 1))\n"
    )
    torch.manual_seed(3)
    trained = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    torch.save(trained.state_dict(), tmp_path / "weights.pt")
    args = ["export", "my_policies:make", "--input", "obs=1x3", "--output", "action"]
    args += ["--profile", "jetson-xavier-nx"]
    # The installed script, with no PYTHONPATH: the factory's module in the current
    # folder imports as with `python -m`.
    script = Path(sys.executable).parent / "edgeloop"
    command = [str(script)] if script.exists() else [shutil.which("edgeloop") or "edgeloop"]
    done = subprocess.run(
        [*command, *args, "--checkpoint", "weights.pt", "-o", "bundle"],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["opset"] == 17 and manifest["profile"] == "jetson-xavier-nx"
    assert manifest["parity"]["max_abs_error"] <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "bundle" / "model.onnx"))
    obs = np.array([[0.1, 0.2, 0.3]], np.float32)
    with torch.no_grad():
        expected = trained(torch.from_numpy(obs)).numpy()  # the checkpoint's weights, not make()'s
    np.testing.assert_allclose(session.run(["action"], {"obs": obs})[0], expected, atol=1e-5)

    monkeypatch.chdir(tmp_path)  # the same CLI in this process for the refusals
    assert main([*args, "--opset", "18", "-o", "other"]) == 2
    assert "above jetson-xavier-nx's limit of 17" in " ".join(capsys.readouterr().err.split())
    assert main([*args, "--input", "obs=ax3", "-o", "third"]) == 2
    assert "is not NAME=SHAPE" in capsys.readouterr().err


def test_an_fp16_variant_keeps_fp32_io_stays_within_its_tolerance_and_runs_in_the_node(tmp_path):
    result = export_bundle(
        SmallConv(),
        (torch.randn(1, 3, 32, 32),),
        tmp_path / "conv",
        input_names=["image"],
        output_names=["logits"],
        fp16=True,
        profile="jetson-orin-nano-8gb",
    )
    half = result.manifest.parity["fp16"]
    assert result.manifest.variants == {"fp16": "model_fp16.onnx"}
    assert 0 < half["max_abs_error"] <= 1e-2  # fp16 rounds, within its own tolerance
    assert half["max_abs_error"] > result.parity.max_abs_error
    session = onnxruntime.InferenceSession(str(result.bundle / "model_fp16.onnx"))
    assert session.get_inputs()[0].type == "tensor(float)"

    class Camera(edgeloop.Sensor):
        """A constant 3x32x32 image."""

        outputs = (edgeloop.Port("image", dtype="float32"),)

        def step(self, inputs):
            return {"image": np.full((3, 32, 32), 0.5, np.float32)}

    graph = edgeloop.LoopGraph(name="fp16")
    graph.add_node("camera", Camera, rate_hz=10)
    graph.add_node(
        "net",
        "onnx.model",
        inputs={"image": "camera/image"},
        config={"model": str(result.bundle), "variant": "fp16"},
    )
    graph.add_node("sink", RecordingSink, inputs={"logits": "net/logits"})
    executor = edgeloop.Executor(graph, simulated=True)
    executor.run(0.2)
    (logits, _) = executor.node("sink").values("logits")
    assert logits.shape == (5,) and logits.dtype == np.float32
    (manifest_file := result.bundle / "model_fp16.onnx").write_bytes(b"x")
    problems = edgeloop.validate_graph(graph, edgeloop.PluginRegistry())
    assert "does not match its sha256" in problems[0].message and manifest_file.exists()


class Normed(torch.nn.Module):
    """LayerNorm and GELU: ops torch's converter cannot lower to opset 13."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.LayerNorm(8), torch.nn.GELU()
        )

    def forward(self, obs):
        return self.body(obs)


def test_an_export_that_cannot_reach_the_profiles_opset_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(ExportError, match="torch wrote opset 18, not the 13 asked for"):
        export_bundle(
            Normed(),
            (torch.randn(1, 3),),
            tmp_path / "nano",
            input_names=["obs"],
            output_names=["h"],
            profile="jetson-nano-4gb",
        )
    assert list(tmp_path.iterdir()) == []  # built aside, removed on failure


def test_outputs_the_bundle_cannot_name_are_refused_before_exporting(tmp_path):
    class Dict(torch.nn.Module):
        """Returns a dict."""

        def forward(self, obs):
            return {"action": obs * 2}

    with pytest.raises(ExportError, match="returns dict"):
        export_bundle(
            Dict(),
            (torch.randn(1, 3),),
            tmp_path / "d",
            input_names=["obs"],
            output_names=["action"],
        )
    with pytest.raises(ExportError, match="returns 1 output"):
        export_bundle(
            mlp(),
            (torch.randn(1, 3),),
            tmp_path / "e",
            input_names=["obs"],
            output_names=["action", "value"],
        )


def test_overwrite_replaces_a_bundle_but_never_a_folder_of_other_files(tmp_path):
    first = export_bundle(
        mlp(), (torch.randn(1, 3),), tmp_path / "b", input_names=["obs"], output_names=["action"]
    )
    again = export_bundle(
        mlp(),
        (torch.randn(1, 3),),
        tmp_path / "b",
        input_names=["obs"],
        output_names=["action"],
        overwrite=True,
    )
    assert again.bundle == first.bundle and (tmp_path / "b" / "manifest.json").exists()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "important.py").write_text("keep me")
    with pytest.raises(ExportError, match="is not a bundle"):
        export_bundle(
            mlp(),
            (torch.randn(1, 3),),
            tmp_path / "src",
            input_names=["obs"],
            output_names=["action"],
            overwrite=True,
        )
    assert (tmp_path / "src" / "important.py").read_text() == "keep me"
