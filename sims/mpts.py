"""Model Predictive Task Sampling (Wang et al., arXiv 2501.11039).

A neural-process-style risk learner encodes (task, risk) pairs into a latent
posterior q(z | H_t), decodes a task and a z sample into a predicted risk, and
is trained on each batch of observed tasks with a KL term to a prior. Acquisition
scores candidates by the mean and spread of predicted risk over z samples and
keeps the top half of the batch, filling the rest with unselected candidates.

Two modes. ``reference=True`` does what the reference code does (thu-rllab/MPTS,
``DR/``, commit 21612fc: ``mpmodel/new_trainer_risklearner.py``,
``mpmodel/risklearner.py``, ``common/sampler/sampler.py``,
``common/agents/svpg_simulator_agent.py``): the prior becomes the current
posterior after every one of the 10 inner steps, 2.5 candidates per task, the
learner trained on 100 tasks at a time, its encoder's extra layer after the
aggregation, risks z-scored with the unbiased spread, the batch filled with the
first unselected candidates. The default is edgeloop's own variant, whose choices
differ where :class:`MptsConfig` says so (each can be set on its own).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from edgeloop.sims.risk import pearson
from edgeloop.sims.task_space import TaskSpace
from edgeloop.sims.torch_support import import_torch


def _torch() -> Any:
    return import_torch("the MPTS risk learner")


@dataclass(frozen=True)
class MptsConfig:
    """MPTS settings. Where edgeloop's default differs from the reference code's,
    the field says so; ``reference=True`` takes the reference's value for each
    such field not set explicitly (see :func:`mpts_config`)."""

    reference: bool = False
    """Do exactly what the reference code (``DR/``) does: its prior updates, its
    multiplier and learner batch unless set, its encoder, z-scoring and batch fill."""

    z_dim: int = 10
    """Latent size."""
    hidden: int = 10
    """Width of the encoder and decoder layers."""
    lr: float = 5e-3
    """Adam learning rate of the risk learner."""
    inner_steps: int = 10
    """Adam steps per observed batch."""
    beta: float = 1.0
    """Weight of KL(q(z|H_t) || prior) (the reference's ``kl_weight``, 1.0 in ``DR/``)."""
    multiplier: float = 8.0
    """Candidates drawn per task in the batch. Ours: 8 (the top half of the batch is
    then the top 6% of candidates). The reference: 2.5 by default (5, 2.5 and 25 in
    its pusher, lunar and ergo commands; 1.5 in ``MetaRL/``)."""
    prior: str = "batch"
    """The KL term's prior. Ours, "batch": the posterior after the previous batch,
    fixed during a batch's inner steps. The reference, "step": the posterior of
    the step before, updated after every inner step."""
    learner_batch: int = 0
    """Tasks per risk-learner update and per acquisition. Ours, 0: each training
    iteration's tasks (16 by default). The reference: 100 (10 agents x 10 rollout
    steps); tasks are then proposed 100 at a time and handed out as asked."""
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
    of the batch), so the batch cannot pile onto one region. Only the idea is
    PDTS's (arXiv 2504.19139): PDTS uses one posterior draw, diversity over the
    whole batch with a tuned weight, 64x candidates and no random half."""
    gamma2: float = 1.0
    """PDTS only: weight of a candidate's distance to the tasks already picked
    (its ``sampling_gamma_2``: 0.05, 8 and 1 in its pusher, lunar and ergo commands)."""
    risk: str = "return"
    """Not in the paper when "regret": the risk learned and acquired is the gap
    between the best return seen near a task (within ``regret_radius``) and the
    return got on it, so tasks that are hard by nature but already learned stop
    attracting samples. "return" (the paper): risk is the negative return."""
    regret_radius: float = 0.1
    """Neighbourhood (normalised units, max-norm) for the best return seen near a task."""
    regret_memory: int = 4096
    """Past (task, return) pairs kept for the regret signal."""

    def __post_init__(self) -> None:
        if self.prior not in ("batch", "step"):
            raise ValueError(f"MPTS prior must be 'batch' or 'step', got {self.prior!r}")
        if self.risk not in ("return", "regret"):
            raise ValueError(f"MPTS risk must be 'return' or 'regret', got {self.risk!r}")
        if self.multiplier < 1 or self.learner_batch < 0:
            raise ValueError("MPTS multiplier must be at least 1 and learner_batch at least 0")


REFERENCE = {"multiplier": 2.5, "prior": "step", "learner_batch": 100}
"""The reference code's values of the fields where edgeloop's default differs."""


def mpts_config(settings: dict[str, Any]) -> MptsConfig:
    """An MptsConfig from settings (``--set mpts.KEY=VALUE``): with ``reference``,
    the reference's value for each field in :data:`REFERENCE` not set explicitly.

    Raises:
        ValueError: a setting MptsConfig does not have, or a value it refuses.
    """
    unknown = set(settings) - {f.name for f in fields(MptsConfig)}
    if unknown:
        raise ValueError(f"MPTS has no setting {', '.join(sorted(unknown))}")
    preset = REFERENCE if settings.get("reference") else {}
    return MptsConfig(**{**preset, **settings})


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
        # The reference's MuSigmaEncoder: a layer and a ReLU after the aggregation.
        self.aggregated = nn.Linear(h, h) if config.reference else None
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
        self.latent_mu, self.latent_sigma = self.prior_mu, self.prior_sigma
        """The posterior on the last batch as the learner is now: acquisition draws z here."""
        self.generator = torch.Generator().manual_seed(seed)

    def posterior(self, x: Any, y: Any) -> tuple[Any, Any]:
        r = self.encoder(self.torch.cat([x, y[:, None]], dim=1)).mean(dim=0)
        if self.aggregated is not None:
            r = self.torch.relu(self.aggregated(r))
        return self.to_mu(r), 0.1 + 0.9 * self.torch.sigmoid(self.to_sigma(r))

    def decode(self, x: Any, z: Any) -> Any:
        """Predicted risk of tasks x (n, d) under latents z (s, z_dim): shape (s, n)."""
        s, n = z.shape[0], x.shape[0]
        pairs = self.torch.cat([x[None].expand(s, n, -1), z[:, None].expand(s, n, -1)], dim=2)
        return self.decoder(pairs).squeeze(-1)

    def update(self, x: Any, y: Any) -> None:
        """Streaming variational steps on one batch. The KL term's prior is the
        posterior after the previous batch ("batch"), or that of the step before,
        updated after every step as the reference does ("step")."""
        torch = self.torch
        for _ in range(self.config.inner_steps):
            prior = torch.distributions.Normal(self.prior_mu, self.prior_sigma)
            mu, sigma = self.posterior(x, y)
            q = torch.distributions.Normal(mu, sigma)
            z = q.rsample((1,))
            loss = torch.nn.functional.mse_loss(self.decode(x, z)[0], y)
            loss = loss + self.config.beta * torch.distributions.kl_divergence(q, prior).sum()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if self.config.prior == "step":
                self.prior_mu, self.prior_sigma = mu.detach(), sigma.detach()
        with torch.no_grad():
            self.latent_mu, self.latent_sigma = (t.detach() for t in self.posterior(x, y))
        if self.config.prior == "batch":
            self.prior_mu, self.prior_sigma = self.latent_mu, self.latent_sigma

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": [m.state_dict() for m in self._modules()],
            "optimizer": self.optimizer.state_dict(),
            "prior": [self.prior_mu, self.prior_sigma],
            "latent": [self.latent_mu, self.latent_sigma],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for module, saved in zip(self._modules(), state["modules"], strict=True):
            module.load_state_dict(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.prior_mu, self.prior_sigma = state["prior"]
        self.latent_mu, self.latent_sigma = state.get("latent", state["prior"])
        self.generator.set_state(state["generator"])

    def _modules(self) -> list[Any]:
        extra = [self.aggregated] if self.aggregated is not None else []
        return [self.encoder, *extra, self.to_mu, self.to_sigma, self.decoder]

    def draw(self, x: Any) -> np.ndarray:
        """Predicted risk of tasks x (n, d) under one z drawn from the posterior on
        the last batch (posterior sampling: PDTS's acquisition)."""
        torch = self.torch
        with torch.no_grad():
            z = self.latent_mu + self.latent_sigma * torch.randn(
                1, self.latent_mu.shape[0], generator=self.generator
            )
            return self.decode(x, z)[0].numpy()

    def predict(self, x: Any, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of predicted risk over ``samples`` draws of z from the
        posterior on the last batch (the prior N(0, 1) before any)."""
        torch = self.torch
        with torch.no_grad():
            z = self.latent_mu + self.latent_sigma * torch.randn(
                samples, self.latent_mu.shape[0], generator=self.generator
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
        """Pearson correlation of predicted and realised risk, per learner update."""
        self.seen_units = np.empty((0, space.dim))
        self.seen_returns = np.empty(0)
        # With a learner batch: proposed tasks not handed out yet, observed not learned.
        self.queued = np.empty((0, space.dim))
        self.pending_units = np.empty((0, space.dim))
        self.pending_risks = np.empty(0)

    def propose(self, n: int) -> np.ndarray:
        warming_up = self.warming_up
        if warming_up is None:
            warming_up = self.iteration < self.warmup_iterations
        if warming_up:
            return self.space.sample(n, self.rng)
        if not self.config.learner_batch:
            return self.space.denormalise(self.acquire(n))
        while len(self.queued) < n:
            self.queued = np.concatenate([self.queued, self.acquire(self.config.learner_batch)])
        chosen, self.queued = self.queued[:n], self.queued[n:]
        return self.space.denormalise(chosen)

    def acquire(self, n: int) -> np.ndarray:
        """``n`` tasks (normalised units) by predicted risk among ``multiplier * n``
        uniform candidates: the top half, the rest unselected ones, shuffled."""
        torch = self.learner.torch
        count = int(self.config.multiplier * n)
        units = self.rng.random((count, self.space.dim))
        mean, std = self.learner.predict(
            torch.as_tensor(units, dtype=torch.float32), self.config.z_samples
        )
        score = self.config.gamma0 * mean + self.config.gamma1 * std
        if self.config.diversity > 0:
            top = _diverse_top(units, score, n // 2, self.config.diversity)
            unselected = np.setdiff1d(np.arange(count), top)
        else:
            order = np.argsort(-score, kind="stable")
            top, unselected = order[: n // 2], order[n // 2 :]
        if self.config.reference:  # the first unselected candidates, as the reference takes
            rest = np.setdiff1d(np.arange(count), top)[: n - len(top)]
        else:
            rest = self.rng.choice(unselected, size=n - len(top), replace=False)
        chosen = np.concatenate([top, rest])
        self.rng.shuffle(chosen)
        return units[chosen]

    def observe(self, tasks: np.ndarray, risks: np.ndarray) -> None:
        units = self.space.normalise(tasks)
        risks = np.asarray(risks, dtype=np.float64)
        if not self.config.learner_batch:
            self._learn(units, risks)
            return
        self.pending_units = np.concatenate([self.pending_units, units])
        self.pending_risks = np.concatenate([self.pending_risks, risks])
        batch = self.config.learner_batch
        while len(self.pending_risks) >= batch:
            self._learn(self.pending_units[:batch], self.pending_risks[:batch])
            self.pending_units = self.pending_units[batch:]
            self.pending_risks = self.pending_risks[batch:]

    def _learn(self, units: np.ndarray, risks: np.ndarray) -> None:
        torch = self.learner.torch
        if self.config.risk == "regret":
            risks = self._regret(units, -risks)
        spread = risks.std(ddof=1 if self.config.reference else 0)  # torch's std is unbiased
        scaled = (risks - risks.mean()) / (spread + 1e-8)  # z-scored within the batch
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
            "queued": self.queued.tolist(),
            "pending_units": self.pending_units.tolist(),
            "pending_risks": self.pending_risks.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dim = self.space.dim
        self.iteration = int(state["iteration"])
        self.correlations = [float(c) for c in state["correlations"]]
        self.learner.load_state_dict(state["learner"])
        self.seen_units = np.asarray(state["seen_units"], dtype=np.float64).reshape(-1, dim)
        self.seen_returns = np.asarray(state["seen_returns"], dtype=np.float64)
        self.queued = np.asarray(state.get("queued", []), dtype=np.float64).reshape(-1, dim)
        self.pending_units = np.asarray(state.get("pending_units", []), np.float64).reshape(-1, dim)
        self.pending_risks = np.asarray(state.get("pending_risks", []), dtype=np.float64)


class PdtsSampler(MptsSampler):
    """PDTS, Posterior and Diversity synergized Task Sampling (arXiv 2504.19139),
    as its reference code does it (thu-rllab/PDTS, ``RL/DR/``, commit 8c7d0bb:
    ``mpmodel/new_trainer_risklearner.py``, ``common/sampler/sampler.py``): the
    MPTS reference's risk learner; candidates scored by their predicted risk under
    one posterior draw of z (no spread term); the whole batch picked greedily,
    each pick maximising half its score plus ``gamma2`` times its distance to the
    nearest task already picked; 64 candidates per task; no random fill.

    Args: as :class:`MptsSampler`; ``config`` comes from :func:`pdts_config`.
    """

    name = "pdts"

    def acquire(self, n: int) -> np.ndarray:
        torch = self.learner.torch
        units = self.rng.random((int(self.config.multiplier * n), self.space.dim))
        score = self.learner.draw(torch.as_tensor(units, dtype=torch.float32))
        return units[max_sum_diverse(units, score, n, self.config.gamma2)]


def pdts_config(settings: dict[str, Any]) -> MptsConfig:
    """PDTS's settings: the MPTS reference's, 64 candidates per task, then ``settings``."""
    return mpts_config({"reference": True, "multiplier": 64.0, **settings})


def max_sum_diverse(units: np.ndarray, score: np.ndarray, k: int, weight: float) -> np.ndarray:
    """PDTS's greedy batch: ``k`` candidates, each maximising ``score / 2`` plus
    ``weight`` times its distance to the nearest one already picked (the first by
    score alone); indices in the order picked."""
    half = np.asarray(score, dtype=np.float64) / 2
    nearest = np.zeros(len(units))
    chosen: list[int] = []
    for _ in range(k):
        gain = half + weight * nearest
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        distance = np.linalg.norm(units - units[pick], axis=1)
        nearest = distance if len(chosen) == 1 else np.minimum(nearest, distance)
    return np.asarray(chosen)


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
