"""Task samplers, one interface: ``propose(n)`` tasks, then ``observe(tasks, risks)``.

- ERM: uniform over the task space.
- DRM: evaluate 2B uniform candidates with the current policy, train on the worst B.
- GDRM: evaluate 2B candidates, draw B with softmax weights over risk / temperature.
- MPTS: a risk learner (:mod:`edgeloop.sims.mpts`) predicts risk from the task and
  picks tasks by prediction, with no extra evaluation.

Tasks are physical values (n, d); risk is the negative episode return. Samplers
that evaluate candidates are given an ``evaluate(tasks) -> (risks, env_steps)``
function and add its steps to ``evaluation_steps``, which the trainer charges to
the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from edgeloop.sims.task_space import TaskSpace

SAMPLERS = (
    "erm",
    "drm",
    "gdrm",
    "mpts",
    "mpts+ref",
    "mpts+div",
    "mpts+regret",
    "mpts+div+regret",
    "pdts",
    "drm-eval",
    "gdrm-eval",
    "fixed",
)
"""The samplers ``TrainConfig.sampler`` names: the paper's four (DRM and GDRM as
its reference code has them), MPTS exactly as that code (``mpts+ref``), MPTS with
the diversity term and/or the regret risk (see
:class:`~edgeloop.sims.mpts.MptsConfig`), PDTS, and edgeloop's earlier DRM and
GDRM, which evaluate candidates first (``drm-eval``, ``gdrm-eval``); ``fixed``
trains on ``TrainConfig.task`` alone."""

Evaluate = Callable[[np.ndarray], tuple[np.ndarray, int]]
"""Runs the current policy on tasks (n, d); returns their risks (n,) and env steps spent."""


class Sampler(Protocol):
    """What the trainer (or the gymnasium wrapper) needs from a sampler."""

    name: str
    evaluation_steps: int
    """Environment steps spent evaluating candidates, charged to the budget."""

    def propose(self, n: int) -> np.ndarray:
        """The next ``n`` training tasks, physical values (n, d)."""
        ...

    def observe(self, tasks: np.ndarray, risks: np.ndarray) -> None:
        """The risks (negative returns) the policy got on tasks it trained on."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to resume the sampler (its rng is the trainer's)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ErmSampler:
    """Empirical risk minimisation: tasks uniform over the space."""

    name = "erm"

    def __init__(self, space: TaskSpace, rng: np.random.Generator) -> None:
        self.space = space
        self.rng = rng
        self.evaluation_steps = 0

    def propose(self, n: int) -> np.ndarray:
        return self.space.sample(n, self.rng)

    def observe(self, tasks: np.ndarray, risks: np.ndarray) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"evaluation_steps": self.evaluation_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluation_steps = int(state["evaluation_steps"])


class FixedSampler(ErmSampler):
    """One task, always: a specialist's training (:mod:`edgeloop.sims.tail_check`)."""

    name = "fixed"

    def __init__(self, space: TaskSpace, rng: np.random.Generator, task: Sequence[float]) -> None:
        super().__init__(space, rng)
        self.task = np.asarray(task, dtype=np.float64).reshape(1, space.dim)

    def propose(self, n: int) -> np.ndarray:
        return np.repeat(self.task, n, axis=0)


class DrmSampler(ErmSampler):
    """DRM as the reference code does it (thu-rllab/MPTS ``DR/``, commit 21612fc,
    ``common/utils/rollout_evaluation.py``: ``cvar_evaluate_policy``): the policy
    runs 2B uniform tasks, and it trains on the worst half of those rollouts. The
    trainer runs ``rollouts_per_task`` x B tasks, charges every step of them (the
    reference charges only the half it trains on), and keeps :meth:`keep`'s."""

    name = "drm"
    rollouts_per_task = 2

    def keep(self, returns: np.ndarray, n: int) -> np.ndarray:
        """Indices of the ``n`` rollouts with the lowest returns (the worst half)."""
        return np.argsort(np.asarray(returns), kind="stable")[:n]


class GdrmSampler(ErmSampler):
    """GDRM as the reference code does it (``DR/common/agents/ddpg/ddpg.py``,
    ``train`` with ``gdroweight``): B uniform tasks, no extra evaluation; the
    policy loss weights each sample by a softmax over its minibatch of
    ``gdro_weight`` x the return of the episode it came from. The reference's
    weight is +0.01, which leans toward the better episodes; a negative weight
    leans toward the worst, as group DRO intends."""

    name = "gdrm"

    def __init__(self, space: TaskSpace, rng: np.random.Generator, gdro_weight: float) -> None:
        super().__init__(space, rng)
        self.gdro_weight = gdro_weight


class DrmEvalSampler(ErmSampler):
    """edgeloop's earlier DRM: evaluate 2B candidates (charged), then train on B
    fresh episodes of the riskiest half (3B episodes an iteration)."""

    name = "drm-eval"

    def __init__(self, space: TaskSpace, rng: np.random.Generator, evaluate: Evaluate) -> None:
        super().__init__(space, rng)
        self.evaluate = evaluate

    def propose(self, n: int) -> np.ndarray:
        candidates = self.space.sample(2 * n, self.rng)
        risks = self._evaluated(candidates)
        return candidates[np.argsort(-risks, kind="stable")[:n]]

    def _evaluated(self, candidates: np.ndarray) -> np.ndarray:
        risks, steps = self.evaluate(candidates)
        self.evaluation_steps += int(steps)
        return np.asarray(risks, dtype=np.float64)


class GdrmEvalSampler(DrmEvalSampler):
    """edgeloop's earlier GDRM: draw the batch from 2B evaluated candidates with
    softmax(risk / temperature) (not the reference's GDRM, which is :class:`GdrmSampler`)."""

    name = "gdrm-eval"

    def __init__(
        self,
        space: TaskSpace,
        rng: np.random.Generator,
        evaluate: Evaluate,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(space, rng, evaluate)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def propose(self, n: int) -> np.ndarray:
        candidates = self.space.sample(2 * n, self.rng)
        risks = self._evaluated(candidates)
        z = (risks - risks.mean()) / (risks.std() + 1e-8)  # scale-free temperature
        weights = np.exp((z - z.max()) / self.temperature)
        chosen = self.rng.choice(len(candidates), size=n, replace=False, p=weights / weights.sum())
        return candidates[chosen]
