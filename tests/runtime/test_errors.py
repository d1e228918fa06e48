"""One exception tree: every error the package raises is a documented subclass of
EdgeloopError that keeps its message, fix and location as attributes."""

from __future__ import annotations

import ast
import inspect
import pickle
import re
from pathlib import Path

import pytest

from edgeloop.runtime import errors
from edgeloop.runtime.errors import EdgeloopError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ("runtime", "plugins", "exporters", "sims", "edgeloop")
CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, EdgeloopError)
}


def drawn_tree() -> dict[str, str]:
    """Each class in the tree at the top of errors.py, with the parent it is drawn under."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\s*)(?:[|+ -]*?)(\w+Error|\w+Crashed)\s{2,}\S", line)
        if not match:
            continue
        name = match.group(2)
        depth = line.index(name)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else ""
        stack.append((depth, name))
    return parents


def test_the_tree_at_the_top_of_errors_py_draws_every_class_under_its_real_parent():
    tree = drawn_tree()
    assert set(tree) == set(CLASSES)
    for name, parent in tree.items():
        base = CLASSES[name].__bases__[0]
        assert base.__name__ == (parent or "Exception"), name
        assert (CLASSES[name].__doc__ or "").strip(), f"{name} has no 'raised when' line"


def _raises() -> list[tuple[str, str]]:
    found = []
    for folder in PACKAGE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    func = node.exc.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", name))
    return found


def test_nothing_raises_the_bare_base_class():
    bare = [where for where, name in _raises() if name == "EdgeloopError"]
    assert not bare, f"raise a documented subclass instead: {bare}"


def test_every_error_class_of_the_package_lives_in_the_tree():
    elsewhere = []
    for folder in PACKAGE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "runtime" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Crashed")):
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not elsewhere, f"define errors in runtime/errors.py: {elsewhere}"


EXAMPLES = [
    errors.UsageError("--seed must be >= 0", fix="e.g. --seed 0", where="--seed"),
    errors.GraphError([errors.GraphProblem("bad", field="nodes[0]", file="g.yaml", line=3)]),
    errors.PluginError("cannot import", plugin="mine", fix="install it"),
    errors.UnknownNodeTypeError("pdi", ["pid"]),
    errors.NodeConfigError("unknown key", node_type="pid", key="kq", fix="did you mean kp?"),
    errors.NodeSetupError("cam", errors.TransportError("no device", fix="plug it in"), "g.yaml:4"),
    errors.BundleError("tampered", path="bundle", fix="export it again"),
    errors.WireError("magic", "not an edgeloop message"),
    errors.MissingDependencyError("mcap", "record", "--record"),
    errors.TrainingError("bad checkpoint", fix="delete it"),
]


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_attributes(error):
    back = pickle.loads(pickle.dumps(error))  # process pools and Ray ship them
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert set(back.__dict__) == set(error.__dict__)
    assert (back.message, back.fix, back.where) == (error.message, error.fix, error.where)


def test_the_message_fix_and_location_are_attributes_str_joins():
    error = errors.UsageError("--seed must be >= 0", fix="e.g. --seed 0", where="--seed")
    assert (error.message, error.fix, error.where) == (
        "--seed must be >= 0",
        "e.g. --seed 0",
        "--seed",
    )
    assert str(error) == "--seed: --seed must be >= 0 (fix: e.g. --seed 0)"
    setup = errors.NodeSetupError(
        "cam", errors.TransportError("no device", fix="plug it in"), "g:4"
    )
    assert setup.fix == "plug it in"  # the cause's fix, not a generic one
    assert str(setup) == "g:4: node 'cam' failed in setup: no device (fix: plug it in)"


def test_each_error_class_says_when_it_is_raised():
    for name, cls in CLASSES.items():
        assert inspect.getdoc(cls).startswith(("Raised when", "Raised for", "Base of")), name
