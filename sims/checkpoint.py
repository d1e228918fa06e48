"""Checkpoints of a training run: everything it needs to go on bit-identically.

Kept apart from the algorithm (:mod:`edgeloop.sims.ppo`): the trainer hands its
state over as a :class:`TrainingState`, and this module saves it atomically and
restores it, refusing a checkpoint made with other settings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.runtime.errors import TrainingError

if TYPE_CHECKING:
    from edgeloop.sims.ppo import TrainConfig, TrainResult
    from edgeloop.sims.samplers import Sampler


class SeedCounter:
    """Hands out fresh episode seeds, one after another (part of a run's state)."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self, n: int) -> list[int]:
        self.next += n
        return list(range(self.next - n + 1, self.next + 1))


@dataclass
class TrainingState:
    """The whole state of a run in progress: what a checkpoint saves and restores.

    Attributes:
        torch: The torch module (imported by the trainer).
        config: The run's settings.
        policy: The actor-critic.
        optimizer: Its optimizer (Adam's moments and step count).
        rng: The numpy generator of the sampler's and the trainer's draws.
        seeds: The episode seed counter.
        sampler: The task sampler (its own state: risk learner, posterior, ...).
        result: The history so far.
    """

    torch: Any
    config: TrainConfig
    policy: Any
    optimizer: Any
    rng: np.random.Generator
    seeds: SeedCounter
    sampler: Sampler
    result: TrainResult

    def save(self, path: str | Path, used: int) -> None:
        """Write everything a resumed run needs, atomically (a crash mid-write leaves
        the previous checkpoint)."""
        path = Path(path)
        state = {
            "config": dataclasses.asdict(self.config),
            "used": used,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": self.torch.get_rng_state(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "next_seed": self.seeds.next,
            "sampler": self.sampler.state_dict(),
            "history": json.dumps(self.result.history()),
        }
        partial = path.with_name(path.name + ".partial")
        self.torch.save(state, partial)
        partial.replace(path)

    def restore(self, path: str | Path) -> int:
        """Load a checkpoint of this config (weights only); returns the steps it used.

        Raises:
            TrainingError: the file cannot be read, or was made with other settings.
        """
        try:
            state = self.torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a damaged file
            raise TrainingError(
                f"cannot read the checkpoint {path}: {exc}", fix="delete it to start over"
            ) from None
        changed = changed_settings(state["config"], self.config)
        if changed:
            raise TrainingError(
                f"the checkpoint {path} was made with other settings ({', '.join(changed)} differ)",
                fix="resume with the run's own settings, or start a new run",
            )
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.torch.set_rng_state(state["torch_rng"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        self.seeds.next = int(state["next_seed"])
        self.sampler.load_state_dict(state["sampler"])
        self.result.load_history(json.loads(state["history"]))
        return int(state["used"])


def changed_settings(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """The settings that differ between a saved config and ``config`` (sorted names).

    A setting the saved config lacks counts as its default, which keeps what runs
    did before it existed: a run saved before ``vf_coef`` was a setting resumes.
    """
    current = dataclasses.asdict(config)
    defaults = dataclasses.asdict(type(config)())
    missing = object()
    return sorted(
        k
        for k in saved.keys() | current.keys()
        if saved.get(k, defaults.get(k, missing)) != current.get(k, missing)
    )
