"""The plugin contract: every hook a plugin may implement, grouped by lifecycle.

A plugin is any module or object with functions marked ``@edgeloop.hookimpl``
and named after a spec below. Packages expose theirs through the entry-point
group ``edgeloop``::

    [project.entry-points.edgeloop]
    my_sensors = "my_package.edgeloop_plugin"

Hooks are for discovery and lifecycle events only; none fires per tick. Node
objects are resolved once and the executor calls their methods directly.
All hooks run in the process of the executor that fires them; pluggy passes
every argument by keyword, and an implementation may accept any subset.
``edgeloop_register_node_types`` collects every plugin's result; the other
hooks are notifications whose return values are ignored, and an exception in
one is logged and recorded in the run's fault log without ending the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from edgeloop.runtime.graph import LoopGraph
    from edgeloop.runtime.metrics import RunReport
    from edgeloop.runtime.node import Node

hookspec = pluggy.HookspecMarker("edgeloop")
hookimpl = pluggy.HookimplMarker("edgeloop")
"""Marker for plugin functions: ``@edgeloop.hookimpl``."""


# -- registration ---------------------------------------------------------------


@hookspec
def edgeloop_register_node_types() -> Mapping[str, type[Node]]:
    """Contribute node types.

    Fires once, when a :class:`~edgeloop.runtime.plugins.PluginRegistry`
    loads. Every plugin's result is collected.

    Returns:
        A mapping of node type name (``"gym.sensor"``) to a :class:`Node`
        subclass. The first line of the class docstring is the one-line
        description ``edgeloop plugins`` shows. Two plugins registering the
        same name is an error naming both.
    """


# -- graph --------------------------------------------------------------------


@hookspec
def edgeloop_graph_loaded(graph: LoopGraph) -> None:
    """A loop graph passed validation and is about to be built into a loop.

    Args:
        graph: The validated graph (read it, do not change it).
    """


# -- loop lifecycle -----------------------------------------------------------------


@hookspec
def edgeloop_loop_started(graph: LoopGraph, simulated: bool, seed: int) -> None:
    """Every node's ``setup`` succeeded and the first timer is about to fire.

    Args:
        graph: The running graph.
        simulated: True for the simulated clock, False for real time.
        seed: The run seed.
    """


@hookspec
def edgeloop_loop_stopped(graph: LoopGraph, report: RunReport) -> None:
    """The loop ended (duration reached, a ``stop`` fault, or interrupted) and
    every node was closed.

    Args:
        graph: The graph that ran.
        report: The run report; ``report.stop_reason`` says why it ended.
    """


# -- events ---------------------------------------------------------------------


@hookspec
def edgeloop_deadline_missed(
    node_id: str | None, contract: str | None, latency_s: float, deadline_s: float, time_s: float
) -> None:
    """A node's step, or a contract's sense-to-act latency, exceeded its deadline.

    Fires on each miss (misses are exceptional, not per tick).

    Args:
        node_id: The node whose step was late, or None for a contract.
        contract: The contract whose latency was too long, or None for a node.
        latency_s: The measured step time or sense-to-act latency, seconds.
        deadline_s: The deadline it exceeded, seconds.
        time_s: Clock time of the miss, seconds since the loop started.
    """


@hookspec
def edgeloop_node_faulted(node_id: str, kind: str, error: str, action: str, time_s: float) -> None:
    """A node faulted and its ``on_fault`` policy was applied.

    Args:
        node_id: The node that faulted.
        kind: ``exception``, ``non_finite`` or ``stale_input``.
        error: What happened, in one line.
        action: What the policy did: ``restart``, ``hold_last``,
            ``fallback:<id>`` or ``stop``.
        time_s: Clock time of the fault, seconds since the loop started.
    """
