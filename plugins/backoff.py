"""Reopening a device that went away, with a wait that doubles after each failed try."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def reopen_with_backoff(
    open_once: Callable[[], T], stopping: threading.Event, first_s: float, max_s: float
) -> T | None:
    """``open_once()``'s result once it stops raising, trying after ``first_s``, then
    waiting twice as long after each failure (at most ``max_s``); None when
    ``stopping`` is set first (the node is closing)."""
    wait = first_s
    while not stopping.wait(wait):
        try:
            return open_once()
        except Exception:  # still away: try again later
            wait = min(wait * 2, max_s)
    return None


class DeviceLink:
    """A device handle (a serial port, a CAN bus) that the node's thread drops when it
    fails and opens again with backoff.

    Only that thread opens and drops it; the loop's thread reads ``take_loss`` (why
    the link went down, once) and ``reconnects``.

    Args:
        open_once: Opens the device (raises while it is away); called once here, so a
            device that cannot be opened fails the node's setup.
        release: Closes a handle (a failed device may fail to close: that is ignored).
        first_s: The first wait before reopening; doubles after each failed try.
        max_s: The longest wait between two tries.
    """

    def __init__(
        self,
        open_once: Callable[[], Any],
        release: Callable[[Any], None],
        first_s: float,
        max_s: float,
    ) -> None:
        self._open_once = open_once
        self._release = release
        self._backoff = (first_s, max_s)
        self.device: Any = open_once()
        self.stopping = threading.Event()
        self.reconnects = 0
        self._lost = ""
        self._wait_s = first_s  # reopen_now's backoff
        self._next_try = 0.0

    def drop(self, why: str) -> None:
        """The device failed: release it and say why to the next step."""
        self._lost = why
        device, self.device = self.device, None
        try:
            self._release(device)
        except Exception:  # the device is gone; releasing what is left may fail too
            pass

    def take_loss(self) -> str:
        """Why the link went down since the last call, or ""."""
        lost, self._lost = self._lost, ""
        return lost

    def reopen(self) -> bool:
        """Open the device again, waiting longer after each failure; False when the
        node is closing first."""
        self.device = reopen_with_backoff(self._open_once, self.stopping, *self._backoff)
        if self.device is None:
            return False
        self.reconnects += 1
        return True

    def reopen_now(self) -> bool:
        """One try to open the device again without waiting, at most once per backoff
        wait (for a node that has no thread of its own: a device gone for good costs
        a failed open per wait, no more); True when it is open."""
        now = time.monotonic()
        if now < self._next_try:
            return False
        try:
            self.device = self._open_once()
        except Exception:  # still away: try again after a longer wait
            self._next_try = now + self._wait_s
            self._wait_s = min(self._wait_s * 2, self._backoff[1])
            return False
        self.reconnects += 1
        self._wait_s = self._backoff[0]
        return True

    def close(self, thread: threading.Thread | None) -> None:
        """Stop the node's thread (given one), then release the device."""
        self.stopping.set()
        if thread is not None:
            thread.join(timeout=1.0)
        if self.device is not None:
            self._release(self.device)
