"""Fixtures shared by the tests: the real plugin registry and YAML files in tmp_path."""

from __future__ import annotations

import ctypes
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import edgeloop

REPO = Path(__file__).resolve().parents[1]

# Two test workers share two cores: a torch thread pool in each would have four
# threads fight for them, and small networks then run many times slower (a risk
# learner test took 97 s instead of 9 on a loaded CI machine). Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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


def _become_subreaper() -> None:
    """Orphans of this test session (workers of a CLI run a test killed) are
    re-parented to this process rather than to init, so "left behind" can look at
    this session's own descendants only, not at every edgeloop on the machine."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):  # not Linux: descendants of live parents only
        pass


_become_subreaper()


def descendants(root: int) -> set[int]:
    """Pids of every living process below ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # a zombie is gone, only not yet reaped
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Every test: the group processes it started (this session's own descendants,
    never another run's) are gone when it ends."""
    yield
    deadline = time.monotonic() + 10
    while (left := group_workers() & descendants(os.getpid())) and time.monotonic() < deadline:
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
