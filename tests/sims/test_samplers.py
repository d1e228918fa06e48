"""Samplers and tail metrics: contracts, DRM's cost, MPTS's risk learner, CVaR by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from task_spaces import SQUARE

from edgeloop.sims import (
    DrmEvalSampler,
    DrmSampler,
    ErmSampler,
    GdrmEvalSampler,
    GdrmSampler,
    cvar,
    pearson,
)

SPACE = SQUARE


def landscape(tasks: np.ndarray) -> np.ndarray:
    """A known risk over the square: high in the (high a, high b) corner."""
    u = SPACE.normalise(tasks)
    return 3 * u[:, 0] * u[:, 1] + np.sin(3 * u[:, 0])


def evaluator(steps_per_task: int = 200):
    def evaluate(tasks: np.ndarray) -> tuple[np.ndarray, int]:
        return landscape(tasks), steps_per_task * len(tasks)

    return evaluate


def test_cvar_is_the_mean_of_the_worst_fraction():
    returns = np.array([-10, -1, -5, -3, -8, -2, -7, -4, -6, -9], dtype=float)
    assert cvar(returns, 0.9) == -10
    assert cvar(returns, 0.7) == pytest.approx((-10 - 9 - 8) / 3)
    assert cvar(returns, 0.5) == pytest.approx((-10 - 9 - 8 - 7 - 6) / 5)
    assert cvar(returns, 0.0) == pytest.approx(returns.mean())
    assert cvar(np.arange(64.0), 0.9) == pytest.approx(np.arange(7.0).mean())  # 6.4 -> 7
    with pytest.raises(ValueError):
        cvar(returns, 1.0)


def test_pearson_matches_numpy_and_is_nan_for_a_constant():
    a, b = np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 5, 9])
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert math.isnan(pearson(a, np.ones(4)))


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: ErmSampler(SPACE, rng),
        lambda rng: DrmSampler(SPACE, rng),
        lambda rng: GdrmSampler(SPACE, rng, 0.01),
        lambda rng: DrmEvalSampler(SPACE, rng, evaluator()),
        lambda rng: GdrmEvalSampler(SPACE, rng, evaluator(), temperature=0.5),
    ],
)
def test_every_sampler_proposes_tasks_in_range_repeatably_for_a_seed(make):
    first = make(np.random.default_rng(5)).propose(16)
    again = make(np.random.default_rng(5)).propose(16)
    assert first.shape == (16, 2) and np.array_equal(first, again)
    SPACE.check(first.min(axis=0))
    SPACE.check(first.max(axis=0))


def test_drm_keeps_the_worst_half_of_its_rollouts():
    sampler = DrmSampler(SPACE, np.random.default_rng(0))
    assert sampler.rollouts_per_task == 2 and sampler.evaluation_steps == 0
    returns = np.array([-5.0, 3.0, -9.0, 0.0, -1.0, 7.0])
    assert sampler.keep(returns, 3).tolist() == [2, 0, 4]


def test_drm_eval_trains_on_the_riskiest_half_and_charges_its_evaluations():
    sampler = DrmEvalSampler(SPACE, np.random.default_rng(0), evaluator(200))
    chosen = sampler.propose(8)
    assert sampler.evaluation_steps == 16 * 200  # 2B candidates, each one episode
    rng = np.random.default_rng(0)
    candidates = SPACE.sample(16, rng)
    worst = candidates[np.argsort(-landscape(candidates))[:8]]
    assert np.array_equal(chosen, worst)


def test_gdrm_eval_leans_toward_risk_and_charges_its_evaluations():
    sampler = GdrmEvalSampler(SPACE, np.random.default_rng(1), evaluator(100), temperature=0.2)
    chosen = np.concatenate([sampler.propose(8) for _ in range(50)])
    assert sampler.evaluation_steps == 50 * 16 * 100
    uniform = SPACE.sample(400, np.random.default_rng(2))
    assert landscape(chosen).mean() > landscape(uniform).mean() + 0.5


torch = pytest.importorskip("torch")

from edgeloop.sims import MptsConfig, MptsSampler  # noqa: E402


def test_the_mpts_risk_learner_learns_a_known_risk_landscape():
    sampler = MptsSampler(SPACE, np.random.default_rng(0), seed=0)
    rng = np.random.default_rng(1)
    for _ in range(40):  # a few dozen streaming updates on uniform batches
        tasks = SPACE.sample(32, rng)
        sampler.observe(tasks, landscape(tasks))
    fresh = SPACE.sample(200, np.random.default_rng(2))
    x = torch.as_tensor(SPACE.normalise(fresh), dtype=torch.float32)
    predicted, spread = sampler.learner.predict(x, 50)
    assert pearson(predicted, landscape(fresh)) > 0.8
    assert spread.shape == (200,) and (spread >= 0).all()
    assert len(sampler.correlations) == 39 and np.nanmean(sampler.correlations[-10:]) > 0.8


def test_mpts_warms_up_uniformly_then_favours_predicted_risk_with_a_random_half():
    sampler = MptsSampler(SPACE, np.random.default_rng(0), warmup_iterations=2, seed=0)
    uniform_like = [sampler.propose(32) for _ in range(2)]
    assert sampler.evaluation_steps == 0  # MPTS never evaluates candidates
    rng = np.random.default_rng(3)
    for _ in range(40):
        tasks = SPACE.sample(32, rng)
        sampler.observe(tasks, landscape(tasks))
    chosen = np.concatenate([sampler.propose(32) for _ in range(10)])
    assert chosen.shape == (320, 2)
    baseline = landscape(np.concatenate(uniform_like)).mean()
    assert landscape(chosen).mean() > baseline + 0.5


def test_mpts_proposals_repeat_for_a_seed():
    def run() -> np.ndarray:
        sampler = MptsSampler(
            SPACE, np.random.default_rng(9), seed=4, config=MptsConfig(inner_steps=3)
        )
        tasks = SPACE.sample(16, np.random.default_rng(10))
        sampler.observe(tasks, landscape(tasks))
        return sampler.propose(16)

    assert np.array_equal(run(), run())


def narrow_hole(tasks: np.ndarray) -> np.ndarray:
    """Risk with one sharp peak at the (high a, high b) corner, flat elsewhere."""
    u = SPACE.normalise(tasks)
    return 5.0 * np.exp(-((u[:, 0] - 0.9) ** 2 + (u[:, 1] - 0.9) ** 2) / 0.01)


def test_the_diversity_term_spreads_the_selected_half_of_the_batch():
    from edgeloop.sims.mpts import _diverse_top

    units = np.random.default_rng(0).random((128, 2))
    score = narrow_hole(SPACE.denormalise(units))  # one sharp peak: plain top-k piles on it

    def nearest_neighbour(chosen: np.ndarray) -> float:
        u = units[chosen]
        d = np.linalg.norm(u[:, None] - u[None], axis=2) + np.eye(len(u)) * 9
        return float(d.min(axis=1).mean())

    plain = np.argsort(-score)[:16]
    diverse = _diverse_top(units, score, 16, 1.0)
    assert len(set(diverse.tolist())) == 16 and diverse[0] == plain[0]
    assert nearest_neighbour(diverse) > 1.5 * nearest_neighbour(plain)
    assert score[diverse].mean() > np.median(score)  # still leaning to risk


def test_the_regret_risk_is_the_gap_to_the_best_return_seen_nearby():
    sampler = MptsSampler(SPACE, np.random.default_rng(0), config=MptsConfig(risk="regret"))
    first = SPACE.denormalise(np.array([[0.1, 0.1], [0.12, 0.1], [0.9, 0.9]]))
    # returns -100, -300 (close together), -900 (alone: nothing better seen near it)
    regret = sampler._regret(SPACE.normalise(first), np.array([-100.0, -300.0, -900.0]))
    assert regret.tolist() == [0.0, 200.0, 0.0]
    later = SPACE.denormalise(np.array([[0.15, 0.12]]))
    assert sampler._regret(SPACE.normalise(later), np.array([-250.0])).tolist() == [150.0]
    sampler.observe(first, np.array([100.0, 300.0, 900.0]))  # risks = -returns
    assert sampler.iteration == 1


def test_an_unknown_mpts_risk_is_refused():
    with pytest.raises(ValueError, match="'return' or 'regret'"):
        MptsSampler(SPACE, np.random.default_rng(0), config=MptsConfig(risk="loss"))
