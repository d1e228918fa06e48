"""A learned predictor for a grid sensor: reconstruct the whole view from the cells read.

A small masked-autoencoder-style convolutional network takes the cells read
(``frame``, 0 elsewhere) and which they are (``mask``) and returns the full view
(``recon``). It is trained offline on scenes this project generates (the blob
scenes of :mod:`edgeloop.plugins.grid_sensor`) with random masks of every
density, then exported through the ONNX exporter (parity-checked) as a bundle
that the ``onnx.model`` node runs in a loop, without torch on the board.

    from edgeloop.sims.masked_autoencoder import train, export
    model = train(steps=3000)
    export(model, "mae-bundle")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.plugins.grid_sensor import BlobScene
from edgeloop.sims.torch_support import import_torch, one_thread

SIZE = 16


def _torch() -> Any:
    return import_torch("training the masked autoencoder")


def make_model() -> Any:
    """frame (B, 16, 16) and mask (B, 16, 16) -> recon (B, 16, 16)."""
    torch = _torch()
    nn = torch.nn

    class MaskedAutoencoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Sequential(
                nn.Conv2d(2, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 32, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(),
            )
            self.decode = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 1, 3, padding=1),
            )

        def forward(self, frame: Any, mask: Any) -> Any:
            x = torch.stack([frame * mask, mask], dim=1)
            out = self.decode(self.encode(x))[:, 0]
            return mask * frame + (1 - mask) * out  # what was read is kept as read

    return MaskedAutoencoder()


def scene_batch(
    rng: np.random.Generator, batch: int, blobs: int = 2, speed: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Full views of random scenes at random times, and random masks of random density."""
    frames = np.empty((batch, SIZE, SIZE), np.float32)
    masks = np.empty((batch, SIZE, SIZE), np.float32)
    for i in range(batch):
        scene = BlobScene(rng, SIZE, blobs, 1.5, speed)
        frames[i] = scene.render(float(rng.uniform(0, 20)))
        masks[i] = rng.random((SIZE, SIZE)) < rng.uniform(0.05, 1.0)
    return frames, masks


def train(
    steps: int = 3000, batch: int = 64, seed: int = 0, lr: float = 2e-3, progress: Any = None
) -> Any:
    """Train on generated scenes; ``progress(step, loss)`` is called every 100 steps."""
    with one_thread("training the masked autoencoder"):
        return _train(steps, batch, seed, lr, progress)


def _train(steps: int, batch: int, seed: int, lr: float, progress: Any) -> Any:
    torch = _torch()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = make_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        frames, masks = scene_batch(rng, batch)
        frame, mask = torch.from_numpy(frames), torch.from_numpy(masks)
        loss = torch.nn.functional.mse_loss(model(frame, mask), frame)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress is not None and step % 100 == 0:
            progress(step, loss.item())
    return model.eval()


def export(model: Any, folder: str | Path, *, overwrite: bool = True) -> Path:
    """The model as an ONNX bundle (inputs ``frame``, ``mask``; output ``recon``)."""
    torch = _torch()
    from edgeloop.exporters.onnx_export import export_bundle

    rng = np.random.default_rng(1)
    frames, masks = scene_batch(rng, 2)
    export_bundle(
        model,
        (torch.from_numpy(frames), torch.from_numpy(masks)),
        folder,
        input_names=["frame", "mask"],
        output_names=["recon"],
        overwrite=overwrite,
    )
    return Path(folder)
