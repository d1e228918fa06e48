"""Simulated time across process groups: whose turn is next.

One group runs at a time, and the turn passes from group to group directly (a
:class:`~edgeloop.runtime.processes.control.Turn` on the next group's turn
socket), carrying what the next choice needs: every group's next timer and the
batches sent but not yet taken. The group whose turn ends chooses the next one
as one executor would: first the messages other groups still have to take, in
the order they were sent (a remote step's outputs together, as one batch);
then the earliest timer over all groups, ties broken by the nodes' order in the
graph. A multi-process simulated run is so as deterministic as a one-process
one, and the supervisor is off the per-tick path: it hands out the first turn
and hears when the run is over (:class:`~edgeloop.runtime.processes.control.Done`).
"""

from __future__ import annotations

from edgeloop.runtime.processes.control import Turn
from edgeloop.runtime.processes.placement import Link

DURATION_REACHED = "duration reached"
NOTHING_LEFT = "nothing left to run"


def next_turn(
    time: int,
    dues: dict[str, list[int] | None],
    pending: list[tuple[str, list[list[int]]]],
    end: int,
) -> tuple[str, Turn] | str:
    """The next group and its turn, or why the run is over.

    Args:
        time: Simulated time now, ns.
        dues: Each group's next timer as ``[due ns, node index, k-th timer]``, or None.
        pending: (group, batches) sent and not yet taken, oldest first.
        end: The run's end, ns: a timer due at or past it does not fire.
    """
    if pending:
        (group, batches), rest = pending[0], pending[1:]
        return group, Turn(time=time, take=batches, dues=dues, pending=rest, end=end)
    timers = [(due, group) for group, due in dues.items() if due is not None]
    if not timers:
        return NOTHING_LEFT
    first, group = min(timers)
    if first[0] >= end:
        return DURATION_REACHED
    return group, Turn(time=first[0], take=None, dues=dues, pending=[], end=end)


def batches_by_group(
    sent: list[tuple[int, float]], links: dict[int, Link]
) -> list[tuple[str, list[list[int]]]]:
    """What a turn sent, per destination group (in the order first sent to), cut into
    batches: the outputs of one step of one node (same node, same time, each link once)."""
    out: dict[str, list[list[int]]] = {}
    last: dict[str, tuple[str, float]] = {}
    for link_id, created in sent:
        link = links[link_id]
        batches = out.setdefault(link.dest_group, [])
        key = (link.node, created)
        if batches and last[link.dest_group] == key and link_id not in batches[-1]:
            batches[-1].append(link_id)
        else:
            batches.append([link_id])
        last[link.dest_group] = key
    return list(out.items())
