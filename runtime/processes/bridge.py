"""The bridge of one process group: its links to the other groups and to the supervisor.

The executor of a group calls :meth:`GroupBridge.wait` instead of sleeping until
its next timer. In real time the bridge hands in messages from other groups as
they arrive and sends heartbeats while it waits. In simulated time the groups run
in lockstep, one at a time, passing the turn between them
(:mod:`edgeloop.runtime.processes.lockstep`): a turn fires the group's next timer
(the earliest over all groups, ties broken by graph order, as one executor would)
or takes the messages other groups sent it, in the order they were sent. So a
multi-process simulated run is as deterministic as a single-process one.

Control messages (:mod:`edgeloop.runtime.processes.control`) travel on a DEALER
socket to the supervisor's ROUTER; data travels on the links
(:mod:`edgeloop.runtime.processes.transport`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import zmq

from edgeloop.runtime.building import CompiledLoop
from edgeloop.runtime.clocks import Clock
from edgeloop.runtime.messages import Message
from edgeloop.runtime.metrics import nodes_to_dicts
from edgeloop.runtime.processes.control import (
    Beat,
    ControlMessage,
    Done,
    Idle,
    Ready,
    Start,
    Stop,
    Turn,
    Upstream,
)
from edgeloop.runtime.processes.lockstep import batches_by_group, next_turn
from edgeloop.runtime.processes.os_limits import sockets_needed
from edgeloop.runtime.processes.placement import GroupPlan
from edgeloop.runtime.processes.transport import Receiver, Sender
from edgeloop.runtime.processes.wire import decode_control, encode_control
from edgeloop.runtime.wiring import NEVER

HEARTBEAT_S = 0.25
FIGURES_EVERY = 4  # beats between the figures a beat carries (a second)
RECEIVE_TIMEOUT_S = 30.0  # lockstep: a message the supervisor said was sent
_SPIN_NS = 300_000  # poll without a timeout this close to a timer (zmq timeouts are in ms)


def send_control(socket: zmq.Socket, message: ControlMessage) -> None:
    socket.send(encode_control(message))


class GroupBridge:
    """Links one group's executor to the other groups and the supervisor.

    Args:
        plan: The group's part of the graph and its links.
        endpoints: Endpoint of every link by id.
        control: The supervisor's endpoint.
        order: Every node's index in the whole graph (ties between timers).
        supervisor: The supervisor's pid: without it, the group ends.
        turns: Each group's turn endpoint (lockstep: turns pass between groups).
        first_start: Wait for every receiver of this group's links to connect
            (not after a restart: they are connected already and reconnect by
            themselves).
    """

    def __init__(
        self,
        plan: GroupPlan,
        endpoints: dict[int, str],
        control: str,
        order: dict[str, int],
        *,
        supervisor: int,
        first_start: bool = True,
        turns: dict[str, str] | None = None,
    ) -> None:
        self.plan = plan
        self.stop_reason = "stopped by the supervisor"
        self.events: list[dict[str, Any]] = []
        """What the supervisor told this group (an upstream group restarted), as
        fault-log entries."""
        self._endpoints = endpoints
        self._order = order
        self._first_start = first_start
        self._context = zmq.Context.instance()
        needed = sockets_needed(plan, len(turns) - 1 if turns else 0)
        if needed > self._context.get(zmq.MAX_SOCKETS):  # before this process's first socket
            self._context.set(zmq.MAX_SOCKETS, needed)
        self.control = self._context.socket(zmq.DEALER)
        self.control.setsockopt(zmq.LINGER, 1000)  # the report must get out
        self.control.setsockopt(zmq.IDENTITY, plan.name.encode())
        self.control.connect(control)
        self.senders: dict[int, Sender] = {}
        self.receivers: dict[int, Receiver] = {}
        self._sent: list[tuple[int, float]] = []  # (link, created) in this turn
        self._links = {link.id: link for link in plan.outbound}
        self._turn_endpoints = dict(turns or {})
        self._turn_in: zmq.Socket | None = None  # lockstep: where turns come to this group
        self._turn_out: dict[str, zmq.Socket] = {}  # and go to the others (made when first used)
        self._turn: Turn | None = None  # the turn this group holds
        self._told_first_timer = False
        self._ranks: list[list[int]] = []
        self._inbound: dict[int, tuple[Any, str]] = {}  # link -> (stand-in runner, port)
        self._clock: Clock | None = None
        self._poller: zmq.Poller | None = None
        self._by_socket: dict[zmq.Socket, int] = {}
        self._last_beat = 0.0
        self._beats = 0
        self._loop: CompiledLoop | None = None
        self._parent = supervisor
        self._stopped_early = False  # told to stop before the start
        self.resume_ns = 0
        """Clock time this group (re)starts at: a restarted group's timers resume on
        their grid from here instead of catching up from time 0."""

    # -- set-up -----------------------------------------------------------------------

    def attach(self, loop: CompiledLoop, clock: Clock) -> None:
        """Bind this group's links, connect to the others', say ready and wait for
        the supervisor's start (called by the executor once its nodes are set up).

        Raises:
            TransportError: a link cannot bind.
        """
        self._clock = clock
        self._loop = loop
        for link in self.plan.outbound:
            sender = Sender(self._endpoints[link.id])
            self.senders[link.id] = sender
            loop.runners[link.node].out_ports[link.port].taps.append(self._tap(link.id, sender))
        for link in self.plan.inbound:
            receiver = Receiver(self._endpoints[link.id])
            receiver.hello()
            self.receivers[link.id] = receiver
            self._by_socket[receiver.socket] = link.id
            self._inbound[link.id] = (loop.runners[link.node], link.port)
        if clock.simulated and self.plan.name in self._turn_endpoints:
            self._turn_in = self._context.socket(zmq.PULL)
            self._turn_in.setsockopt(zmq.LINGER, 0)
            self._turn_in.bind(self._turn_endpoints[self.plan.name])
        if self._first_start:
            self._wait_for_receivers()
        # Timer ranks for lockstep: (node's index in the whole graph, its k-th timer).
        per_node: dict[str, int] = {}
        for timer in loop.timers:
            node_id = timer.runner.spec.id
            per_node[node_id] = per_node.get(node_id, -1) + 1
            self._ranks.append([self._order[node_id], per_node[node_id]])
        if self._stopped_early:
            return
        send_control(self.control, Ready(pid=os.getpid()))
        start = self._recv_control()
        while not isinstance(start, (Start, Stop)):  # a notice before the start
            self._note(start)
            start = self._recv_control()
        if isinstance(start, Stop):
            self.stop_reason = start.reason
            self._stopped_early = True
            return
        if hasattr(clock, "epoch_ns"):
            clock.epoch_ns = start.epoch_ns  # every group's time 0 is the same instant
        self.resume_ns = start.resume_ns

    def _wait_for_receivers(self) -> None:
        """Until every link has its receiver (a message sent before is dropped), or
        the supervisor calls the run off (another group failed to start, or they
        all took too long: the supervisor's start timeout bounds this wait)."""
        waiting = dict(self.senders)
        while waiting:
            for link_id, sender in list(waiting.items()):
                if sender.wait_for_receiver(0.05):
                    del waiting[link_id]
            if self.control.poll(0):
                command = self._recv_control()
                if isinstance(command, Stop):
                    self.stop_reason = command.reason
                    self._stopped_early = True
                    return
            if os.getppid() != self._parent:
                raise SystemExit("edgeloop group: the supervisor is gone")

    def _tap(self, link_id: int, sender: Sender) -> Callable[..., None]:
        sent = self._sent

        def send(data: Any, seq: int, created: float, sensed: float) -> None:
            if sender.send(Message(data, seq, created, sensed)):
                sent.append((link_id, created))

        return send

    # -- waiting ----------------------------------------------------------------------

    def wait(self, due_ns: int, order: int, deliver: Callable[..., None]) -> int | None:
        """Serve the links until ``due_ns`` (real time) or until the supervisor says
        to fire the timer at ``due_ns`` (simulated); None when the run is over, -1
        when a message moved a timer (the executor then looks at its heap again)."""
        if self._stopped_early:
            return None
        assert self._clock is not None
        if self._clock.simulated:
            return self._wait_lockstep(due_ns, order, deliver)
        return self._wait_real(due_ns, deliver)

    def _wait_lockstep(self, due_ns: int, order: int, deliver: Callable[..., None]) -> int | None:
        """Pass the turn on (this group's next timer is ``due_ns``), then serve the
        turns that come until one fires a timer: its time is returned."""
        clock = self._clock
        assert clock is not None
        rank = [due_ns, *self._ranks[order]] if due_ns < NEVER else None
        if self._turn is not None:
            turn = self._pass_turn(rank)
        else:
            turn = None
            if not self._told_first_timer:  # the supervisor chooses the first turn
                self._told_first_timer = True
                send_control(self.control, Idle(due=rank and rank[0], rank=rank and rank[1:]))
        while True:
            if turn is None:
                turn = self._await_turn()
                if turn is None:
                    return None
            self._turn = turn
            now = clock.wait_until(turn.time)
            if turn.take is None:
                return now
            moved = False
            for batch in turn.take:  # the outputs of one remote step each
                messages = []
                for link_id in batch:
                    message = self.receivers[link_id].recv(timeout=RECEIVE_TIMEOUT_S)
                    if message is not None:
                        runner, port = self._inbound[link_id]
                        messages.append(
                            (runner, port, message.data, message.created, message.sensed)
                        )
                moved = deliver(messages) or moved
            if moved:  # a sensing command moved a timer: the turn ends at the new one
                return -1
            turn = self._pass_turn(rank)

    def _pass_turn(self, rank: list[int] | None) -> Turn | None:
        """End this group's turn: the next one, when it is this group's again; else
        sent to its group (or the run's end to the supervisor), and None."""
        turn, self._turn = self._turn, None
        assert turn is not None
        dues = {**turn.dues, self.plan.name: rank}
        pending = [*turn.pending, *batches_by_group(self._sent, self._links)]
        self._sent.clear()
        chosen = next_turn(turn.time, dues, pending, turn.end)
        if isinstance(chosen, str):
            send_control(self.control, Done(chosen))
            return None
        group, following = chosen
        if group == self.plan.name:
            return following
        out = self._turn_out.get(group)
        if out is None:
            out = self._turn_out[group] = self._context.socket(zmq.PUSH)
            out.setsockopt(zmq.LINGER, 0)
            out.connect(self._turn_endpoints[group])
        out.send(encode_control(following))
        return None

    def _await_turn(self) -> Turn | None:
        """The next turn (from another group, or the first from the supervisor); None
        when the supervisor stops the run."""
        if self._poller is None:
            self._poller = zmq.Poller()
            self._poller.register(self.control, zmq.POLLIN)
            if self._turn_in is not None:
                self._poller.register(self._turn_in, zmq.POLLIN)
        while True:
            ready = dict(self._poller.poll(1000))
            if self._turn_in is not None and self._turn_in in ready:
                turn = decode_control(self._turn_in.recv())
                if isinstance(turn, Turn):
                    return turn
            if self.control in ready:
                command = decode_control(self.control.recv())
                if isinstance(command, Turn):
                    return command
                if isinstance(command, Stop):
                    self.stop_reason = command.reason
                    return None
                self._note(command)
            if not ready and os.getppid() != self._parent:
                raise SystemExit("edgeloop group: the supervisor is gone")

    def _wait_real(self, due_ns: int, deliver: Callable[..., None]) -> int | None:
        clock = self._clock
        assert clock is not None
        if self._poller is None:
            self._poller = zmq.Poller()
            self._poller.register(self.control, zmq.POLLIN)
            for receiver in self.receivers.values():
                self._poller.register(receiver.socket, zmq.POLLIN)
        poller = self._poller
        by_socket = self._by_socket
        while True:
            now = clock.now_ns()
            if now >= due_ns:
                return now
            beat = time.monotonic()
            if beat - self._last_beat >= HEARTBEAT_S:
                self._last_beat = beat
                self._beats += 1
                send_control(self.control, Beat(figures=self._figures()))
                if os.getppid() != self._parent:  # the supervisor died: no orphans
                    self.stop_reason = "the supervisor is gone"
                    return None
            left_ns = min(due_ns - now, int(HEARTBEAT_S * 1e9)) - _SPIN_NS
            arrived: list[tuple[Any, str, Any, float, float]] = []
            for socket, _ in poller.poll(max(0, left_ns // 1_000_000)):
                if socket is self.control:
                    while self.control.poll(0):
                        command = self._recv_control()
                        if isinstance(command, Stop):
                            self.stop_reason = command.reason
                            return None
                        self._note(command)
                    continue
                link_id = by_socket[socket]
                receiver = self.receivers[link_id]
                runner, port = self._inbound[link_id]
                while receiver.socket.poll(0):
                    message = receiver.recv()
                    if message is not None:
                        arrived.append(
                            (runner, port, message.data, message.created, message.sensed)
                        )
            if arrived:  # everything that came in, then what it triggers
                if deliver(arrived):
                    return -1  # a sensing command moved a timer
                arrived = []

    def _recv_control(self) -> ControlMessage:
        """The supervisor's next command; a vanished supervisor ends the group (only
        the supervisor, on this machine's ipc, can send them: a bad one is a bug)."""
        while not self.control.poll(1000):
            if os.getppid() != self._parent:
                raise SystemExit("edgeloop group: the supervisor is gone")
        return decode_control(self.control.recv())

    def _note(self, command: ControlMessage) -> None:
        if isinstance(command, Upstream):
            self.events.append(
                {
                    "node": f"(group {self.plan.name})",
                    "kind": "upstream_restarted",
                    "error": f"its upstream group '{command.group}' {command.why}",
                    "action": "reconnected",
                    "time_s": self._clock.now_ns() / 1e9 if self._clock else 0.0,
                }
            )

    # -- the end ------------------------------------------------------------------------

    def _figures(self) -> dict[str, Any] | None:
        """The node figures and link counters so far, every ``FIGURES_EVERY`` beats."""
        if (self._beats - 1) % FIGURES_EVERY or self._loop is None:  # the 1st, 5th, ...
            return None
        return {"nodes": nodes_to_dicts(self._loop.node_stats()), "links": self.link_stats()}

    def link_stats(self) -> dict[str, Any]:
        """Messages sent, dropped and shared per outbound link; received and bad per inbound."""
        return {
            "out": {
                str(k): {
                    "sent": s.sent,
                    "dropped": s.dropped,
                    "shared": s.shared,
                    "inline_fallbacks": s.inline_fallbacks,
                    "bytes": s.bytes,
                }
                for k, s in self.senders.items()
            },
            "in": {
                str(k): {
                    "received": r.decoder.received,
                    "bad": sum(r.decoder.dropped.values()),
                }
                for k, r in self.receivers.items()
            },
        }

    def close(self) -> None:
        for socket in [self._turn_in, *self._turn_out.values()]:
            if socket is not None:
                socket.close(linger=0)
        for sender in self.senders.values():
            sender.close()
        for receiver in self.receivers.values():
            receiver.close()
