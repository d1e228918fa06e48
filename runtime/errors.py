"""Errors a user can cause, and how edgeloop reports them.

Exception tree::

    EdgeloopError                 base of every error a user can cause
    +-- UsageError                an option or argument out of range, or two that conflict
    +-- ProblemsError             a YAML file breaks its schema (carries every problem found)
    |   +-- GraphError            ... a loop graph
    |   +-- ProfileError          ... a hardware profile (or none of that name exists)
    |   +-- ScenarioError         ... a multi-agent scenario
    +-- PluginError               a plugin cannot be imported or registers something invalid
    +-- UnknownNodeTypeError      a graph names a node type no plugin registered
    +-- NodeConfigError           a node's config does not fit its type's Config
    +-- NodeSetupError            a node's setup raised before the loop started
    +-- ModelError                a model (an ONNX file, a torch or spiking network) cannot be used
    |   +-- BundleError           ... a model file or bundle is missing, tampered or will not run
    |   +-- ExportError           ... a model cannot be exported, or its export does not match it
    +-- RecordingError            a recording cannot be written, read or replayed
    +-- TransportError            an endpoint cannot be bound or reached, or its keys cannot be used
    |   +-- WireError             ... a message is not a valid edgeloop wire message
    +-- GroupCrashed              a process group failed to start, or crashed for good
    +-- RealtimeError             the OS refused a real-time option (priority, locked memory, CPUs)
    +-- TaskSpaceError            a task space is unknown or invalid, or a task lies outside it
    +-- TrainingError             a training run, evaluation or comparison cannot start or go on
    +-- MissingDependencyError    an optional dependency is not installed (names the extra)

Every error keeps what it says as attributes: ``message`` (what was wrong),
``fix`` (how to put it right) and ``where`` (file:line, node, field or option),
so tools need not parse text. ``str(error)`` joins them as
``where: message (fix: fix)``; the CLI prints them without a traceback.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EdgeloopError(Exception):
    """Base of every error a user can cause (a config, graph, plugin, model file, option).

    Args:
        message: What was wrong: what was expected and what was found.
        fix: How to put it right, or None.
        where: Where it was: ``file:line``, a node id, a field or an option, or None.
    """

    def __init__(self, message: str, *, fix: str | None = None, where: str | None = None) -> None:
        self.message = message
        self.fix = fix or None
        self.where = where or None
        super().__init__(message)

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (process pools, Ray): rebuild from the
        # attributes, whatever a subclass's constructor takes.
        # The state goes third, set after the object exists: it may refer to the error
        # itself (a NodeConfigError's ``problems``).
        return (_restore, (type(self), self.message), dict(self.__dict__))


def _restore(cls: type[EdgeloopError], message: str) -> EdgeloopError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class UsageError(EdgeloopError):
    """Raised when an option or argument is out of range, or two of them conflict."""


@dataclass(frozen=True)
class GraphProblem:
    """One thing wrong with a loop graph (or another YAML file edgeloop reads).

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
        """For a file that broke the schema: the LoopGraph as far as it passed (each
        entry without the fields that broke it, see ``LoopGraph.dropped_fields``), so
        :func:`~edgeloop.runtime.validation.load_and_check` can report the rest."""


class ProfileError(ProblemsError):
    """Raised when a hardware profile is unknown or its file is invalid."""

    subject = "hardware profile"


class ScenarioError(ProblemsError):
    """Raised when a multi-agent scenario file is unreadable or breaks its schema."""

    subject = "scenario"


class PluginError(EdgeloopError):
    """Raised when a plugin cannot be imported, implements a hook that does not exist,
    or registers something invalid (a duplicate node type, a class that is no Node).

    Attributes:
        plugin: The plugin's name or import path.
    """

    def __init__(self, message: str, *, plugin: str = "", fix: str | None = None) -> None:
        self.plugin = plugin
        super().__init__(message, fix=fix)


class UnknownNodeTypeError(EdgeloopError):
    """Raised when a graph names a node type no plugin registered.

    Attributes:
        name: The type name asked for.
        close_matches: Registered names close to it.
    """

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.close_matches = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        fix = (
            f"did you mean {', '.join(self.close_matches)}?"
            if self.close_matches
            else "run `edgeloop plugins` to list the registered node types"
        )
        super().__init__(f"unknown node type '{name}'", fix=fix)


class NodeConfigError(EdgeloopError):
    """Raised when a node's config does not fit its type's Config dataclass, or names
    something its setup cannot use (an environment, a model's tensor, a network).

    Attributes:
        node_type: The node type.
        key: The offending config key (dotted for a nested one), or "".
        problems: Every problem found in the config, this one first.
    """

    def __init__(
        self,
        message: str,
        *,
        node_type: str = "",
        key: str = "",
        fix: str | None = None,
        where: str | None = None,
    ) -> None:
        self.node_type = node_type
        self.key = key
        self.problems: list[NodeConfigError] = [self]
        super().__init__(message, fix=fix, where=where)


class NodeSetupError(EdgeloopError):
    """Raised when a node's ``setup`` fails before the loop starts.

    Attributes:
        node_id: The node.
        error: What its ``setup`` raised.
        where: ``file:line`` of the node in its graph file, or None.
    """

    def __init__(self, node_id: str, error: BaseException, where: str = "") -> None:
        self.node_id = node_id
        self.error = error
        if isinstance(error, EdgeloopError):  # it says what to fix itself
            inner = f"{error.where}: {error.message}" if error.where else error.message
            fix = error.fix
        else:
            inner = f"{type(error).__name__}: {error}"
            fix = f"check the config of node '{node_id}' and what its setup needs"
        super().__init__(f"node '{node_id}' failed in setup: {inner}", fix=fix, where=where)


class ModelError(EdgeloopError):
    """Raised when a model (an ONNX file, a torch or spiking network) cannot be used
    as given."""


class BundleError(ModelError):
    """Raised when a model file or bundle is missing, unreadable, tampered or invalid,
    or when no execution provider can run it.

    Attributes:
        path: The file or bundle folder.
    """

    def __init__(self, message: str, *, path: str | Path, fix: str) -> None:
        self.path = str(path)
        super().__init__(message, fix=fix, where=str(path))


class ExportError(ModelError):
    """Raised when a model cannot be exported (ONNX, NIR), or its ONNX twin does not
    match it."""


class RecordingError(EdgeloopError):
    """Raised when a recording cannot be written, read or replayed."""


class TransportError(EdgeloopError):
    """Raised when an endpoint cannot be bound or reached, or its keys cannot be used."""


class WireError(TransportError):
    """Raised when a message is not a valid edgeloop wire message.

    Also raised where a node publishes a payload no message could carry (too deep,
    too many entries, too large, a type without a wire form), in one process too.

    Attributes:
        reason: The check it failed (``magic``, ``size``, ``dtype``, ...), for counting.
        detail: What was found, without the "malformed wire message" frame.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"malformed wire message ({reason}): {detail}")


class GroupCrashed(EdgeloopError):
    """Raised when a process group fails to start, or crashes where it cannot be
    restarted (in simulated time, or past its restarts)."""


class RealtimeError(EdgeloopError):
    """Raised when the OS refuses a real-time option of the loop (a scheduling
    priority, locked memory, CPUs the process may not use); says which limit and how
    to raise it."""


class TaskSpaceError(EdgeloopError):
    """Raised for an unknown or invalid task space, a task outside its ranges, or a
    parameter an environment does not have."""


class TrainingError(EdgeloopError):
    """Raised when a training run, an evaluation or a comparison cannot start or go
    on: a bad setting, a run folder that does not fit, an unreadable checkpoint, an
    unreachable cluster."""


class MissingDependencyError(EdgeloopError):
    """Raised when an optional dependency is needed but not installed.

    Attributes:
        package: The missing package.
        extra: The edgeloop extra that installs it, or "" when none does.
    """

    def __init__(
        self, package: str, extra: str, needed_for: str, *, fix: str | None = None
    ) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{needed_for} needs the '{package}' package, which is not installed",
            fix=fix or f"pip install 'edgeloop[{extra}]'",
        )
