"""The control messages between the supervisor and its process groups.

Each is a typed dataclass; :func:`~edgeloop.runtime.processes.wire.encode_control`
and :func:`~edgeloop.runtime.processes.wire.decode_control` carry them over the
supervisor's ROUTER socket and each group's DEALER. Who sends what:

================  =============  ===========================================================
message           sent by        meaning
================  =============  ===========================================================
:class:`Ready`    group          its nodes are set up and its links connected
:class:`Start`    supervisor     run from the shared time 0 (``epoch_ns``), from ``resume_ns``
:class:`Idle`     group          lockstep: my first timer (before the first turn)
:class:`Turn`     either         lockstep: your turn: fire your timer, or take these batches
:class:`Done`     group          lockstep: the run ended on my turn, for ``reason``
:class:`Beat`     group          real time: still alive
:class:`Upstream` supervisor     a group that feeds you restarted
:class:`Stop`     supervisor     end the run, for ``reason``
:class:`Failed`   group          it failed (setup, or a crash it caught); ``message`` says why
:class:`Report`   group          its loop ended; its run report and link counters
================  =============  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
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
class Idle:
    due: int | None
    """Clock time of the group's first timer, ns; None when it has none."""
    rank: list[int] | None
    """That timer's place among simultaneous timers: (node's index in the graph, k-th
    timer of the node)."""


@dataclass(frozen=True)
class Turn:
    """A group's turn in lockstep (:mod:`edgeloop.runtime.processes.lockstep`),
    passed from group to group with what the next choice of turn needs."""

    time: int
    """Simulated clock time of the turn, ns."""
    take: list[list[int]] | None
    """Link ids to read, one list per remote step (its outputs arrive together);
    None: fire your next timer at ``time``."""
    dues: dict[str, list[int] | None]
    """Every group's next timer: [due ns, node's index in the graph, k-th timer of
    the node]; None when it has none."""
    pending: list[tuple[str, list[list[int]]]]
    """(group, batches) sent and not yet taken, oldest first."""
    end: int
    """The run's end, ns: a timer due at or past it does not fire."""


@dataclass(frozen=True)
class Done:
    reason: str
    """Why the run ended on this group's turn (``duration reached``, ``nothing left to run``)."""


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


ControlMessage = Ready | Start | Idle | Turn | Done | Beat | Upstream | Stop | Failed | Report
"""Any control message."""

KINDS: dict[str, type] = {
    "ready": Ready,
    "start": Start,
    "idle": Idle,
    "turn": Turn,
    "done": Done,
    "beat": Beat,
    "upstream": Upstream,
    "stop": Stop,
    "error": Failed,
    "report": Report,
}
"""The ``t`` tag each message travels under."""
