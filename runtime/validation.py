"""Checking a loop graph against the registered node types: every problem at once.

Each problem is reported whatever else is wrong, and nothing that is not there:

* A node of an unknown type is checked against the one registered type its name
  is a slip of, if there is one; what that finds is marked "(if 'gym.sensr' means
  gym.sensor)". Without one, its ports and config cannot be known, nor checked.
* The partial graph of a file that broke the schema keeps each node without the
  fields that broke it (:meth:`~edgeloop.runtime.graph.LoopGraph.dropped_fields`);
  a check that would read a dropped field is skipped, its problem being reported.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.errors import (
    EdgeloopError,
    GraphError,
    GraphProblem,
    NodeConfigError,
    ProfileError,
    UnknownNodeTypeError,
)
from edgeloop.runtime.graph import LoopGraph, NodeSpec, field_path
from edgeloop.runtime.graph_yaml import load_graph
from edgeloop.runtime.node import Node, Port, build_config, port_list
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.profiles import graph_profile
from edgeloop.runtime.record_codecs import image_library

RESERVED_IDS = frozenset({"timer"})
_SLIP = 0.8  # similarity of a one- or two-letter slip: 'gym.sensr' to gym.sensor is 0.95


@dataclass
class _Facts:
    """What the registry tells about one node, as far as it can be known."""

    cls: type[Node] | None = None
    """Its class; None when its type is unknown (and no slip of a registered one)."""
    outputs: list[str] | None = None
    """The outputs it offers (its ``outputs:``, else its type's); None when unknown."""
    assumed: str = ""
    """"'gym.sensr' means gym.sensor" when ``cls`` is that of a close match."""
    declared: dict[str, Port] = field(default_factory=dict)
    """Its type's output ports by name, with their dtype and shape."""


def _if(*facts: _Facts) -> str:
    """The condition a problem found through guessed types holds under, or ""."""
    assumed = [f.assumed for f in facts if f.assumed]
    return f" (if {' and '.join(assumed)})" if assumed else ""


def _outputs_if(graph: LoopGraph, facts: list[_Facts], *nodes: int) -> str:
    """The condition on the outputs of ``nodes``: outputs a node lists are known;
    those of a guessed type hold only if the guess does."""
    return _if(*(facts[j] for j in nodes if graph.nodes[j].outputs is None))


def validate_graph(graph: LoopGraph, registry: PluginRegistry) -> list[GraphProblem]:
    """Return every problem in ``graph``: unknown types and config keys, bad
    wiring, duplicate ids, unmarked cycles, nodes that never run, bad fault
    fallbacks and contract paths that do not exist. Empty means valid."""
    problems: list[GraphProblem] = []

    def problem(loc: tuple[Any, ...], message: str, fix: str = "") -> None:
        loc = graph.source_loc(loc)
        field = field_path(loc)
        problems.append(
            GraphProblem(message, field=field, file=graph.file, line=graph.line_of(loc), fix=fix)
        )

    try:
        graph_profile(graph)
    except ProfileError as exc:
        for each in exc.problems:
            where = f" ({each.file}:{each.line}: {each.field})" if each.file else ""
            problem(("profile",), f"{each.message}{where}", each.fix)

    by_id: dict[str, int] = {}
    for i, spec in enumerate(graph.nodes):
        if spec.id in RESERVED_IDS:
            problem(("nodes", i, "id"), f"'{spec.id}' is reserved", "choose another id")
        elif spec.id in by_id:
            first = graph.source_loc(("nodes", by_id[spec.id]))[1]
            problem(
                ("nodes", i, "id"),
                f"duplicate node id '{spec.id}' (first at nodes[{first}])",
                "give every node a unique id",
            )
        else:
            by_id[spec.id] = i

    facts = [_check_node(graph, registry, i, spec, problem) for i, spec in enumerate(graph.nodes)]
    targets = _fallback_targets(graph)
    for i, spec in enumerate(graph.nodes):
        for port, inp in spec.inputs.items():
            loc = ("nodes", i, "inputs", port)
            if inp.is_timer or inp.node in graph.unparsed_ids:
                continue
            if inp.node not in by_id:
                problem(
                    loc,
                    f"input wired to missing node '{inp.node}'",
                    _choices(inp.node, [*by_id, *sorted(graph.unparsed_ids)], "nodes"),
                )
                continue
            source = by_id[inp.node]
            offered = facts[source].outputs
            if offered is not None and inp.port not in offered:
                problem(
                    loc,
                    f"node '{inp.node}' has no output '{inp.port}'"
                    + _outputs_if(graph, facts, source),
                    _choices(inp.port, offered, "outputs"),
                )
        triggers = any(
            inp.is_timer or (inp.trigger and not inp.feedback) for inp in spec.inputs.values()
        )
        if (
            spec.rate_hz is None
            and not triggers
            and spec.id not in targets
            and not getattr(facts[i].cls, "external", False)  # fed from outside
            and not getattr(facts[i].cls, "wakes", False)  # stepped by its own thread
            and not _unsure_when_it_runs(graph, i)
        ):
            problem(
                ("nodes", i),
                f"node '{spec.id}' never runs: it has no rate and no triggering input",
                "give it rate_hz, wire an input, or a timer input such as timer/20ms",
            )
        if spec.on_fault.action == "fallback":
            _check_fallback(graph, i, by_id, facts, problem)

    commands = {  # a sensing command never makes its sensor step: no cycle through it
        spec.id
        for spec, each in zip(graph.nodes, facts, strict=True)
        if getattr(each.cls, "sensing", None)
    }
    for cycle in _unmarked_cycles(graph, by_id, commands):
        spec_index = by_id[cycle[0]]
        # Point at the input that closes the cycle (cycle[-1] -> cycle[0]).
        closing = next(
            (
                port
                for port, inp in graph.nodes[spec_index].inputs.items()
                if not inp.is_timer and not inp.feedback and inp.node == cycle[-1]
            ),
            None,
        )
        problem(
            ("nodes", spec_index, "inputs") + ((closing,) if closing is not None else ()),
            "cycle without a feedback edge: " + " -> ".join([*cycle, cycle[0]]),
            "mark one edge of the cycle with 'feedback: true'",
        )

    for c, contract in enumerate(graph.contracts):
        _check_contract(graph, c, contract.path, by_id, problem)
    return problems


def load_and_check(path: str | Path, registry: PluginRegistry) -> LoopGraph:
    """Load a graph file and check it against ``registry``.

    Raises:
        GraphError: every problem at once: schema problems, and what the checks
            against the registry find in the entries that passed the schema.
    """
    try:
        graph = load_graph(path)
    except GraphError as exc:
        if exc.partial is None:
            raise
        problems = exc.problems + validate_graph(exc.partial, registry)
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise GraphError(problems) from None
    check_graph(graph, registry)
    return graph


def check_graph(graph: LoopGraph, registry: PluginRegistry) -> None:
    """Raise :class:`GraphError` listing every problem, if there are any."""
    problems = validate_graph(graph, registry)
    if problems:
        raise GraphError(problems)


def node_class(graph: LoopGraph, registry: PluginRegistry, spec: NodeSpec) -> type[Node]:
    """The class behind a node spec: a class given in Python, else the registry's."""
    return graph.local_types.get(spec.type) or registry.node_type(spec.type).cls


def _check_node(graph, registry, i, spec, problem) -> _Facts:
    """Check a node against its type (config keys, input and output ports, sensing)
    and return what its type tells."""
    gone = _left_out(graph, i)
    facts = _Facts(outputs=list(spec.outputs) if spec.outputs is not None else None)
    if "type" in gone:
        return facts
    try:
        facts.cls, type_name = node_class(graph, registry, spec), spec.type
    except UnknownNodeTypeError as exc:
        problem(("nodes", i, "type"), exc.message, exc.fix or "")
        known = [*registry.node_types, *graph.local_types]
        close = difflib.get_close_matches(spec.type, known, n=2, cutoff=_SLIP)
        if len(close) != 1:
            return facts  # nothing it could mean, or more than one thing
        type_name = close[0]
        facts.cls = graph.local_types.get(type_name) or registry.node_type(type_name).cls
        facts.assumed = f"'{spec.type}' means {type_name}"
    cls, note = facts.cls, _if(facts)

    def found(loc: tuple[Any, ...], message: str, fix: str) -> None:
        problem(loc, message + note, fix)

    config = None
    if "config" not in gone:
        try:
            config = build_config(type_name, cls.Config, spec.config)
        except NodeConfigError as exc:
            for each in exc.problems:
                key = each.key.split(".")[0] if each.key else ""
                loc = ("nodes", i, "config", key) if key else ("nodes", i, "config")
                found(loc, each.message, each.fix or "")
    if config is None and cls.ports.__func__ is not Node.ports.__func__:
        return facts  # its ports come from its config: unknown without one
    try:
        if config is None:
            in_ports, out_ports = port_list(cls.inputs), port_list(cls.outputs)
        else:
            in_ports, out_ports = cls.ports(config)
    except EdgeloopError as exc:  # ports read from a file the config names (a model)
        where = f"{exc.where}: " if exc.where else ""
        found(("nodes", i, "config"), where + exc.message, exc.fix or "")
        return facts
    declared_out = [p.name for p in out_ports]
    facts.declared = {p.name: p for p in out_ports}
    if facts.outputs is None:
        facts.outputs = declared_out
    for port in out_ports:
        if port.dtype is not None and _dtype(port.dtype) is None:
            found(
                ("nodes", i, "type"),
                f"node type '{type_name}' declares output '{port.name}' with dtype "
                f"'{port.dtype}', which numpy does not know",
                "fix the node type's Port (e.g. dtype='float32')",
            )
    # A port whose source broke the schema still has a name to check.
    dropped = graph.dropped_fields("nodes", i)
    lost = [loc[1] for loc in dropped if len(loc) == 2 and loc[0] == "inputs"]
    ports = [*spec.inputs, *(port for port in lost if isinstance(port, str))]
    _check_sensing(spec, i, cls, type_name, ports, found)
    declared_in = [p.name for p in in_ports]
    for port in ports:
        if port != "sensing" and port not in declared_in and not cls.accepts_any_inputs:
            found(
                ("nodes", i, "inputs", port),
                f"node type '{type_name}' has no input '{port}'",
                _choices(str(port), declared_in, "inputs"),
            )
    for port in spec.outputs or []:
        if port not in declared_out:
            found(
                ("nodes", i, "outputs"),
                f"node type '{type_name}' has no output '{port}'",
                _choices(port, declared_out, "outputs"),
            )
    for port, how in spec.record.items():
        if port not in facts.outputs:
            found(
                ("nodes", i, "record", port),
                f"node '{spec.id}' has no output '{port}' to record",
                _choices(port, facts.outputs, "outputs"),
            )
        elif how.compress and not image_library():
            found(
                ("nodes", i, "record", port, "compress"),
                f"compress: {how.compress} needs OpenCV or Pillow, and neither is installed",
                "pip install pillow, or leave compress out",
            )
    return facts


def _left_out(graph: LoopGraph, i: int) -> set[str]:
    """The fields of node ``i`` a partial graph left out, whole or in part."""
    return {loc[0] for loc in graph.dropped_fields("nodes", i)}


def _unsure_wiring(graph: LoopGraph, i: int) -> bool:
    """Whether node ``i`` lost an input whose source is unknown (a partial graph's)."""
    return any(loc[0] == "inputs" and len(loc) <= 2 for loc in graph.dropped_fields("nodes", i))


def _unsure_when_it_runs(graph: LoopGraph, i: int) -> bool:
    """Whether what makes node ``i`` step broke the schema: its rate, an input, or
    an input's ``trigger`` or ``feedback``."""
    dropped = graph.dropped_fields("nodes", i)
    return _unsure_wiring(graph, i) or any(
        loc == ("rate_hz",) or (loc[0] == "inputs" and loc[2:] in (("trigger",), ("feedback",)))
        for loc in dropped
    )


def _fallback_targets(graph: LoopGraph) -> set[str]:
    """Nodes some node falls back to: they run when it faults. A node named in an
    ``on_fault`` that broke the schema may be one."""
    targets = {s.on_fault.fallback for s in graph.nodes if s.on_fault.action == "fallback"}
    for i in range(len(graph.nodes)):
        written = graph.dropped_fields("nodes", i).get(("on_fault",))
        values = written.values() if isinstance(written, dict) else [written]
        targets.update(v for v in values if isinstance(v, str))
    return {t for t in targets if t}


def _check_fallback(graph, i, by_id, facts, problem) -> None:
    spec = graph.nodes[i]
    target = spec.on_fault.fallback
    loc = ("nodes", i, "on_fault")
    if target == spec.id:
        problem(loc, "a node cannot be its own fallback", "name another node")
        return
    if target in graph.unparsed_ids:
        return
    if target not in by_id:
        problem(
            loc, f"fallback node '{target}' does not exist", _choices(target, list(by_id), "nodes")
        )
        return
    j = by_id[target]
    if "group" in _left_out(graph, i) | _left_out(graph, j):
        return  # one of the groups broke the schema: where it runs is unknown
    if (group := graph.nodes[j].group) != spec.group:
        problem(
            loc,
            f"fallback node '{target}' is in process group '{group}', "
            f"'{spec.id}' in '{spec.group}'",
            "place a node and its fallback in the same group",
        )
        return
    own, offered = facts[i].outputs, facts[j].outputs
    if own is None or offered is None or "outputs" in _left_out(graph, i):
        return
    missing = sorted(set(own) - set(offered))
    if missing:
        problem(
            loc,
            f"fallback node '{target}' lacks output(s) {', '.join(missing)} of '{spec.id}'"
            + _outputs_if(graph, facts, i, j),
            "use a fallback node with the same outputs",
        )
        return
    for name in own:  # its outputs are published as the node's: the same contract holds
        want, got = facts[i].declared.get(name), facts[j].declared.get(name)
        if want is None or got is None or not (clash := _port_clash(want, got)):
            continue
        problem(
            loc,
            f"fallback node '{target}' output '{name}' is {clash} ('{spec.id}')"
            + _if(facts[i], facts[j]),
            "make the fallback's output match (a constant's config: {dtype: ...})",
        )


def _dtype(name: str) -> np.dtype | None:
    try:
        return np.dtype(name)
    except TypeError:
        return None


def _port_clash(want: Port, got: Port) -> str:
    """How a fallback's port ``got`` breaks the declared dtype/shape of ``want``, or ""."""
    if want.dtype is not None and got.dtype is not None and _dtype(want.dtype) != _dtype(got.dtype):
        return f"{got.dtype} where its own declares {want.dtype}"
    if (
        want.shape is not None
        and got.shape is not None
        and (
            len(want.shape) != len(got.shape)
            or any(
                w is not None and g is not None and w != g
                for w, g in zip(want.shape, got.shape, strict=True)
            )
        )
    ):
        return f"shape {got.shape} where its own declares {want.shape}"
    return ""


def _check_contract(graph, c, path, by_id, problem) -> None:
    loc = ("contracts", c, "path")
    for j, node_id in enumerate(path):
        if node_id not in by_id and node_id not in graph.unparsed_ids:
            problem(
                (*loc, j),
                f"contract path names missing node '{node_id}'",
                _choices(node_id, list(by_id), "nodes"),
            )
    for j, (upstream, downstream) in enumerate(itertools.pairwise(path), start=1):
        if upstream not in by_id or downstream not in by_id:
            continue  # a missing node, reported above, or one that broke the schema
        spec = graph.nodes[by_id[downstream]]
        wired = [inp.node for inp in spec.inputs.values() if not inp.is_timer]
        if _unsure_wiring(graph, by_id[downstream]) or any(n not in by_id for n in wired):
            continue  # the edge may be an input that broke the schema, or a misspelt one
        if upstream not in wired:
            problem(
                (*loc, j),
                f"contract path has no edge {upstream} -> {downstream}",
                f"wire an input of '{downstream}' to an output of '{upstream}', or fix the path",
            )


def _unmarked_cycles(
    graph: LoopGraph, by_id: dict[str, int], steerable: set[str]
) -> list[list[str]]:
    edges: dict[str, list[str]] = {node_id: [] for node_id in by_id}
    for i, spec in enumerate(graph.nodes):
        for port, inp in spec.inputs.items():
            if port == "sensing" and spec.id in steerable:
                continue
            if ("inputs", port, "feedback") in graph.dropped_fields("nodes", i):
                continue  # its feedback mark broke the schema: it may close a cycle
            if not inp.is_timer and not inp.feedback and inp.node in by_id and spec.id in edges:
                edges[inp.node].append(spec.id)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    # Depth-first search with an explicit stack: a chain of thousands of nodes
    # must not hit Python's recursion limit.
    for start in edges:
        if start in state:
            continue
        path: list[str] = [start]
        pending = [iter(edges[start])]
        state[start] = 1
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                pending.append(iter(edges[nxt]))
    return cycles


def _choices(value: str, known: list[str], what: str) -> str:
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"known {what}: {', '.join(known)}" if known else f"there are no {what} to wire to"


def _check_sensing(spec, i, cls, type_name, ports, problem) -> None:
    """A ``sensing:`` block and input only on steerable sensors, and a rate within
    its bounds."""
    if cls.sensing is None:
        if spec.sensing is not None:
            problem(
                ("nodes", i, "sensing"),
                f"node type '{type_name}' takes no sensing commands",
                "remove the sensing block, or use a sensor type that declares sensing",
            )
        if "sensing" in ports and not cls.accepts_any_inputs:
            problem(
                ("nodes", i, "inputs", "sensing"),
                f"node type '{type_name}' takes no sensing commands",
                "wire sensing commands to a sensor type that declares sensing",
            )
        return
    command = spec.inputs.get("sensing")
    if command is not None and command.is_timer:
        problem(
            ("nodes", i, "inputs", "sensing"),
            "sensing commands come from a node, not a timer",
            "wire sensing to a policy's command output",
        )
    bounds = spec.sensing.model_dump(exclude_none=True) if spec.sensing else None
    effective = cls.sensing.narrowed(bounds)
    if effective.min_rate_hz > effective.max_rate_hz:
        problem(
            ("nodes", i, "sensing"),
            f"rate bounds {effective.min_rate_hz:g}..{effective.max_rate_hz:g} Hz are empty "
            f"(the sensor type allows {cls.sensing.min_rate_hz:g}..{cls.sensing.max_rate_hz:g})",
            "choose min_rate_hz <= max_rate_hz within the type's bounds",
        )
    elif spec.rate_hz is not None and not (
        effective.min_rate_hz <= spec.rate_hz <= effective.max_rate_hz
    ):
        problem(
            ("nodes", i, "rate_hz"),
            f"rate {spec.rate_hz:g} Hz is outside the sensing bounds "
            f"{effective.min_rate_hz:g}..{effective.max_rate_hz:g} Hz",
            "set rate_hz within the bounds, or widen sensing.min_rate_hz/max_rate_hz",
        )
