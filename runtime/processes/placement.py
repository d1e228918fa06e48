"""Placement: splitting a loop graph into process groups.

Every node has a ``group`` (``main`` unless set). Each group becomes a graph of
its own, run by one executor in one process: its nodes, plus a stand-in
(:class:`RemoteNode`, same id) for every node of another group that feeds
them. A *link* carries one output port to one other group; the stand-in
publishes what arrives on it, so wiring, contracts and fault policies inside
the group are unchanged and moving a node to another group changes nothing
else. Contracts live in the group of their last node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeloop.runtime.graph import ContractSpec, LoopGraph, NodeSpec
from edgeloop.runtime.node import Node, Port

REMOTE_TYPE = "edgeloop.remote"


class RemoteNode(Node):
    """Stands in for a node of another process group: publishes what arrives from it.

    It never steps; the group's bridge hands its messages to the executor.
    """

    external = True  # its outputs come from outside this executor

    @dataclass(frozen=True)
    class Config:
        outputs: tuple[str, ...] = ()
        group: str = ""
        """The group the real node runs in."""

    @classmethod
    def ports(cls, config: Any) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return (), tuple(Port(name) for name in config.outputs)


@dataclass(frozen=True)
class Link:
    """One output port carried to one other group."""

    id: int
    node: str
    port: str
    source_group: str
    dest_group: str


@dataclass
class GroupPlan:
    """What one group's process runs."""

    name: str
    graph: LoopGraph
    inbound: list[Link] = field(default_factory=list)
    outbound: list[Link] = field(default_factory=list)


def groups_of(graph: LoopGraph) -> list[str]:
    """The graph's groups, in the order their first node appears."""
    return list(dict.fromkeys(spec.group for spec in graph.nodes))


def node_order(graph: LoopGraph) -> dict[str, int]:
    """Each node's index in the whole graph: the tie-break of timers due at the
    same instant, so that every process orders them as one process would."""
    return {spec.id: i for i, spec in enumerate(graph.nodes)}


def split_graph(graph: LoopGraph) -> dict[str, GroupPlan]:
    """One plan per group, with the links between them (of a valid graph: a node
    and its fallback are in one group)."""
    group_of = {spec.id: spec.group for spec in graph.nodes}
    links: dict[tuple[str, str, str], Link] = {}
    for spec in graph.nodes:
        for inp in spec.inputs.values():
            if inp.is_timer or group_of[inp.node] == spec.group:
                continue
            key = (inp.node, inp.port, spec.group)
            if key not in links:
                links[key] = Link(len(links), inp.node, inp.port, group_of[inp.node], spec.group)
    plans = {}
    for name in groups_of(graph):
        inbound = [link for link in links.values() if link.dest_group == name]
        outbound = [link for link in links.values() if link.source_group == name]
        plans[name] = GroupPlan(name, _group_graph(graph, name, inbound), inbound, outbound)
    return plans


def _group_graph(graph: LoopGraph, name: str, inbound: list[Link]) -> LoopGraph:
    remote_ports: dict[str, list[str]] = {}
    for link in inbound:
        remote_ports.setdefault(link.node, []).append(link.port)
    nodes = []
    for spec in graph.nodes:  # graph order kept, stand-ins where their node was
        if spec.group == name:
            nodes.append(spec)
        elif spec.id in remote_ports:
            nodes.append(
                NodeSpec(
                    id=spec.id,
                    type=REMOTE_TYPE,
                    config={"outputs": remote_ports[spec.id], "group": spec.group},
                    group=name,
                )
            )
    present = {spec.id for spec in nodes}
    local = {spec.id for spec in nodes if spec.type != REMOTE_TYPE}
    contracts = []
    for contract in graph.contracts:
        if graph.node(contract.path[-1]).group != name:
            continue
        # The part of the path this group sees: back from its end through local
        # nodes, ending at a stand-in, which has no inputs here (the report names
        # the whole path again).
        keep = len(contract.path) - 1
        while keep > 0 and contract.path[keep - 1] in present and contract.path[keep] in local:
            keep -= 1
        contracts.append(
            ContractSpec(
                name=contract.name, path=contract.path[keep:], deadline_ms=contract.deadline_ms
            )
        )
    realtime = graph.realtime
    group = graph.groups.get(name)
    if group is not None and group.cpus is not None:
        realtime = realtime.model_copy(update={"cpus": group.cpus})
    sub = LoopGraph(
        name=graph.name,
        profile=graph.profile,
        nodes=nodes,
        contracts=contracts,
        realtime=realtime,
    )
    sub._local_types.update(graph.local_types)
    sub._local_types[REMOTE_TYPE] = RemoteNode
    return sub
