"""The edgeloop runtime: graphs, plugins, the executor, clocks, messages and metrics.

Needs only numpy, pluggy, pyzmq, pyyaml, pydantic, rich and onnxruntime; it
imports nothing from ``edgeloop.plugins``, ``exporters`` or ``sims``.
"""
