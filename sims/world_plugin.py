"""Node types of the shipped multi-agent worlds, registered through the ``edgeloop``
entry point (``worlds``) like any plugin."""

from __future__ import annotations

from edgeloop.runtime.hookspecs import hookimpl
from edgeloop.runtime.node import Node
from edgeloop.sims.sensing_field import FieldSearch


@hookimpl
def edgeloop_register_node_types() -> dict[str, type[Node]]:
    return {"field.search": FieldSearch}
