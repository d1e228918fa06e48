"""The plugin contract: every hook a plugin may implement, grouped by lifecycle.

A plugin is any module or object with functions marked ``@edgeloop.hookimpl``
and named after a spec below. Packages expose theirs through the entry-point
group ``edgeloop``::

    [project.entry-points.edgeloop]
    my_sensors = "my_package.edgeloop_plugin"

Rules every hook follows:

- **Never per tick.** Hooks are for discovery and lifecycle events; node
  objects are resolved once and the executor calls their methods directly.
- **Arguments are keyword-only.** edgeloop passes each argument by name, so an
  implementation takes any subset of them, in any order, and an argument added
  in a later version breaks no plugin. An implementation that names an argument
  the spec does not have is refused when the plugin loads.
- **Names are checked.** A plugin with a ``@hookimpl`` whose name matches no spec
  (a typo) fails to load with a :class:`~edgeloop.runtime.errors.PluginError`
  naming the close matches, instead of never being called.
- **Notifications cannot break a loop.** Every hook but
  ``edgeloop_register_node_types`` is a notification: return values are ignored,
  and an exception in one is logged and recorded in the run's fault log
  (kind ``hook_error``) without ending the loop.
- **Where they run.** Each hook fires in the process of the executor (or the
  supervisor) that fires it: in a graph split into process groups, every group's
  process loads the plugins and fires its own loop's hooks; the supervisor's
  process fires ``edgeloop_group_crashed``.

Types in the signatures are imported for type checking only.
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

    Fires once per plugin, when a :class:`~edgeloop.runtime.plugins.PluginRegistry`
    loads it, in every process that loads plugins. Every plugin's result is
    collected (not first-result).

    Returns:
        A mapping of node type name (``"gym.sensor"``) to a :class:`Node`
        subclass. The first line of the class docstring is the one-line
        description ``edgeloop plugins`` shows. Two plugins registering the
        same name is an error naming both.

    .. versionadded:: 0.1
    """


# -- graph --------------------------------------------------------------------


@hookspec
def edgeloop_graph_loaded(graph: LoopGraph) -> None:
    """A loop graph passed validation and is about to be built into a loop.

    Fires once per run, before any node's ``setup``.

    Args:
        graph: The validated graph (read it, do not change it).

    .. versionadded:: 0.1
    """


# -- loop lifecycle -----------------------------------------------------------------


@hookspec
def edgeloop_loop_started(graph: LoopGraph, simulated: bool, seed: int) -> None:
    """Every node's ``setup`` succeeded and the first timer is about to fire.

    Args:
        graph: The running graph.
        simulated: True for the simulated clock, False for real time.
        seed: The run seed.

    .. versionadded:: 0.1
    """


@hookspec
def edgeloop_loop_stopped(graph: LoopGraph, report: RunReport) -> None:
    """The loop ended (duration reached, a ``stop`` fault, or interrupted) and
    every node was closed.

    Args:
        graph: The graph that ran.
        report: The run report; ``report.stop_reason`` says why it ended.

    .. versionadded:: 0.1
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

    .. versionadded:: 0.1
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

    .. versionadded:: 0.1
    """


@hookspec
def edgeloop_group_crashed(
    group: str, reason: str, action: str, restarts: int, time_s: float
) -> None:
    """A process group's process died, stopped its heartbeat, or failed, and its
    ``groups:`` policy was applied.

    Fires in the supervisor's process, once per crash.

    Args:
        group: The process group.
        reason: What happened, in one line (``exit code -9``, ``no heartbeat for
            1.2 s``, the error it reported).
        action: What the policy did: ``restart in <ms> ms`` or ``run stopped``.
        restarts: How often the group was restarted before this crash.
        time_s: Clock time of the crash, seconds since the groups' shared time 0
            (0 in simulated time, where a crash stops the run).

    .. versionadded:: 0.2
    """
