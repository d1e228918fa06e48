"""Graphs, scenarios and recordings run only code the user installed or allowed
(issue 14, item 4): a ``module:attribute`` a file names is imported only from
edgeloop, an installed plugin, a package given with ``--allow-import`` or
``EDGELOOP_ALLOW_IMPORT``, a ``--plugin`` module, or the file's own folder; a bare
``edgeloop replay`` never loads the graph a recording names.

Each payload is harmless but observable: a module that writes a file when it is
imported and another when its factory is called, so "refused" means "no file".
"""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from edgeloop.cli import main
from edgeloop.runtime.errors import PluginError
from edgeloop.runtime.imports import (
    ImportPolicy,
    allowed_import,
    import_named,
    import_policy,
    restrict_imports,
)

ROOT = Path(__file__).resolve().parents[2]
FIELD = ROOT / "examples" / "field-search" / "scenario.yaml"
REFUSED = "edgeloop imports only installed plugins, modules beside the"
_names = itertools.count()


@pytest.fixture(autouse=True)
def _own_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test puts on sys.path (a folder beside a graph joins it) goes with it."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def payload(folder: Path) -> tuple[str, Path, Path]:
    """A module in ``folder`` (a fresh name each time, so no test sees another's
    import) that writes ``imported`` when imported and ``made`` when its ``make``
    runs; ``make`` returns the shipped sensing-field world, so a run it is allowed
    in works. Returns the module's name and the two files."""
    name = f"payload_{next(_names)}_{folder.name.replace('-', '_')}"
    folder.mkdir(parents=True, exist_ok=True)
    imported, made = folder / f"{name}.imported", folder / f"{name}.made"
    (folder / f"{name}.py").write_text(
        textwrap.dedent(f"""
            from pathlib import Path

            from edgeloop.sims.sensing_field import SensingField

            Path({str(imported)!r}).write_text("imported")


            def make(**kwargs):
                Path({str(made)!r}).write_text("made")
                return SensingField(**kwargs)
        """)
    )
    return name, imported, made


def world_graph(path: Path, env: str, kwargs: dict | None = None) -> Path:
    """A graph of one ``world`` node, its ``env`` as given."""
    node = {
        "id": "world",
        "type": "world",
        "rate_hz": 10,
        "config": {"env": env, "kwargs": kwargs or {"n_agents": 1}, "agents": ["robot_0"]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"name": "w", "nodes": [node]}, sort_keys=False))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- refused ----------------------------------------------------------------------------------


def test_a_world_naming_os_system_is_refused_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    graph = world_graph(tmp_path / "g.yaml", "os:system", {"command": f"touch {marker}"})
    line = graph.read_text().splitlines().index("    env: os:system") + 1
    for command in ("validate", "run"):
        code, _, err = cli(capsys, command, graph, *(["--sim"] if command == "run" else []))
        assert code == 2
        assert "the graph names 'os:system'; " + REFUSED + " graph" in err
        assert "add --allow-import os if you trust it" in err
        assert f"g.yaml:{line}: nodes[0].config.env" in err  # as any graph problem
        assert "Traceback" not in err
    assert not marker.exists()


def test_a_module_neither_installed_nor_allowed_is_never_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, imported, made = payload(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # importable, but not allowed
    graph = world_graph(tmp_path / "graphs" / "g.yaml", f"{name}:make")
    code, _, err = cli(capsys, "run", graph, "--sim", "--duration", "1")
    assert code == 2 and f"the graph names '{name}:make'" in err
    assert f"--allow-import {name}" in err
    assert not imported.exists() and not made.exists()


def test_a_scenario_naming_an_unallowed_world_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(FIELD.read_text())
    data["world"]["env"] = "os:system"
    data["world"]["kwargs"] = {"command": f"touch {tmp_path / 'pwned'}"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, err = cli(capsys, "sim", tmp_path / "s.yaml", "--one-process", "--duration", "1")
    assert code == 2
    assert "world.env: the scenario names 'os:system'; " + REFUSED + " scenario" in err
    assert not (tmp_path / "pwned").exists()


def test_a_gymnasium_id_with_a_module_prefix_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gymnasium.make("os:system")`` would import ``os``: the module before the
    colon is checked like any other import path."""
    pytest.importorskip("gymnasium")
    name, imported, _ = payload(tmp_path / "site")
    sys.path.insert(0, str(tmp_path / "site"))
    for env in ("os:system", f"{name}:Pendulum-v1"):
        node = {"id": "sensor", "type": "gym.sensor", "rate_hz": 10, "config": {"env": env}}
        (tmp_path / "g.yaml").write_text(yaml.safe_dump({"name": "g", "nodes": [node]}))
        code, _, err = cli(capsys, "validate", tmp_path / "g.yaml")
        assert code == 2 and f"the graph names '{env}'" in err
    assert not imported.exists()
    # Where the graph was checked before the policy came (built in Python), the plant
    # still refuses when it is made.
    from edgeloop.plugins.gym_plant import GymPlant

    with restrict_imports(import_policy()), pytest.raises(PluginError, match="'os:system'"):
        GymPlant("os:system", seed=0)


def test_a_recordings_graph_is_not_loaded_by_a_bare_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The crafted recording names a graph whose world sits beside it, so loading it
    would import it (modules beside a graph are allowed): replay must not load it."""
    pytest.importorskip("mcap")
    from edgeloop.runtime.recording import Recorder

    name, imported, made = payload(tmp_path / "drop")
    evil = world_graph(tmp_path / "drop" / "evil.yaml", f"{name}:make")
    recorder = Recorder(tmp_path / "crafted.mcap")
    recorder.add_metadata({"graph": evil, "seed": 0, "simulated": True, "duration": 1.0})
    recorder.close()
    code, _, err = cli(capsys, "replay", tmp_path / "crafted.mcap")
    assert code == 2
    assert "which replay does not load by itself" in err
    assert f"--graph {evil}" in err  # the fix says how, with the path to check
    assert not imported.exists() and not made.exists()


def test_an_import_path_that_reaches_the_standard_library_is_refused() -> None:
    """An allowed package's name for a stdlib function or module is no way around
    the allowlist; an import path with '..' is no import path."""
    policy = import_policy()
    for path in (
        "edgeloop.runtime.processes.supervisor:subprocess",
        "edgeloop.cli.loops:Path",
    ):
        with pytest.raises(PluginError, match="of the standard library"):
            allowed_import(path, allow=policy.allow, base_dir=None)
    with pytest.raises(PluginError, match="is not an import path"):
        allowed_import("..evil:make", allow=policy.allow, base_dir=None)


def test_a_module_beside_the_graph_that_another_module_shadows_is_not_local(
    tmp_path: Path,
) -> None:
    """A ``yaml.py`` beside the graph does not make the installed yaml "local"."""
    (tmp_path / "yaml.py").write_text("raise SystemExit('imported the wrong yaml')\n")
    with pytest.raises(PluginError, match="--allow-import yaml"):
        allowed_import("yaml:safe_load", allow={"edgeloop"}, base_dir=tmp_path)


# -- allowed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["--allow-import", "EDGELOOP_ALLOW_IMPORT", "--plugin"])
def test_a_package_the_user_allows_is_imported(
    how: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, imported, made = payload(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    graph = world_graph(tmp_path / "graphs" / "g.yaml", f"{name}:make")
    extra = []
    if how == "EDGELOOP_ALLOW_IMPORT":
        monkeypatch.setenv("EDGELOOP_ALLOW_IMPORT", f"mpe2, {name}")
    else:
        extra = [how, name]  # a --plugin module is one the user named
    code, _, err = cli(capsys, "run", graph, "--sim", "--duration", "1", "--quiet", *extra)
    assert code == 0, err
    assert imported.exists() and made.exists()


def test_an_allowed_name_that_is_no_package_name_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = world_graph(tmp_path / "g.yaml", "edgeloop.sims.sensing_field:SensingField")
    code, _, err = cli(capsys, "validate", graph, "--allow-import", "os;rm")
    assert code == 2 and "'os;rm' is not a Python package name" in err


def test_a_module_beside_the_graph_is_imported_from_anywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, imported, made = payload(tmp_path / "mine")
    graph = world_graph(tmp_path / "mine" / "g.yaml", f"{name}:make")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not importable from the current folder
    code, _, err = cli(capsys, "run", graph, "--sim", "--duration", "1", "--quiet")
    assert code == 0, err
    assert imported.exists() and made.exists()


def test_process_groups_get_the_policy_of_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scenario's world beside the scenario file runs in a process of its own: that
    process can import it only because the policy (the file's folder) is passed on."""
    name, _, made = payload(tmp_path / "mine")
    data = yaml.safe_load(FIELD.read_text())
    data["world"]["env"] = f"{name}:make"
    (tmp_path / "mine" / "s.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = cli(
        capsys, "sim", tmp_path / "mine" / "s.yaml", "--agents", "1", "--duration", "1", "--quiet"
    )
    assert code == 0, err
    assert made.exists()


def test_without_a_policy_python_code_imports_what_it_names(tmp_path: Path) -> None:
    """Python that builds its own graphs is not restricted; a policy, once set, is."""
    name, imported, _ = payload(tmp_path / "site")
    sys.path.insert(0, str(tmp_path / "site"))
    with restrict_imports(ImportPolicy(frozenset({"edgeloop"}))):
        with pytest.raises(PluginError):
            import_named(f"{name}:make")
    assert not imported.exists()
    assert callable(import_named(f"{name}:make")) and imported.exists()


# -- what ships still works -------------------------------------------------------------------


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _example_graphs() -> list[Path]:
    return sorted(p for p in (ROOT / "examples").rglob("*.yaml") if p.name != "scenario.yaml")


@pytest.mark.parametrize("graph", _example_graphs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_graph_still_validates(
    graph: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # model paths are relative to the repository root
    extra = []
    if "plugin_example" in graph.parts and not _installed("edgeloop-example-plugin"):
        monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugin_example"))
        extra = ["--plugin", "edgeloop_example_plugin"]
    if "pendulum-mpts" in graph.parts and not (ROOT / "examples/pendulum-mpts/bundle").exists():
        pytest.skip("its bundle is made by examples/pendulum-mpts/README.md")
    code, out, err = cli(capsys, "validate", graph, *extra)
    assert code == 0, err
    assert "is valid" in out


def test_the_field_search_example_still_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(
        capsys, "sim", FIELD, "--agents", "2", "--duration", "1", "--one-process", "--quiet"
    )
    assert code == 0, err


def test_a_task_space_naming_a_module_through_its_gymnasium_id_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(
        "name: evil\nenv_id: 'os:system'\n"
        "parameters:\n  - {name: g, attribute: g, low: 1.0, high: 2.0}\n"
    )
    for command in (["train", "--steps", "1000", "-o", "run"], ["compare", "-o", "cmp"]):
        code, _, err = cli(capsys, *command, "--task-space", space)
        assert code == 2 and "the task space names 'os:system'" in err, err
        assert "add --allow-import os if you trust it" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cmp").exists()
