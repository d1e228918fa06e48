"""Hardware profiles: the built-ins load, user files load by path, bad files say where."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import edgeloop
from edgeloop import Executor, LoopGraph, ProfileError, load_profile
from edgeloop.runtime.profiles import builtin_profile_names, profile_source
from edgeloop.testing import CounterSensor

GOOD = """
name: my-board
description: A board of mine
kind: jetson
cpu: {arch: aarch64, cores: 6}
memory: {size_gb: 8, shared_with_gpu: true}
software: {tensorrt: "10.3", max_onnx_opset: 20}
execution_providers:
  - name: TensorrtExecutionProvider
    options: {trt_fp16_enable: true}
  - name: CPUExecutionProvider
"""


def write(tmp_path: Path, text: str, name: str = "board.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.mark.parametrize("name", builtin_profile_names())
def test_every_built_in_profile_loads_and_is_consistent(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.provider_names()[-1] == "CPUExecutionProvider"
    if profile.kind == "jetson":
        assert profile.cpu.arch == "aarch64" and profile.memory.shared_with_gpu
        assert profile.provider_names()[0] == "TensorrtExecutionProvider"
        tensorrt = profile.software.tensorrt or ""
        if tensorrt.startswith("8.") and profile.software.max_onnx_opset is not None:
            assert profile.software.max_onnx_opset <= 17  # TensorRT 8.x parses up to opset 17


def test_every_built_in_figure_names_its_source():
    for name in builtin_profile_names():
        commented = False  # the line above is a comment
        for line in profile_source(name).splitlines():
            if line.lstrip().startswith("#"):
                commented = True
                continue
            value = line.partition(":")[2].split("#")[0].strip().strip('"')
            if value.replace(".", "", 1).isdigit():
                assert "#" in line or commented, f"{name}: '{line.strip()}' names no source"
            commented = False


def test_the_shipped_line_up_covers_the_jetson_family_and_desktops():
    assert {"desktop-cpu", "desktop-cuda", "jetson-orin-nano-8gb", "jetson-agx-orin-64gb"} <= set(
        builtin_profile_names()
    )


def test_a_profile_file_loads_by_path(tmp_path):
    profile = load_profile(write(tmp_path, GOOD))
    assert profile.name == "my-board"
    assert profile.execution_providers[0].options == {"trt_fp16_enable": True}


def test_a_bad_profile_file_names_file_line_field_and_fix(tmp_path):
    path = write(
        tmp_path,
        GOOD.replace("cores: 6", "cores: 6, coers: 2").replace("size_gb: 8", "size_gb: lots"),
    )
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    found = {(p.field, p.line): p for p in caught.value.problems}
    assert set(found) == {("cpu.coers", 4), ("memory.size_gb", 5)}
    assert found[("cpu.coers", 4)].fix == "did you mean 'cores'?"
    assert found[("memory.size_gb", 5)].message == "expected a number, got 'lots'"
    assert all(p.file == str(path) for p in caught.value.problems)


def test_an_unknown_execution_provider_is_refused(tmp_path):
    path = write(tmp_path, GOOD.replace("CPUExecutionProvider", "CPUProvider"))
    with pytest.raises(ProfileError, match=r"execution_providers\[1\]\.name"):
        load_profile(path)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (
            "{trt_fp16_enabled: true}",
            "has no option 'trt_fp16_enabled': did you mean trt_fp16_enable?",
        ),
        ("{enable_cuda_graph: 1}", "'enable_cuda_graph' is an option of CUDAExecutionProvider"),
    ],
)
def test_a_misspelt_or_misplaced_provider_option_is_refused_at_its_line(tmp_path, options, said):
    path = write(tmp_path, GOOD.replace("{trt_fp16_enable: true}", options))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    (problem,) = caught.value.problems
    assert said in problem.message
    assert problem.line == 8 and problem.field == "execution_providers[0]"
    # An option this table does not know, and no typo of a known one, is passed on:
    # a newer ONNX Runtime may take it (and refuses it itself when the session is built).
    load_profile(write(tmp_path, GOOD.replace("trt_fp16_enable", "trt_future_option")))


def test_an_unknown_profile_name_suggests_close_ones():
    with pytest.raises(ProfileError, match="did you mean desktop-cpu"):
        load_profile("desktop-cp")


def test_a_graph_names_its_profile_by_a_path_from_its_folder_and_nodes_get_it(tmp_path):
    (tmp_path / "boards").mkdir()
    write(tmp_path, GOOD, "boards/mine.yaml")
    seen: list[edgeloop.HardwareProfile] = []

    class Probe(CounterSensor):
        """Notes the profile it was given."""

        def setup(self, ctx):
            super().setup(ctx)
            seen.append(ctx.profile)

    class ProbePlugin:
        @edgeloop.hookimpl
        def edgeloop_register_node_types(self):
            return {"probe": Probe}

    graph = LoopGraph(name="on_board", profile="boards/mine.yaml")
    graph.add_node("probe", "probe", rate_hz=10)
    graph.write(tmp_path / "loop.yaml")
    registry = edgeloop.PluginRegistry(plugins={"probe": ProbePlugin()})
    Executor(edgeloop.load_graph(tmp_path / "loop.yaml"), simulated=True, registry=registry).run(
        0.1
    )
    assert [p.name for p in seen] == ["my-board"]


def test_a_graph_naming_an_unknown_profile_is_reported_at_its_line(tmp_path):
    path = write(
        tmp_path,
        """
        name: t
        profile: jetson-orin-nano-8gbb
        nodes:
          - id: c
            type: constant
            rate_hz: 1
        """,
        "loop.yaml",
    )
    problems = edgeloop.validate_graph(edgeloop.load_graph(path), edgeloop.PluginRegistry())
    (problem,) = problems
    assert (problem.field, problem.line) == ("profile", 2)
    assert "did you mean jetson-orin-nano-8gb" in problem.fix


def test_the_cli_lists_profiles_and_shows_one_with_its_sources():
    listing = subprocess.run(
        [sys.executable, "-m", "edgeloop", "profiles"], capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    assert "jetson-orin-nano-8gb" in listing.stdout and "desktop-cpu" in listing.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "edgeloop", "profiles", "show", "jetson-orin-nano-8gb"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == profile_source("jetson-orin-nano-8gb")
    bad = subprocess.run(
        [sys.executable, "-m", "edgeloop", "profiles", "show", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown hardware profile 'nope'" in bad.stderr


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("cores: 6", 'cores: "6"'), "cpu.cores"),
        (("shared_with_gpu: true", "shared_with_gpu: yes please"), "memory.shared_with_gpu"),
        (
            ("  - name: CPUExecutionProvider", "  - name: TensorrtExecutionProvider"),
            "execution_providers",
        ),
    ],
)
def test_a_profile_is_read_strictly(tmp_path, change, field):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert [p.field for p in caught.value.problems] == [field]
