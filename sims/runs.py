"""Training runs on disk: ``config.json``, ``policy.pt`` (weights only) and ``history.json``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgeloop.runtime.errors import EdgeloopError
from edgeloop.sims.ppo import TrainConfig, TrainResult, _torch, make_policy
from edgeloop.sims.task_space import load_task_space


def save_run(result: TrainResult, folder: str | Path) -> Path:
    """Write a run's config, weights and history into ``folder`` (created)."""
    torch = _torch()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(result.config), indent=2))
    torch.save(result.policy.state_dict(), folder / "policy.pt")
    (folder / "history.json").write_text(
        json.dumps(
            {
                "steps": result.steps,
                "mean_returns": result.mean_returns,
                "correlations": result.correlations,
                "seconds": result.seconds,
            },
            indent=2,
        )
    )
    return folder


def load_run(folder: str | Path) -> TrainResult:
    """Read a run written by :func:`save_run` (weights loaded weights-only).

    Raises:
        EdgeloopError: the folder is not a run, or its files are unreadable.
    """
    torch = _torch()
    folder = Path(folder)
    try:
        config = TrainConfig(**json.loads((folder / "config.json").read_text()))
        history = json.loads((folder / "history.json").read_text())
        state = torch.load(folder / "policy.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise EdgeloopError(
            f"{folder} is not a training run: {Path(exc.filename).name} is "
            "missing (fix: point at a folder written by edgeloop train)"
        ) from None
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise EdgeloopError(
            f"cannot read the run in {folder}: {exc} (fix: train it again)"
        ) from None
    space = load_task_space(config.task_space)
    env = space.make_env()
    obs_dim = int(env.observation_space.shape[0]) + space.dim
    policy = make_policy(obs_dim, env.action_space, config.hidden)
    env.close()
    policy.load_state_dict(state)
    result = TrainResult(config, policy)
    result.steps = list(history["steps"])
    result.mean_returns = list(history["mean_returns"])
    result.correlations = list(history.get("correlations", []))
    result.seconds = float(history.get("seconds", 0.0))
    return result
