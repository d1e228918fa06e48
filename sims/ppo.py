"""A compact PPO that trains on one task per environment per iteration (CleanRL-style).

Each iteration the sampler proposes ``num_tasks`` tasks; each runs one episode
in its own environment with the current stochastic policy; the returns go back
to the sampler; PPO updates on the collected steps. The budget counts every
environment step, the sampler's evaluation steps included, so samplers compare
at equal cost. Observations carry the task, normalised, so the policy can adapt
to it. torch is imported when training starts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.errors import TrainingError
from edgeloop.sims.checkpoint import SeedCounter, TrainingState
from edgeloop.sims.risk import cvar
from edgeloop.sims.samplers import (
    SAMPLERS,
    DrmEvalSampler,
    DrmSampler,
    ErmSampler,
    FixedSampler,
    GdrmEvalSampler,
    GdrmSampler,
    Sampler,
)
from edgeloop.sims.task_space import TaskSpace, load_task_space
from edgeloop.sims.torch_support import import_torch, one_thread


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does; defaults follow the pilot in shared facts."""

    task_space: str = "pendulum"
    """A built-in task space name or a YAML file."""
    sampler: str = "erm"
    """One of :data:`SAMPLERS`: erm, drm, gdrm, mpts, mpts with options (mpts+ref,
    mpts+div, mpts+regret, mpts+div+regret), pdts, the earlier drm-eval and
    gdrm-eval, or fixed (one task: ``task``)."""
    total_steps: int = 200_000
    """Environment-step budget, evaluation steps of DRM/GDRM included."""
    seed: int = 0
    """Seeds the policy, the sampler and the environments."""
    num_tasks: int = 16
    """Tasks (one episode each) per iteration: B."""
    learning_rate: float = 1e-3
    """Adam learning rate, annealed linearly to 0 over the budget."""
    update_epochs: int = 10
    """PPO epochs per iteration."""
    minibatch_size: int = 400
    """Samples per PPO minibatch."""
    clip: float = 0.2
    """PPO's ratio clip (CleanRL's ``clip_coef``)."""
    vf_coef: float = 0.5
    """Weight of the value loss (half the squared error of the critic) in the loss."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus in the loss (0: none, as in the pilot)."""
    adam_eps: float = 1e-5
    """Adam's epsilon."""
    gamma: float = 0.95
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this for learning (returns are reported unscaled)."""
    max_grad_norm: float = 0.5
    """Gradient clipping."""
    hidden: int = 64
    """Width of the two hidden layers of actor and critic."""
    task: list[float] = field(default_factory=list)
    """The ``fixed`` sampler's one task, physical values (a specialist: the tail check)."""
    gdro_weight: float = 0.01
    """GDRM's weight on an episode's return in its samples' softmax loss weights (the
    reference's ``gdroweight``; positive leans toward better episodes)."""
    gdrm_temperature: float = 1.0
    """gdrm-eval's softmax temperature."""
    processes: bool = False
    """Step each environment in its own process (gymnasium's AsyncVectorEnv)."""
    checkpoint_every: int = 10
    """Iterations between checkpoints (when the run has a checkpoint file)."""
    curve_points: int = 10
    """Learning-curve evaluations over the run (deterministic policy, fixed grid)."""
    curve_grid: int = 5
    """Grid points per parameter of the learning-curve evaluations."""
    mpts: dict[str, Any] = field(default_factory=dict)
    """MPTS settings over the sampler's (``--set mpts.reference=true``, ``--set
    mpts.multiplier=2.5``): the fields of :class:`~edgeloop.sims.mpts.MptsConfig`."""

    def __hash__(self) -> int:  # the mpts dict and the task list are not hashable
        kept = [f.name for f in dataclasses.fields(self) if f.name not in ("mpts", "task")]
        values = [getattr(self, name) for name in kept]
        return hash((*values, tuple(sorted(self.mpts.items())), tuple(self.task)))


@dataclass
class TrainResult:
    """What a run produced."""

    config: TrainConfig
    policy: Any
    """The trained torch module (``policy.act(obs, task)`` for deterministic actions)."""
    steps: list[int] = field(default_factory=list)
    """Environment steps used after each iteration."""
    mean_returns: list[float] = field(default_factory=list)
    """Mean training-episode return of each iteration."""
    tail_returns: list[float] = field(default_factory=list)
    """CVaR_0.9 of each iteration's training-episode returns (tasks the sampler chose)."""
    correlations: list[float] = field(default_factory=list)
    """MPTS's predicted-vs-realised risk correlation per iteration (empty otherwise)."""
    curve: list[dict[str, float]] = field(default_factory=list)
    """Learning curve: ``steps``, ``mean`` and ``cvar_0.9`` of the deterministic policy
    on a fixed grid, ``curve_points`` times over the run."""
    seconds: float = 0.0

    def history(self) -> dict[str, Any]:
        """Everything but the config and the policy, as plain data."""
        return {
            "steps": self.steps,
            "mean_returns": self.mean_returns,
            "tail_returns": self.tail_returns,
            "correlations": self.correlations,
            "curve": self.curve,
            "seconds": self.seconds,
        }

    def load_history(self, history: dict[str, Any]) -> None:
        self.steps = list(history["steps"])
        self.mean_returns = list(history["mean_returns"])
        self.tail_returns = list(history.get("tail_returns", []))
        self.correlations = list(history.get("correlations", []))
        self.curve = list(history.get("curve", []))
        self.seconds = float(history.get("seconds", 0.0))


def typed_settings(values: Mapping[str, Any], *, fixed: Collection[str] = ()) -> dict[str, Any]:
    """Training settings given on a command line (``--set gamma=0.99``), checked
    against :class:`TrainConfig` and converted to its fields' types.

    Raises:
        TrainingError: a name TrainConfig does not have (or one in ``fixed``, which
            the caller sets itself), or a value of the wrong type.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)} - set(fixed) - {"mpts"}
    plain = {k: v for k, v in values.items() if not k.startswith("mpts.")}
    bad = sorted(set(plain) - names)
    if bad:
        raise TrainingError(
            f"unknown or fixed training setting {', '.join(bad)}",
            fix=f"one of {', '.join(sorted(names))}, or mpts.KEY",
        )
    defaults = TrainConfig()
    typed = {k: _as_type(k, v, type(getattr(defaults, k))) for k, v in plain.items()}
    mpts = {k.removeprefix("mpts."): v for k, v in values.items() if k.startswith("mpts.")}
    if mpts:
        typed["mpts"] = _mpts_settings(mpts)
    return typed


def _mpts_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``mpts.KEY`` settings, checked against MptsConfig and typed as its fields."""
    from edgeloop.sims.mpts import MptsConfig

    defaults = MptsConfig()
    names = {f.name for f in dataclasses.fields(MptsConfig)}
    bad = sorted(set(values) - names)
    if bad:
        raise TrainingError(
            f"unknown MPTS setting {', '.join('mpts.' + b for b in bad)}",
            fix=f"one of {', '.join('mpts.' + n for n in sorted(names))}",
        )
    return {k: _as_type(f"mpts.{k}", v, type(getattr(defaults, k))) for k, v in values.items()}


def _as_type(name: str, value: Any, kind: type) -> Any:
    """A --set value as its TrainConfig field's type (YAML reads 1e-3 as a string)."""
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        return kind(value)
    except (TypeError, ValueError):
        raise TrainingError(
            f"training setting {name} = {value!r} is not a {kind.__name__}"
        ) from None


def _torch() -> Any:
    return import_torch("training")


def make_policy(obs_dim: int, action_space: Any, hidden: int) -> Any:
    """Actor-critic over [observation, normalised task]; Gaussian for boxes, categorical
    for discrete actions."""
    torch = _torch()
    nn = torch.nn
    discrete = hasattr(action_space, "n")
    act_dim = int(action_space.n) if discrete else int(np.prod(action_space.shape))

    def mlp(out: int, gain: float) -> Any:
        layers = [
            nn.Linear(obs_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, out),
        ]
        for layer in layers[::2]:
            nn.init.orthogonal_(layer.weight, gain=np.sqrt(2))
            nn.init.zeros_(layer.bias)
        nn.init.orthogonal_(layers[-1].weight, gain=gain)
        return nn.Sequential(*layers)

    class ActorCritic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor = mlp(act_dim, 0.01)
            self.critic = mlp(1, 1.0)
            self.log_std = nn.Parameter(torch.zeros(act_dim))
            self.discrete = discrete
            low = None if discrete else torch.as_tensor(action_space.low, dtype=torch.float32)
            high = None if discrete else torch.as_tensor(action_space.high, dtype=torch.float32)
            self.register_buffer("low", low if low is not None else torch.zeros(0))
            self.register_buffer("high", high if high is not None else torch.zeros(0))

        def distribution(self, x: Any) -> Any:
            out = self.actor(x)
            if self.discrete:
                return torch.distributions.Categorical(logits=out)
            return torch.distributions.Normal(out, self.log_std.exp().expand_as(out))

        def forward(self, x: Any) -> Any:
            """Deterministic action (for export and evaluation), within the action space."""
            out = self.actor(x)
            if self.discrete:
                return out.argmax(dim=-1)
            return torch.clamp(out, self.low, self.high)

    return ActorCritic()


def _sampler(
    config: TrainConfig,
    space: TaskSpace,
    rng: np.random.Generator,
    evaluate: Callable[[np.ndarray], tuple[np.ndarray, int]],
) -> Sampler:
    name = config.sampler
    if name == "erm":
        return ErmSampler(space, rng)
    if name == "fixed":
        return FixedSampler(space, rng, config.task)
    if name == "drm":
        return DrmSampler(space, rng)
    if name == "gdrm":
        return GdrmSampler(space, rng, config.gdro_weight)
    if name == "drm-eval":
        return DrmEvalSampler(space, rng, evaluate)
    if name == "gdrm-eval":
        return GdrmEvalSampler(space, rng, evaluate, temperature=config.gdrm_temperature)
    if name == "pdts":
        from edgeloop.sims.mpts import PdtsSampler

        return PdtsSampler(space, rng, config=_mpts_config(config), seed=config.seed)
    base, *options = name.split("+")
    known = {"ref", "div", "regret"}
    if base == "mpts" and set(options) <= known and len(set(options)) == len(options):
        from edgeloop.sims.mpts import MptsSampler

        mpts = _mpts_config(config)
        return MptsSampler(space, rng, config=mpts, seed=config.seed)  # warm-up: see _train
    raise _unknown_sampler(name)


def takes_mpts_settings(sampler: str) -> bool:
    """Whether a sampler reads ``TrainConfig.mpts`` (MPTS in any form, and PDTS)."""
    return sampler.startswith(("mpts", "pdts"))


def _mpts_config(config: TrainConfig) -> Any:
    """The MPTS settings of an mpts sampler name (``+div``, ``+regret``) with the
    run's ``mpts`` settings over them.

    Raises:
        TrainingError: a setting MPTS refuses.
    """
    from edgeloop.sims.mpts import mpts_config, pdts_config

    make = pdts_config if config.sampler == "pdts" else mpts_config
    options = config.sampler.split("+")[1:]
    named = {"reference": True} if "ref" in options else {}
    named |= {"diversity": 1.0} if "div" in options else {}
    named |= {"risk": "regret"} if "regret" in options else {}
    try:
        return make({**named, **config.mpts})
    except (ValueError, TypeError) as exc:
        raise TrainingError(
            f"{config.sampler.split('+')[0].upper()} settings: {exc}",
            fix="see edgeloop.sims.mpts.MptsConfig",
        ) from None


def _unknown_sampler(name: str) -> TrainingError:
    return TrainingError(
        f"unknown sampler '{name}'",
        fix=f"one of {', '.join(SAMPLERS)}; mpts takes the "
        "options +div and +regret, e.g. mpts+div+regret",
    )


def train(
    config: TrainConfig,
    progress: Callable[[TrainResult], None] | None = None,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a policy with PPO on tasks from ``config.sampler`` until the budget is spent.

    Args:
        config: The run's settings.
        progress: Called after every iteration with the result so far.
        checkpoint: A file to save the whole training state to every
            ``config.checkpoint_every`` iterations (and at the end).
        resume: Continue from ``checkpoint`` if it exists: the run goes on exactly
            as if it had never stopped.

    Raises:
        TrainingError: an unknown sampler, a budget too small for one iteration, or
            a checkpoint that does not belong to this config.
    """
    with one_thread() as torch:
        return _train(torch, config, progress, checkpoint, resume)


def _train(
    torch: Any,
    config: TrainConfig,
    progress: Callable[[TrainResult], None] | None,
    checkpoint: str | Path | None,
    resume: bool,
) -> TrainResult:
    from edgeloop.sims.task_env import TaskVector, episode_returns

    started = time.perf_counter()
    check_config(config)
    space = load_task_space(config.task_space)
    cost = iteration_cost(config, space)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    vector = TaskVector(space, config.num_tasks, processes=config.processes)
    probe = vector.envs.single_observation_space
    obs_dim = int(np.prod(probe.shape)) + space.dim
    policy = make_policy(obs_dim, vector.envs.single_action_space, config.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, eps=config.adam_eps)
    seeds = SeedCounter(config.seed * 1_000_003)

    def act(obs: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(
            np.concatenate([obs, space.normalise(tasks)], axis=1), dtype=torch.float32
        )
        with torch.no_grad():
            return policy(x).numpy()

    def evaluate(tasks: np.ndarray) -> tuple[np.ndarray, int]:
        returns, steps = episode_returns(vector, act, tasks, seeds.take(len(tasks)))
        return -returns, steps

    sampler = _sampler(config, space, rng, evaluate)
    result = TrainResult(config, policy)
    curve_at = [
        config.total_steps * (k + 1) / config.curve_points for k in range(config.curve_points)
    ]
    curve_grid = space.grid(config.curve_grid)
    training = TrainingState(torch, config, policy, optimizer, rng, seeds, sampler, result)
    used = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        used = training.restore(checkpoint)
    try:
        while used + cost <= config.total_steps:
            before = sampler.evaluation_steps
            if hasattr(sampler, "warming_up"):  # the warm-up is a share of the budget
                sampler.warming_up = used < sampler.config.warmup_fraction * config.total_steps
            rollouts = getattr(sampler, "rollouts_per_task", 1)
            tasks = sampler.propose(config.num_tasks * rollouts)
            trajectories, returns = _rollouts(torch, policy, vector, space, tasks, seeds)
            sampler.observe(tasks, -returns)
            steps = sum(len(t["rewards"]) for t in trajectories)  # every rollout is charged
            used += steps + sampler.evaluation_steps - before
            frac = 1.0 - used / config.total_steps
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * max(frac, 0.0)
            kept = sampler.keep(returns, config.num_tasks) if rollouts > 1 else None
            _ppo_update(
                torch,
                policy,
                optimizer,
                trajectories if kept is None else [trajectories[i] for i in kept],
                config,
                gdro_weight=getattr(sampler, "gdro_weight", None),
            )
            result.steps.append(used)
            result.mean_returns.append(float(returns.mean()))
            result.tail_returns.append(cvar(returns, 0.9))
            result.correlations = list(getattr(sampler, "correlations", []))
            last = used + cost > config.total_steps
            if curve_at and (last or used >= curve_at[len(result.curve)]):
                grid_returns, _ = episode_returns(
                    vector, act, curve_grid, [CURVE_SEED] * len(curve_grid)
                )
                result.curve.append(
                    {
                        "steps": used,
                        "mean": float(grid_returns.mean()),
                        "cvar_0.9": cvar(grid_returns, 0.9),
                    }
                )
            if checkpoint is not None and (
                last or len(result.steps) % config.checkpoint_every == 0
            ):
                training.save(checkpoint, used)
            if progress is not None:
                progress(result)
    finally:
        vector.close()
    result.seconds += time.perf_counter() - started
    return result


def check_config(config: TrainConfig) -> None:
    """Refuse, before any work, what :func:`train` would refuse.

    Raises:
        TrainingError: an unknown task space or sampler, or a budget smaller than
            one iteration.
    """
    space = load_task_space(config.task_space)
    if config.sampler not in SAMPLERS:
        raise _unknown_sampler(config.sampler)
    if config.mpts:
        if not takes_mpts_settings(config.sampler):
            raise TrainingError(
                f"mpts.* settings given for the {config.sampler} sampler",
                fix="drop them, or train an mpts sampler",
            )
        _mpts_config(config)
    if config.sampler == "fixed":
        if len(config.task) != space.dim:
            raise TrainingError(
                f"the fixed sampler needs task = {space.dim} value(s) of {space.name}'s "
                f"parameters ({', '.join(p.name for p in space.parameters)}), got {config.task}",
                fix="--set task=[...]",
            )
        space.check(np.asarray(config.task, dtype=np.float64))
    at_least = {
        "seed": 0,
        "num_tasks": 1,
        "update_epochs": 1,
        "minibatch_size": 1,
        "hidden": 1,
        "checkpoint_every": 1,
        "curve_points": 0,
        "curve_grid": 1,
    }
    for name, low in at_least.items():
        if getattr(config, name) < low:
            raise TrainingError(f"{name} = {getattr(config, name)} must be at least {low}")
    cost = iteration_cost(config, space)
    if config.total_steps < cost:
        raise TrainingError(
            f"a budget of {config.total_steps:,} steps is less than one iteration of "
            f"{config.sampler} ({cost:,} steps at most: {config.num_tasks} tasks x "
            f"{space.max_episode_steps or 1000} steps"
            f"{', plus twice that evaluating candidates' if _evaluates(config) else ''}"
            f"{', twice: it trains on the worst half' if config.sampler == 'drm' else ''})",
            fix="raise total_steps",
        )


def _evaluates(config: TrainConfig) -> bool:
    return config.sampler in ("drm-eval", "gdrm-eval")


def iteration_cost(config: TrainConfig, space: TaskSpace) -> int:
    """The most environment steps one iteration can take: B episodes to the time
    limit, 2B for DRM (it trains on the worst half of its rollouts), and for
    drm-eval and gdrm-eval 2B evaluation episodes as well. The trainer starts an
    iteration only if this still fits the budget, so no run ever exceeds it."""
    per_task = 3 if _evaluates(config) else 2 if config.sampler == "drm" else 1
    return config.num_tasks * per_task * (space.max_episode_steps or 1000)


CURVE_SEED = 20_000
"""Episode seed of the learning-curve evaluations (the same every time, so points compare)."""


def _rollout(
    torch: Any, policy: Any, vector: Any, space: TaskSpace, tasks: np.ndarray, seeds: SeedCounter
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """One stochastic episode per task, all environments stepped together, recorded for PPO."""
    units = space.normalise(tasks).astype(np.float32)
    obs, live = vector.reset(tasks, seeds.take(len(tasks)))
    k = len(tasks)
    units = np.concatenate([units, np.repeat(units[:1], vector.size - k, axis=0)])
    buffers = [
        {
            "obs": [],
            "actions": [],
            "logp": [],
            "rewards": [],
            "values": [],
            "terminal": False,
            "last_obs": None,
        }
        for _ in range(k)
    ]
    returns = np.zeros(k)
    while live.any():
        x = torch.as_tensor(np.concatenate([obs, units], axis=1))
        with torch.no_grad():
            dist = policy.distribution(x)
            actions = dist.sample()
            logp = dist.log_prob(actions)
            logp = logp if policy.discrete else logp.sum(-1)
            values = policy.critic(x).squeeze(-1)
        actions_np, x_np = actions.numpy(), x.numpy()
        obs, rewards, terminated, truncated = vector.step(actions_np)
        for i in np.flatnonzero(live):
            b = buffers[i]
            b["obs"].append(x_np[i])
            b["actions"].append(actions_np[i])
            b["logp"].append(float(logp[i]))
            b["values"].append(float(values[i]))
            b["rewards"].append(float(rewards[i]))
            returns[i] += float(rewards[i])
            if terminated[i] or truncated[i]:
                b["terminal"] = bool(terminated[i])
                b["last_obs"] = np.concatenate([obs[i], units[i]])
        live &= ~(terminated | truncated)
    return buffers, returns


def _rollouts(
    torch: Any, policy: Any, vector: Any, space: TaskSpace, tasks: np.ndarray, seeds: SeedCounter
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """:func:`_rollout` on as many tasks as asked, as many at a time as there are
    environments (DRM runs twice the batch)."""
    if len(tasks) <= vector.size:
        return _rollout(torch, policy, vector, space, tasks, seeds)
    trajectories, returns = [], []
    for start in range(0, len(tasks), vector.size):
        part, part_returns = _rollout(
            torch, policy, vector, space, tasks[start : start + vector.size], seeds
        )
        trajectories += part
        returns.append(part_returns)
    return trajectories, np.concatenate(returns)


def _ppo_update(
    torch: Any,
    policy: Any,
    optimizer: Any,
    trajectories: list[dict[str, Any]],
    config: TrainConfig,
    *,
    gdro_weight: float | None = None,
) -> None:
    """PPO epochs on the trajectories. With ``gdro_weight`` (GDRM), each minibatch's
    policy loss weights its samples by softmax(gdro_weight x their episode's return)."""
    obs, actions, logps, advantages, returns, episode = [], [], [], [], [], []
    for t in trajectories:
        rewards = np.asarray(t["rewards"]) * config.reward_scale
        values = np.asarray(t["values"])
        with torch.no_grad():
            last = (
                0.0
                if t["terminal"]
                else float(policy.critic(torch.as_tensor(t["last_obs"])[None]).squeeze())
            )
        next_values = np.append(values[1:], last)  # bootstrap at truncation, not termination
        deltas = rewards + config.gamma * next_values - values
        adv = np.zeros_like(deltas)
        running = 0.0
        for k in range(len(deltas) - 1, -1, -1):
            running = deltas[k] + config.gamma * config.gae_lambda * running
            adv[k] = running
        obs.extend(t["obs"])
        actions.extend(t["actions"])
        logps.extend(t["logp"])
        advantages.extend(adv)
        returns.extend(adv + values)
        episode.extend([float(np.sum(t["rewards"]))] * len(adv))
    obs_t = torch.as_tensor(np.stack(obs), dtype=torch.float32)
    act_t = torch.as_tensor(np.stack(actions))
    logp_t = torch.as_tensor(np.asarray(logps), dtype=torch.float32)
    adv_t = torch.as_tensor(np.asarray(advantages), dtype=torch.float32)
    ret_t = torch.as_tensor(np.asarray(returns), dtype=torch.float32)
    episode_t = torch.as_tensor(np.asarray(episode), dtype=torch.float32)
    n = len(obs_t)
    for _ in range(config.update_epochs):
        order = torch.randperm(n)
        for start in range(0, n, config.minibatch_size):
            idx = order[start : start + config.minibatch_size]
            dist = policy.distribution(obs_t[idx])
            new_logp = dist.log_prob(act_t[idx])
            new_logp = new_logp if policy.discrete else new_logp.sum(-1)
            ratio = (new_logp - logp_t[idx]).exp()
            adv = adv_t[idx]
            adv = (adv - adv.mean()) / (
                adv.std(correction=0) + 1e-8
            )  # a last minibatch may hold one sample
            clipped = torch.min(ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv)
            if gdro_weight is None:
                policy_loss = -clipped.mean()
            else:  # the reference's GDRM: adv_probs = softmax(gdroweight * return)
                policy_loss = -(clipped * torch.softmax(gdro_weight * episode_t[idx], 0)).sum()
            value_loss = 0.5 * (policy.critic(obs_t[idx]).squeeze(-1) - ret_t[idx]).pow(2).mean()
            loss = policy_loss + config.vf_coef * value_loss
            if config.ent_coef:
                loss = loss - config.ent_coef * _entropy(dist, policy.discrete).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()


def _entropy(dist: Any, discrete: bool) -> Any:
    entropy = dist.entropy()
    return entropy if discrete else entropy.sum(-1)


def as_policy_function(result: TrainResult) -> Callable[[np.ndarray, np.ndarray], Any]:
    """The trained policy as ``policy(obs, task) -> action`` for :func:`evaluate`; its
    ``batched`` attribute takes (n, obs_dim) observations and (n, d) tasks at once."""
    torch = _torch()
    space = load_task_space(result.config.task_space)
    net = result.policy

    def batched(obs: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        x = np.concatenate([np.asarray(obs, np.float32), space.normalise(tasks)], axis=1)
        with torch.no_grad():
            return net(torch.as_tensor(x, dtype=torch.float32)).numpy()

    def act(obs: np.ndarray, task: np.ndarray) -> Any:
        action = batched(np.asarray(obs, np.float32).reshape(1, -1), np.atleast_2d(task))[0]
        return int(action) if net.discrete else action

    act.batched = batched  # type: ignore[attr-defined]
    return act
