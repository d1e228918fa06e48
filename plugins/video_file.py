"""Playing a video file into a loop (``video.file``; OpenCV, the ``camera`` extra):
for tests, and for running a loop on a logged drive."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeloop.plugins.camera_sources import Source, cv2_module, open_capture
from edgeloop.runtime.node import NodeContext, Port, Sensor


@dataclass(frozen=True)
class VideoFileConfig:
    path: str
    """The video file (anything FFmpeg reads: .mp4, .mkv, .avi...)."""
    pace: Literal["recorded", "every"] = "recorded"
    """``recorded``: a step publishes the frame due at the loop's clock time since
    its first step (frame i at i / the file's fps), skipping the frames a slower
    loop missed; ``every``: each step publishes the next frame, as fast as the
    node's rate (deterministic in simulated time at any rate)."""
    at_end: Literal["end", "loop"] = "end"
    """After the last frame: ``end`` publishes nothing more; ``loop`` plays the
    file again from its start."""
    color: Literal["rgb", "bgr", "gray"] = "rgb"
    """Channel order of the frames (OpenCV decodes BGR)."""


class VideoFile(Sensor):
    """Plays a video file's frames as uint8 (H, W, C), at its frame rate or as fast as stepped.

    Frames are read and decoded in the step (no thread), so a simulated-time run
    plays the same frames every time. With ``pace: recorded`` a frame's sensing
    time is its place in the file (frame i at i / fps from the first step);
    with ``every``, the step's time. Notes: ``frames`` published, ``skipped``
    (frames a slower loop missed), ``fps``, ``plays``.

    Faults:
        a file that does not exist or FFmpeg cannot open fails setup (a
        NodeSetupError naming it). A file that ends early (cut short) simply
        ends (``at_end``).

    YAML::

        - id: camera
          type: video.file
          rate_hz: 30
          config: {path: drive.mkv, pace: recorded}
    """

    outputs = (Port("image", dtype="uint8", shape=(None, None, None), doc="the frame, (H, W, C)"),)
    Config = VideoFileConfig

    def setup(self, ctx: NodeContext) -> None:
        self.cv2 = cv2_module()
        self.source = Source("file", ctx.config.path)
        self.capture = open_capture(self.source, 0, 0, None)
        fps = float(self.capture.get(self.cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps <= 1000 else 30.0
        self.next_index = 0  # the next frame the capture will decode
        self.start_s: float | None = None
        self.frames = self.skipped = self.frames_before_play = 0
        self.plays = 1
        self.ended = False
        ctx.note("fps", f"{self.fps:g}")

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if self.ended:
            return None
        now = self.ctx.now()
        if self.start_s is None:
            self.start_s = now
        index = self.next_index
        if self.config.pace == "recorded":
            due = math.floor((now - self.start_s) * self.fps + 1e-9)
            if due < index:  # stepping faster than the file: that frame was published
                return None
            while index < due:  # frames a slower loop missed: decoded no further
                if not self.capture.grab():
                    return self._end()
                index += 1
                self.skipped += 1
        ok, frame = self.capture.read()
        if not ok:
            return self._end()
        self.next_index = index + 1
        self.frames += 1
        if self.config.pace == "recorded":
            self.ctx.sensed_at(self.start_s + index / self.fps)
        self._notes()
        return {"image": self._color(frame)}

    def _color(self, frame: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        if frame.ndim == 2:
            frame = frame[:, :, None]
        if self.config.color == "gray" and frame.shape[2] == 3:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[:, :, None]
        if self.config.color == "rgb" and frame.shape[2] == 3:
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)  # in place: no copy
        return frame

    def _end(self) -> dict[str, Any] | None:
        if self.config.at_end == "loop" and self.frames > self.frames_before_play:
            self.capture.set(self.cv2.CAP_PROP_POS_FRAMES, 0)
            self.next_index, self.start_s = 0, None
            self.frames_before_play = self.frames  # a play without a frame ends it all
            self.plays += 1
            return self.step({})
        self.ended = True
        self.ctx.note("ended_at_s", f"{self.ctx.now():.3f}")
        self._notes()
        return None

    def _notes(self) -> None:
        self.ctx.note("frames", str(self.frames))
        self.ctx.note("skipped", str(self.skipped))
        self.ctx.note("plays", str(self.plays))

    def close(self) -> None:
        self.capture.release()
