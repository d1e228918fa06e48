"""Distilling a policy into a spiking network: the loss falls, and the student,
exported as an explicit-state step, runs in a loop from its ONNX bundle.
(How well a distilled student swings the pendulum up: benchmarks/snn_energy.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeloop

torch = pytest.importorskip("torch")
pytest.importorskip("snntorch")
pytest.importorskip("gymnasium")

from edgeloop.exporters.onnx_export import export_bundle  # noqa: E402 (after the skips)
from edgeloop.exporters.spiking import export_spiking  # noqa: E402
from edgeloop.sims.snn_policy import make_policy, rollouts, train  # noqa: E402


def smooth_teacher(folder: Path) -> Path:
    """A task-aware policy bundle (obs, task -> action) with fixed, smooth weights."""

    class Teacher(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(3)
            self.fc = torch.nn.Linear(5, 1)

        def forward(self, obs, task):
            return 2.0 * torch.tanh(self.fc(torch.cat([obs, task], dim=1)))

    export_bundle(
        Teacher(),
        (torch.zeros(1, 3), torch.ones(1, 2)),
        folder,
        input_names=["obs", "task"],
        output_names=["action"],
    )
    return folder


def test_distillation_lowers_the_loss_and_the_student_runs_from_onnx(tmp_path: Path) -> None:
    teacher = smooth_teacher(tmp_path / "teacher")
    losses: list[float] = []
    student = train(
        teacher, episodes=3, steps=40, epochs=30, dagger_rounds=1,
        progress=lambda r, e, loss: losses.append(loss),
    )  # fmt: skip
    assert losses[-1] < 0.5 * losses[0]
    obs, labels, returns = rollouts(student, 2, 40, seed=9, bundle=teacher)
    assert obs.shape == (2, 40, 3) and labels.shape == (2, 40, 1) and len(returns) == 2
    bundle = export_spiking(student, torch.zeros(1, 3), tmp_path / "snn").bundle
    graph = edgeloop.LoopGraph(name="student")
    graph.add_node("sensor", "gym.sensor", rate_hz=20, config={"env": "Pendulum-v1"})
    graph.add_node(
        "policy",
        "onnx.model",
        inputs={"x": "sensor/obs"},
        config={"model": str(bundle), "providers": ["CPUExecutionProvider"]},
    )
    graph.add_node(
        "motor", "gym.actuator", inputs={"action": "policy/out"}, config={"env": "Pendulum-v1"}
    )
    report = edgeloop.Executor(graph, simulated=True, seed=9).run(10.0)
    assert report.node("policy").calls == 200
    assert len(report.series["motor.episode_return"]) == 1
    # the same seed through torch, step by step: the same episode
    assert np.isclose(
        report.series["motor.episode_return"][0],
        rollouts(student, 1, 200, 9, teacher)[2][0],
        atol=1e-3,
    )


def test_a_fresh_policy_keeps_its_state_explicit() -> None:
    policy = make_policy(hidden=8)
    assert policy.state_names == ("mem1", "mem2")
    action, mem1, mem2 = policy(torch.zeros(1, 3), *policy.initial_state(1))
    assert action.shape == (1, 1) and mem1.shape == mem2.shape == (1, 8)
