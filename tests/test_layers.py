"""The layers of DESIGN.md: imports only point down. Every ``import`` of an edgeloop
subpackage, at module level or inside a function (a lazy import is still an import),
is checked. A bare ``import edgeloop`` (the package itself, e.g. for its version) is
not judged here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folder -> the edgeloop subpackages its modules may import (itself included).
ALLOWED = {
    "runtime": {"runtime"},
    "plugins": {"plugins", "runtime"},
    "exporters": {"exporters", "runtime"},
    "sims": {"sims", "exporters", "plugins", "runtime"},
}


def _edgeloop_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "edgeloop":  # from edgeloop import sims
                names = [f"edgeloop.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] == "edgeloop"]
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / layer).rglob("*.py"))
        for line, name in _edgeloop_imports(path)
        if name.split(".")[1:2] and name.split(".")[1] not in ALLOWED[layer]
    ]
    assert not wrong, f"{layer} may import only {sorted(ALLOWED[layer])}: {wrong}"


def test_the_single_process_core_imports_nothing_of_the_process_layer():
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "runtime").glob("*.py"))
        for line, name in _edgeloop_imports(path)
        if name.startswith("edgeloop.runtime.processes")
    ]
    assert not wrong, f"runtime/*.py must work without runtime/processes/: {wrong}"
