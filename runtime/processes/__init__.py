"""The process layer: a graph's process groups as processes bridged by ZeroMQ.

- :mod:`~edgeloop.runtime.processes.wire`: the wire format (data and control messages)
- :mod:`~edgeloop.runtime.processes.control`: the supervisor's and groups' control messages
- :mod:`~edgeloop.runtime.processes.transport`: senders and receivers over ZeroMQ
- :mod:`~edgeloop.runtime.processes.slots`: sealed shared-memory slots and their hand-over
- :mod:`~edgeloop.runtime.processes.security`: CURVE keys, seals and who may connect
- :mod:`~edgeloop.runtime.processes.placement`: splitting a graph into groups and links
- :mod:`~edgeloop.runtime.processes.bridge`: one group's links to the others and the supervisor
- :mod:`~edgeloop.runtime.processes.group_worker`: the process of one group
- :mod:`~edgeloop.runtime.processes.supervisor`: starts, watches and stops the groups
"""
