"""Open files and processes: raised where the OS allows, checked before anything starts.

Every link between two process groups is a ZeroMQ socket at each end. The
sending end binds, so it holds a listening socket, the connection and the
socket's mailbox (an eventfd); the receiving end holds the connection and the
mailbox; ZeroMQ adds a few of its own. Measured on the field-search scenario:
the world's process holds 122 files with 8 agents (32 links) and 230 with 16
(64 links), about 3.4 a link. A world with a thousand agents links to each of
them, so its process needs thousands of files, past the usual soft limit of
1,024. ZeroMQ has a limit of its own, 1,023 sockets per context unless told
otherwise: each group's bridge sets it to what the group needs (:func:`sockets_needed`).
The supervisor raises its soft limit to the hard limit before it starts anything
(the groups inherit it), then checks every group's need against it and every
group's process against the process limit, and refuses to start, saying which
group needs what and how to raise the limit, rather than fail halfway with
"Too many open files".
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING

import zmq

from edgeloop.runtime.errors import GroupCrashed

if TYPE_CHECKING:
    from edgeloop.runtime.processes.placement import GroupPlan

FILES_PER_PROCESS = 32
"""What a group's process opens besides its links: Python, ZeroMQ's threads, the
control socket, a recording. The three figures err high: 144 estimated for the
world of 8 agents above, 256 for 16; 46 for an agent that holds 24."""
FILES_PER_SENDING_END = 4
FILES_PER_RECEIVING_END = 3
_MOST_FILES = 1 << 20  # Linux's default nr_open: a soft limit above it is refused
SPARE_SOCKETS = 64
"""ZeroMQ sockets a group's process may open besides its links, control and turns:
its nodes' own (a ZeroMQ bridge node, say)."""


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _MOST_FILES if hard == resource.RLIM_INFINITY else min(hard, _MOST_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # a hard limit the kernel caps lower: keep the soft
            pass
    return soft


def files_needed(plan: GroupPlan, turn_peers: int = 0) -> int:
    """Open files a group's process needs for its links and itself; in lockstep also
    for its turn socket and one to each of ``turn_peers`` groups it may pass turns to."""
    return (
        FILES_PER_PROCESS
        + FILES_PER_SENDING_END * len(plan.outbound)
        + FILES_PER_RECEIVING_END * len(plan.inbound)
        + (FILES_PER_RECEIVING_END + FILES_PER_SENDING_END * turn_peers if turn_peers else 0)
    )


def sockets_needed(plan: GroupPlan, turn_peers: int = 0) -> int:
    """ZeroMQ sockets a group's process needs: a link's end each, the control socket,
    in lockstep its turn socket and one to each of ``turn_peers`` groups, and spares."""
    links = len(plan.outbound) + len(plan.inbound)
    return links + 1 + (1 + turn_peers if turn_peers else 0) + SPARE_SOCKETS


def check_limits(plans: dict[str, GroupPlan], *, lockstep: bool = False) -> None:
    """Raise :class:`GroupCrashed` before anything starts when a group would run out
    of open files or the processes would pass the process limit (``lockstep``: a
    group may pass turns to every other)."""
    files = raise_open_files()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    peers = len(plans) - 1 if lockstep else 0
    short = {
        name: need for name, plan in plans.items() if (need := files_needed(plan, peers)) > files
    }
    if short:
        name, need = max(short.items(), key=lambda item: item[1])
        hard_text = "unlimited" if hard == resource.RLIM_INFINITY else f"{hard:,}"
        raise GroupCrashed(
            f"group '{name}' needs about {need:,} open files for its "
            f"{len(plans[name].outbound) + len(plans[name].inbound):,} links, and a process "
            f"here may open {files:,} (hard limit {hard_text})"
            + (f"; {len(short) - 1:,} other groups need more too" if len(short) > 2 else "")
            + ("; one other group needs more too" if len(short) == 2 else ""),
            fix="raise the open-files limit: 'ulimit -Hn' in a root shell, "
            "'* - nofile 1048576' in /etc/security/limits.conf, or LimitNOFILE= in a "
            "systemd unit; or run fewer agents",
        )
    most_sockets = zmq.Context.instance().get(zmq.SOCKET_LIMIT)
    for name, plan in plans.items():
        if sockets_needed(plan, peers) > most_sockets:
            raise GroupCrashed(
                f"group '{name}' needs {sockets_needed(plan, peers):,} ZeroMQ sockets for its "
                f"{len(plan.outbound) + len(plan.inbound):,} links, and this libzmq allows "
                f"{most_sockets:,} in a process",
                fix="run fewer agents, or fewer links to one group",
            )
    processes, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if processes != resource.RLIM_INFINITY and len(plans) + 1 > processes:
        raise GroupCrashed(
            f"{len(plans):,} process groups and their supervisor need {len(plans) + 1:,} "
            f"processes, and this user may run {processes:,} (RLIMIT_NPROC)",
            fix="raise nproc ('ulimit -u', /etc/security/limits.conf), or put several "
            "agents in one process (agents_per_process in the scenario)",
        )
