"""When a model node falls back on a faster variant, and when it climbs back.

:class:`VariantLadder` is the decision alone, fed step times and the loop's clock,
so it is tested with made-up times; the ``onnx.model`` node times its steps and
swaps sessions on what it decides.
"""

from __future__ import annotations

import collections
import math

HOLD_MAX_S = 60.0
"""The longest wait before climbing back, however often a climb failed."""
CLIMB_MARGIN = 0.8
"""A slower variant comes back only when predicted under this share of the budget."""


class VariantLadder:
    """Rungs 0 (the model) to ``rungs - 1`` (the fastest variant).

    Down a rung once the p99 of the last ``window`` steps is over ``budget_s``,
    which is certain as soon as ``window - int(0.99 * (window - 1))`` of them are
    (2 of 100): a squeeze costs two late steps, not a window of them. Up a rung
    after ``hold_s`` on this one, when the slower one's predicted p99 (its calmest
    in this loop plus what the load adds now: this rung's p99 less its calmest)
    is under 80 % of the budget; a rung never run here comes back only while
    this one's p99 is under half the budget. A fall within ``4 * hold`` of a
    climb doubles the hold (up to a minute), so a load that slows only the
    slower variant (steps longer than the scheduler's slice) is probed less and
    less often instead of flapping.
    """

    def __init__(self, rungs: int, budget_s: float, window: int, hold_s: float) -> None:
        self.rungs, self.budget_s, self.base_hold_s = rungs, budget_s, hold_s
        self.hold_s = hold_s
        self.times: collections.deque[float] = collections.deque(maxlen=window)
        self.allowed_over = window - int(0.99 * (window - 1)) - 1
        self.calm_p99 = [math.inf] * rungs
        self.level = 0
        self.since = 0.0
        self.came_up_at: float | None = None
        self.over = self.fresh = 0  # steps over budget in the window; steps not yet judged

    def observe(self, seconds: float, now: float) -> tuple[int, str] | None:
        """Takes one step's time; returns the rung to go to and why, or None to stay."""
        times = self.times
        if len(times) == times.maxlen:  # the oldest leaves the window
            self.over -= times[0] > self.budget_s
        times.append(seconds)
        self.over += seconds > self.budget_s
        self.fresh += 1
        if self.over > self.allowed_over and self.level < self.rungs - 1:
            if self.came_up_at is not None and now - self.came_up_at < 4 * self.hold_s:
                self.hold_s = min(HOLD_MAX_S, 2 * self.hold_s)
            else:
                self.hold_s = self.base_hold_s
            p99 = sorted(times)[-self.allowed_over - 1]
            return self.level + 1, f"p99 {p99 * 1e3:.2f} ms over {self.budget_s * 1e3:g} ms"
        if self.fresh < (times.maxlen or 0):  # the rest once per window of new steps
            return None
        self.fresh = 0
        p99 = sorted(times)[-self.allowed_over - 1]
        self.calm_p99[self.level] = min(self.calm_p99[self.level], p99)
        if self.level == 0 or now - self.since < self.hold_s:
            return None
        above = self.level - 1
        if self.calm_p99[above] < math.inf:
            predicted = self.calm_p99[above] + max(0.0, p99 - self.calm_p99[self.level])
            if predicted < CLIMB_MARGIN * self.budget_s:
                return above, f"predicted at {predicted * 1e3:.2f} ms"
        elif p99 < self.budget_s / 2:
            return above, f"p99 {p99 * 1e3:.2f} ms, under half the budget"
        return None

    def moved(self, level: int, now: float) -> None:
        """The node went to ``level`` (on this ladder's word or a command)."""
        self.came_up_at = now if level < self.level else None
        self.level = level
        self.since = now
        self.times.clear()
        self.over = self.fresh = 0
