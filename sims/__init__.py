"""Task spaces, samplers (MPTS and baselines), training, evaluation and worlds.

Imports gymnasium (and, for training, torch) only when used.
"""

from edgeloop.sims.task_space import (
    BUILTIN,
    TaskParameter,
    TaskSpace,
    TaskSpaceError,
    load_task_space,
)

__all__ = ["BUILTIN", "TaskParameter", "TaskSpace", "TaskSpaceError", "load_task_space"]
