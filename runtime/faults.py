"""Fault policies: what happens to a node that raised, returned non-finite
numbers or something that is not a mapping, or has a stale input. Off the
per-tick path: nothing here runs until something went wrong.

Policies (``on_fault`` in the graph):
- ``restart``: wait a backoff that doubles with each consecutive fault (up to
  ``max_backoff_ms``), then close the node and set up a fresh instance on a
  thread of its own, so the rest of the loop keeps its timing (in simulated
  time the loop waits for it: simulated time stands still meanwhile). The node
  is down until that is done; a setup past ``setup_timeout_ms`` is a failed
  restart. Past ``max_restarts`` the loop stops.
- ``hold_last``: publish the node's last good outputs again, with their
  original times (so a receiver's stale check still sees how old they are).
- ``fallback: <id>``: step the fallback node on the faulted node's inputs and
  publish its outputs, checked like any output, as the faulted node's.
- ``stop``: end the loop cleanly; the report says why.

Before any policy applies, a faulted actuator sends its safe command (once per
run of consecutive faults): a device must not keep its last command while the
loop sorts itself out.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgeloop.runtime.clocks import Clock
from edgeloop.runtime.device_tensors import DeviceTensor
from edgeloop.runtime.messages import (
    MAX_PAYLOAD_BYTES,
    payload_is_finite,
    payload_problem,
    type_problem,
)
from edgeloop.runtime.node import Node, new_node
from edgeloop.runtime.watchdog import StepInterrupted
from edgeloop.runtime.wiring import OutPort, Runner, Slot, close_quietly, make_safe

_log = logging.getLogger("edgeloop.faults")

Publish = Callable[[Runner, Mapping[str, Any], float, float], None]


def bad_output(r: Runner, out: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(fault kind, message)`` for the first output ``r`` may not publish: an
    unknown port, a payload breaking the port's declared dtype or shape
    (``wrong_type``), one past what may travel between processes (``payload``:
    the same limits hold in one process), NaN or inf on a float or untyped port
    (``non_finite``)."""
    for name, data in out.items():
        port = r.out_ports.get(name)
        if port is None:
            declared = ", ".join(r.out_ports) or "none"
            return "exception", f"step returned unknown output '{name}' (declared: {declared})"
        if data is None:  # no message on that port
            continue
        if type(data) is DeviceTensor:
            problem = device_tensor_problem(port, data)
            if problem is not None:
                return problem[0], f"output '{name}': {problem[1]}"
            continue
        # An array like the last that passed on a declared port needs only its values checked.
        if type(data) is np.ndarray and data.dtype is port.ok_dtype and data.shape == port.ok_shape:
            if port.checks_finite and not payload_is_finite(data):
                return "non_finite", f"output '{name}' has non-finite values"
            continue
        if port.checks_type:
            problem = type_problem(port.want_dtype, port.want_shape, data)
            if problem is not None:
                return "wrong_type", f"output '{name}': {problem}"
        found = payload_problem(data)  # what may travel between processes, and NaN
        if found is not None:
            kind, why = found
            if kind == "non_finite":
                if port.checks_finite:
                    return kind, f"output '{name}' has non-finite values"
            else:
                return kind, f"output '{name}': {why}"
        if port.checks_type and isinstance(data, np.ndarray):
            port.ok_dtype, port.ok_shape = data.dtype, data.shape
    return None


def device_tensor_problem(port: OutPort, data: DeviceTensor) -> tuple[str, str] | None:
    """A device tensor's contract and size from its metadata; its NaN check (when
    its producer asks for one) on the message's one host copy."""
    if port.checks_type:
        problem = type_problem(port.want_dtype, port.want_shape, data)
        if problem is not None:
            return "wrong_type", problem
    if data.nbytes > MAX_PAYLOAD_BYTES:
        return "payload", f"{data.nbytes:,} bytes, more than {MAX_PAYLOAD_BYTES:,}"
    if port.checks_finite and data.check_finite and not payload_is_finite(data.host("NaN check")):
        return "non_finite", "non-finite values"
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
        if r.consecutive_faults == 1 and not r.closed:  # an actuator's device, first
            make_safe(r, kind)
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
                now = self._clock.now_ns()
                r.down_until = now + max(1, int(backoff_ms * 1e6))
                r.down_since = r.down_since or now
                r.update_guard()
        elif action == "hold_last":
            self._hold_last(r)
        elif action == "fallback":
            action = self._run_fallback(r)
        time_s = self._clock.now_ns() / 1e9
        self.log.append(
            {"node": r.spec.id, "kind": kind, "error": error, "action": action, "time_s": time_s}
        )
        # A line per fault for a service's journal (INFO: a terminal shows it with -v)
        _log.info("t=%.3f s node '%s' %s: %s -> %s", time_s, r.spec.id, kind, error, action)
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
            fb.started = t0  # watched like any step
            out = fb.step(inputs)
            fb.started = 0
        except KeyboardInterrupt:
            fb.started = 0
            raise
        except BaseException as exc:
            fb.started = 0
            kind = "hung" if isinstance(exc, StepInterrupted) else "exception"
            return self._fallback_failed(r, fb, kind, f"{type(exc).__name__}: {exc}")
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
        """Bring a node back once its backoff is over and a fresh instance is set up;
        False while it is still down (the step is skipped)."""
        now = self._clock.now_ns()
        job = r.restart_job
        if job is None:
            if now < r.down_until:
                r.skipped += 1
                return False
            r.restarts += 1
            job = r.restart_job = RestartJob(r)
            if self._clock.simulated:
                job.wait()
        if job.running():
            if not job.overdue():
                r.skipped += 1
                return False
            job.abandon()
        r.restart_job = None
        if job.node is None:
            self.handle(r, "exception", f"setup after restart: {job.error}")
            return False
        r.node, r.closed = job.node, False
        r.step = r.step_wrapper or job.node.step
        r.down_ns += now - r.down_since
        r.down_until = r.down_since = 0
        r.update_guard()
        return True


class RestartJob:
    """Closes a faulted node and sets up a fresh instance, off the loop's thread.

    The thread is a daemon: one whose ``setup`` never returns is abandoned (an
    exception is raised in it, which ends it if it runs Python code).
    """

    def __init__(self, r: Runner) -> None:
        self.node: Node | None = None
        self.error = ""
        self._runner = r
        self._timeout_s = r.spec.on_fault.restart.setup_timeout_ms / 1e3
        self._deadline = time.perf_counter() + self._timeout_s
        self._thread = threading.Thread(
            target=self._run, name=f"edgeloop-restart-{r.spec.id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        r = self._runner
        if not r.closed:
            close_quietly(r, watched=False)
            r.closed = True
        node = new_node(r.cls, r.ctx)
        try:
            node.setup(r.ctx)
        except BaseException as exc:  # whatever setup raises is a failed restart
            self.error = f"{type(exc).__name__}: {exc}"
            close_quietly(r, node, watched=False)
            return
        if self.error:  # abandoned meanwhile: nobody will use it
            close_quietly(r, node, watched=False)
        else:
            self.node = node

    def running(self) -> bool:
        return self._thread.is_alive()

    def overdue(self) -> bool:
        return time.perf_counter() > self._deadline

    def wait(self) -> None:
        """Block until the job is done or overdue."""
        self._thread.join(max(0.0, self._deadline - time.perf_counter()))

    def abandon(self) -> None:
        """Give up on a setup past its time: the runner counts it as a failed restart."""
        self.error = f"did not finish within {self._timeout_s * 1e3:g} ms (setup_timeout_ms)"
        ident = self._thread.ident
        if ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(TimeoutError)
            )
