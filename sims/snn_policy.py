"""A spiking policy that does a job: the pendulum swing-up, distilled into spikes.

The teacher is a policy trained by ``edgeloop train`` (PPO, any sampler) and
exported by ``edgeloop export``: its bundle takes the observation and the task,
and is asked at the nominal task (mass 1, length 1) on Pendulum-v1 at its own
20 Hz. A two-layer network of Leaky neurons with a linear readout learns to
imitate it with surrogate gradients (snntorch's ATan), trained through time on
whole episodes of the teacher, then, DAgger-style, on the states its own
actions lead to, labelled by the teacher. (The classical swing-up controller,
bang-bang far from upright, proved too hard to imitate this way; the trained
policy's smooth actions are not.) The result keeps its state explicit (the
``snn.torch`` contract), so it runs in that node and, exported with
:func:`~edgeloop.exporters.spiking.export_spiking`, in the ``onnx.model`` node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.sims.torch_support import import_torch, one_thread

DT = 0.05  # Pendulum-v1's own step, at which the MPTS/PPO teacher was trained


def _torch() -> Any:
    return import_torch("distilling a spiking policy")


def make_policy(hidden: int = 64, seed: int = 0) -> Any:
    """obs (B, 3) and state -> action (B, 1) in [-2, 2], new state."""
    import snntorch as snn

    torch = _torch()
    nn = torch.nn

    class SpikingPolicy(nn.Module):
        state_names = ("mem1", "mem2")

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.fc1 = nn.Linear(3, hidden)
            self.lif1 = snn.Leaky(beta=0.8)
            self.fc2 = nn.Linear(hidden, hidden)
            self.lif2 = snn.Leaky(beta=0.8)
            self.readout = nn.Linear(hidden, 1)

        def initial_state(self, batch: int) -> tuple[Any, Any]:
            return torch.zeros(batch, hidden), torch.zeros(batch, hidden)

        def forward(self, obs: Any, mem1: Any, mem2: Any) -> tuple[Any, Any, Any]:
            spk1, mem1 = self.lif1(self.fc1(obs), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            return 2.0 * torch.tanh(self.readout(spk2)), mem1, mem2

    return SpikingPolicy()


def teacher(bundle: str | Path) -> Any:
    """obs -> action of an exported task-aware policy, at the nominal task."""
    import onnxruntime as ort

    from edgeloop.runtime.bundles import open_model

    model_file, _ = open_model(bundle)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    task = np.array([[1.0, 1.0]], np.float32)  # mass, length: Pendulum-v1's own
    return lambda obs: session.run(None, {"obs": obs[None], "task": task})[0][0]


def rollouts(
    policy: Any | None, episodes: int, steps: int, seed: int, bundle: str | Path
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Observations, the teacher's actions for them, and each episode's return,
    with ``policy`` acting (the teacher when None)."""
    import gymnasium as gym

    torch = _torch()
    observations, labels, returns = [], [], []
    for episode in range(episodes):
        env = gym.make("Pendulum-v1", max_episode_steps=steps)
        env.unwrapped.dt = DT
        obs, _ = env.reset(seed=seed + episode)
        label_of = teacher(bundle)
        state = policy.initial_state(1) if policy is not None else None
        seq_obs, seq_act, total = [], [], 0.0
        for _k in range(steps):
            label = np.asarray(label_of(obs.astype(np.float32)), np.float32).reshape(1)
            seq_obs.append(obs.astype(np.float32))
            seq_act.append(label)
            if policy is None:
                action = label
            else:
                with torch.no_grad():
                    out, *state = policy(torch.from_numpy(obs[None].astype(np.float32)), *state)
                action = out[0].numpy()
            obs, reward, _, _, _ = env.step(action)
            total += float(reward)
        observations.append(seq_obs)
        labels.append(seq_act)
        returns.append(total)
        env.close()
    return np.array(observations), np.array(labels), returns


def train(
    bundle: str | Path,
    episodes: int = 16,
    steps: int = 200,
    epochs: int = 300,
    dagger_rounds: int = 2,
    seed: int = 0,
    progress: Any = None,
) -> Any:
    """Distil the teacher into a spiking policy (behaviour cloning, then DAgger)."""
    # One thread: a network this small loses more to a thread pool than it gains.
    with one_thread("distilling a spiking policy") as torch:
        policy = make_policy(seed=seed)
        optimiser = torch.optim.Adam(policy.parameters(), lr=2e-3)
        obs, act, _ = rollouts(None, episodes, steps, seed, bundle)
        for round_ in range(dagger_rounds + 1):
            x, y = torch.from_numpy(obs), torch.from_numpy(act)
            for epoch in range(epochs):
                state = policy.initial_state(x.shape[0])
                loss = 0.0
                for t in range(x.shape[1]):  # through time, the whole episode
                    out, *state = policy(x[:, t], *state)
                    loss = loss + torch.nn.functional.mse_loss(out, y[:, t])
                loss = loss / x.shape[1]
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                if progress is not None and epoch % 10 == 0:
                    progress(round_, epoch, loss.item())
            if round_ < dagger_rounds:  # the states the student reaches, labelled by the teacher
                more_obs, more_act, _ = rollouts(
                    policy.eval(), episodes, steps, seed + 1000 * (round_ + 1), bundle
                )
                policy.train()
                obs, act = np.concatenate([obs, more_obs]), np.concatenate([act, more_act])
        return policy.eval()
