"""Fault policies: what happens to a node that raised, returned non-finite
numbers, or stepped on stale inputs. Off the per-tick path: nothing here runs
until something went wrong.

Policies (``on_fault`` in the graph):
- ``restart``: close the node, wait a backoff that doubles with each
  consecutive fault (up to ``max_backoff_ms``), then make a fresh instance and
  call ``setup`` again; past ``max_restarts`` the loop stops.
- ``hold_last``: publish the node's last good outputs again.
- ``fallback: <id>``: step the fallback node on the faulted node's inputs and
  publish its outputs as the faulted node's.
- ``stop``: end the loop cleanly; the report says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from edgeloop.runtime.clocks import Clock
from edgeloop.runtime.node import port_list
from edgeloop.runtime.wiring import Runner, close_quietly


class FaultHandler:
    """Applies each node's fault policy and keeps the fault log.

    Args:
        clock: The loop's clock.
        publish: Delivers outputs as if ``runner`` had returned them.
        stop: Ends the loop with a reason.
        hook: The plugins' ``edgeloop_node_faulted`` hook.
        fallbacks: Fallback runner of each node whose policy names one.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        publish: Callable[[Runner, Mapping[str, Any], float, float], None],
        stop: Callable[[str], None],
        hook: Callable[..., Any],
        fallbacks: dict[str, Runner],
    ) -> None:
        self._clock = clock
        self._publish = publish
        self._stop = stop
        self._hook = hook
        self._fallbacks = fallbacks
        self.log: list[dict[str, Any]] = []

    def set_fallbacks(self, fallbacks: dict[str, Runner]) -> None:
        """Name each node's fallback runner, once the loop is built."""
        self._fallbacks = fallbacks

    def _now_s(self) -> float:
        return self._clock.now_ns() / 1e9

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
                backoff_ms = min(
                    policy.restart.backoff_ms * 2 ** (r.consecutive_faults - 1),
                    policy.restart.max_backoff_ms,
                )
                r.down_until = self._clock.now_ns() + max(1, int(backoff_ms * 1e6))
                r.update_guard()
                close_quietly(r)
        elif action == "hold_last":
            self._hold_last(r)
        elif action == "fallback":
            action = self._run_fallback(r)
        if action == "fallback":
            action = f"fallback:{policy.fallback}"
        time_s = self._now_s()
        self.log.append(
            {"node": r.spec.id, "kind": kind, "error": error, "action": action, "time_s": time_s}
        )
        if action == "stop":
            self._stop(f"node '{r.spec.id}' faulted ({kind}: {error}) and its policy is stop")
        self._hook(node_id=r.spec.id, kind=kind, error=error, action=action, time_s=time_s)

    def _hold_last(self, r: Runner) -> None:
        held = {name: port.last_data for name, port in r.out_ports.items() if port.seq}
        if held:
            sensed = min(port.last_sensed for port in r.out_ports.values() if port.seq)
            self._publish(r, held, self._now_s(), sensed)

    def _run_fallback(self, r: Runner) -> str:
        fb = self._fallbacks[r.spec.id]
        names = [p.name for p in port_list(fb.cls.inputs)] + list(fb.inputs)
        inputs = {name: r.inputs.get(name) for name in names}
        try:
            out = fb.step(inputs)
        except Exception as exc:
            fb.faults["exception"] = fb.faults.get("exception", 0) + 1
            self._stop(
                f"fallback '{fb.spec.id}' of '{r.spec.id}' failed too: {type(exc).__name__}: {exc}"
            )
            return "stop"
        if out:
            now = self._now_s()
            sensed = min((s.source.last_sensed for s in r.slots if s.source.seq), default=now)
            self._publish(r, {k: v for k, v in out.items() if k in r.out_ports}, now, sensed)
        return "fallback"

    def restart(self, r: Runner) -> bool:
        """Bring a node back once its backoff is over; False while it must still wait."""
        if self._clock.now_ns() < r.down_until:
            r.skipped += 1
            return False
        r.down_until = 0
        r.update_guard()
        r.restarts += 1
        node = r.cls()
        r.node = node
        try:
            node.setup(r.ctx)
        except Exception as exc:
            self.handle(r, "exception", f"setup after restart: {type(exc).__name__}: {exc}")
            return False
        r.step = node.step
        return True
