"""A plugin for the process-group tests: it keeps every edgeloop_group_crashed call.

The supervisor fires that hook in its own process (the test's), so the test reads
``CRASHES`` after the run; the group processes import this module too (PYTHONPATH).
"""

from __future__ import annotations

from typing import Any

import edgeloop

CRASHES: list[dict[str, Any]] = []


@edgeloop.hookimpl
def edgeloop_group_crashed(time_s: float, group: str, action: str, restarts: int) -> None:
    # A subset of the spec's arguments, in another order: pluggy passes them by name.
    CRASHES.append({"group": group, "action": action, "restarts": restarts, "time_s": time_s})
