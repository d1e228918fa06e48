"""A compact PPO that trains on one task per environment per iteration (CleanRL-style).

Each iteration the sampler proposes ``num_tasks`` tasks; each runs one episode
in its own environment with the current stochastic policy; the returns go back
to the sampler; PPO updates on the collected steps. The budget counts every
environment step, the sampler's evaluation steps included, so samplers compare
at equal cost. Observations carry the task, normalised, so the policy can adapt
to it. torch is imported when training starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.runtime.errors import EdgeloopError, MissingDependencyError
from edgeloop.sims.samplers import DrmSampler, ErmSampler, GdrmSampler, Sampler
from edgeloop.sims.task_space import TaskSpace, load_task_space


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does; defaults follow the pilot in shared facts."""

    task_space: str = "pendulum"
    """A built-in task space name or a YAML file."""
    sampler: str = "erm"
    """erm, drm, gdrm or mpts."""
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
    """PPO ratio clip."""
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
    gdrm_temperature: float = 1.0
    """GDRM's softmax temperature."""


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
    correlations: list[float] = field(default_factory=list)
    """MPTS's predicted-vs-realised risk correlation per iteration (empty otherwise)."""
    seconds: float = 0.0


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "train", "training") from None
    return torch


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
    iterations: int,
) -> Sampler:
    name = config.sampler
    if name == "erm":
        return ErmSampler(space, rng)
    if name == "drm":
        return DrmSampler(space, rng, evaluate)
    if name == "gdrm":
        return GdrmSampler(space, rng, evaluate, temperature=config.gdrm_temperature)
    if name == "mpts":
        from edgeloop.sims.mpts import MptsConfig, MptsSampler

        warmup = max(1, round(MptsConfig().warmup_fraction * iterations))
        return MptsSampler(space, rng, warmup_iterations=warmup, seed=config.seed)
    raise EdgeloopError(f"unknown sampler '{name}' (fix: erm, drm, gdrm or mpts)")


def train(
    config: TrainConfig, progress: Callable[[TrainResult], None] | None = None
) -> TrainResult:
    """Train a policy with PPO on tasks from ``config.sampler`` until the budget is spent.

    Raises:
        EdgeloopError: an unknown sampler, or a budget too small for one iteration.
    """
    torch = _torch()
    started = time.perf_counter()
    space = load_task_space(config.task_space)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    envs = [space.make_env() for _ in range(config.num_tasks)]
    probe_obs, _ = envs[0].reset(seed=config.seed)
    horizon = space.max_episode_steps or 1000
    if config.total_steps < config.num_tasks * horizon:
        raise EdgeloopError(
            f"a budget of {config.total_steps} steps is less than one iteration "
            f"({config.num_tasks} tasks x {horizon} steps) (fix: raise total_steps)"
        )
    obs_dim = int(np.prod(np.shape(probe_obs))) + space.dim
    policy = make_policy(obs_dim, envs[0].action_space, config.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, eps=1e-5)
    episode_seed = [config.seed * 1_000_003]

    def rollout(tasks: np.ndarray, stochastic: bool) -> tuple[list[dict[str, Any]], np.ndarray]:
        """One episode per task, all environments stepped together."""
        returns = np.zeros(len(tasks))
        units = space.normalise(tasks)
        obs = []
        for env, task in zip(envs, tasks, strict=False):
            space.apply(env, task, ood=True)
            episode_seed[0] += 1
            obs.append(np.asarray(env.reset(seed=episode_seed[0])[0], dtype=np.float32).ravel())
        live = list(range(len(tasks)))
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
            for _ in tasks
        ]
        while live:
            x = torch.as_tensor(
                np.stack([np.concatenate([obs[i], units[i]]) for i in live]), dtype=torch.float32
            )
            with torch.no_grad():
                dist = policy.distribution(x)
                actions = (
                    dist.sample()
                    if stochastic
                    else (dist.probs.argmax(-1) if policy.discrete else dist.mean)
                )
                logp = dist.log_prob(actions)
                logp = logp if policy.discrete else logp.sum(-1)
                values = policy.critic(x).squeeze(-1)
            still = []
            for k, i in enumerate(live):
                action = actions[k].numpy()
                step_action = (
                    int(action)
                    if policy.discrete
                    else np.clip(action, envs[i].action_space.low, envs[i].action_space.high)
                )
                next_obs, reward, terminated, truncated, _ = envs[i].step(step_action)
                b = buffers[i]
                b["obs"].append(x[k].numpy())
                b["actions"].append(action)
                b["logp"].append(float(logp[k]))
                b["values"].append(float(values[k]))
                b["rewards"].append(float(reward))
                returns[i] += float(reward)
                obs[i] = np.asarray(next_obs, dtype=np.float32).ravel()
                if terminated or truncated:
                    b["terminal"] = bool(terminated)
                    b["last_obs"] = np.concatenate([obs[i], units[i]]).astype(np.float32)
                else:
                    still.append(i)
            live = still
        return buffers, returns

    def evaluate(tasks: np.ndarray) -> tuple[np.ndarray, int]:
        risks, steps = [], 0
        for start in range(0, len(tasks), len(envs)):
            chunk = tasks[start : start + len(envs)]
            trajectories, returns = rollout(chunk, stochastic=False)
            risks.extend(-returns)
            steps += sum(len(t["rewards"]) for t in trajectories)
        return np.asarray(risks), steps

    iterations = max(1, config.total_steps // (config.num_tasks * horizon))
    sampler = _sampler(config, space, rng, evaluate, iterations)
    result = TrainResult(config, policy)
    used = 0
    while used + config.num_tasks * horizon <= config.total_steps:
        before = sampler.evaluation_steps
        tasks = sampler.propose(config.num_tasks)
        trajectories, returns = rollout(tasks, stochastic=True)
        sampler.observe(tasks, -returns)
        used += sum(len(t["rewards"]) for t in trajectories) + sampler.evaluation_steps - before
        frac = 1.0 - used / config.total_steps
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * max(frac, 0.0)
        _ppo_update(torch, policy, optimizer, trajectories, config)
        result.steps.append(used)
        result.mean_returns.append(float(returns.mean()))
        result.correlations = list(getattr(sampler, "correlations", []))
        if progress is not None:
            progress(result)
    for env in envs:
        env.close()
    result.seconds = time.perf_counter() - started
    return result


def _ppo_update(
    torch: Any, policy: Any, optimizer: Any, trajectories: list[dict[str, Any]], config: TrainConfig
) -> None:
    obs, actions, logps, advantages, returns = [], [], [], [], []
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
    obs_t = torch.as_tensor(np.stack(obs), dtype=torch.float32)
    act_t = torch.as_tensor(np.stack(actions))
    logp_t = torch.as_tensor(np.asarray(logps), dtype=torch.float32)
    adv_t = torch.as_tensor(np.asarray(advantages), dtype=torch.float32)
    ret_t = torch.as_tensor(np.asarray(returns), dtype=torch.float32)
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
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = -torch.min(
                ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv
            ).mean()
            value_loss = 0.5 * (policy.critic(obs_t[idx]).squeeze(-1) - ret_t[idx]).pow(2).mean()
            loss = policy_loss + 0.5 * value_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()


def as_policy_function(result: TrainResult) -> Callable[[np.ndarray, np.ndarray], Any]:
    """The trained policy as ``policy(obs, task) -> action`` for :func:`evaluate`."""
    torch = _torch()
    space = load_task_space(result.config.task_space)
    net = result.policy

    def act(obs: np.ndarray, task: np.ndarray) -> Any:
        x = np.concatenate([np.asarray(obs, np.float32).ravel(), space.normalise(task)[0]])
        with torch.no_grad():
            action = net(torch.as_tensor(x, dtype=torch.float32)[None])[0].numpy()
        return int(action) if net.discrete else action

    return act
