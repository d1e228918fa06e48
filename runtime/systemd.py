"""Running under systemd: readiness and the watchdog over ``sd_notify``, and log
lines journald reads.

A unit of ``Type=notify`` starts the loop and waits for ``READY=1``, sent once
every node is set up and the loop is about to run (a model that takes a minute
to load is not "started" before then). With ``WatchdogSec=``, systemd restarts
the service unless it hears ``WATCHDOG=1`` at least that often; here the pings
come from the loop's own liveness: a thread sends one every half interval
while no step has been running for longer than that, so a loop stuck in a step
falls silent and is restarted. The protocol is a datagram of ``KEY=VALUE``
lines to the Unix socket in ``$NOTIFY_SOCKET`` (systemd's sd_notify(3)); no
library is needed, and without that variable nothing here does anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeloop.runtime.hookspecs import hookimpl

if TYPE_CHECKING:
    from edgeloop.runtime.graph import LoopGraph
    from edgeloop.runtime.metrics import RunReport

_log = logging.getLogger("edgeloop.systemd")

# syslog priorities as sd-daemon(3) prefixes: journald takes them as the line's level.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class JournalFormatter(logging.Formatter):
    """One line per event with its level as a ``<N>`` prefix (journald's
    ``SyslogLevelPrefix``); a message of several lines (a traceback) is joined with
    `` | `` so it stays one entry."""

    def format(self, record: logging.LogRecord) -> str:
        level = _PRIORITY.get(record.levelno, 2 if record.levelno > logging.ERROR else 6)
        text = super().format(record).replace("\r", "").replace("\n", " | ")
        return f"<{level}>{text}"


class Notifier:
    """Sends sd_notify messages to ``address`` (a path, or ``@name`` for an abstract
    socket), and pings the watchdog every ``watchdog_s / 2`` while ``alive()``."""

    def __init__(self, address: str, watchdog_s: float | None = None) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_s
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._stop = threading.Event()
        self._pinger: threading.Thread | None = None

    @classmethod
    def from_environment(cls) -> Notifier | None:
        """The notifier systemd asked for (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``), or None."""
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        watchdog_s = None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog_s = int(usec) / 1e6
        return cls(address, watchdog_s)

    def notify(self, *fields: str) -> None:
        """One message; a systemd that went away is logged, never fatal to the loop."""
        try:
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            _log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def start_watchdog(self, alive: Callable[[float], bool]) -> None:
        """Ping every half interval while ``alive(half_interval_s)`` is true (nothing
        without ``WatchdogSec``)."""
        if self.watchdog_s is None or self._pinger is not None:
            return
        half = self.watchdog_s / 2

        def ping() -> None:
            while not self._stop.wait(half):
                if alive(half):
                    self.notify("WATCHDOG=1")

        pinger = threading.Thread(target=ping, name="edgeloop-sd-watchdog", daemon=True)
        pinger.start()
        self._pinger = pinger  # only once started: an interrupt between leaves it None

    def stopping(self, status: str) -> None:
        self._stop.set()
        if self._pinger is not None:
            self._pinger.join()
        self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._socket.close()


class LoopNotifier:
    """A notifier as a plugin of one loop: ``READY=1`` as the loop starts, the
    watchdog fed while no step of ``executor`` runs past half its interval, and
    ``STOPPING=1`` when the loop ends."""

    def __init__(self, notifier: Notifier, busy_s: Callable[[], float]) -> None:
        self.notifier = notifier
        self.busy_s = busy_s

    @hookimpl
    def edgeloop_loop_started(self, graph: LoopGraph) -> None:
        self.notifier.ready(f"running {graph.name}")
        self.notifier.start_watchdog(lambda half_s: self.busy_s() < half_s)

    @hookimpl
    def edgeloop_loop_stopped(self, report: RunReport) -> None:
        self.notifier.stopping(f"stopped: {report.stop_reason}")
