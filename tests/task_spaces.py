"""A small task space for sampler tests: two parameters on the unit square's scale."""

from __future__ import annotations

from edgeloop.sims import TaskSpace

SQUARE = TaskSpace(
    name="square",
    env_id="Pendulum-v1",
    parameters=(
        {"name": "a", "attribute": "m", "low": 0.5, "high": 2.0},
        {"name": "b", "attribute": "l", "low": 0.5, "high": 1.5},
    ),
)
