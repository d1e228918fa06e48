"""Evaluating a policy over a task grid: returns per task, mean and CVaR, OOD ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from edgeloop.sims import cvar, evaluate, load_task_space


def swing_up(obs: np.ndarray, task: np.ndarray) -> np.ndarray:
    """Energy pumping plus PD near upright, aware of the task's mass and length."""
    cos_t, sin_t, rate = obs
    mass, length = task
    angle = math.atan2(sin_t, cos_t)
    if abs(angle) < 0.5:
        return np.array([np.clip(-20 * angle - 4 * rate, -2, 2)], np.float32)
    energy = 0.5 * mass * length**2 / 3 * rate**2 + 0.5 * mass * 10 * length * (cos_t - 1)
    return np.array([2.0 if -energy * rate >= 0 else -2.0], np.float32)


def zero(obs: np.ndarray, task: np.ndarray) -> np.ndarray:
    return np.zeros(1, np.float32)


def test_a_grid_evaluation_reports_per_task_returns_mean_and_cvar():
    space = load_task_space("pendulum")
    result = evaluate(swing_up, space, per_axis=3, episodes=2, seed=0)
    assert result.tasks.shape == (9, 2) and result.returns.shape == (9,)
    assert result.env_steps == 9 * 2 * 200
    assert result.mean == pytest.approx(result.returns.mean())
    assert result.cvar[0.9] == pytest.approx(cvar(result.returns, 0.9)) == result.returns.min()
    assert result.cvar[0.5] <= result.mean
    baseline = evaluate(zero, space, per_axis=3, episodes=2, seed=0)
    assert result.mean > baseline.mean + 200  # a controller beats doing nothing


def test_evaluation_is_repeatable_for_a_seed_and_differs_across_seeds():
    space = load_task_space("pendulum")
    a = evaluate(zero, space, per_axis=2, episodes=1, seed=3)
    b = evaluate(zero, space, per_axis=2, episodes=1, seed=3)
    c = evaluate(zero, space, per_axis=2, episodes=1, seed=4)
    assert np.array_equal(a.returns, b.returns) and not np.array_equal(a.returns, c.returns)


def test_out_of_distribution_evaluation_covers_the_wider_ranges():
    space = load_task_space("pendulum")
    result = evaluate(zero, space, per_axis=2, episodes=1, ood=True)
    assert result.space == "pendulum-ood"
    assert result.tasks.min(axis=0).tolist() == pytest.approx([0.3, 0.4])
    assert result.tasks.max(axis=0).tolist() == pytest.approx([2.5, 1.8])
