"""Task spaces: families of gymnasium environments that differ in physical parameters.

A task is one point of the space, a vector of physical values (a pendulum's
mass and length). Learners see tasks normalised to [0, 1]^d (log-scaled for
parameters that span orders of magnitude); environments get them written onto
``env.unwrapped``, and :meth:`TaskSpace.make_env` checks that writing them
really changes the dynamics. Each space also names wider, out-of-distribution
ranges for evaluation.

Built-ins: ``pendulum`` (Pendulum-v1: mass, length), ``cartpole`` (CartPole-v1:
pole half-length, pole mass, force magnitude), ``cartpole-weak`` (the same with
1 to 5 N of force and longer, heavier poles), ``acrobot`` (Acrobot-v1: the
two link masses), ``mountaincar``
(MountainCarContinuous-v0: engine power). Users define their own in Python
(:class:`TaskSpace`) or YAML (:func:`load_task_space`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeloop.plugins.gym_env import set_env_attributes
from edgeloop.runtime.errors import (
    GraphProblem,
    MissingDependencyError,
    ProblemsError,
    TaskSpaceError,
    UsageError,
)
from edgeloop.runtime.graph_yaml import problem_from_pydantic
from edgeloop.runtime.imports import check_named, gym_id_module
from edgeloop.runtime.limits import MAX_EPISODE_STEPS, MAX_GRID_TASKS
from edgeloop.runtime.yaml_files import read_yaml_file


class TaskParameter(BaseModel):
    """One physical parameter of a task space."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    attribute: str
    """Attribute of ``env.unwrapped`` the value is written to (e.g. ``m``)."""
    low: float
    high: float
    log: bool = False
    """Normalise on a log scale (for ranges over orders of magnitude)."""
    ood_low: float | None = None
    """Lower end of the out-of-distribution range (default: ``low``)."""
    ood_high: float | None = None
    """Upper end of the out-of-distribution range (default: ``high``)."""

    @model_validator(mode="after")
    def _ordered(self) -> TaskParameter:
        if not self.low < self.high:
            raise ValueError(f"{self.name}: low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log-scale range must be positive")
        if self.ood_low is not None and self.ood_low > self.low:
            raise ValueError(f"{self.name}: ood_low {self.ood_low} is inside the range")
        if self.ood_high is not None and self.ood_high < self.high:
            raise ValueError(f"{self.name}: ood_high {self.ood_high} is inside the range")
        return self


class TaskSpace(BaseModel):
    """A named family of tasks over one gymnasium environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    env_id: str
    parameters: tuple[TaskParameter, ...] = Field(min_length=1)
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    max_episode_steps: int | None = Field(default=None, ge=1, le=MAX_EPISODE_STEPS)
    """Episode length cap; at most 10,000,000 steps."""

    @model_validator(mode="after")
    def _env_module_allowed(self) -> TaskSpace:
        # gymnasium.make imports the module before a colon in the id: under a
        # command's import policy, only an installed or allowed one (PluginError).
        module = gym_id_module(self.env_id)
        if module is not None:
            check_named(module, shown=self.env_id)
        return self

    @property
    def dim(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    # -- between physical values and [0, 1]^d ---------------------------------------

    def normalise(self, tasks: np.ndarray) -> np.ndarray:
        """Physical tasks (n, d) to [0, 1]^d (outside the range maps outside [0, 1])."""
        tasks = np.atleast_2d(np.asarray(tasks, dtype=np.float64))
        out = np.empty_like(tasks)
        for j, p in enumerate(self.parameters):
            lo, hi, x = p.low, p.high, tasks[:, j]
            if p.log:
                lo, hi, x = math.log(lo), math.log(hi), np.log(x)
            out[:, j] = (x - lo) / (hi - lo)
        return out

    def denormalise(self, units: np.ndarray) -> np.ndarray:
        """[0, 1]^d (n, d) back to physical tasks."""
        units = np.atleast_2d(np.asarray(units, dtype=np.float64))
        out = np.empty_like(units)
        for j, p in enumerate(self.parameters):
            if p.log:
                lo, hi = math.log(p.low), math.log(p.high)
                out[:, j] = np.exp(lo + units[:, j] * (hi - lo))
            else:
                out[:, j] = p.low + units[:, j] * (p.high - p.low)
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` tasks drawn uniformly in the normalised space, as physical values (n, d)."""
        return self.denormalise(rng.random((n, self.dim)))

    def grid(self, per_axis: int) -> np.ndarray:
        """An evenly spaced grid (per_axis ** d, d) over the space, ends included.

        Raises:
            UsageError: the grid would have more than ``MAX_GRID_TASKS`` tasks.
        """
        if per_axis < 1 or per_axis**self.dim > MAX_GRID_TASKS:
            raise UsageError(
                f"a grid of {per_axis} per axis over {self.dim} parameter(s) is "
                f"{per_axis}**{self.dim} tasks; at most {MAX_GRID_TASKS:,} are evaluated",
                fix="use a smaller --grid",
            )
        axes = np.linspace(0.0, 1.0, per_axis)
        mesh = np.meshgrid(*([axes] * self.dim), indexing="ij")
        return self.denormalise(np.stack([m.ravel() for m in mesh], axis=1))

    def ood(self) -> TaskSpace:
        """The same space over its out-of-distribution ranges."""
        return self.model_copy(
            update={
                "name": f"{self.name}-ood",
                "parameters": tuple(
                    p.model_copy(
                        update={
                            "low": p.ood_low if p.ood_low is not None else p.low,
                            "high": p.ood_high if p.ood_high is not None else p.high,
                        }
                    )
                    for p in self.parameters
                ),
            }
        )

    def check(self, task: Sequence[float], *, ood: bool = False) -> np.ndarray:
        """The task as an array, or a TaskSpaceError naming the parameter out of range."""
        task = np.asarray(task, dtype=np.float64).reshape(-1)
        if task.shape != (self.dim,):
            raise TaskSpaceError(
                f"a task of {self.name} has {self.dim} values "
                f"({', '.join(self.names)}), got {task.shape[0]}"
            )
        space = self.ood() if ood else self
        for value, p in zip(task, space.parameters, strict=True):
            if not (p.low - 1e-12 <= value <= p.high + 1e-12):
                raise TaskSpaceError(
                    f"{p.name} = {value:g} is outside [{p.low:g}, {p.high:g}] "
                    f"of task space {self.name}",
                    fix=f"pick a value in range"
                    f"{'' if ood else ', or evaluate out of distribution'}",
                )
        return task

    # -- environments -------------------------------------------------------------

    def make_env(self, task: Sequence[float] | None = None, **kwargs: Any) -> Any:
        """A gymnasium environment of this space, with ``task`` applied if given."""
        gym = _gymnasium()
        env = gym.make(
            self.env_id, max_episode_steps=self.max_episode_steps, **{**self.env_kwargs, **kwargs}
        )
        for p in self.parameters:
            if not hasattr(env.unwrapped, p.attribute):
                names = [a for a in vars(env.unwrapped) if not a.startswith("_")]
                close = difflib.get_close_matches(p.attribute, names, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else "see the env's source"
                raise TaskSpaceError(
                    f"{self.env_id} has no attribute '{p.attribute}' for "
                    f"parameter {p.name} of {self.name}",
                    fix=f"{hint}",
                )
        if task is not None:
            self.apply(env, task, ood=True)
        return env

    def apply(self, env: Any, task: Sequence[float], *, ood: bool = False) -> None:
        """Write a task's values onto ``env.unwrapped`` (takes effect at once), with
        :func:`edgeloop.plugins.gym_env.set_env_attributes` (the attribute keeps its
        numeric type; derived quantities such as CartPole's are recomputed)."""
        values = self.check(task, ood=ood)
        set_env_attributes(
            env, {p.attribute: value for value, p in zip(values, self.parameters, strict=True)}
        )

    def check_dynamics(self, steps: int = 30, seed: int = 0) -> None:
        """Check that every parameter really changes the dynamics: from the same start
        and actions, its low and high values must give different observations.

        Raises:
            TaskSpaceError: a parameter that changes nothing (the env may read a copy
                made at construction, or overwrite it on reset).
        """
        middle = self.denormalise(np.full((1, self.dim), 0.5))[0]
        for j, p in enumerate(self.parameters):
            trajectories = []
            for value in (p.low, p.high):
                task = middle.copy()
                task[j] = value
                env = self.make_env(task)
                obs, _ = env.reset(seed=seed)
                env.action_space.seed(seed)
                seen = [np.asarray(obs, dtype=np.float64).ravel()]
                for _ in range(steps):
                    obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                    seen.append(np.asarray(obs, dtype=np.float64).ravel())
                    if terminated or truncated:
                        break
                env.close()
                trajectories.append(seen)
            low, high = trajectories
            if len(low) == len(high) and all(
                np.array_equal(a, b) for a, b in zip(low, high, strict=True)
            ):
                raise TaskSpaceError(
                    f"setting {p.attribute} on {self.env_id} does not change its dynamics "
                    f"(parameter {p.name} of {self.name})",
                    fix="the env may copy it at "
                    "construction or reset; choose the attribute its step() reads",
                )

    def task_of(self, env: Any) -> np.ndarray:
        """The task values an environment holds now."""
        return np.array([float(getattr(env.unwrapped, p.attribute)) for p in self.parameters])


def _gymnasium() -> Any:
    try:
        import gymnasium
    except ImportError:
        raise MissingDependencyError("gymnasium", "gym", "task spaces") from None
    return gymnasium


# Built-in spaces. Pendulum's ranges follow the pilot in shared facts: the
# heavy/long corner is hard but solvable with the 2 N*m torque limit; wider ones
# (m up to 3, l up to 2) make a corner unsolvable, which teaches nothing.
BUILTIN: dict[str, TaskSpace] = {
    "pendulum": TaskSpace(
        name="pendulum",
        env_id="Pendulum-v1",
        max_episode_steps=200,
        parameters=(
            TaskParameter(name="mass", attribute="m", low=0.5, high=2.0, ood_low=0.3, ood_high=2.5),
            TaskParameter(
                name="length", attribute="l", low=0.5, high=1.5, ood_low=0.4, ood_high=1.8
            ),
        ),
    ),
    "cartpole": TaskSpace(
        name="cartpole",
        env_id="CartPole-v1",
        max_episode_steps=500,
        parameters=(
            TaskParameter(
                name="pole_half_length",
                attribute="length",
                low=0.25,
                high=1.5,
                log=True,
                ood_low=0.15,
                ood_high=2.5,
            ),
            TaskParameter(
                name="pole_mass",
                attribute="masspole",
                low=0.05,
                high=0.5,
                log=True,
                ood_low=0.03,
                ood_high=1.0,
            ),
            TaskParameter(
                name="force", attribute="force_mag", low=5.0, high=15.0, ood_low=3.0, ood_high=20.0
            ),
        ),
    ),
    # CartPole with weak actuators (1 to 5 N, against 10 N in the original) and
    # longer, heavier poles: the push can barely outrun the fall at the weak end.
    "cartpole-weak": TaskSpace(
        name="cartpole-weak",
        env_id="CartPole-v1",
        max_episode_steps=500,
        parameters=(
            TaskParameter(
                name="pole_half_length",
                attribute="length",
                low=0.25,
                high=2.0,
                log=True,
                ood_low=0.15,
                ood_high=3.0,
            ),
            TaskParameter(
                name="pole_mass",
                attribute="masspole",
                low=0.1,
                high=1.0,
                log=True,
                ood_low=0.05,
                ood_high=1.5,
            ),
            TaskParameter(
                name="force", attribute="force_mag", low=1.0, high=5.0, ood_low=0.7, ood_high=7.0
            ),
        ),
    ),
    # Acrobot: torque at the elbow only; heavier links need more swings to get the
    # tip up, but every task in range is solvable (checked by single-task training).
    "acrobot": TaskSpace(
        name="acrobot",
        env_id="Acrobot-v1",
        max_episode_steps=500,
        parameters=(
            TaskParameter(
                name="link1_mass",
                attribute="LINK_MASS_1",
                low=0.5,
                high=2.5,
                ood_low=0.3,
                ood_high=3.5,
            ),
            TaskParameter(
                name="link2_mass",
                attribute="LINK_MASS_2",
                low=0.5,
                high=2.5,
                ood_low=0.3,
                ood_high=3.5,
            ),
        ),
    ),
    "mountaincar": TaskSpace(
        name="mountaincar",
        env_id="MountainCarContinuous-v0",
        max_episode_steps=999,
        parameters=(
            TaskParameter(
                name="power",
                attribute="power",
                low=0.0009,
                high=0.003,
                log=True,
                ood_low=0.0006,
                ood_high=0.004,
            ),
        ),
    ),
}


def load_task_space(name_or_path: str | Path) -> TaskSpace:
    """A built-in task space by name, or one defined in a YAML file.

    A file is read as graphs are (:func:`edgeloop.runtime.graph_yaml.read_yaml_file`):
    within the same bounds on its size, nesting and strings.

    Raises:
        TaskSpaceError: an unknown name (with close matches), or a file that cannot be
            read, is not YAML within those bounds or breaks the schema; its ``where``
            is the file and line of the (first) problem.
    """
    name = str(name_or_path)
    if name in BUILTIN:
        return BUILTIN[name]
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        close = difflib.get_close_matches(name, list(BUILTIN), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"built-ins: {', '.join(BUILTIN)}"
        raise TaskSpaceError(f"unknown task space '{name}'", fix=f"{hint}, or a YAML file")
    file = str(path)
    try:
        data, lines, duplicates = read_yaml_file(path, ProblemsError, what="task space")
    except ProblemsError as exc:  # unreadable, not YAML, or past a bound
        raise _task_space_error(exc.problems) from None
    if not isinstance(data, dict):
        raise TaskSpaceError(
            "a task space must be a mapping with 'name', 'env_id' and 'parameters'",
            fix="write name:, env_id: and parameters: (a list of {name, attribute, low, high})",
            where=f"{file}:1",
        )
    try:
        space = TaskSpace.model_validate(data)
    except ValidationError as exc:
        problems = [
            problem_from_pydantic(e, file, lines, root=TaskSpace)
            for e in exc.errors()
            # pydantic counts a tuple's length after its items: one bad parameter also
            # reads "too short", though the file has enough of them
            if not (e["type"] == "too_short" and len(e["input"]) >= e["ctx"]["min_length"])
        ]
        raise _task_space_error(duplicates + problems) from None
    if duplicates:
        raise _task_space_error(duplicates)
    return space


def _task_space_error(problems: list[GraphProblem]) -> TaskSpaceError:
    """A task space file's problems as one error: ``where``, ``message`` and ``fix``
    of a single problem; for several, each with its own line, where and fix."""
    first = problems[0]
    if len(problems) > 1:
        listed = "".join(f"\n  - {p}" for p in problems)
        return TaskSpaceError(f"{len(problems)} problems in task space:{listed}", where=first.file)
    where = first.file if first.line is None else f"{first.file}:{first.line}"
    message = f"{first.field}: {first.message}" if first.field else first.message
    return TaskSpaceError(
        message, fix=first.fix or "see sims/task_space.py for the fields", where=where
    )
