"""The edgeloop runtime: graphs, plugins, the executor, clocks, messages and metrics.

Needs only numpy, pluggy, pyzmq, pyyaml, pydantic, rich and onnxruntime; it
imports nothing from ``edgeloop.plugins``, ``exporters`` or ``sims``.

Where things are:

- the node API: ``node`` (Node, Port, NodeContext), ``node_docs`` (a type's docs
  from its code), ``sensing`` (sensing commands), ``plugins`` and ``hookspecs``
  (discovery and lifecycle hooks), ``errors`` (the exception tree);
- graphs: ``graph`` (the schema), ``graph_yaml`` (reading YAML with lines),
  ``validation`` (every problem at once), ``diagram`` (text and Mermaid);
- one process, per tick: ``executor`` (the loop), ``building`` (nodes set up and
  wired), ``wiring`` (what is kept per node, port and timer), ``faults``,
  ``clocks``, ``messages``, ``metrics`` (the run report);
- around the loop: ``report_table`` (printing a report), ``recording`` (MCAP),
  ``profiles`` and ``bundles`` (hardware profiles, model files), ``spiking``
  (spike and energy counts);
- on the board: ``realtime`` (CPU affinity, priority, locked memory, garbage
  collection, spin), ``systemd`` (readiness, watchdog and journal lines under a
  service), ``board_health`` (load, temperatures and power from /proc and /sys);
- ``processes/``: process groups over ZeroMQ, the wire format, introspection.

The single-process core imports nothing from ``processes/``.
"""
