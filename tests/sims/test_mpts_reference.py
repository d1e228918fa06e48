"""MPTS in reference mode, and PDTS, against their reference code's arithmetic.

The reference is thu-rllab/MPTS at commit 21612fc16d01f4757fa39d1fbe3c16d769925e54,
``DR/``: the risk learner of ``mpmodel/risklearner.py`` and
``mpmodel/backbone_risklearner.py`` (RiskLearner(nparams, 1, 10, 10, 10), a
deterministic decoder), its training step and acquisition in
``mpmodel/new_trainer_risklearner.py`` (``train``: one Adam step, then the prior
becomes that step's posterior; ``acquisition_function``: z drawn from the
posterior on the last batch), the batch in ``common/sampler/sampler.py``
(``sample_tasks``: top half by score, then the first unselected candidates) and
the learner's data in ``common/agents/svpg_simulator_agent.py`` (100 tasks, risk
= -return z-scored with torch's unbiased std, ``sampler_train_times`` = 10 steps,
``sampler_lr`` 0.005, ``kl_weight`` 1.0, ``sampler_multiplier`` 2.5, gammas 1 and 5).
Rewritten here from that code (not copied), then run side by side with edgeloop's
sampler on the same data, weights and random draws.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_runner import edgeloop_cli

torch = pytest.importorskip("torch")

from task_spaces import SQUARE  # noqa: E402

from edgeloop.runtime.errors import TrainingError  # noqa: E402
from edgeloop.sims.mpts import (  # noqa: E402
    MptsSampler,
    PdtsSampler,
    max_sum_diverse,
    mpts_config,
    pdts_config,
)
from edgeloop.sims.ppo import TrainConfig, _mpts_config, check_config, typed_settings  # noqa: E402

SPACE = SQUARE


class ReferenceLearner(torch.nn.Module):
    """The reference's RiskLearner(x_dim, 1, r_dim=10, z_dim=10, h_dim=10)."""

    def __init__(self, x_dim: int) -> None:
        super().__init__()
        nn = torch.nn
        self.xy_to_r = nn.Sequential(
            nn.Linear(x_dim + 1, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 10)
        )
        self.r_to_hidden = nn.Linear(10, 10)
        self.hidden_to_mu = nn.Linear(10, 10)
        self.hidden_to_sigma = nn.Linear(10, 10)
        self.xz_to_hidden = nn.Sequential(
            nn.Linear(x_dim + 10, 10),
            nn.ReLU(),
            nn.Linear(10, 10),
            nn.ReLU(),
            nn.Linear(10, 10),
            nn.ReLU(),
        )
        self.y_mu = nn.Linear(10, 1)

    def posterior(self, x, y):  # xy_to_mu_sigma: encode each pair, mean, then MuSigmaEncoder
        r = self.xy_to_r(torch.cat([x, y], dim=1)).mean(dim=0, keepdim=True)
        hidden = torch.relu(self.r_to_hidden(r))
        sigma = 0.1 + 0.9 * torch.sigmoid(self.hidden_to_sigma(hidden))
        return torch.distributions.Normal(self.hidden_to_mu(hidden), sigma)

    def xz_to_y(self, x, z):  # x (n, d), z (s, 1, z_dim) -> (s, n, 1)
        s, n = z.shape[0], x.shape[0]
        pairs = torch.cat([x.repeat(s, 1, 1), z.repeat(1, n, 1)], dim=2)
        return self.y_mu(self.xz_to_hidden(pairs.view(s * n, -1))).view(s, n, 1)


def copy_weights(ours, reference: ReferenceLearner) -> None:
    """Our learner's initial weights into the reference's layers."""
    pairs = [
        (ours.encoder[0], reference.xy_to_r[0]),
        (ours.encoder[2], reference.xy_to_r[2]),
        (ours.encoder[4], reference.xy_to_r[4]),
        (ours.aggregated, reference.r_to_hidden),
        (ours.to_mu, reference.hidden_to_mu),
        (ours.to_sigma, reference.hidden_to_sigma),
        (ours.decoder[0], reference.xz_to_hidden[0]),
        (ours.decoder[2], reference.xz_to_hidden[2]),
        (ours.decoder[4], reference.xz_to_hidden[4]),
        (ours.decoder[6], reference.y_mu),
    ]
    with torch.no_grad():
        for mine, theirs in pairs:
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return pairs


def reference_train(reference: ReferenceLearner, x, returns: np.ndarray) -> None:
    """svpg_simulator_agent: y = z-scored -return; 10 calls of RiskLearnerTrainer.train."""
    risk = -torch.as_tensor(returns, dtype=torch.float32)
    y = ((risk - risk.mean()) / (risk.std() + 1e-8))[:, None]  # torch's std: unbiased
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.005)
    prior = torch.distributions.Normal(torch.zeros(1, 10), torch.ones(1, 10))
    for _ in range(10):
        optimizer.zero_grad()
        posterior = reference.posterior(x, y)
        prediction = reference.xz_to_y(x, posterior.rsample([1]))
        kl = torch.distributions.kl_divergence(posterior, prior).mean(dim=0).sum()
        loss = torch.nn.functional.mse_loss(prediction, y[None]) + 1.0 * kl
        loss.backward()
        optimizer.step()
        prior = torch.distributions.Normal(posterior.loc.detach(), posterior.scale.detach())
    return y


def test_one_update_and_one_acquisition_match_the_reference_code():
    rng = np.random.default_rng(5)
    sampler = MptsSampler(SPACE, rng, config=mpts_config({"reference": True}), seed=3)
    assert (sampler.config.multiplier, sampler.config.learner_batch) == (2.5, 100)
    reference = ReferenceLearner(SPACE.dim)
    pairs = copy_weights(sampler.learner, reference)

    # One update: 100 tasks, observed in two parts (the learner waits for 100).
    tasks = SPACE.sample(100, np.random.default_rng(8))
    units = SPACE.normalise(tasks)
    returns = -(3 * units[:, 0] * units[:, 1] + np.sin(3 * units[:, 0]))
    torch.manual_seed(11)
    sampler.observe(tasks[:60], -returns[:60])
    assert sampler.iteration == 0  # 60 of 100: nothing learned yet
    sampler.observe(tasks[60:], -returns[60:])
    assert sampler.iteration == 1
    torch.manual_seed(11)  # the same z draws in the reference's steps
    x = torch.as_tensor(units, dtype=torch.float32)
    y = reference_train(reference, x, returns)
    for mine, theirs in pairs:
        assert torch.allclose(mine.weight, theirs.weight, atol=1e-6)
        assert torch.allclose(mine.bias, theirs.bias, atol=1e-6)

    # One acquisition of 100 tasks among 250 candidates, with the same z draws.
    twin = np.random.default_rng()
    twin.bit_generator.state = sampler.rng.bit_generator.state
    units = twin.random((250, SPACE.dim))  # the candidates the sampler will draw
    eps = torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    sampler.learner.generator.manual_seed(1)
    chosen = SPACE.normalise(sampler.propose(100))
    with torch.no_grad():  # acquisition_function: z from the posterior on the last batch
        posterior = reference.posterior(x, y)
        z = (posterior.loc + posterior.scale * eps)[:, None, :]  # Normal.rsample
        predicted = reference.xz_to_y(torch.as_tensor(units, dtype=torch.float32), z)
        score = (1.0 * predicted.mean(dim=0) + 5.0 * predicted.std(dim=0)).squeeze(1)
    selected = torch.topk(score, k=50).indices.numpy()
    unselected = np.arange(250)[~np.isin(np.arange(250), selected)]
    expected = np.concatenate([selected, unselected])[:100]  # sample_tasks, before its shuffle
    assert len(chosen) == 100
    assert sorted(map(tuple, chosen.round(12))) == sorted(map(tuple, units[expected].round(12)))


def test_reference_settings_come_from_the_sampler_name_or_set_and_can_be_overridden():
    named = _mpts_config(TrainConfig(sampler="mpts+ref"))
    assert (named.reference, named.multiplier, named.prior, named.learner_batch) == (
        True,
        2.5,
        "step",
        100,
    )
    settings = typed_settings({"mpts.reference": True, "mpts.multiplier": 5})
    pusher = _mpts_config(TrainConfig(sampler="mpts", **settings))
    assert (pusher.reference, pusher.multiplier, pusher.learner_batch) == (True, 5.0, 100)
    ours = _mpts_config(TrainConfig(sampler="mpts"))
    assert (ours.reference, ours.multiplier, ours.prior, ours.learner_batch) == (
        False,
        8.0,
        "batch",
        0,
    )
    with pytest.raises(TrainingError, match=r"unknown MPTS setting mpts\.multiplyer"):
        typed_settings({"mpts.multiplyer": 2})
    with pytest.raises(TrainingError, match=r"mpts\.\* settings given for the erm sampler"):
        check_config(TrainConfig(sampler="erm", mpts={"reference": True}))


def test_the_step_prior_follows_every_inner_step_and_the_batch_prior_does_not():
    """With prior "step" the KL term's prior after a batch is the posterior of its
    last inner step (before that step's update); with "batch", the posterior after
    all of them, which acquisition draws from in both modes."""
    units = np.random.default_rng(2).random((16, 2))
    risks = units.sum(axis=1)
    learned = {}
    for prior in ("batch", "step"):
        sampler = MptsSampler(
            SPACE, np.random.default_rng(0), config=mpts_config({"prior": prior}), seed=1
        )
        sampler.observe(SPACE.denormalise(units), risks)
        learner = sampler.learner
        learned[prior] = learner
        same = torch.equal(learner.prior_mu, learner.latent_mu)
        assert same == (prior == "batch")
    assert not torch.equal(learned["batch"].latent_mu, learned["step"].latent_mu)


def test_the_cli_takes_mpts_settings_and_refuses_unknown_ones(tmp_path):
    done = edgeloop_cli(tmp_path, "train", "--set", "mpts.multiplyer=2", "--out", "run")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "unknown MPTS setting mpts.multiplyer" in done.stderr
    done = edgeloop_cli(
        tmp_path, "train", "--sampler", "mpts+ref", "--set", "mpts.multiplier=5",
        "--steps", "3200", "--out", "run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = TrainConfig(**json.loads((tmp_path / "run" / "config.json").read_text()))
    assert saved.sampler == "mpts+ref" and saved.mpts == {"multiplier": 5.0}


def reference_msd(x, score, k: int, gamma2: float) -> list[int]:
    """PDTS's ``msd_diversified_score`` (thu-rllab/PDTS at 8c7d0bb,
    ``RL/DR/mpmodel/new_trainer_risklearner.py``), rewritten: picks in order."""
    chosen: list[int] = []
    while len(chosen) < k:
        gain = score / 2
        if chosen:
            gain = gain + torch.norm(x[:, None, :] - x[chosen], dim=-1).min(dim=1)[0] * gamma2
        gain = gain.clone()
        gain[chosen] = -float("inf")
        chosen.append(int(torch.argmax(gain)))
    return chosen


@pytest.mark.parametrize("gamma2", [0.05, 1.0, 8.0])
def test_pdts_picks_the_batch_as_its_reference_does(gamma2):
    rng = np.random.default_rng(int(gamma2 * 100))
    units, score = rng.random((640, 3)), rng.normal(size=640)
    expected = reference_msd(torch.as_tensor(units), torch.as_tensor(score), 10, gamma2)
    assert max_sum_diverse(units, score, 10, gamma2).tolist() == expected


def test_a_pdts_acquisition_is_one_posterior_draw_then_the_greedy_batch():
    rng = np.random.default_rng(5)
    sampler = PdtsSampler(SPACE, rng, config=pdts_config({"gamma2": 8.0}), seed=3)
    assert (sampler.config.multiplier, sampler.config.learner_batch) == (64.0, 100)
    reference = ReferenceLearner(SPACE.dim)
    copy_weights(sampler.learner, reference)
    tasks = SPACE.sample(100, np.random.default_rng(8))
    units = SPACE.normalise(tasks)
    returns = -(3 * units[:, 0] * units[:, 1] + np.sin(3 * units[:, 0]))
    torch.manual_seed(11)
    sampler.observe(tasks, -returns)
    torch.manual_seed(11)
    x = torch.as_tensor(units, dtype=torch.float32)
    y = reference_train(reference, x, returns)

    twin = np.random.default_rng()
    twin.bit_generator.state = sampler.rng.bit_generator.state
    candidates = twin.random((6400, SPACE.dim))
    sampler.learner.generator.manual_seed(1)
    eps = torch.randn(1, 10, generator=torch.Generator().manual_seed(1))
    chosen = SPACE.normalise(sampler.propose(100))
    with torch.no_grad():  # posterior_sampling: one z, the score is its prediction
        posterior = reference.posterior(x, y)
        z = (posterior.loc + posterior.scale * eps)[:, None, :]
        score = reference.xz_to_y(torch.as_tensor(candidates, dtype=torch.float32), z)[0, :, 0]
    expected = reference_msd(torch.as_tensor(candidates), score.double(), 100, 8.0)
    assert np.allclose(chosen, candidates[expected])
