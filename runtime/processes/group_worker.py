"""One process group's process: ``python -m edgeloop.runtime.processes.group_worker SPEC.json``.

Started by the :class:`~edgeloop.runtime.processes.supervisor.Supervisor`, never by hand.
It loads the whole graph, keeps its own group (:mod:`edgeloop.runtime.processes.placement`),
runs it with a bridge to the other groups and sends its report back.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from edgeloop.runtime.clocks import RealClock, SimClock
from edgeloop.runtime.errors import EdgeloopError
from edgeloop.runtime.executor import Executor
from edgeloop.runtime.graph_yaml import load_graph
from edgeloop.runtime.imports import ImportPolicy, set_import_policy
from edgeloop.runtime.plugins import PluginRegistry, import_plugin
from edgeloop.runtime.processes.bridge import GroupBridge, send_control
from edgeloop.runtime.processes.control import Failed, Report
from edgeloop.runtime.processes.placement import node_order, split_graph


def _die_with_parent(supervisor: int) -> None:
    """Ask Linux to kill this process when the supervisor dies, so none is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the bridge checks its parent instead
        pass
    if os.getppid() != supervisor:  # it died before we asked
        raise SystemExit("edgeloop group: the supervisor is gone")


def main(argv: list[str] | None = None) -> int:
    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    _die_with_parent(spec["supervisor"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which stops us
    if spec.get("imports") is not None:  # the supervisor's import policy, as it was
        set_import_policy(ImportPolicy.from_dict(spec["imports"]))
    graph = load_graph(spec["graph_file"] or "<graph>", text=spec["graph_yaml"])
    plan = split_graph(graph)[spec["group"]]
    bridge = GroupBridge(
        plan,
        {int(k): v for k, v in spec["links"].items()},
        spec["control"],
        node_order(graph),
        supervisor=spec["supervisor"],
        first_start=spec["first_start"],
        turns=spec.get("turns"),
    )
    recorder = None
    try:
        registry = PluginRegistry(plugins={p: import_plugin(p) for p in spec["plugins"]})
        if spec["record"]:
            from edgeloop.runtime.channel_log import port_recordings
            from edgeloop.runtime.recording import Recorder

            recorder = Recorder(
                spec["record"],
                flush_ms=spec["flush_ms"],
                fsync=spec["fsync"],
                ports=port_recordings(plan.graph),
                simulated=spec["simulated"],
            )
        executor = Executor(
            plan.graph,
            registry=registry,
            clock=SimClock() if spec["simulated"] else RealClock(),
            seed=spec["seed"],
            recorder=recorder,
            bridge=bridge,
        )
        report = executor.run(spec["duration"])
    except Exception as exc:  # told to the supervisor, which reports it and stops the run
        message = str(exc) if isinstance(exc, EdgeloopError) else traceback.format_exc(limit=8)
        send_control(bridge.control, Failed(message))
        bridge.close()
        bridge.control.close(linger=2000)
        return 2
    finally:
        if recorder is not None:
            recorder.close()
    report.fault_log.extend(bridge.events)
    send_control(bridge.control, Report(report.to_dict(), bridge.link_stats()))
    bridge.control.close(linger=5000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
