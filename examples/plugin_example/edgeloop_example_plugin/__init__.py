"""An example edgeloop plugin: a sine-wave sensor and a CSV command recorder.

edgeloop finds this module through the entry point in ``pyproject.toml``::

    [project.entry-points.edgeloop]
    example = "edgeloop_example_plugin"

and calls its ``edgeloop_register_node_types`` hook once, when a plugin
registry loads.
"""

from __future__ import annotations

import edgeloop
from edgeloop_example_plugin.recorder import CsvRecorder
from edgeloop_example_plugin.sine import SineSensor

__all__ = ["CsvRecorder", "SineSensor", "edgeloop_register_node_types"]


@edgeloop.hookimpl
def edgeloop_register_node_types() -> dict[str, type[edgeloop.Node]]:
    return {"example.sine": SineSensor, "example.recorder": CsvRecorder}
