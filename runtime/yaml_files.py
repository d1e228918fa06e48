"""Reading YAML a user gives: bounded, and with the line of every entry.

A graph, a scenario, a hardware profile or a task space is read by one reader
that refuses what could exhaust memory or time (a file past
``MAX_FILE_BYTES``, nesting past ``MAX_YAML_DEPTH``, an alias bomb, a huge
scalar) with file and line, and keeps the line of every mapping entry and list
item so schema errors can point at them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgeloop.runtime.errors import GraphProblem, ProblemsError
from edgeloop.runtime.graph import field_path
from edgeloop.runtime.limits import (
    MAX_FILE_BYTES,
    MAX_STRING_CHARS,
    MAX_YAML_DEPTH,
    MAX_YAML_ENTRIES,
)


def parse_with_lines(
    text: str, file: str, error: type[ProblemsError]
) -> tuple[Any, dict[tuple[Any, ...], int], list[GraphProblem]]:
    """Parse YAML text into data, the line of every entry, and the keys written twice.

    Raises:
        ``error``: the text is not YAML, or is larger, nested deeper, holds a longer
            string or expands (through aliases) past what any edgeloop file needs
            (the bounds are in :mod:`edgeloop.runtime.limits`).
    """
    if len(text) > MAX_FILE_BYTES:
        raise error([_too_large(file, len(text), "characters")])
    try:
        root, data = _parse(text)
    except _TooMuchYaml as exc:
        raise error([GraphProblem(exc.message, file=file, line=exc.line, fix=exc.fix)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(
            [
                GraphProblem(
                    f"not valid YAML: {problem}",
                    file=file,
                    line=line,
                    fix="fix the YAML syntax at that line",
                )
            ]
        ) from None
    if root is not None and _expanded_size(root, {}) > MAX_YAML_ENTRIES:
        raise error(
            [
                GraphProblem(
                    f"the file expands to more than {MAX_YAML_ENTRIES:,} entries (YAML aliases?)",
                    file=file,
                    line=1,
                    fix="write it out without nested aliases",
                )
            ]
        )
    lines: dict[tuple[Any, ...], int] = {}
    duplicates: list[GraphProblem] = []
    if root is not None:
        _index_lines(root, (), lines, duplicates, file, set())
    return data, lines, duplicates


def read_yaml_file(
    path: str | Path, error: type[ProblemsError], *, what: str
) -> tuple[Any, dict[tuple[Any, ...], int], list[GraphProblem]]:
    """Read a YAML file edgeloop is given (a scenario, a task space): its data, the
    line of every entry and the keys written twice, as :func:`parse_with_lines`,
    with the same bounds on the file's size, nesting and strings.

    Args:
        path: The file.
        error: The error to raise, e.g. ``ScenarioError``.
        what: What the file holds, for messages ("cannot read scenario file").

    Raises:
        ``error``: the file cannot be read, is not UTF-8 text, or is not YAML within
            the bounds of :func:`parse_with_lines`; each problem has file and line.
    """
    return parse_with_lines(read_yaml_text(Path(path), error, what), str(path), error)


def read_yaml_text(path: Path, error: type[ProblemsError], what: str) -> str:
    """The text of a file, within the size bound; an unreadable file is ``error``."""
    file = str(path)
    try:
        return _read_bounded(path, error)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise error(
            [GraphProblem(f"cannot read {what} file: {reason}", file=file, fix="check the path")]
        ) from None
    except UnicodeDecodeError as exc:
        message = f"not a text file: {exc.reason} at byte {exc.start}"
        raise error(
            [GraphProblem(message, file=file, fix=f"save the {what} as UTF-8 YAML")]
        ) from None


def _read_bounded(path: Path, error: type[ProblemsError]) -> str:
    """The text of ``path``, read no further than the size limit (a pipe or a device
    has no size to check first)."""
    if path.is_file() and (size := path.stat().st_size) > MAX_FILE_BYTES:
        raise error([_too_large(str(path), size, "bytes")])
    with path.open() as stream:
        text = stream.read(MAX_FILE_BYTES + 1)
    if len(text) > MAX_FILE_BYTES:
        raise error([_too_large(str(path), len(text), "characters", at_least=True)])
    return text


def _too_large(file: str, size: int, unit: str, *, at_least: bool = False) -> GraphProblem:
    more = "more than " if at_least else ""
    return GraphProblem(
        f"the file is {more}{size:,} {unit}; edgeloop reads YAML files up to "
        f"{MAX_FILE_BYTES:,} bytes (16 MiB)",
        file=file,
        fix="check that this is the file you meant; split data out of the YAML file",
    )


class _TooMuchYaml(yaml.YAMLError):
    """A YAML file nested deeper, or with a longer scalar, than any edgeloop file needs."""

    def __init__(self, message: str, mark: yaml.Mark, fix: str) -> None:
        super().__init__(message)
        self.message, self.line, self.fix = message, mark.line + 1, fix


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting past ``MAX_YAML_DEPTH`` while it
    composes (its composer recurses once per level: a file 100,000 levels deep, in
    block or flow style, would end in a RecursionError), an alias inside its own
    anchor (nesting without end) and scalars longer than ``MAX_STRING_CHARS``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: list[str | None] = []  # anchors of the entries being composed, outermost first

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if len(self._open) >= MAX_YAML_DEPTH:
            raise _TooMuchYaml(
                f"nested deeper than {MAX_YAML_DEPTH} levels",
                event.start_mark,
                fix="flatten the structure; a loop graph needs a handful of levels",
            )
        if isinstance(event, yaml.AliasEvent) and event.anchor in self._open:
            raise _TooMuchYaml(  # an alias inside its own anchor: infinitely deep
                f"the alias *{event.anchor} stands for an entry that contains it",
                event.start_mark,
                fix="write the value out, or alias an entry outside this one",
            )
        self._open.append(getattr(event, "anchor", None))
        try:
            node = super().compose_node(parent, index)
        finally:
            self._open.pop()
        if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_STRING_CHARS:
            raise _TooMuchYaml(
                f"a value of {len(node.value):,} characters; the longest one read is "
                f"{MAX_STRING_CHARS:,}",
                node.start_mark,
                fix="keep large data in a file of its own and write its path here",
            )
        return node


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The YAML node tree (it has the lines) and the data built from it, in one parse."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Entries the node stands for once aliases are expanded (each node sized once)."""
    if id(node) not in sizes:
        sizes[id(node)] = 1  # a node that contains itself counts once
        if isinstance(node, yaml.MappingNode):
            children = [value for _, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _index_lines(
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    duplicates: list[GraphProblem],
    file: str,
    seen: set[int],
) -> None:
    """Record the line of every entry; a key written twice in one mapping is a
    problem, since YAML loaders silently keep the last one. An aliased node is
    walked once: its other uses take the line where they are written."""
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if (*path, key) in lines:
                duplicates.append(
                    GraphProblem(
                        f"'{key}' is written twice (first at line {lines[(*path, key)]})",
                        field=field_path((*path, key)),
                        file=file,
                        line=line,
                        fix="keep one of them",
                    )
                )
                continue
            lines[(*path, key)] = line
            _index_lines(value_node, (*path, key), lines, duplicates, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines, duplicates, file, seen)
