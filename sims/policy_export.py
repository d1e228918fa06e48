"""A trained PPO run as an ONNX bundle that a board runs with nothing else.

The exported graph takes the raw observation ``obs`` (float32, batch x obs_dim)
and the PHYSICAL task ``task`` (float32, batch x d, the task space's parameters
in order, e.g. pendulum: mass, length) and returns ``action``: the deterministic
action clamped to the action space (float32, batch x act_dim), or for a
discrete action space the argmax index (int64, batch). The task normalisation
the policy was trained with, log-scale parameters included, is part of the
graph. The export goes through :func:`~edgeloop.exporters.onnx_export.export_bundle`:
ONNX Runtime is checked against torch, and the model against the profile.
torch is imported when exporting.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.runtime.errors import TrainingError
from edgeloop.sims.task_space import TaskSpace, load_task_space
from edgeloop.sims.torch_support import import_torch

if TYPE_CHECKING:
    from edgeloop.exporters.onnx_export import ExportResult
    from edgeloop.runtime.profiles import HardwareProfile

INPUTS = ["obs", "task"]
OUTPUTS = ["action"]

_TINY = 1e-30
"""Non-positive values of a log-scale parameter are taken as this before the log,
so the graph never makes NaN (the policy sees them far below the range)."""


def deployable_policy(policy: Any, space: TaskSpace) -> Any:
    """``policy`` (an ActorCritic of :func:`~edgeloop.sims.ppo.make_policy`) as a torch
    module ``(obs, task) -> action`` that normalises the physical task itself."""
    torch = import_torch("exporting a run's policy")

    offset, span, log_scale = [], [], []
    for p in space.parameters:
        lo, hi = (math.log(p.low), math.log(p.high)) if p.log else (p.low, p.high)
        offset.append(lo)
        span.append(hi - lo)
        log_scale.append(p.log)

    class DeployedPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy
            self.any_log = any(log_scale)
            self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))
            self.register_buffer("span", torch.tensor(span, dtype=torch.float32))
            self.register_buffer("log_scale", torch.tensor(log_scale, dtype=torch.bool))

        def forward(self, obs: Any, task: Any) -> Any:
            if self.any_log:
                logged = torch.log(torch.clamp(task, min=_TINY))
                task = torch.where(self.log_scale, logged, task)
            units = (task - self.offset) / self.span
            return self.policy(torch.cat([obs, units], dim=-1))

    return DeployedPolicy().eval()


def export_run(
    run_folder: str | Path,
    out: str | Path,
    *,
    profile: str | HardwareProfile | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export the policy of a training run to an ONNX bundle in ``out``.

    The bundle's model has inputs ``obs`` (raw observation) and ``task`` (physical
    task parameters, in the task space's order) and output ``action``; its manifest
    records the task space, its parameters and the action bounds under ``constants``.

    Args:
        run_folder: A folder written by ``edgeloop train`` (:func:`~edgeloop.sims.runs.save_run`).
        out: The bundle folder to create.
        profile: Target hardware profile (name, file or object): sets the opset and
            runs the precheck.
        overwrite: Replace an existing bundle folder.

    Raises:
        TrainingError: ``run_folder`` is not a run. ExportError: when
            the export or its parity check fails.
    """
    from edgeloop.exporters.onnx_export import export_bundle
    from edgeloop.sims.runs import load_run

    torch = import_torch("exporting a run's policy")
    folder = Path(run_folder)
    if not folder.is_dir():
        raise TrainingError(
            f"{folder} is not a training run: no such folder",
            fix="point at a folder written by edgeloop train",
        )
    if not (folder / "policy.pt").exists() and (folder / "checkpoint.pt").exists():
        raise TrainingError(
            f"{folder} is a run still in training: it has a checkpoint but no policy.pt yet",
            fix=f"let it finish, or continue it with edgeloop train --resume {folder}",
        )
    run = load_run(folder)
    space = load_task_space(run.config.task_space)
    env = space.make_env()
    try:
        first_obs, _ = env.reset(seed=run.config.seed)
        action_space = env.action_space
    finally:
        env.close()
    obs = np.asarray(first_obs, dtype=np.float32).reshape(1, -1)
    middle = space.denormalise(np.full((1, space.dim), 0.5)).astype(np.float32)
    module = deployable_policy(run.policy, space)
    return export_bundle(
        module,
        (torch.as_tensor(obs), torch.as_tensor(middle)),
        out,
        input_names=INPUTS,
        output_names=OUTPUTS,
        profile=profile,
        constants=_constants(run.config, space, action_space),
        overwrite=overwrite,
    )


def _constants(config: Any, space: TaskSpace, action_space: Any) -> dict[str, Any]:
    """What a board needs to know to feed the model, for the manifest."""
    if hasattr(action_space, "n"):
        action: dict[str, Any] = {"discrete": int(action_space.n)}
    else:
        action = {
            "low": np.asarray(action_space.low, dtype=float).tolist(),
            "high": np.asarray(action_space.high, dtype=float).tolist(),
        }
    return {
        "env": space.env_id,
        "task_space": space.name,
        "task": [
            {
                "name": p.name,
                "attribute": p.attribute,
                "low": p.low,
                "high": p.high,
                "log": p.log,
                "ood_low": p.ood_low if p.ood_low is not None else p.low,
                "ood_high": p.ood_high if p.ood_high is not None else p.high,
            }
            for p in space.parameters
        ],
        "action": action,
        "run": dataclasses.asdict(config),
    }
