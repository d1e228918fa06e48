"""edgeloop compare: jobs in a process pool or on Ray, reused when done; the report figures."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims.compare import CompareConfig, run_compare
from edgeloop.sims.compare_report import build_report, table_rows
from edgeloop.sims.ppo import TrainConfig

TINY = {"update_epochs": 1, "curve_points": 2, "curve_grid": 2}


def fake_run(sampler: str, seed: int, returns: list[float], ood: list[float]) -> dict:
    tasks = [[0.5, 0.5], [0.5, 1.5], [2.0, 0.5], [2.0, 1.5]]
    curve = [{"steps": 100, "mean": min(returns), "cvar_0.9": min(returns)}]
    return {
        "sampler": sampler,
        "seed": seed,
        "history": {"steps": [100], "seconds": 1.0, "curve": curve, "correlations": []},
        "in_range": {"tasks": tasks, "returns": returns},
        "ood": {"tasks": tasks, "returns": ood},
    }


def test_the_report_figures_match_a_hand_computation():
    results = [
        fake_run("erm", 0, [-100, -200, -300, -900], [-1000, -1000, -1000, -1000]),
        fake_run("erm", 1, [-100, -200, -300, -700], [-1000, -1000, -1000, -1200]),
        fake_run("mpts", 0, [-150, -200, -300, -600], [-900, -1000, -1000, -1000]),
        fake_run("mpts", 1, [-100, -250, -300, -800], [-1000, -1000, -1000, -1000]),
    ]
    config = {"task_space": "pendulum", "seeds": [0, 1], "total_steps": 100}
    report = build_report(config, results)
    erm, mpts = report["table"]["erm"], report["table"]["mpts"]
    # CVaR_0.9 of 4 tasks is the single worst; mean and s.e. over the two seeds
    assert erm["cvar_0.9"]["mean"] == -800 and erm["cvar_0.9"]["se"] == pytest.approx(100)
    assert mpts["cvar_0.9"]["mean"] == -700
    # best known per task: [-100, -200, -300, -600]; mpts seed 1 regret worst = -800 - -600
    assert report["grid"]["best_known"] == [-100, -200, -300, -600]
    assert mpts["regret_cvar_0.9"]["mean"] == pytest.approx(((-50) + (-200)) / 2)
    # paired with ERM by seed: (-600 - -900, -800 - -700) = (300, -100)
    assert mpts["cvar_0.9_minus_erm"]["mean"] == 100 and mpts["cvar_0.9_minus_erm"]["wins"] == 1
    assert mpts["cvar_0.9_minus_erm"]["se"] == pytest.approx(200)
    header, rows = table_rows(report)
    assert rows[1][0] == "mpts (2 seeds)" and rows[1][header.index("CVaR_0.9")] == "-700 ± 100"


def with_curve(run: dict, tails: list[float]) -> dict:
    """A run whose learning curve's CVaR_0.9 is ``tails`` at 100, 200, ... steps."""
    curve = [{"steps": 100 * (k + 1), "mean": t, "cvar_0.9": t} for k, t in enumerate(tails)]
    run["history"]["curve"] = curve
    return run


def test_the_report_tells_speed_from_robustness():
    returns, ood = [-100, -200, -300, -400], [-1000] * 4
    results = [
        with_curve(fake_run("erm", 0, returns, ood), [-900, -700, -520, -500, -505]),
        with_curve(fake_run("erm", 1, returns, ood), [-900, -700, -480, -500, -495]),
        # reaches ERM's final tail (-500) at 200 steps: faster, and it ends the same
        with_curve(fake_run("mpts", 0, returns, ood), [-800, -500, -500, -500, -500]),
        with_curve(fake_run("mpts", 1, returns, ood), [-800, -500, -500, -500, -500]),
    ]
    report = build_report({"task_space": "pendulum", "seeds": [0, 1], "total_steps": 500}, results)
    assert report["table"]["mpts"]["share_of_erm_steps_to_erm_final_cvar_0.9"] == 200 / 500
    assert report["table"]["erm"]["share_of_erm_steps_to_erm_final_cvar_0.9"] == 300 / 500
    # ERM's mean curve -900, -700, -500, -500, -500 (s.e. 0, 0, 20, 0, 5): flat from 300
    assert report["erm_flat_at"] == 300
    assert report["training_core_hours"] == pytest.approx(4 / 3600)  # 1 s a run
    header, rows = table_rows(report)
    assert rows[1][header.index("steps to ERM")] == "40%"
    assert rows[1][header.index("CVaR_0.9 - ERM (wins)")] == "0 ± 0 (0/2)"


def test_compare_from_the_command_line_writes_the_report_and_reuses_finished_runs(
    tmp_path, capsys, monkeypatch
):
    args = [
        "compare", "--samplers", "erm,mpts+regret", "--seeds", "2", "--steps", "6400",
        "--grid", "2", "--episodes", "1", "--workers", "2", "-o", "report",
        *(f"--set={k}={v}" for k, v in TINY.items()),
    ]  # fmt: skip
    from edgeloop.cli import main

    monkeypatch.chdir(tmp_path)  # the CLI in this process (the runs in worker processes)
    monkeypatch.setattr(sys, "argv", ["edgeloop", *args])  # the report's regenerate line
    assert main(args) == 0, capsys.readouterr().err
    out = tmp_path / "report"
    report = json.loads((out / "report.json").read_text())
    assert report["samplers"] == ["erm", "mpts+regret"]
    runs = {
        p.name: json.loads((p / "evaluation.json").read_text()) for p in (out / "runs").iterdir()
    }
    assert sorted(runs) == ["erm-seed0", "erm-seed1", "mpts+regret-seed0", "mpts+regret-seed1"]
    best = np.max([r["in_range"]["returns"] for r in runs.values()], axis=0)
    assert np.allclose(report["grid"]["best_known"], best)
    for sampler in report["samplers"]:
        row = report["table"][sampler]
        assert row["cvar_0.9"]["n"] == 2 and math.isfinite(row["cvar_0.9"]["se"])
        assert row["regret_cvar_0.9"]["mean"] <= 0 and row["steps"]["mean"] == 6400
    for png in ("learning_curves.png", "heatmap.png", "correlation.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    markdown = (out / "report.md").read_text()
    assert "Regenerate: `edgeloop compare --samplers erm,mpts+regret" in markdown
    assert "| mpts+regret (2 seeds) |" in markdown
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/evaluation.json")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert json.loads((out / "report.json").read_text())["table"] == report["table"]
    # `edgeloop evaluate` of one of the runs, at the comparison's grid and episodes,
    # gives the figures the comparison recorded for it: same tasks, same seeds.
    evaluate = ["report/runs/erm-seed1", "--grid", "2", "--episodes", "1", "--json", "e.json"]
    assert main(["evaluate", *evaluate]) == 0
    assert "from seeds 10000" in " ".join(capsys.readouterr().out.split())
    mine = json.loads((tmp_path / "e.json").read_text())
    for label, key in (("in range", "in_range"), ("out of distribution", "ood")):
        assert mine[label]["returns"] == runs["erm-seed1"][key]["returns"]
        assert mine[label]["cvar"] == runs["erm-seed1"][key]["cvar"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--samplers", "erm,mptz"], "unknown sampler mptz"),
        (["--set", "gama=0.99"], "unknown or fixed training setting gama"),
        (["--task-space", "pendulm"], "pendulm"),
        (["--steps", "1000"], "less than one iteration"),
        (["--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_bad_comparisons_are_refused_with_a_clear_message(args, says, tmp_path, capsys):
    from edgeloop.cli import main

    try:
        code = main(["compare", *args, "-o", str(tmp_path / "r")])
    except SystemExit as exc:  # an option value argparse refuses exits as a user error too
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert says in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_training_settings_are_converted_to_their_types_or_refused():
    config = CompareConfig(train={"learning_rate": "1e-3", "update_epochs": 2.0, "gamma": 0.99})
    assert config.train == {"learning_rate": 0.001, "update_epochs": 2, "gamma": 0.99}
    assert isinstance(config.run_config("erm", 0).update_epochs, int)
    with pytest.raises(EdgeloopError, match=r"update_epochs = 1\.5 is not a int"):
        CompareConfig(train={"update_epochs": 1.5})
    with pytest.raises(EdgeloopError, match="named twice"):
        CompareConfig(samplers=("erm", "erm"))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster for the tests of this module (starting one takes seconds);
    the code under test finds it running and uses it, as it would a user's."""
    ray = pytest.importorskip("ray")
    from edgeloop.sims.cluster import connect

    connect("local", num_cpus=1)  # one worker process to start (each imports torch)
    yield
    ray.shutdown()


def test_a_comparison_on_a_local_ray_cluster_matches_one_run_here(tmp_path, local_ray):
    config = CompareConfig(
        samplers=("erm",), seeds=(0, 1), total_steps=3200, grid=2, episodes=1, train=TINY
    )
    here = run_compare(config, tmp_path / "here", workers=1)
    on_ray = run_compare(config, tmp_path / "ray", ray_address="local")
    assert [r["in_range"]["returns"] for r in on_ray] == [r["in_range"]["returns"] for r in here]


def test_an_evaluation_split_over_a_local_ray_cluster_matches_one_here(tmp_path, local_ray):
    from edgeloop.sims import evaluate, load_task_space
    from edgeloop.sims.cluster import evaluate_run_on_ray
    from edgeloop.sims.ppo import as_policy_function
    from edgeloop.sims.runs import load_run, train_run

    train_run(TrainConfig(total_steps=3_200, curve_points=0), tmp_path / "run")
    here = evaluate(
        as_policy_function(load_run(tmp_path / "run")),
        load_task_space("pendulum"),
        per_axis=3,
        episodes=2,
        ood=True,
    )
    on_ray = evaluate_run_on_ray(
        tmp_path / "run", per_axis=3, episodes=2, ood=True, address="local", chunks=4
    )
    assert on_ray.space == here.space and np.array_equal(on_ray.tasks, here.tasks)
    assert np.allclose(on_ray.returns, here.returns) and on_ray.env_steps == here.env_steps
