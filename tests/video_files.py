"""Small video files for tests, written with cv2.VideoWriter (FFV1: lossless, so a
frame reads back exactly as written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame ``index`` as written (BGR): a bright square moving right over a dark
    background, the index in every channel of the top-left pixel."""
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    column = (index * 4) % (width - 8)
    image[16:24, column : column + 8] = (40, 160, 250)
    image[0, 0] = index % 256
    return image


def index_of(image: np.ndarray) -> int:
    """The index a frame carries (any channel order)."""
    return int(image[0, 0, 0])


def write_video(path: Path, frames: int = 30, fps: float = 30.0, size=(48, 64)) -> Path:
    import cv2

    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    assert writer.isOpened(), "this OpenCV cannot write FFV1"
    for k in range(frames):
        writer.write(frame(k, height, width))
    writer.release()
    return path
