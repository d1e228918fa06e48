"""An unmodified stable-baselines3 PPO training with MPTS through edgeloop's wrapper.

    python examples/sb3-mpts/train_sb3_ppo.py --steps 20000

The wrapper draws each episode's task (a pendulum's mass and length) from the
MPTS sampler and reports each episode's return back; SB3 sees an ordinary
gymnasium environment. The policy here is not told the task (SB3 trains on the
environment's own observation), so it learns one controller for the family.
"""

from __future__ import annotations

import argparse

import numpy as np
from stable_baselines3 import PPO

from edgeloop.sims import MptsSampler, evaluate, load_task_space
from edgeloop.sims.wrapper import task_sampling_env


def main(steps: int = 20_000, seed: int = 0) -> tuple[MptsSampler, float]:
    space = load_task_space("pendulum")
    sampler = MptsSampler(space, np.random.default_rng(seed), warmup_iterations=2, seed=seed)
    env = task_sampling_env(space, sampler, batch_size=8)
    model = PPO("MlpPolicy", env, n_steps=1024, batch_size=256, gamma=0.95, seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    result = evaluate(
        lambda obs, task: model.predict(obs, deterministic=True)[0], space, per_axis=3, episodes=1
    )
    print(
        f"MPTS observed {sampler.iteration} batches; risk correlation (last) "
        f"{sampler.correlations[-1] if sampler.correlations else float('nan'):.2f}; "
        f"grid mean {result.mean:.0f}, CVaR_0.9 {result.cvar[0.9]:.0f}"
    )
    return sampler, result.mean


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.steps, args.seed)
