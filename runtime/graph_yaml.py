"""Reading loop graphs from YAML, keeping the line of every entry for error messages."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edgeloop.runtime.errors import GraphError, GraphProblem
from edgeloop.runtime.graph import (
    ContractSpec,
    InputSpec,
    LoopGraph,
    NodeSpec,
    field_path,
    nearest_line,
)
from edgeloop.runtime.yaml_files import parse_with_lines, read_yaml_text


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
        text = read_yaml_text(Path(source), GraphError, "graph")
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
