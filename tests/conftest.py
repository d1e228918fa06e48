"""Fixtures shared by the tests: the real plugin registry and YAML files in tmp_path."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import edgeloop

REPO = Path(__file__).resolve().parents[1]


def group_workers() -> set[int]:
    """Pids of every process-group worker alive on this machine (Linux /proc)."""
    found = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"edgeloop.runtime.processes.group_worker" in cmdline:
                found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Every test: the group processes it started are gone when it ends."""
    before = group_workers()
    yield
    deadline = time.monotonic() + 10
    while (left := group_workers() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"group processes left behind: {left}"


@pytest.fixture
def registry() -> edgeloop.PluginRegistry:
    """The registry the CLI uses: built-in node types through the entry point."""
    return edgeloop.PluginRegistry()


@pytest.fixture
def pendulum_yaml() -> Path:
    """The example loop graph shipped in examples/pendulum."""
    return REPO / "examples" / "pendulum" / "loop.yaml"


@pytest.fixture
def write_graph(tmp_path: Path) -> Callable[..., Path]:
    """Write dedented YAML text to ``tmp_path / name`` and return the path."""

    def write(text: str, name: str = "loop.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def line_of() -> Callable[[Path, str], int]:
    """The 1-based line of the only line of a file that contains ``snippet``."""

    def find(path: Path, snippet: str) -> int:
        hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if snippet in line]
        assert len(hits) == 1, f"{snippet!r} is on lines {hits} of {path}"
        return hits[0]

    return find
