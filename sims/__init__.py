"""Task spaces, samplers (MPTS and baselines), training, evaluation and worlds.

Imports gymnasium (and, for training, torch) only when used.
"""

from edgeloop.sims.evaluation import Evaluation, evaluate
from edgeloop.sims.mpts import MptsConfig, MptsSampler
from edgeloop.sims.risk import cvar, pearson
from edgeloop.sims.samplers import (
    DrmEvalSampler,
    DrmSampler,
    ErmSampler,
    GdrmEvalSampler,
    GdrmSampler,
    Sampler,
)
from edgeloop.sims.task_space import (
    BUILTIN,
    TaskParameter,
    TaskSpace,
    TaskSpaceError,
    load_task_space,
)

__all__ = [
    "BUILTIN",
    "DrmEvalSampler",
    "DrmSampler",
    "ErmSampler",
    "Evaluation",
    "GdrmEvalSampler",
    "GdrmSampler",
    "MptsConfig",
    "MptsSampler",
    "Sampler",
    "TaskParameter",
    "TaskSpace",
    "TaskSpaceError",
    "cvar",
    "evaluate",
    "load_task_space",
    "pearson",
]
