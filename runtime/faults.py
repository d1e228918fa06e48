"""Fault policies: what happens to a node that raised, returned non-finite
numbers or something that is not a mapping, or has a stale input. Off the
per-tick path: nothing here runs until something went wrong.

Policies (``on_fault`` in the graph):
- ``restart``: close the node, wait a backoff that doubles with each
  consecutive fault (up to ``max_backoff_ms``), then make a fresh instance and
  call ``setup`` again; past ``max_restarts`` the loop stops.
- ``hold_last``: publish the node's last good outputs again, with their
  original times (so a receiver's stale check still sees how old they are).
- ``fallback: <id>``: step the fallback node on the faulted node's inputs and
  publish its outputs, checked like any output, as the faulted node's.
- ``stop``: end the loop cleanly; the report says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from edgeloop.runtime.clocks import Clock
from edgeloop.runtime.messages import payload_is_finite
from edgeloop.runtime.node import new_node
from edgeloop.runtime.wiring import Runner, Slot, close_quietly

Publish = Callable[[Runner, Mapping[str, Any], float, float], None]


def bad_output(r: Runner, out: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(fault kind, message)`` for the first output ``r`` may not publish."""
    for name, data in out.items():
        port = r.out_ports.get(name)
        if port is None:
            declared = ", ".join(r.out_ports) or "none"
            return "exception", f"step returned unknown output '{name}' (declared: {declared})"
        if port.is_float and not payload_is_finite(data):
            return "non_finite", f"output '{name}' has non-finite values"
    return None


class FaultHandler:
    """Applies each node's fault policy and keeps the fault log.

    Args:
        clock: The loop's clock.
        publish: Delivers outputs as if ``runner`` had returned them.
        stop: Ends the loop with a reason.
        hook: Tells the plugins (``edgeloop_node_faulted``'s arguments).
        fallbacks: Fallback runner of each node whose policy names one.
        log: The fault log to append to.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        publish: Publish,
        stop: Callable[[str], None],
        hook: Callable[..., None],
        fallbacks: dict[str, Runner],
        log: list[dict[str, Any]],
    ) -> None:
        self._clock = clock
        self._publish = publish
        self._stop = stop
        self._hook = hook
        self._fallbacks = fallbacks
        self.log = log

    def handle(self, r: Runner, kind: str, error: str) -> None:
        """Count the fault, apply the node's policy, log it and tell the plugins."""
        r.faults[kind] = r.faults.get(kind, 0) + 1
        r.consecutive_faults += 1
        policy = r.spec.on_fault
        action = policy.action
        if action == "restart":
            if r.restarts >= policy.restart.max_restarts:
                action = "stop"
                error += f" (after {r.restarts} restarts)"
            else:
                doublings = min(r.consecutive_faults - 1, 60)  # 2**60 ms outlasts any run
                backoff_ms = min(
                    policy.restart.backoff_ms * 2.0**doublings, policy.restart.max_backoff_ms
                )
                r.down_until = self._clock.now_ns() + max(1, int(backoff_ms * 1e6))
                r.update_guard()
                close_quietly(r)
        elif action == "hold_last":
            self._hold_last(r)
        elif action == "fallback":
            action = self._run_fallback(r)
        time_s = self._clock.now_ns() / 1e9
        self.log.append(
            {"node": r.spec.id, "kind": kind, "error": error, "action": action, "time_s": time_s}
        )
        if action == "stop":
            self._stop(f"node '{r.spec.id}' faulted ({kind}: {error}) and its policy is stop")
        self._hook(node_id=r.spec.id, kind=kind, error=error, action=action, time_s=time_s)

    def _hold_last(self, r: Runner) -> None:
        for name, port in r.out_ports.items():
            if port.seq:
                self._publish(r, {name: port.last_data}, port.last_created, port.last_sensed)

    def _run_fallback(self, r: Runner) -> str:
        """Step the fallback in the faulted node's place; 'stop' if it fails too."""
        fb = self._fallbacks[r.spec.id]
        names = [p.name for p in fb.declared_inputs] + list(fb.inputs)
        inputs = {name: r.inputs.get(name) for name in names}
        t0 = time.perf_counter_ns()
        try:
            out = fb.step(inputs)
        except Exception as exc:
            return self._fallback_failed(r, fb, "exception", f"{type(exc).__name__}: {exc}")
        fb.record(time.perf_counter_ns() - t0)
        if out:
            out = {k: v for k, v in out.items() if k in r.out_ports and v is not None}
            problem = bad_output(r, out)
            if problem is not None:
                return self._fallback_failed(r, fb, *problem)
            now = self._clock.now_ns() / 1e9
            sensed = min((s.source.last_sensed for s in r.slots if s.source.seq), default=now)
            self._publish(r, out, now, sensed)
        return f"fallback:{fb.spec.id}"

    def _fallback_failed(self, r: Runner, fb: Runner, kind: str, error: str) -> str:
        fb.faults[kind] = fb.faults.get(kind, 0) + 1
        self._stop(f"fallback '{fb.spec.id}' of '{r.spec.id}' failed too ({kind}: {error})")
        return "stop"

    def check_outputs(self, r: Runner, out: Mapping[str, Any]) -> bool:
        """Fault the node and return False if an output may not be published."""
        problem = bad_output(r, out)
        if problem is not None:
            self.handle(r, *problem)
        return problem is None

    def is_stale(self, r: Runner, slot: Slot) -> bool:
        """Fault the node and return True if ``slot``'s last message is too old."""
        # A port that never received anything counts as made at loop start.
        age = self._clock.now_ns() / 1e9 - slot.source.last_created
        if age <= slot.stale_s + 1e-9:  # a nanosecond of float noise is not staleness
            return False
        message = f"input '{slot.name}' is {age:.3f}s old (stale_ms {slot.stale_s * 1e3:g})"
        self.handle(r, "stale_input", message)
        return True

    def watchdog(self, r: Runner, slot: Slot) -> Callable[[], None]:
        """A check of one input of an event-driven node, which might otherwise
        never step (and so never notice) when that input falls silent."""

        def check() -> None:
            if not r.down_until:
                self.is_stale(r, slot)

        return check

    def restart(self, r: Runner) -> bool:
        """Bring a node back once its backoff is over; False while it must still wait."""
        if self._clock.now_ns() < r.down_until:
            r.skipped += 1
            return False
        r.down_until = 0
        r.update_guard()
        r.restarts += 1
        node = r.node = new_node(r.cls, r.ctx)  # closed on a failure, like any node
        try:
            node.setup(r.ctx)
        except Exception as exc:
            self.handle(r, "exception", f"setup after restart: {type(exc).__name__}: {exc}")
            return False
        r.step = r.step_wrapper or node.step
        return True
