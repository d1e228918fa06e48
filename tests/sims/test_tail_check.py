"""The tail check: ERM's worst grid tasks, a specialist on each, and the verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_runner import edgeloop_cli

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims.ppo import TrainConfig, train
from edgeloop.sims.tail_check import TailCheck, TailCheckConfig


def test_a_specialist_trains_on_its_one_task_only():
    result = train(TrainConfig(sampler="fixed", task=[1.7, 0.6], total_steps=3_200, curve_points=0))
    assert result.steps == [3_200]
    with pytest.raises(EdgeloopError, match="needs task = 2 value"):
        train(TrainConfig(sampler="fixed", task=[1.7], total_steps=3_200))
    with pytest.raises(EdgeloopError, match="mass = 9 is outside"):
        train(TrainConfig(sampler="fixed", task=[9.0, 0.6], total_steps=3_200))


def test_the_verdict_asks_a_share_of_erms_spread_beyond_the_noise():
    config = TailCheckConfig(min_gain=0.1)
    grid = [-100.0, -300.0, -500.0]
    check = TailCheck(config, grid, [[1, 1]], [[-500.0, -502.0]], [[-455.0, -453.0]])
    assert check.spread == 400.0 and check.gain == 47.0 and check.noise < 5 and check.passed
    short = TailCheck(config, grid, [[1, 1]], [[-500.0, -502.0]], [[-465.0, -463.0]])
    assert short.gain == 37.0 and not short.passed  # less than 0.1 x 400
    noisy = TailCheck(config, grid, [[1, 1]], [[-400.0, -600.0]], [[-300.0, -610.0]])
    assert noisy.gain == 45.0 and noisy.noise > 45 and not noisy.passed
    solved = TailCheck(config, [500.0, 500.0], [[1, 1]], [[500.0, 500.0]], [[500.0, 500.0]])
    assert solved.spread == 0 and not solved.passed  # no tail at all


def test_tailcheck_from_the_command_line_reports_the_worst_tasks_and_the_verdict(tmp_path):
    done = edgeloop_cli(
        tmp_path, "tailcheck", "--steps", "3200", "--worst", "2", "--grid", "2",
        "--episodes", "1", "--json", "tail.json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "tail.json").read_text())
    assert len(saved["grid_returns"]) == 4 and len(saved["specialists"]) == 2
    worst = sorted(saved["grid_returns"])[:2]
    # ERM's worst grid tasks, worst first: its episodes there are the grid's episodes
    assert [np.mean(e) for e in saved["erm"]] == pytest.approx(worst, abs=1e-6)
    gain = np.mean(saved["specialists"]) - np.mean(worst)
    assert saved["gain"] == pytest.approx(gain, abs=1e-6)
    verdict = "PASS" if saved["passed"] else "FAIL"
    assert verdict in done.stdout and "specialist" in done.stdout
    refused = edgeloop_cli(tmp_path, "tailcheck", "--set", "gama=0.9")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "unknown or fixed training setting gama" in refused.stderr
