"""Reopening a device that went away, with a wait that doubles after each failed try."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

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
