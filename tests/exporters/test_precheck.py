"""Prechecking a model against a profile: what passes, warns and fails, and the command."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import onnx_models
import pytest

pytest.importorskip("onnx")

import edgeloop
import edgeloop.runtime.profiles
from edgeloop.exporters.precheck import precheck, tensorrt_ops

BOARD = """
name: tiny-board
description: A board with a very small model budget
kind: jetson
cpu: {arch: aarch64}
memory: {size_gb: 4, shared_with_gpu: true}
software: {tensorrt: "10.3", max_onnx_opset: 20}
execution_providers:
  - name: TensorrtExecutionProvider
  - name: CPUExecutionProvider
budgets: {model_memory_mb: 0.0001}
"""


def test_a_small_model_passes_on_an_orin_with_the_dynamic_batch_flagged(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")
    report = precheck(model, edgeloop.load_profile("jetson-orin-nano-8gb"))
    assert report.passed
    assert report.check("onnx checker").status == "pass"
    assert report.check("opset").status == "pass"
    assert report.check("dynamic dims").status == "warn"
    assert report.check("dynamic dims").items == ["obs: batch"]
    compute = report.check("compute").detail
    assert "about 32 MACs (64 FLOP)" in compute  # 3x8 + 8x1
    # 64 FLOP at the Orin Nano's peak is under a nanosecond: said so, not "0.000 us"
    assert re.search(r"that is at least 0.955 ps", compute) and "0.000" not in compute
    cuda = precheck(model, edgeloop.load_profile("desktop-cuda"), measure=False)
    assert cuda.check("TensorRT ops").status == "warn"  # it names no TensorRT version
    assert report.check("host latency").status == "info"


def test_an_opset_too_new_for_the_boards_tensorrt_fails(tmp_path):
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")  # opset 17
    report = precheck(model, edgeloop.load_profile("jetson-nano-4gb"), measure=False)  # 13
    assert not report.passed
    assert report.check("opset").status == "fail"
    assert "opset 17 is above 13" in report.check("opset").detail


def test_a_model_over_the_memory_budget_fails(tmp_path):
    (tmp_path / "board.yaml").write_text(BOARD)
    model = onnx_models.make_mlp(tmp_path / "mlp.onnx", hidden=64)
    report = precheck(model, edgeloop.load_profile(tmp_path / "board.yaml"), measure=False)
    assert report.check("memory").status == "fail"
    detail = report.check("memory").detail
    assert detail.startswith("parameters 1.3 KB")  # (3*64 + 64 + 64*1 + 1) float32 = 1284 B
    assert "over the 0.0001 MB budget of tiny-board" in detail


def test_the_op_tables_cover_every_tensorrt_the_profiles_name():
    for name in edgeloop.runtime.profiles.builtin_profile_names():
        profile = edgeloop.load_profile(name)
        if profile.software.tensorrt:
            version, supported, source = tensorrt_ops(profile.software.tensorrt)
            assert {"Conv", "MatMul", "Gemm", "Relu", "Add"} <= supported, version
            assert source.startswith("onnx/onnx-tensorrt docs/operators.md at commit")


def test_an_op_missing_from_the_tensorrt_list_is_listed_as_falling_back(tmp_path):
    version, supported, _ = tensorrt_ops("10.3")
    assert version == "9.1"  # the newest table on record at or below 10.3
    assert {"MatMul", "Add", "Tanh"} <= supported
    model = onnx_models.make_unsupported(tmp_path / "odd.onnx", supported)
    report = precheck(model, edgeloop.load_profile("jetson-orin-nano-8gb"), measure=False)
    ops = report.check("TensorRT ops")
    assert ops.status == "warn" and ops.items and "fall back to CUDA/CPU" in ops.detail
    assert all(op not in supported for op in ops.items)


def test_the_precheck_command_prints_pass_or_fail_and_exits_accordingly(tmp_path, capsys):
    from edgeloop.cli import main

    model = onnx_models.make_mlp(tmp_path / "mlp.onnx")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeloop", "precheck", str(model), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run("--profile", "jetson-orin-nano-8gb", "--json", str(tmp_path / "r.json"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.rstrip().endswith("PASS")
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    # The rest through the same CLI in this process (no start-up each).
    strict = ["precheck", str(model), "--profile", "jetson-orin-nano-8gb", "--strict"]
    assert main(strict) == 1  # the dynamic batch is a warning
    assert capsys.readouterr().out.rstrip().endswith("FAIL")
    assert main(["precheck", str(model), "--profile", "jetson-nano-4gb"]) == 1
    assert "opset 17 is above 13" in " ".join(capsys.readouterr().out.split())
    assert main(["precheck", str(tmp_path / "none.onnx"), "--profile", "desktop-cpu"]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_a_model_onnx_runtime_cannot_run_is_a_fail_line_and_the_other_checks_run(tmp_path):
    from edgeloop.cli import main

    model = onnx_models.make_image_decoder(tmp_path / "decoder.onnx")
    report = precheck(model, edgeloop.runtime.profiles.load_profile("desktop-cpu"))
    latency = report.check("host latency")
    assert latency.status == "fail" and "ImageDecoder" in latency.detail
    assert "fix:" in latency.detail and not report.passed
    assert {c.name for c in report.checks} >= {"opset", "memory", "compute"}
    done = subprocess.run(
        [sys.executable, "-m", "edgeloop", "precheck", str(model), "--profile", "desktop-cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout.rstrip().endswith("FAIL")
    assert "Traceback" not in done.stdout + done.stderr
    desktop = edgeloop.runtime.profiles.load_profile("desktop-cpu")
    shaped = precheck(onnx_models.make_reshape(tmp_path / "reshape.onnx"), desktop)
    assert shaped.check("host latency").status == "warn"
    assert "does not run on zero inputs" in shaped.check("host latency").detail
    assert main(["precheck", str(tmp_path / "reshape.onnx"), "--profile", "desktop-cpu"]) == 0
