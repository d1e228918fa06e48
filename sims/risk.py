"""Tail metrics: CVaR of per-task returns, and the Pearson correlation samplers log."""

from __future__ import annotations

import math

import numpy as np


def cvar(returns: np.ndarray, alpha: float) -> float:
    """CVaR_alpha of per-task mean returns: the mean of the worst (1 - alpha) fraction.

    Higher returns are better, so the worst are the lowest. The fraction is
    rounded up to whole tasks, at least one: with 10 tasks, CVaR_0.9 is the
    single worst and CVaR_0.7 the mean of the worst three.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    values = np.sort(np.asarray(returns, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("CVaR of no returns")
    k = max(1, math.ceil((1.0 - alpha) * values.size - 1e-9))
    return float(values[:k].mean())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length vectors (NaN when one is constant)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])
