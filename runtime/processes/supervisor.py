"""The supervisor: runs a graph's process groups as processes and merges their reports.

It starts one process per group (:mod:`edgeloop.runtime.processes.group_worker`), waits
until every link is connected, and starts them on one shared time 0. In real
time it watches their heartbeats: a group that dies or goes quiet is killed and
restarted by its ``groups:`` policy with backoff, and the groups it feeds are
told. In simulated time it runs them in lockstep (see
:mod:`edgeloop.runtime.processes.bridge`). Ctrl-C, the duration or a group that stops the
loop ends every process; none is left behind, even if the supervisor itself is
killed (the workers die with it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from edgeloop.runtime.errors import GraphError, GraphProblem, GroupCrashed, UsageError, WireError
from edgeloop.runtime.graph import GroupSpec, LoopGraph
from edgeloop.runtime.imports import current_policy
from edgeloop.runtime.metrics import ReportBuilder, RunReport, nodes_from_dicts
from edgeloop.runtime.plugins import PluginRegistry, fire_hook, import_plugin
from edgeloop.runtime.processes.control import (
    Beat,
    ControlMessage,
    Done,
    Failed,
    Idle,
    Ready,
    Report,
    Start,
    Stop,
    Upstream,
)
from edgeloop.runtime.processes.lockstep import next_turn
from edgeloop.runtime.processes.os_limits import check_limits
from edgeloop.runtime.processes.placement import REMOTE_TYPE, groups_of, split_graph
from edgeloop.runtime.processes.wire import decode_control, encode_control
from edgeloop.runtime.recording import DEFAULT_FLUSH_MS, parts_dir
from edgeloop.runtime.validation import check_graph
from edgeloop.runtime.watchdog import HUNG_EXIT

_log = logging.getLogger("edgeloop.supervisor")
START_TIMEOUT_S = 60.0  # plus START_PER_GROUP_S per group: each imports numpy, zmq, ...
START_PER_GROUP_S = 2.0
STOP_TIMEOUT_S = 10.0
_START_MARGIN_NS = 50_000_000  # time 0 a little after the start message, so every group is there


class _Group:
    def __init__(self, name: str, spec: GroupSpec) -> None:
        self.name = name
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.crashes = 0
        self.restarts = 0
        self.last_beat = 0.0
        self.beats = 0  # heartbeats of its current process
        self.restart_at: float | None = None
        self.running = False  # started and beating
        self.ready = False  # its process said Ready: it hears a Stop from here on
        self.report: dict[str, Any] | None = None
        self.links: dict[str, Any] = {"out": {}, "in": {}}
        self.figures: dict[str, Any] | None = None  # its current process's, last beat
        # (why, when in s, figures at its last beat) of each of its processes that died
        self.ended: list[tuple[str, float, dict[str, Any]]] = []


class Supervisor:
    """Runs a loop graph whose nodes are placed in several process groups.

    Args:
        graph: The graph (loaded from a file or built; node types must come from
            plugins, since each process loads the graph again).
        simulated: Lockstep simulated time (deterministic) instead of real time.
        seed: Seed of every node, as in one process.
        plugins: Extra plugins as ``module:attribute`` import paths, loaded in
            every process (installed plugins load by themselves).
        record: Record every message into this MCAP file (each group records
            its own part in ``FILE.parts/``; the parts are merged at the end, or
            by ``edgeloop recording repair FILE`` after a killed run).
        record_flush_ms: How often each part is flushed (0: every message).
        record_fsync: fsync each part at every flush (for power loss).
        metadata: Facts stored in the recording (for ``edgeloop replay``).
        on_started: Called with ``{group: pid}`` once every group runs (tests, tools).
    """

    def __init__(
        self,
        graph: LoopGraph,
        *,
        simulated: bool = False,
        seed: int = 0,
        plugins: list[str] | None = None,
        record: str | Path | None = None,
        record_flush_ms: float = DEFAULT_FLUSH_MS,
        record_fsync: bool = False,
        metadata: dict[str, Any] | None = None,
        on_started: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        if graph.local_types:
            names = ", ".join(sorted(graph.local_types))
            raise UsageError(
                f"node types passed as classes ({names}) cannot be placed in process "
                "groups: each process loads the graph again",
                fix="register them in a plugin and pass it as plugins=['module:attribute']",
            )
        self.graph = graph
        self.simulated = simulated
        self.seed = seed
        self.plugin_paths = list(plugins or [])
        self._imports = current_policy()  # each group imports what this process may
        self.record = Path(record) if record is not None else None
        self.record_flush = (record_flush_ms, record_fsync)
        self.metadata = dict(metadata or {})
        self.on_started = on_started
        self.events: list[dict[str, Any]] = []
        self._groups = {
            name: _Group(name, graph.groups.get(name, GroupSpec())) for name in groups_of(graph)
        }
        self._stop_reason: str | None = None
        self._inbox: dict[str, deque[dict[str, Any]]] = {name: deque() for name in self._groups}
        self._recording: dict[str, Any] | None = None  # the merged recording's summary
        self._stopped_by_fault = False
        self._epoch_ns = 0
        self._start = time.monotonic()

    # -- the run ------------------------------------------------------------------------

    def run(self, duration_s: float | None = None) -> RunReport:
        """Run every group until ``duration_s``, Ctrl-C or a stop; the merged report.

        Raises:
            GraphError: the graph is invalid.
            GroupCrashed: a group failed to start (its error is in the message).
        """
        if duration_s is None and self.simulated:
            raise UsageError("a simulated run needs a duration", fix="pass --duration")
        registry = PluginRegistry(plugins={p: import_plugin(p) for p in self.plugin_paths})
        self._registry = registry
        check_graph(self.graph, registry)
        unknown = sorted(set(self.graph.groups) - set(self._groups))
        if unknown:
            raise GraphError(
                [
                    GraphProblem(
                        f"{name} names no group of any node",
                        field=f"groups.{name}",
                        file=self.graph.file,
                        line=self.graph.line_of(("groups", name)),
                        fix=f"one of {', '.join(self._groups)}",
                    )
                    for name in unknown
                ]
            )
        plans = split_graph(self.graph)
        check_limits(plans, lockstep=self.simulated)  # no "Too many open files" halfway
        self._duration = duration_s
        self._dir = Path(tempfile.mkdtemp(prefix="edgeloop-"))
        if self.record is not None:
            self._start_parts()
        links = {
            link.id: f"ipc://{self._dir}/l{link.id}"
            for plan in plans.values()
            for link in plan.outbound
        }
        self._plans = plans
        self._link_endpoints = links
        context = zmq.Context.instance()
        self._router = context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.bind(f"ipc://{self._dir}/control")
        wall = time.perf_counter()  # again at the start: the loop's time, as one process's
        try:
            for group in self._groups.values():
                self._spawn(group, first_start=True)
            try:
                self._await_ready()
            except KeyboardInterrupt:  # stop what started; the caller hears the Ctrl-C
                self._stop("interrupted while the groups were starting")
                raise
            self._epoch_ns = time.perf_counter_ns() + _START_MARGIN_NS
            wall = time.perf_counter()
            try:  # from the first Start on, a Ctrl-C ends the run with its report
                for group in self._groups.values():
                    self._send(group, Start(epoch_ns=self._epoch_ns))
                    group.running, group.last_beat = True, time.monotonic()
                if self.on_started is not None:
                    self.on_started({g.name: g.pid for g in self._groups.values()})
                if self.simulated:
                    self._lockstep(int(duration_s * 1e9))  # type: ignore[operator]
                else:
                    self._watch(duration_s)
            except KeyboardInterrupt:
                self._stop("interrupted")
            self._collect_reports()
        finally:
            self._end_processes()
            self._router.close(linger=0)
            if self.record is not None:
                parts = [
                    self._part(g, k) for g in self._groups.values() for k in range(g.restarts + 1)
                ]
                from edgeloop.runtime.recording import merge_recordings

                self._recording = merge_recordings(
                    [p for p in parts if p.exists()], self.record, self.metadata
                )
                shutil.rmtree(parts_dir(self.record), ignore_errors=True)
            shutil.rmtree(self._dir, ignore_errors=True)
        return self._merged_report(duration_s, time.perf_counter() - wall)

    def heartbeats(self) -> dict[str, int]:
        """Heartbeats received from each group's current process in real time: a
        group that beats is running its loop (safe to read from another thread)."""
        return {group.name: group.beats for group in self._groups.values()}

    def _start_parts(self) -> None:
        """The folder beside the recording where the groups write their parts, with
        what a repair needs should this process be killed before it merges them."""
        assert self.record is not None
        folder = parts_dir(self.record)
        shutil.rmtree(folder, ignore_errors=True)  # a previous run's, merged or not
        folder.mkdir(parents=True)
        facts = {
            "supervisor_pid": os.getpid(),  # a reader leaves the parts alone while it runs
            "groups": list(self._groups),
            "metadata": {k: str(v) for k, v in self.metadata.items()},
        }
        (folder / "run.json").write_text(json.dumps(facts))

    def _part(self, group: _Group, restart: int | None = None) -> Path:
        """The recording of one process of a group (a restarted one writes another)."""
        assert self.record is not None
        restart = group.restarts if restart is None else restart
        return parts_dir(self.record) / f"{group.name}.{restart}.mcap"

    def _spawn(self, group: _Group, *, first_start: bool) -> None:
        spec = {
            "graph_yaml": self.graph.to_yaml(),
            "graph_file": self.graph.file,
            "group": group.name,
            "links": {str(k): v for k, v in self._link_endpoints.items()},
            "control": f"ipc://{self._dir}/control",
            "turns": {name: f"ipc://{self._dir}/turn-{k}" for k, name in enumerate(self._groups)},
            "plugins": self.plugin_paths,
            "imports": self._imports.to_dict() if self._imports is not None else None,
            "seed": self.seed,
            "simulated": self.simulated,
            "duration": self._duration,
            "first_start": first_start,
            "supervisor": os.getpid(),
            "record": str(self._part(group)) if self.record is not None else None,
            "flush_ms": self.record_flush[0],
            "fsync": self.record_flush[1],
        }
        path = self._dir / f"{group.name}.json"
        path.write_text(json.dumps(spec))
        group.process = subprocess.Popen(
            [sys.executable, "-m", "edgeloop.runtime.processes.group_worker", str(path)],
            stdin=subprocess.DEVNULL,
        )
        group.pid = group.process.pid
        group.running = group.ready = False
        group.beats = 0

    def _await_ready(self) -> None:
        waiting = set(self._groups)
        limit = START_TIMEOUT_S + START_PER_GROUP_S * len(self._groups)
        deadline = time.monotonic() + limit
        while waiting:
            for name, message in self._receive(0.1):
                if isinstance(message, Ready):
                    waiting.discard(name)
                    self._groups[name].ready = True
                elif isinstance(message, Failed):
                    self._abort(f"group '{name}' failed to start: {message.message}")
            for name in list(waiting):
                code = self._groups[name].process.poll()  # type: ignore[union-attr]
                if code is not None:
                    self._abort(f"group '{name}' exited with code {code} while starting")
            if time.monotonic() > deadline:
                self._abort(f"groups {sorted(waiting)} not ready after {limit:g} s")

    def _abort(self, why: str) -> None:
        for group in self._groups.values():
            self._send(group, Stop(why))
        raise GroupCrashed(why)

    # -- simulated time: lockstep ------------------------------------------------------

    def _lockstep(self, end_ns: int) -> None:
        """Hand out the first turn (:mod:`~edgeloop.runtime.processes.lockstep`: the
        groups pass it on between them), then wait for the group that ends the run,
        watching for a crash meanwhile."""
        dues: dict[str, list[int] | None] = {}
        for group in self._groups.values():
            first = self._idle_report(group)  # each reports its first timer
            if first is None:
                return
            dues[group.name] = None if first.due is None else [first.due, *(first.rank or [])]
        first_turn = next_turn(0, dues, [], end_ns)
        if isinstance(first_turn, str):
            self._stop(first_turn)
            return
        name, turn = first_turn
        self._send(self._groups[name], turn)
        while self._stop_reason is None:
            for name, message in self._receive(0.2):
                if isinstance(message, Done):
                    self._stop(message.reason)
                    return
                if isinstance(message, (Failed, Report)):
                    why = message.message if isinstance(message, Failed) else "its loop stopped"
                    self._crash_in_lockstep(self._groups[name], why)
                    return
            for group in self._groups.values():
                code = group.process.poll()  # type: ignore[union-attr]
                if code is not None:
                    self._crash_in_lockstep(group, _exit_text(code))
                    return

    def _idle_report(self, group: _Group) -> Idle | None:
        """Wait for ``group``'s first-timer report (None: it crashed)."""
        while True:
            if not self._inbox[group.name]:
                for name, message in self._receive(0.2):
                    self._inbox[name].append(message)
            while self._inbox[group.name]:
                message = self._inbox[group.name].popleft()
                if isinstance(message, Idle):
                    return message
                if isinstance(message, (Failed, Report)):
                    why = message.message if isinstance(message, Failed) else "its loop stopped"
                    self._crash_in_lockstep(group, why)
                    return None
            code = group.process.poll()  # type: ignore[union-attr]
            if code is not None:
                self._crash_in_lockstep(group, _exit_text(code))
                return None

    def _crash_in_lockstep(self, group: _Group, why: str) -> None:
        group.crashes += 1
        self._event(group, "crash", why, "run stopped (simulated time cannot resume a group)")
        self._stopped_by_fault = True
        self._stop(f"group '{group.name}' stopped: {why}")

    # -- real time: heartbeats and restarts ------------------------------------------

    def _watch(self, duration_s: float | None) -> None:
        end = None if duration_s is None else time.monotonic() + duration_s
        while self._stop_reason is None:
            now = time.monotonic()
            if end is not None and now >= end:
                self._stop("duration reached")
                break
            for name, message in self._receive(0.05):
                self._on_message(self._groups[name], message)
            now = time.monotonic()
            for group in self._groups.values():
                if self._stop_reason is not None:
                    break
                if group.restart_at is not None:
                    if now >= group.restart_at:
                        group.restart_at = None
                        self._spawn(group, first_start=False)
                    continue
                code = group.process.poll()  # type: ignore[union-attr]
                if code is not None and group.report is None:
                    self._crashed(group, _exit_text(code))
                elif (
                    group.running and now - group.last_beat > group.spec.heartbeat_timeout_ms / 1e3
                ):
                    self._crashed(group, f"no heartbeat for {now - group.last_beat:.1f} s")

    def _on_message(self, group: _Group, message: ControlMessage) -> None:
        if isinstance(message, Beat):
            group.last_beat = time.monotonic()
            group.beats += 1
            if message.figures is not None:
                group.figures = message.figures
        elif isinstance(message, Ready):  # a restarted group: same time 0, resumes now
            group.ready = True
            resume_ns = time.perf_counter_ns() - self._epoch_ns + _START_MARGIN_NS
            self._send(group, Start(epoch_ns=self._epoch_ns, resume_ns=resume_ns))
            group.running, group.last_beat = True, time.monotonic()
            for dest in self._downstream(group.name):
                self._send(dest, Upstream(group=group.name, why="restarted"))
        elif isinstance(message, Failed):
            self._crashed(group, message.message.strip().splitlines()[-1])
        elif isinstance(message, Report):  # its loop stopped by itself (a `stop` policy)
            group.report, group.links = message.report, message.links
            self._stopped_by_fault = bool(message.report["stopped_by_fault"])
            self._stop(f"group '{group.name}': {message.report['stop_reason']}")

    def _crashed(self, group: _Group, why: str) -> None:
        group.crashes += 1
        if group.running:  # what it did up to its last beat stays in the report
            group.ended.append((why, self._now_s(), group.figures or {}))
        group.running, group.figures = False, None
        if group.process is not None and group.process.poll() is None:
            group.process.kill()
            group.process.wait()
        policy = group.spec
        if policy.on_crash == "stop" or group.restarts >= policy.restart.max_restarts:
            self._event(group, "crash", why, "run stopped")
            self._stopped_by_fault = True
            self._stop(f"group '{group.name}' crashed: {why}")
            return
        backoff_ms = min(
            policy.restart.backoff_ms * 2**group.restarts, policy.restart.max_backoff_ms
        )
        self._event(group, "crash", why, f"restart in {backoff_ms:g} ms")
        group.restarts += 1
        group.restart_at = time.monotonic() + backoff_ms / 1e3

    def _lost_messages(self) -> list[dict[str, Any]]:
        """A fault-log entry for each group that crashed with messages sent into it
        that none of its processes took (as far as its last heartbeats tell)."""

        def counters(g: _Group) -> list[dict[str, Any]]:  # each of its processes' links
            return [f.get("links", {}) for _, _, f in g.ended] + [g.links]

        sent: dict[str, int] = {}  # link id -> messages its sender's processes sent
        for g in self._groups.values():
            for links in counters(g):
                for link, counts in links.get("out", {}).items():
                    sent[link] = sent.get(link, 0) + counts["sent"]
        entries = []
        for g in self._groups.values():
            if not g.ended:
                continue
            taken: dict[str, int] = {}
            for links in counters(g):
                for link, counts in links.get("in", {}).items():
                    taken[link] = taken.get(link, 0) + counts["received"] + counts["bad"]
            lost = sum(max(0, sent.get(link, 0) - taken.get(link, 0)) for link in taken)
            if lost:
                whys = "; ".join(why for why, _, _ in g.ended)
                entries.append(
                    {
                        "node": f"(group {g.name})",
                        "kind": "lost_messages",
                        "error": f"{lost:,} message(s) sent into it were never taken: {whys}",
                        "action": "counted",
                        "time_s": g.ended[-1][1],
                    }
                )
        return entries

    def _downstream(self, name: str) -> list[_Group]:
        dests = dict.fromkeys(link.dest_group for link in self._plans[name].outbound)
        return [self._groups[d] for d in dests]

    def _now_s(self) -> float:
        """The run's time now (real time; 0 in lockstep, where groups keep their own)."""
        return (time.perf_counter_ns() - self._epoch_ns) / 1e9 if not self.simulated else 0.0

    def _event(self, group: _Group, kind: str, why: str, action: str) -> None:
        time_s = self._now_s()
        entry = {
            "node": f"(group {group.name})",
            "kind": kind,
            "error": why,
            "action": action,
            "time_s": time_s,
        }
        self.events.append(entry)
        _log.warning("group '%s': %s: %s", group.name, why, action)
        if kind == "crash":
            arguments = {
                "group": group.name,
                "reason": why,
                "action": action,
                "restarts": group.restarts,
                "time_s": time_s,
            }
            fire_hook(
                self._registry,
                "edgeloop_group_crashed",
                arguments,
                fault_log=self.events,
                time_s=time_s,
            )

    # -- stopping -----------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        for group in self._groups.values():
            if group.process is not None and group.process.poll() is None:
                self._send(group, Stop(reason))

    def _collect_reports(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        waiting = {
            g.name
            for g in self._groups.values()
            if g.report is None and g.process is not None and g.process.poll() is None
        }
        # what arrived while the lockstep waited on another group comes first
        held = [(name, m) for name, inbox in self._inbox.items() for m in inbox]
        for inbox in self._inbox.values():
            inbox.clear()
        while waiting and time.monotonic() < deadline:
            arrived, held = held + self._receive(0.1), []
            for name, message in arrived:
                if isinstance(message, Report):
                    self._groups[name].report = message.report
                    self._groups[name].links = message.links
                    waiting.discard(name)
            waiting = {
                n
                for n in waiting
                if self._groups[n].process.poll() is None or self._router.poll(0)  # type: ignore[union-attr]
            }

    def _end_processes(self) -> None:
        """Every group's process ends. One that said Ready was told to stop and has
        ``STOP_TIMEOUT_S`` (for all of them together) to send its report and exit. One
        still starting cannot hear a Stop (it may not have connected yet) and has
        nothing to report: it is killed at once, so a Ctrl-C while starting never
        waits on a process that is still importing."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for group in self._groups.values():
            process = group.process
            if process is None:
                continue
            if not group.ready and process.poll() is None:
                process.kill()
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # -- messages -----------------------------------------------------------------------

    def _send(self, group: _Group, message: ControlMessage) -> None:
        try:
            self._router.send_multipart([group.name.encode(), encode_control(message)], zmq.NOBLOCK)
        except zmq.ZMQError:  # that process is gone; its crash is handled elsewhere
            pass

    def _receive(self, timeout_s: float) -> list[tuple[str, ControlMessage]]:
        out = []
        if self._router.poll(int(timeout_s * 1000)):
            while self._router.poll(0):
                identity, body = self._router.recv_multipart()
                name = identity.decode(errors="replace")
                if name not in self._groups:
                    continue
                try:
                    out.append((name, decode_control(body)))
                except WireError as exc:  # a group that lost its mind: its heartbeat tells
                    _log.warning("group '%s' sent a bad control message: %s", name, exc)
        return out

    # -- the report ---------------------------------------------------------------------

    def _merged_report(self, duration_s: float | None, wall_s: float) -> RunReport:
        reports = [RunReport.from_dict(g.report) for g in self._groups.values() if g.report]
        builder = ReportBuilder(self.graph, simulated=self.simulated, seed=self.seed)
        for report in reports:
            builder.add_report(report, leave_out_types=(REMOTE_TYPE,))
        for g in self._groups.values():
            for why, _, figures in g.ended:
                nodes = nodes_from_dicts(figures.get("nodes", []))
                nodes = [n for n in nodes if n.type != REMOTE_TYPE]
                builder.add_ended_process(nodes, why)
        builder.fault_log += self.events + self._lost_messages()
        groups = []
        for g in self._groups.values():
            out = g.links.get("out", {}).values()
            groups.append(
                {
                    "name": g.name,
                    "nodes": [n.id for n in self.graph.nodes if n.group == g.name],
                    "pid": g.pid,
                    "crashes": g.crashes,
                    "restarts": g.restarts,
                    "sent": sum(s["sent"] for s in out),
                    "bytes": sum(s["bytes"] for s in out),
                    "dropped": sum(s["dropped"] for s in out),
                    "bad": sum(s["bad"] for s in g.links.get("in", {}).values()),
                }
            )
        recording = self._recording
        if recording is not None:
            failed = sum((r.recording or {}).get("failed", 0) for r in reports)
            recording = {**recording, "failed": failed + recording.get("failed", 0)}
        return builder.build(
            stop_reason=self._stop_reason or "",
            stopped_by_fault=self._stopped_by_fault,
            asked_s=duration_s,
            wall_s=wall_s,
            recording=recording,
            groups=groups,
        )


__all__ = ["GroupCrashed", "Supervisor"]


def _exit_text(code: int) -> str:
    """How a group process ended, in words: its exit code, or the signal that killed it."""
    if code == -signal.SIGALRM:
        return "a step hung where the watchdog could not interrupt it (stacks on stderr)"
    if code == HUNG_EXIT:
        return "a step hung and ignored the watchdog's interrupts (stacks on stderr)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
