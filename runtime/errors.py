"""Errors a user can cause, and how edgeloop reports them.

Exception tree::

    EdgeloopError                 base of every error a user can cause
    +-- ProblemsError             a YAML file breaks its schema (carries every problem found)
    |   +-- GraphError            ... a loop graph
    |   +-- ProfileError          ... a hardware profile (or none of that name exists)
    +-- PluginError               a plugin registered something invalid
    +-- UnknownNodeTypeError      a graph names a node type no plugin registered
    +-- NodeConfigError           a node's config does not match its type's Config
    +-- NodeSetupError            a node's setup raised before the loop started
    +-- BundleError               a model file or bundle is missing, tampered or invalid
    +-- MissingDependencyError    an optional dependency is not installed (names the extra)

Each error's message says where, what was expected, what was found and the fix;
the same facts are kept as attributes so tools need not parse messages.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EdgeloopError(Exception):
    """Raised when a user's input (config, graph, plugin, model file) is wrong."""


@dataclass(frozen=True)
class GraphProblem:
    """One thing wrong with a loop graph.

    Attributes:
        message: What is wrong, in one sentence.
        field: Dotted path of the offending field, e.g. ``nodes[2].inputs.obs``.
        file: The YAML file, or None for a graph built in Python.
        line: 1-based line in ``file``, or None when unknown.
        fix: How to fix it, or an empty string.
    """

    message: str
    field: str = ""
    file: str | None = None
    line: int | None = None
    fix: str = ""

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        elif self.field:
            parts.append("<graph>")  # a graph built in Python
        if self.field:
            parts.append(self.field)
        text = ": ".join([*parts, self.message])
        return f"{text} (fix: {self.fix})" if self.fix else text


class ProblemsError(EdgeloopError):
    """Raised when a YAML file breaks its schema; ``problems`` lists them all."""

    subject = "file"

    def __init__(self, problems: list[GraphProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in {self.subject}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class GraphError(ProblemsError):
    """Raised when a loop graph fails validation; ``problems`` lists them all."""

    subject = "loop graph"

    def __init__(self, problems: list[GraphProblem]) -> None:
        super().__init__(problems)
        self.partial: Any = None
        """For a file that broke the schema: a LoopGraph of the entries that did not,
        so :func:`~edgeloop.runtime.validation.load_and_check` can report the rest."""


class ProfileError(ProblemsError):
    """Raised when a hardware profile is unknown or its file is invalid."""

    subject = "hardware profile"


class PluginError(EdgeloopError):
    """Raised when a plugin registers something invalid (e.g. a duplicate node type)."""

    def __init__(self, message: str, *, plugin: str = "") -> None:
        self.plugin = plugin
        super().__init__(message)


class UnknownNodeTypeError(EdgeloopError):
    """Raised when a graph names a node type no plugin registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.close_matches = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        self.fix = (
            f"did you mean {', '.join(self.close_matches)}?"
            if self.close_matches
            else "run `edgeloop plugins` to list the registered node types"
        )
        super().__init__(f"unknown node type '{name}' (fix: {self.fix})")


class NodeSetupError(EdgeloopError):
    """Raised when a node's ``setup`` fails before the loop starts.

    Attributes:
        node_id: The node.
        error: What its ``setup`` raised.
        where: ``file:line`` of the node in its graph file, or "".
    """

    def __init__(self, node_id: str, error: BaseException, where: str = "") -> None:
        self.node_id = node_id
        self.error = error
        self.where = where
        head = f"{where}: " if where else ""
        if isinstance(error, EdgeloopError):  # its message already says how to fix it
            self.fix = ""
            message = f"{head}node '{node_id}' failed in setup: {error}"
        else:
            self.fix = f"check the config of node '{node_id}' and what its setup needs"
            message = (
                f"{head}node '{node_id}' failed in setup: {type(error).__name__}: {error} "
                f"(fix: {self.fix})"
            )
        super().__init__(message)


class NodeConfigError(EdgeloopError):
    """Raised when a node's config mapping does not fit its type's Config dataclass."""

    def __init__(self, message: str, *, node_type: str = "", key: str = "", fix: str = "") -> None:
        self.node_type = node_type
        self.key = key
        self.fix = fix
        self.message = message
        self.problems: list[NodeConfigError] = [self]
        """Every problem found in the config, this one first."""
        super().__init__(message + (f" (fix: {fix})" if fix else ""))


class BundleError(EdgeloopError):
    """Raised when a model file or bundle is missing, unreadable, tampered or invalid."""

    def __init__(self, message: str, *, path: str | Path, fix: str) -> None:
        self.path = str(path)
        self.fix = fix
        super().__init__(f"{path}: {message} (fix: {fix})")


class MissingDependencyError(EdgeloopError):
    """Raised when an optional dependency is needed but not installed."""

    def __init__(self, package: str, extra: str, needed_for: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{needed_for} needs the '{package}' package, which is not installed "
            f"(fix: pip install 'edgeloop[{extra}]')"
        )
