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

from collections.abc import Callable
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
)
"""The samplers ``TrainConfig.sampler`` names: the paper's four, MPTS exactly as its
reference code (``mpts+ref``), and MPTS with the diversity term and/or the regret
risk (see :class:`~edgeloop.sims.mpts.MptsConfig`), and PDTS."""

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


class DrmSampler(ErmSampler):
    """Distributionally robust: evaluate twice the batch, keep the riskiest half."""

    name = "drm"

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


class GdrmSampler(DrmSampler):
    """Softened DRM: draw the batch from 2B candidates with softmax(risk / temperature)."""

    name = "gdrm"

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
