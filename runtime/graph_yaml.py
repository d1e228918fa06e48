"""Reading loop graphs from YAML, keeping the line of every entry for error messages."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgeloop.runtime.errors import GraphError, GraphProblem, ProblemsError
from edgeloop.runtime.graph import (
    ContractSpec,
    InputSpec,
    LoopGraph,
    NodeSpec,
    field_path,
    nearest_line,
)
from edgeloop.runtime.limits import (
    MAX_FILE_BYTES,
    MAX_STRING_CHARS,
    MAX_YAML_DEPTH,
    MAX_YAML_ENTRIES,
)


def load_graph(source: str | Path, *, text: str | None = None) -> LoopGraph:
    """Read a loop graph from a YAML file (or from ``text``, naming it ``source``).

    Checks the schema only; :func:`edgeloop.runtime.validation.validate_graph`
    checks node types, wiring, cycles and contracts against a registry.

    Raises:
        GraphError: the file is missing, is not YAML, or breaks the schema; it
            lists every problem with file, line and field. For a YAML mapping its
            ``partial`` is the graph as far as it passed the schema, for the
            checks against a registry to report the rest.
    """
    file = str(source)
    if text is None:
        text = _read_text(Path(source), GraphError, "graph")
    data, lines, duplicates = parse_with_lines(text, file, GraphError)
    if not isinstance(data, dict):
        raise GraphError(
            [
                GraphProblem(
                    "a loop graph must be a mapping with 'name' and 'nodes'",
                    file=file,
                    line=1,
                    fix="see examples/pendulum/loop.yaml",
                )
            ]
        )
    try:
        graph = LoopGraph.model_validate(data)
    except ValidationError as exc:
        problems = [problem_from_pydantic(err, file, lines) for err in exc.errors()]
        error = GraphError(duplicates + problems)
        error.partial = _partial_graph(data, file, lines)
        raise error from None
    graph._file = file
    graph._lines = lines
    if duplicates:
        error = GraphError(duplicates)
        error.partial = graph  # the rest of it passed: the registry's checks still run
        raise error
    return graph


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
    return parse_with_lines(_read_text(Path(path), error, what), str(path), error)


def _read_text(path: Path, error: type[ProblemsError], what: str) -> str:
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


def _partial_graph(data: dict[str, Any], file: str, lines: dict[tuple[Any, ...], int]) -> LoopGraph:
    """The graph of a file that broke the schema, as far as it passes, so the checks
    against the registry can still report everything else.

    Each node and contract keeps every field that passed; the fields that broke it
    are left out and remembered (:meth:`LoopGraph.dropped_fields`), so the checks
    that would read one are skipped rather than report a problem that is not
    there. An entry without a usable id (a node) or path (a contract) is left out
    whole; a node's id then goes to :attr:`LoopGraph.unparsed_ids`.
    """
    kept: dict[str, list[Any]] = {"nodes": [], "contracts": []}
    index: dict[str, list[int]] = {"nodes": [], "contracts": []}
    dropped: dict[tuple[str, int], dict[tuple[Any, ...], Any]] = {}
    unparsed: set[str] = set()
    for key, model in (("nodes", NodeSpec), ("contracts", ContractSpec)):
        entries = data.get(key)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            salvaged = _salvage(model, entry)
            if salvaged is None:
                if key == "nodes" and isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    unparsed.add(entry["id"])
                continue
            spec, gone = salvaged
            if gone:
                dropped[(key, len(kept[key]))] = gone
            kept[key].append(spec)
            index[key].append(i)
    name, profile = data.get("name"), data.get("profile")
    graph = LoopGraph(
        name=name if isinstance(name, str) else "?",
        profile=profile if isinstance(profile, str) else None,
        **kept,
    )
    graph._file, graph._lines = file, lines
    graph._source_index, graph._dropped = index, dropped
    graph._unparsed_ids = frozenset(unparsed)
    return graph


# Without this field an entry says nothing the checks can use.
_VITAL = {NodeSpec: "id", ContractSpec: "path", InputSpec: "from"}
# Fields that map names to entries of their own, salvaged one by one.
_ENTRIES: dict[type[BaseModel], dict[str, type[BaseModel]]] = {NodeSpec: {"inputs": InputSpec}}
# Stand-ins for required fields that broke the schema. No check reads them: a
# check that depends on a dropped field is skipped.
_STAND_INS: dict[str, Any] = {"type": "", "name": "", "deadline_ms": 1.0}


def _salvage(
    model: type[BaseModel], entry: Any
) -> tuple[BaseModel, dict[tuple[Any, ...], Any]] | None:
    """``entry`` as a ``model`` without the fields that break the schema, and those
    fields by location with the values written; None when nothing useful is left.

    A field is left out whole, except a node's inputs: each is salvaged on its own
    (``inputs.obs`` without its bad ``queue``, or without ``inputs.obs``). An
    unknown field counts as a misspelling of its close match, if that is not
    written: ``rate: 50`` leaves ``rate_hz`` unknown, not absent.
    """
    if not isinstance(entry, dict):
        return None
    try:
        return model.model_validate(entry), {}
    except ValidationError as exc:
        errors = exc.errors()
    entry, gone = dict(entry), {}
    known = [f.alias or name for name, f in model.model_fields.items()]
    nested = _ENTRIES.get(model, {})
    broken: dict[str, set[Any]] = {}  # entries of a field in ``nested`` that broke it
    for err in errors:
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and "[" in x))
        if not loc:
            return None
        field, value = loc[0], entry.get(loc[0])
        if (field,) in gone:
            continue  # a second problem of a field left out already
        if err["type"] == "extra_forbidden" and len(loc) == 1:
            entry.pop(field)
            close = difflib.get_close_matches(str(field), known, n=1)
            if close and close[0] not in entry:
                gone[(close[0],)] = value
        elif field in nested and len(loc) > 1 and isinstance(value, dict) and loc[1] in value:
            broken.setdefault(field, set()).add(loc[1])
        else:
            gone[(field,)] = entry.pop(field, None)
    for field, keys in broken.items():
        if (field,) in gone:
            continue
        entries = dict(entry[field])
        for key in keys:
            salvaged = _salvage(nested[field], entries[key])
            if salvaged is None:
                gone[(field, key)] = entries.pop(key)
            else:
                entries[key] = salvaged[0]
                gone.update({(field, key, *loc): v for loc, v in salvaged[1].items()})
        entry[field] = entries
    required = [f.alias or name for name, f in model.model_fields.items() if f.is_required()]
    for field in required:
        if field not in entry:
            if field == _VITAL[model] or field not in _STAND_INS:
                return None
            entry[field] = _STAND_INS[field]
            gone.setdefault((field,), None)
    try:
        return model.model_validate(entry), gone
    except ValidationError:
        return None


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


def problem_from_pydantic(
    err: Any,
    file: str | None,
    lines: dict[tuple[Any, ...], int],
    root: type[BaseModel] = LoopGraph,
) -> GraphProblem:
    """A pydantic error (one of ``ValidationError.errors()``) of a ``root`` model as a
    GraphProblem."""
    # Drop pydantic's validator-kind entries (e.g. 'function-before[...]') from the path.
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and "[" in x))
    field = field_path(loc)
    kind = err["type"]
    message = err["msg"].removeprefix("Value error, ")
    fix = ""
    if kind == "extra_forbidden":
        known = _known_fields(loc, root)
        close = difflib.get_close_matches(str(loc[-1]), known, n=2)
        message = f"unknown field '{loc[-1]}'"
        fix = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(known)}"
    elif kind == "missing":
        message = f"required field '{loc[-1]}' is missing"
        fix = f"add '{loc[-1]}:'"
    elif kind in ("greater_than", "greater_than_equal"):
        message = f"must be {err['msg'].removeprefix('Input should be ')}, got {err.get('input')!r}"
        bound = (err.get("ctx") or {}).get("ge")
        fix = "use a value >= 0" if bound == 0 else "use a positive value"
    elif kind == "finite_number":
        message = f"must be a finite number, got {err.get('input')!r}"
        fix = "use a finite positive value"
    elif kind in ("less_than", "less_than_equal"):
        message = f"must be {err['msg'].removeprefix('Input should be ')}, got {err.get('input')!r}"
        bound = (err.get("ctx") or {}).get("le")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # 86,400,000, not 86,400,000.0
        fix = (
            f"use a smaller value, at most {bound:,}"
            if bound is not None
            else "use a smaller value"
        )
    elif kind == "too_short":
        least = (err.get("ctx") or {}).get("min_length")
        entries = "entry" if least == 1 else "entries"
        message = f"needs at least {least} {entries}, got {len(err.get('input') or [])}"
        fix = f"list at least {least} {entries}"
    elif kind == "string_pattern_mismatch":
        message = f"'{err.get('input')}' is not a valid id"
        fix = "use letters, digits, '_' and '-', starting with a letter or '_'"
    elif kind == "literal_error":
        fix = f"use {message.removeprefix('Input should be ')}"
        message = f"got {err.get('input')!r}"
    elif kind == "value_error" and ": write " in message:  # our validators: "what: write how"
        message, fix = message.split(": write ", 1)
        fix = "write " + fix
    elif kind == "model_type":
        message = f"expected a mapping of fields, got {err.get('input')!r}"
        fix = "write it as 'key: value' lines; see examples/pendulum/loop.yaml"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {err.get('input')!r}"
        fix = f"write {_EXPECTED[kind]} here"
    return GraphProblem(message, field=field, file=file, line=nearest_line(lines, loc), fix=fix)


# What a field of each pydantic type error wanted, in the words a user reads.
_EXPECTED = {
    "list_type": "a list ([a, b] or '- item' lines)",
    "dict_type": "a mapping ('key: value' lines)",
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _known_fields(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    """The fields of the model at ``loc[:-1]``, walking down from ``root``: list indexes
    and mapping keys (a user's port name, say) are stepped over, never read as fields."""
    model = root
    parts = iter(loc[:-1])
    for part in parts:
        if isinstance(part, int) or part not in model.model_fields:
            continue
        annotation = model.model_fields[part].annotation
        model = _model_in(annotation) or model
        if typing.get_origin(annotation) is dict or _is_dict_of_models(annotation):
            next(parts, None)  # the key: a name the user chose
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[X]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        model = _model_in(arg)
        if model is not None:
            return model
    return None


def _is_dict_of_models(annotation: Any) -> bool:
    return any(typing.get_origin(a) is dict for a in typing.get_args(annotation))
