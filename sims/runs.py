"""Training runs on disk: ``config.json``, ``policy.pt`` (weights only) and ``history.json``,
with ``checkpoint.pt`` while the run is in progress (see :func:`train_run`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from edgeloop.runtime.errors import TrainingError
from edgeloop.sims.checkpoint import changed_settings
from edgeloop.sims.ppo import TrainConfig, TrainResult, make_policy, train
from edgeloop.sims.task_space import load_task_space
from edgeloop.sims.torch_support import import_torch


def save_run(result: TrainResult, folder: str | Path) -> Path:
    """Write a run's config, weights and history into ``folder`` (created)."""
    torch = import_torch()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(result.config), indent=2))
    (folder / "history.json").write_text(json.dumps(result.history(), indent=2))
    # the weights last and atomically: policy.pt is what marks a run finished
    partial = folder / "policy.pt.partial"
    torch.save(result.policy.state_dict(), partial)
    partial.replace(folder / "policy.pt")
    return folder


CHECKPOINT = "checkpoint.pt"


def train_run(
    config: TrainConfig,
    folder: str | Path,
    *,
    resume: bool = False,
    progress: Callable[[TrainResult], None] | None = None,
) -> TrainResult:
    """Train into ``folder``: its config first, a checkpoint as it goes, the run at the end.

    With ``resume`` the run continues from the folder's checkpoint, bit-identically
    to a run that never stopped; a folder holding a finished run is refused
    unless resuming (then the finished run is returned as it is).
    """
    folder = Path(folder)
    started = (folder / "config.json").exists()
    if started and not resume:
        raise TrainingError(
            f"{folder} already holds a run",
            fix=f"edgeloop train --resume {folder} to go on with it, another folder, or delete it",
        )
    if started:
        changed = changed_settings(dataclasses.asdict(read_config(folder)), config)
        if changed:
            raise TrainingError(
                f"{folder} holds a run with other settings ({', '.join(changed)} differ)",
                fix="use another folder, or delete it to train it again",
            )
        if (folder / "policy.pt").exists():
            return load_run(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not started:
        (folder / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    result = train(config, progress, checkpoint=folder / CHECKPOINT, resume=resume)
    save_run(result, folder)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    return result


def read_config(folder: str | Path) -> TrainConfig:
    """The config a run folder was started with (to resume it).

    Raises:
        TrainingError: the folder holds no run config, or one this version cannot read.
    """
    path = Path(folder) / "config.json"
    try:
        return TrainConfig(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise TrainingError(
            f"{folder} holds no run to resume: config.json is missing",
            fix="point at a folder edgeloop train wrote",
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise TrainingError(f"cannot read {path}: {exc}", fix="start the run again") from None


def load_run(folder: str | Path) -> TrainResult:
    """Read a run written by :func:`save_run` (weights loaded weights-only).

    Raises:
        TrainingError: the folder is not a run, or its files are unreadable.
    """
    torch = import_torch()
    folder = Path(folder)
    try:
        config = TrainConfig(**json.loads((folder / "config.json").read_text()))
        history = json.loads((folder / "history.json").read_text())
        state = torch.load(folder / "policy.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise TrainingError(
            f"{folder} is not a training run: {Path(exc.filename).name} is missing",
            fix="point at a folder written by edgeloop train",
        ) from None
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise TrainingError(
            f"cannot read the run in {folder}: {exc}", fix="train it again"
        ) from None
    space = load_task_space(config.task_space)
    env = space.make_env()
    obs_dim = int(env.observation_space.shape[0]) + space.dim
    policy = make_policy(obs_dim, env.action_space, config.hidden)
    env.close()
    policy.load_state_dict(state)
    result = TrainResult(config, policy)
    result.load_history(history)
    return result
