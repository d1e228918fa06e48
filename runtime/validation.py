"""Checking a loop graph against the registered node types: every problem at once."""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path
from typing import Any

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
from edgeloop.runtime.node import Node, build_config, port_list
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.profiles import graph_profile

RESERVED_IDS = frozenset({"timer"})


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
            problem(
                ("nodes", i, "id"),
                f"duplicate node id '{spec.id}' (first at nodes[{by_id[spec.id]}])",
                "give every node a unique id",
            )
        else:
            by_id[spec.id] = i

    classes: dict[str, type[Node]] = {}
    ports_of: dict[str, list[str]] = {}  # output port names of each node whose type is known
    for i, spec in enumerate(graph.nodes):
        cls = _node_class(graph, registry, spec, ("nodes", i, "type"), problem)
        if cls is None:
            continue
        classes.setdefault(spec.id, cls)
        try:
            config = build_config(spec.type, cls.Config, spec.config)
        except NodeConfigError as exc:
            for each in exc.problems:
                key = each.key.split(".")[0] if each.key else ""
                problem(
                    ("nodes", i, "config", key) if key else ("nodes", i, "config"),
                    each.message,
                    each.fix or "",
                )
            if cls.ports.__func__ is not Node.ports.__func__:
                continue  # its ports come from its config: unknown without one
            config = None
        try:
            if config is None:
                in_ports, out_ports = port_list(cls.inputs), port_list(cls.outputs)
            else:
                in_ports, out_ports = cls.ports(config)
        except EdgeloopError as exc:  # ports read from a file the config names (a model)
            where = f"{exc.where}: " if exc.where else ""
            problem(("nodes", i, "config"), where + exc.message, exc.fix or "")
            continue
        ports_of[spec.id] = [p.name for p in out_ports]
        declared_in = [p.name for p in in_ports]
        if cls.sensing is not None:  # every steerable sensor takes commands on `sensing`
            declared_in.append("sensing")
        _check_sensing(spec, i, cls, problem)
        for port in spec.inputs:
            if port not in declared_in and not cls.accepts_any_inputs:
                problem(
                    ("nodes", i, "inputs", port),
                    f"node type '{spec.type}' has no input '{port}'",
                    _choices(port, declared_in, "inputs"),
                )
        declared_out = ports_of[spec.id]
        for port in spec.outputs or []:
            if port not in declared_out:
                problem(
                    ("nodes", i, "outputs"),
                    f"node type '{spec.type}' has no output '{port}'",
                    _choices(port, declared_out, "outputs"),
                )

    def outputs_of(node_id: str) -> list[str] | None:
        """The outputs a node offers; None when they cannot be known (a bad config)."""
        spec = graph.nodes[by_id[node_id]]
        if spec.outputs is not None:
            return list(spec.outputs)
        return ports_of.get(node_id)

    fallback_targets = {s.on_fault.fallback for s in graph.nodes if s.on_fault.action == "fallback"}
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
            elif (offered := outputs_of(inp.node)) is not None and inp.port not in offered:
                problem(
                    loc,
                    f"node '{inp.node}' has no output '{inp.port}'",
                    _choices(inp.port, offered, "outputs"),
                )
        triggers = any(
            inp.is_timer or (inp.trigger and not inp.feedback) for inp in spec.inputs.values()
        )
        external = getattr(classes.get(spec.id), "external", False)  # fed from outside
        if (
            spec.rate_hz is None
            and not triggers
            and spec.id not in fallback_targets
            and not external
        ):
            problem(
                ("nodes", i),
                f"node '{spec.id}' never runs: it has no rate and no triggering input",
                "give it rate_hz, wire an input, or a timer input such as timer/20ms",
            )
        if spec.on_fault.action == "fallback":
            _check_fallback(spec, i, by_id, outputs_of, problem, graph.unparsed_ids, graph.nodes)

    commands = {  # a sensing command never makes its sensor step: no cycle through it
        spec.id for spec in graph.nodes if getattr(classes.get(spec.id), "sensing", None)
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


def _node_class(graph, registry, spec, loc, problem) -> type[Node] | None:
    try:
        return node_class(graph, registry, spec)
    except UnknownNodeTypeError as exc:
        problem(loc, exc.message, exc.fix or "")
        return None


def _check_fallback(spec, i, by_id, outputs_of, problem, graph_unparsed, graph_nodes) -> None:
    target = spec.on_fault.fallback
    loc = ("nodes", i, "on_fault")
    if target == spec.id:
        problem(loc, "a node cannot be its own fallback", "name another node")
    elif target in graph_unparsed:
        return
    elif target not in by_id:
        problem(
            loc, f"fallback node '{target}' does not exist", _choices(target, list(by_id), "nodes")
        )
    elif (group := graph_nodes[by_id[target]].group) != spec.group:
        problem(
            loc,
            f"fallback node '{target}' is in process group '{group}', "
            f"'{spec.id}' in '{spec.group}'",
            "place a node and its fallback in the same group",
        )
    else:
        own, offered = outputs_of(spec.id), outputs_of(target)
        if own is None or offered is None:
            return
        missing = sorted(set(own) - set(offered))
        if missing:
            problem(
                loc,
                f"fallback node '{target}' lacks output(s) {', '.join(missing)} of '{spec.id}'",
                "use a fallback node with the same outputs",
            )


def _check_contract(graph, c, path, by_id, problem) -> None:
    loc = ("contracts", c, "path")
    missing = [(j, node_id) for j, node_id in enumerate(path) if node_id not in by_id]
    if any(node_id in graph.unparsed_ids for _, node_id in missing):
        return  # a node of the path broke the schema: reported already
    for j, node_id in missing:
        problem(
            (*loc, j),
            f"contract path names missing node '{node_id}'",
            _choices(node_id, list(by_id), "nodes"),
        )
    if missing:
        return
    for j, (upstream, downstream) in enumerate(itertools.pairwise(path), start=1):
        spec = graph.nodes[by_id[downstream]]
        if not any(not inp.is_timer and inp.node == upstream for inp in spec.inputs.values()):
            problem(
                (*loc, j),
                f"contract path has no edge {upstream} -> {downstream}",
                f"wire an input of '{downstream}' to an output of '{upstream}', or fix the path",
            )


def _unmarked_cycles(
    graph: LoopGraph, by_id: dict[str, int], steerable: set[str]
) -> list[list[str]]:
    edges: dict[str, list[str]] = {node_id: [] for node_id in by_id}
    for spec in graph.nodes:
        for port, inp in spec.inputs.items():
            if port == "sensing" and spec.id in steerable:
                continue
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


def _check_sensing(spec, i, cls, problem) -> None:
    """A ``sensing:`` block only on steerable sensors, and a rate within its bounds."""
    if cls.sensing is None:
        if spec.sensing is not None:
            problem(
                ("nodes", i, "sensing"),
                f"node type '{spec.type}' takes no sensing commands",
                "remove the sensing block, or use a sensor type that declares sensing",
            )
        elif "sensing" in spec.inputs and not cls.accepts_any_inputs:
            problem(
                ("nodes", i, "inputs", "sensing"),
                f"node type '{spec.type}' takes no sensing commands",
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
