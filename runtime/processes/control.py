"""The control messages between the supervisor and its process groups.

Each is a typed dataclass; :func:`~edgeloop.runtime.processes.wire.encode_control`
and :func:`~edgeloop.runtime.processes.wire.decode_control` carry them over the
supervisor's ROUTER socket and each group's DEALER. Who sends what:

================  =============  ===========================================================
message           sent by        meaning
================  =============  ===========================================================
:class:`Ready`    group          its nodes are set up and its links connected
:class:`Start`    supervisor     run from the shared time 0 (``epoch_ns``), from ``resume_ns``
:class:`Fire`     supervisor     lockstep: fire your next timer at simulated ``time``
:class:`Take`     supervisor     lockstep: take these batches of messages at ``time``
:class:`Idle`     group          lockstep: done; my next timer, and the links I sent on
:class:`Beat`     group          real time: still alive
:class:`Upstream` supervisor     a group that feeds you restarted
:class:`Stop`     supervisor     end the run, for ``reason``
:class:`Failed`   group          it failed (setup, or a crash it caught); ``message`` says why
:class:`Report`   group          its loop ended; its run report and link counters
================  =============  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ready:
    pid: int
    """The group's process id."""


@dataclass(frozen=True)
class Start:
    epoch_ns: int
    """The shared time 0, on every process's ``perf_counter_ns``."""
    resume_ns: int = 0
    """Clock time a restarted group resumes its timers at (0 at the first start)."""


@dataclass(frozen=True)
class Fire:
    time: int
    """Simulated clock time of the timer to fire, ns."""


@dataclass(frozen=True)
class Take:
    time: int
    """Simulated clock time to deliver at, ns."""
    batches: list[list[int]]
    """Link ids to read, one list per remote step (its outputs arrive together)."""


@dataclass(frozen=True)
class Idle:
    due: int | None
    """Clock time of the group's next timer, ns; None when it has none."""
    rank: list[int] | None
    """That timer's place among simultaneous timers: (node's index in the graph, k-th
    timer of the node)."""
    sent: list[tuple[int, float]] = field(default_factory=list)
    """(link id, message creation time) of what it sent since its last Idle."""


@dataclass(frozen=True)
class Beat:
    """A real-time group's heartbeat."""

    figures: dict[str, Any] | None = None
    """Every few beats, its figures so far (``{"nodes": [NodeStats as a dict],
    "links": its links' counters}``): what the report keeps of a process that dies."""


@dataclass(frozen=True)
class Upstream:
    group: str
    """The group that feeds this one."""
    why: str
    """What happened to it (``restarted``)."""


@dataclass(frozen=True)
class Stop:
    reason: str
    """Why the run ends, as the report's stop reason."""


@dataclass(frozen=True)
class Failed:
    message: str
    """What failed: an edgeloop error's message, or a traceback."""


@dataclass(frozen=True)
class Report:
    report: dict[str, Any]
    """The group's :class:`~edgeloop.runtime.metrics.RunReport` as ``to_dict`` gives it."""
    links: dict[str, Any]
    """Its links' counters: ``{"out": {link: {...}}, "in": {link: {...}}}``."""


ControlMessage = Ready | Start | Fire | Take | Idle | Beat | Upstream | Stop | Failed | Report
"""Any control message."""

KINDS: dict[str, type] = {
    "ready": Ready,
    "start": Start,
    "fire": Fire,
    "take": Take,
    "idle": Idle,
    "beat": Beat,
    "upstream": Upstream,
    "stop": Stop,
    "error": Failed,
    "report": Report,
}
"""The ``t`` tag each message travels under."""
