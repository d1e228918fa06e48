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

from edgeloop.runtime.errors import MissingDependencyError
from edgeloop.sims.risk import pearson
from edgeloop.sims.task_space import TaskSpace


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "train", "the MPTS risk learner") from None
    return torch


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
        params = [
            *self.encoder.parameters(),
            *self.to_mu.parameters(),
            *self.to_sigma.parameters(),
            *self.decoder.parameters(),
        ]
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
        self.evaluation_steps = 0  # MPTS never evaluates candidates
        self.correlations: list[float] = []
        """Pearson correlation of predicted and realised risk, per observed batch."""

    def propose(self, n: int) -> np.ndarray:
        if self.iteration < self.warmup_iterations:
            return self.space.sample(n, self.rng)
        torch = self.learner.torch
        units = self.rng.random((self.config.multiplier * n, self.space.dim))
        mean, std = self.learner.predict(
            torch.as_tensor(units, dtype=torch.float32), self.config.z_samples
        )
        score = self.config.gamma0 * mean + self.config.gamma1 * std
        order = np.argsort(-score, kind="stable")
        top = order[: n // 2]
        rest = self.rng.choice(order[n // 2 :], size=n - len(top), replace=False)
        chosen = np.concatenate([top, rest])
        self.rng.shuffle(chosen)
        return self.space.denormalise(units[chosen])

    def observe(self, tasks: np.ndarray, risks: np.ndarray) -> None:
        torch = self.learner.torch
        risks = np.asarray(risks, dtype=np.float64)
        scaled = (risks - risks.mean()) / (risks.std() + 1e-8)  # z-scored within the batch
        x = torch.as_tensor(self.space.normalise(tasks), dtype=torch.float32)
        y = torch.as_tensor(scaled, dtype=torch.float32)
        if self.iteration > 0:
            predicted, _ = self.learner.predict(x, self.config.z_samples)
            self.correlations.append(pearson(predicted, scaled))
        self.learner.update(x, y)
        self.iteration += 1
