"""The third-party plugin story end to end: ``examples/plugin_example`` installed
with pip, seen by the real ``edgeloop`` CLI, run in a loop; a broken plugin and a
duplicate node type reported by name."""

from __future__ import annotations

import csv
import importlib
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgeloop

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_example"
GRAPH = EXAMPLE / "loop.yaml"


def _edgeloop(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess; a wide terminal keeps table rows on one line."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgeloop", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _rows(table: str) -> list[list[str]]:
    """The cells of each row of a rich table printed to a pipe."""
    return [
        [cell.strip() for cell in line.strip("│┃ ").split("│")]
        for line in table.splitlines()
        if line.count("│") >= 2
    ]


@pytest.fixture(scope="module")
def example_plugin_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """pip-install examples/plugin_example (offline) into a folder of its own, and the
    environment that puts it on the path of the CLI's subprocesses: this
    environment's site-packages stays as it was, so no other test (nor another
    pytest worker) sees the plugin come and go."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source") / "plugin_example"  # built here: the build's
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    # metadata never lands beside the example, where graphs import from
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield {
        "PYTHONPATH": os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH")) if p)
    }


@pytest.fixture
def broken_plugin_dir(tmp_path: Path) -> Path:
    """A folder that, on sys.path, holds an installed-looking distribution whose
    ``edgeloop`` entry point raises ImportError at import (made without pip)."""
    dist_info = tmp_path / "broken_plugin-0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[edgeloop]\nbroken = broken_plugin_module\n")
    (tmp_path / "broken_plugin_module.py").write_text('raise ImportError("boom")\n')
    return tmp_path


def test_an_installed_third_party_plugin_registers_its_node_types(
    example_plugin_installed: dict[str, str],
) -> None:
    done = _edgeloop("plugins", env=example_plugin_installed)
    assert done.returncode == 0, done.stderr
    plugin_of = {row[0]: row[2] for row in _rows(done.stdout) if len(row) >= 4}
    assert plugin_of.get("example.sine") == "example", done.stdout
    assert plugin_of.get("example.recorder") == "example", done.stdout
    assert plugin_of.get("pid") == "builtin", done.stdout


def test_the_example_loop_runs_with_the_cli_and_records_every_pid_command(
    example_plugin_installed: dict[str, str],
    tmp_path: Path,
) -> None:
    done = _edgeloop(
        "run",
        str(GRAPH),
        "--sim",
        "--duration",
        "2",
        "--json",
        "out.json",
        cwd=tmp_path,
        env=example_plugin_installed,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((tmp_path / "out.json").read_text())
    assert report["stop_reason"] == "duration reached"
    calls = {n["id"]: n["calls"] for n in report["nodes"]}
    assert calls["sine"] > 0
    assert calls["recorder"] == calls["pid"] == calls["sine"]
    assert all(not n["faults"] for n in report["nodes"])
    (contract,) = report["contracts"]
    assert contract["name"] == "sense_to_record"
    assert contract["count"] == calls["recorder"]

    with open(tmp_path / "commands.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["t", "value"]
    assert len(rows) == calls["recorder"]
    limit = next(n for n in edgeloop.load_graph(GRAPH).nodes if n.id == "pid").config["limit"]
    times = [float(t) for t, _ in rows]
    values = [float(v) for _, v in rows]
    assert times == sorted(times)
    assert all(math.isfinite(v) and abs(v) <= limit for v in values)
    assert any(v != 0.0 for v in values)
    assert report["series"]["recorder.last_command"] == [values[-1]]


def test_a_broken_plugin_is_reported_by_name_and_the_others_still_load(
    example_plugin_installed: dict[str, str],
    broken_plugin_dir: Path,
) -> None:
    pythonpath = os.pathsep.join((str(broken_plugin_dir), example_plugin_installed["PYTHONPATH"]))
    done = _edgeloop("plugins", env={"PYTHONPATH": pythonpath})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: plugin 'broken' failed to load: ImportError: boom" in done.stderr
    rows = _rows(done.stdout)
    assert ["broken", "ImportError: boom"] in rows, done.stdout
    types = {row[0] for row in rows if len(row) >= 4}
    assert {"pid", "example.sine", "example.recorder"} <= types


def test_a_broken_plugin_is_a_failure_of_the_registry_not_an_exception(
    broken_plugin_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(broken_plugin_dir))
    importlib.invalidate_caches()
    registry = edgeloop.PluginRegistry()
    failures = {f.name: f.error for f in registry.failures}
    assert failures.get("broken") == "ImportError: boom"
    assert "pid" in registry.node_types


def test_two_plugins_registering_the_same_node_type_name_is_an_error_naming_both() -> None:
    class Sensor(edgeloop.Sensor):
        """A sensor."""

    class OtherSensor(edgeloop.Sensor):
        """Another sensor with the same type name."""

    class FirstPlugin:
        @edgeloop.hookimpl
        def edgeloop_register_node_types(self) -> dict[str, type[edgeloop.Node]]:
            return {"shared.sensor": Sensor}

    class SecondPlugin:
        @edgeloop.hookimpl
        def edgeloop_register_node_types(self) -> dict[str, type[edgeloop.Node]]:
            return {"shared.sensor": OtherSensor}

    with pytest.raises(edgeloop.PluginError) as caught:
        edgeloop.PluginRegistry(
            entry_points=False, plugins={"first": FirstPlugin(), "second": SecondPlugin()}
        )
    message = str(caught.value)
    assert "'shared.sensor'" in message
    assert "'first'" in message and "'second'" in message
    assert caught.value.plugin == "second"


def test_a_registration_function_without_the_hook_marker_is_reported():
    class Unmarked:
        def edgeloop_register_node_types(self):
            return {}

    with pytest.raises(edgeloop.PluginError, match=r"without @edgeloop\.hookimpl"):
        edgeloop.PluginRegistry(entry_points=False, plugins={"unmarked": Unmarked()})
