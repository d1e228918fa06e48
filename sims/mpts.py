"""Model Predictive Task Sampling (Wang et al., arXiv 2501.11039), as in its reference code.

A neural-process-style risk learner encodes (task, risk) pairs into a latent
posterior q(z | H_t), decodes a task and a z sample into a predicted risk,
and is trained once per iteration on the batch just observed, with the
previous posterior (detached) as the prior. Acquisition scores candidates by
the mean and spread of predicted risk over z samples and keeps the top half of
the batch, filling the rest with random unselected candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.sims.risk import pearson
from edgeloop.sims.task_space import TaskSpace
from edgeloop.sims.torch_support import import_torch


def _torch() -> Any:
    return import_torch("the MPTS risk learner")


@dataclass(frozen=True)
class MptsConfig:
    """MPTS settings; defaults are the paper's."""

    z_dim: int = 10
    """Latent size."""
    hidden: int = 10
    """Width of the encoder and decoder layers."""
    lr: float = 5e-3
    """Adam learning rate of the risk learner."""
    inner_steps: int = 10
    """Adam steps per observed batch."""
    beta: float = 1.0
    """Weight of KL(q(z|H_t) || q(z|H_{t-1}))."""
    multiplier: int = 8
    """Candidates drawn per task in the batch."""
    z_samples: int = 50
    """z samples per candidate (S)."""
    gamma0: float = 1.0
    """Weight of the mean predicted risk."""
    gamma1: float = 5.0
    """Weight of the spread of predicted risk (exploration)."""
    warmup_fraction: float = 0.1
    """Share of the budget spent sampling uniformly before predictions are used."""
    diversity: float = 0.0
    """Not in the paper (0 = off). Weight of spread in the selected half: tasks are
    picked greedily by z-scored acquisition score plus ``diversity`` times the
    distance to the nearest task already picked (in units of the typical spacing
    of the batch), so the batch cannot pile onto one region, as PDTS
    (arXiv 2504.19139) does."""
    risk: str = "return"
    """Not in the paper when "regret": the risk learned and acquired is the gap
    between the best return seen near a task (within ``regret_radius``) and the
    return got on it, so tasks that are hard by nature but already learned stop
    attracting samples. "return" (the paper): risk is the negative return."""
    regret_radius: float = 0.1
    """Neighbourhood (normalised units, max-norm) for the best return seen near a task."""
    regret_memory: int = 4096
    """Past (task, return) pairs kept for the regret signal."""


class RiskLearner:
    """The encoder/decoder pair and the streaming posterior."""

    def __init__(self, dim: int, config: MptsConfig, seed: int) -> None:
        torch = _torch()
        self.torch = torch
        nn = torch.nn
        torch.manual_seed(seed)
        h, z = config.hidden, config.z_dim
        self.encoder = nn.Sequential(
            nn.Linear(dim + 1, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)
        )
        self.to_mu = nn.Linear(h, z)
        self.to_sigma = nn.Linear(h, z)
        self.decoder = nn.Sequential(
            nn.Linear(dim + z, h),
            nn.ReLU(),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Linear(h, 1),
        )
        params = [p for m in self._modules() for p in m.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.config = config
        self.prior_mu = torch.zeros(z)
        self.prior_sigma = torch.ones(z)
        self.generator = torch.Generator().manual_seed(seed)

    def posterior(self, x: Any, y: Any) -> tuple[Any, Any]:
        r = self.encoder(self.torch.cat([x, y[:, None]], dim=1)).mean(dim=0)
        return self.to_mu(r), 0.1 + 0.9 * self.torch.sigmoid(self.to_sigma(r))

    def decode(self, x: Any, z: Any) -> Any:
        """Predicted risk of tasks x (n, d) under latents z (s, z_dim): shape (s, n)."""
        s, n = z.shape[0], x.shape[0]
        pairs = self.torch.cat([x[None].expand(s, n, -1), z[:, None].expand(s, n, -1)], dim=2)
        return self.decoder(pairs).squeeze(-1)

    def update(self, x: Any, y: Any) -> None:
        """Streaming variational step on one batch; its posterior becomes the next prior."""
        torch = self.torch
        prior = torch.distributions.Normal(self.prior_mu, self.prior_sigma)
        for _ in range(self.config.inner_steps):
            mu, sigma = self.posterior(x, y)
            q = torch.distributions.Normal(mu, sigma)
            z = q.rsample((1,))
            loss = torch.nn.functional.mse_loss(self.decode(x, z)[0], y)
            loss = loss + self.config.beta * torch.distributions.kl_divergence(q, prior).sum()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            self.prior_mu, self.prior_sigma = (t.detach() for t in self.posterior(x, y))

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": [m.state_dict() for m in self._modules()],
            "optimizer": self.optimizer.state_dict(),
            "prior": [self.prior_mu, self.prior_sigma],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for module, saved in zip(self._modules(), state["modules"], strict=True):
            module.load_state_dict(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.prior_mu, self.prior_sigma = state["prior"]
        self.generator.set_state(state["generator"])

    def _modules(self) -> list[Any]:
        return [self.encoder, self.to_mu, self.to_sigma, self.decoder]

    def predict(self, x: Any, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of predicted risk over ``samples`` draws of z from the posterior."""
        torch = self.torch
        with torch.no_grad():
            z = self.prior_mu + self.prior_sigma * torch.randn(
                samples, self.prior_mu.shape[0], generator=self.generator
            )
            predictions = self.decode(x, z)
        return predictions.mean(dim=0).numpy(), predictions.std(dim=0).numpy()


class MptsSampler:
    """MPTS: pick tasks by predicted risk; warm up uniformly on the first share of the budget.

    Args:
        space: The task space.
        rng: Draws candidates and the random half of each batch.
        warmup_iterations: Iterations of uniform sampling before predictions are used
            (the trainer sets it from ``warmup_fraction`` of its budget).
        config: MPTS settings.
        seed: Seeds the risk learner.
    """

    name = "mpts"

    def __init__(
        self,
        space: TaskSpace,
        rng: np.random.Generator,
        *,
        warmup_iterations: int = 0,
        config: MptsConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.space = space
        self.rng = rng
        self.config = config or MptsConfig()
        self.learner = RiskLearner(space.dim, self.config, seed)
        self.warmup_iterations = warmup_iterations
        self.iteration = 0
        self.warming_up: bool | None = None
        """Set by a trainer that counts the warm-up in steps; None: count iterations."""
        self.evaluation_steps = 0  # MPTS never evaluates candidates
        self.correlations: list[float] = []
        """Pearson correlation of predicted and realised risk, per observed batch."""
        if self.config.risk not in ("return", "regret"):
            raise ValueError(f"MPTS risk must be 'return' or 'regret', got {self.config.risk!r}")
        self.seen_units = np.empty((0, space.dim))
        self.seen_returns = np.empty(0)

    def propose(self, n: int) -> np.ndarray:
        warming_up = self.warming_up
        if warming_up is None:
            warming_up = self.iteration < self.warmup_iterations
        if warming_up:
            return self.space.sample(n, self.rng)
        torch = self.learner.torch
        units = self.rng.random((self.config.multiplier * n, self.space.dim))
        mean, std = self.learner.predict(
            torch.as_tensor(units, dtype=torch.float32), self.config.z_samples
        )
        score = self.config.gamma0 * mean + self.config.gamma1 * std
        if self.config.diversity > 0:
            top = _diverse_top(units, score, n // 2, self.config.diversity)
            unselected = np.setdiff1d(np.arange(len(units)), top)
        else:
            order = np.argsort(-score, kind="stable")
            top, unselected = order[: n // 2], order[n // 2 :]
        rest = self.rng.choice(unselected, size=n - len(top), replace=False)
        chosen = np.concatenate([top, rest])
        self.rng.shuffle(chosen)
        return self.space.denormalise(units[chosen])

    def observe(self, tasks: np.ndarray, risks: np.ndarray) -> None:
        torch = self.learner.torch
        risks = np.asarray(risks, dtype=np.float64)
        units = self.space.normalise(tasks)
        if self.config.risk == "regret":
            risks = self._regret(units, -risks)
        scaled = (risks - risks.mean()) / (risks.std() + 1e-8)  # z-scored within the batch
        x = torch.as_tensor(units, dtype=torch.float32)
        y = torch.as_tensor(scaled, dtype=torch.float32)
        if self.iteration > 0:
            predicted, _ = self.learner.predict(x, self.config.z_samples)
            self.correlations.append(pearson(predicted, scaled))
        self.learner.update(x, y)
        self.iteration += 1

    def _regret(self, units: np.ndarray, returns: np.ndarray) -> np.ndarray:
        """Best return seen within ``regret_radius`` of each task (this batch included)
        minus the return got on it: >= 0, and 0 where the task is as good as it gets."""
        memory = self.config.regret_memory
        self.seen_units = np.concatenate([self.seen_units, units])[-memory:]
        self.seen_returns = np.concatenate([self.seen_returns, returns])[-memory:]
        near = (
            np.abs(units[:, None, :] - self.seen_units[None]).max(axis=2)
            <= self.config.regret_radius
        )
        best = np.where(near, self.seen_returns[None], -np.inf).max(axis=1)
        return best - returns

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "correlations": list(self.correlations),
            "learner": self.learner.state_dict(),
            "seen_units": self.seen_units.tolist(),
            "seen_returns": self.seen_returns.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.correlations = [float(c) for c in state["correlations"]]
        self.learner.load_state_dict(state["learner"])
        self.seen_units = np.asarray(state["seen_units"], dtype=np.float64).reshape(
            -1, self.space.dim
        )
        self.seen_returns = np.asarray(state["seen_returns"], dtype=np.float64)


def _diverse_top(units: np.ndarray, score: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Greedy pick of ``k`` candidates by z-scored score plus ``weight`` times the
    distance to the nearest one already picked (relative to the typical spacing of
    ``k`` points in the unit cube)."""
    z = (score - score.mean()) / (score.std() + 1e-8)
    spacing = k ** (-1.0 / units.shape[1])
    chosen = [int(np.argmax(z))]
    nearest = np.linalg.norm(units - units[chosen[0]], axis=1)
    for _ in range(k - 1):
        gain = z + weight * np.minimum(nearest / spacing, 1.0)
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(units - units[pick], axis=1))
    return np.asarray(chosen)
