"""A camera (``camera``; OpenCV, the ``camera`` extra): a USB or CSI camera, a
network stream, a GStreamer pipeline, or a video file played as if live.

A thread of the node's own reads frames (:class:`FrameGrabber`), so a blocking
``read()`` never holds the loop, and prepares each one there while it is in
that core's cache (size, undistortion, channel order, in place where it can):
a step publishes the newest frame captured since the last one, sensed when it
was captured, cropped and scaled as the sensing commands ask.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from edgeloop.plugins.camera_sources import (
    Calibration,
    cv2_module,
    load_calibration,
    open_capture,
    parse_source,
)
from edgeloop.plugins.frame_grabber import FrameGrabber
from edgeloop.runtime.errors import TransportError
from edgeloop.runtime.limits import MAX_IMAGE_SIDE
from edgeloop.runtime.node import NodeContext, Port, Sensor
from edgeloop.runtime.sensing import SensingSpec

Side = Annotated[int, Field(ge=16, le=MAX_IMAGE_SIDE)]
Millis = Annotated[float, Field(gt=0, le=3_600_000, allow_inf_nan=False)]


@dataclass(frozen=True)
class CameraConfig:
    source: int | str = 0
    """A device index or ``/dev/videoN`` (V4L2), a video file (played at its own
    frame rate, as if live), an ``rtsp://``/``http://`` URL, or a GStreamer
    pipeline ending in ``appsink`` (needs an OpenCV built with GStreamer:
    JetPack's, not PyPI's)."""
    width: Side = 640
    """Frame width the node publishes; a device is asked for it, and frames of
    another size are resized to it."""
    height: Side = 480
    """Frame height the node publishes (as ``width``)."""
    fps: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] | None = None
    """Frame rate asked of a device; None keeps the device's own."""
    color: Literal["rgb", "bgr", "gray"] = "rgb"
    """Channel order of the frames (OpenCV decodes BGR; ``rgb`` swaps in place)."""
    calibration: str | None = None
    """A ROS ``camera_info`` or OpenCV calibration YAML: its intrinsics, fitted to
    each frame's size and region, are published on ``camera_info``."""
    undistort: bool = False
    """Remove lens distortion with ``calibration`` before anything else."""
    stall_ms: Millis = 2000.0
    """A camera that delivers no frame for this long while enabled is a fault,
    and is reopened."""
    reconnect_ms: Millis = 200.0
    """After the camera went away, the first wait before reopening; doubles after
    each failed try."""
    max_reconnect_ms: Millis = 5000.0
    """The longest wait between two tries to reopen the camera."""

    def __post_init__(self) -> None:
        parse_source(self.source)
        if self.undistort and self.calibration is None:
            raise ValueError("undistort needs a calibration file")
        if self.reconnect_ms > self.max_reconnect_ms:
            raise ValueError("reconnect_ms must be at most max_reconnect_ms")


class Camera(Sensor):
    """Frames from a camera, a stream, a pipeline or a video file, as uint8 (H, W, C).

    A thread reads frames as the camera delivers them (a file at its own frame
    rate). Without ``rate_hz`` the node steps on each new frame (in real time, in
    one process: ``ctx.wake``); with it, on its rate. A step publishes the newest
    frame not yet published (nothing when none came), with its capture time as
    sensing time: the driver's timestamp where
    OpenCV gives one (V4L2 devices), else the time it was read. Frames a newer
    one replaced before a step took it are counted (note ``dropped_by_loop``), as
    are gaps in a device's timestamps (``dropped_by_driver``); ``copied`` counts
    the frames published in a buffer other than the one decoded into (a resize,
    a region, undistortion, a colour conversion not done in place).

    Sensing commands: ``rate_hz`` (0.1 to 240 Hz) and ``enabled`` (off: the
    camera is not read at all), ``region`` [r0, c0, r1, c1] in pixels of the
    full frame (a ``mask`` crops to its bounding box), ``resolution`` [h, w]:
    full, half or quarter size. Region and resolution are applied in software:
    they save the loop's and the model's work, not the camera's. A reading's
    cost is its share of the full frame's pixels.

    With ``calibration``, the ``camera_info`` output carries the intrinsics of
    the frames as published (``K`` fitted to region and size, ``D``, size),
    whenever they change.

    Faults:
        a source that cannot be opened fails setup (a NodeSetupError naming it
        and what to check); a GStreamer pipeline on an OpenCV without GStreamer
        fails setup saying so, with the fix. A camera that goes away (a read
        fails, a file ends, a stream is cut) or delivers nothing for
        ``stall_ms`` makes one step raise TransportError, an ``exception`` fault
        under the node's policy; it is then reopened with backoff (note
        ``reconnects``), and the steps in between publish nothing.

    YAML (no ``rate_hz``: a step per frame)::

        - id: camera
          type: camera
          on_fault: hold_last
          config: {source: /dev/video0, width: 640, height: 480, calibration: cam.yaml}
    """

    outputs = (
        Port("image", dtype="uint8", shape=(None, None, None), doc="the frame, (H, W, C)"),
        Port("camera_info", doc="intrinsics of the frames as published (K, D, width, height)"),
    )
    Config = CameraConfig
    sensing = SensingSpec(min_rate_hz=0.1, max_rate_hz=240.0, region=True, cost_per_reading=1.0)
    wakes = True

    @classmethod
    def sensing_spec(cls, config: CameraConfig) -> SensingSpec:
        h, w = config.height, config.width
        return dataclasses.replace(
            cls.sensing,  # type: ignore[arg-type]
            grid=(h, w),
            resolutions=((h, w), (h // 2, w // 2), (h // 4, w // 4)),
        )

    def setup(self, ctx: NodeContext) -> None:
        cfg: CameraConfig = ctx.config
        self.cv2 = cv2_module()
        self.source = parse_source(cfg.source)
        self.calibration: Calibration | None = None
        self._maps = None
        if cfg.calibration is not None:
            self.calibration = load_calibration(cfg.calibration)
            if cfg.undistort:
                self._maps = self._undistort_maps(self.calibration)
        first = self._open()  # a source that cannot be opened fails setup
        self._info_key: Any = None
        self.published = self.copied = 0  # copied: published frames not the decoded buffer
        self.grabber = self._grabber(first)
        # Stepped by its frames (no rate_hz), it must still step to notice a stall.
        self._closing = threading.Event()
        threading.Thread(target=self._tick, name="edgeloop-camera-stall", daemon=True).start()

    def _tick(self) -> None:
        half_s = self.config.stall_ms / 2e3
        while not self._closing.wait(half_s):
            if self.ctx.now() - self.grabber.last_frame_s > half_s:  # frames step it otherwise
                self.ctx.wake()

    def _open(self) -> Any:
        cfg: CameraConfig = self.config
        return open_capture(self.source, cfg.width, cfg.height, cfg.fps)

    def _grabber(self, first: Any = None, reconnects: int = 0) -> FrameGrabber:
        cfg: CameraConfig = self.config
        sensing = self.ctx.sensing
        return FrameGrabber(
            self._open,
            self.source,
            self.ctx.clock,
            (lambda: sensing.enabled) if sensing is not None else (lambda: True),
            (cfg.reconnect_ms / 1e3, cfg.max_reconnect_ms / 1e3),
            first,
            reconnects,
            self.ctx.wake,
            self._prepare,
        )

    def _undistort_maps(self, cal: Calibration) -> Any:
        cfg: CameraConfig = self.config
        k = cal.scaled(cfg.width, cfg.height, None)
        return self.cv2.initUndistortRectifyMap(
            k, cal.distortion, None, k, (cfg.width, cfg.height), self.cv2.CV_16SC2
        )

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._publish(self.grabber)
        finally:
            self._notes(self.grabber)

    def _publish(self, grabber: FrameGrabber) -> dict[str, Any] | None:
        lost = grabber.take_loss()
        if lost:
            raise TransportError(
                f"camera {self.source.target!r} went away ({lost}); reopening it with backoff"
            )
        taken = grabber.take()
        if taken is None:
            self._check_stall(grabber)
            return None
        frame, sensed, copied = taken
        image, region = self._shape(frame)
        self.published += 1
        self.copied += copied or (image is not frame and not np.may_share_memory(image, frame))
        self.ctx.sensed_at(sensed)
        out: dict[str, Any] = {"image": image}
        if self.calibration is not None:
            key = (image.shape[:2], region)
            if key != self._info_key:
                self._info_key = key
                h, w = image.shape[:2]
                out["camera_info"] = self.calibration.info(w, h, region, self._maps is not None)
        return out

    def _check_stall(self, grabber: FrameGrabber) -> None:
        sensing = self.ctx.sensing
        if not grabber.up or (sensing is not None and not sensing.enabled):
            return
        silent_s = self.ctx.now() - grabber.last_frame_s
        if silent_s * 1e3 > self.config.stall_ms:
            grabber.abandon()  # it may be stuck in read(): a fresh one reopens the camera
            self.grabber = self._grabber(reconnects=grabber.reconnects)
            raise TransportError(
                f"camera {self.source.target!r} delivered no frame for {silent_s:.1f} s "
                f"(stall_ms {self.config.stall_ms:g}); reopening it"
            )

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        """What every frame gets, on the capture thread: the configured size, lens
        undistortion, the channel order (swapped in place)."""
        cv2, cfg = self.cv2, self.config
        if frame.shape[0] != cfg.height or frame.shape[1] != cfg.width:
            frame = cv2.resize(frame, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
        if self._maps is not None:
            frame = cv2.remap(frame, *self._maps, cv2.INTER_LINEAR)
        if frame.ndim == 2:  # a gray source
            return frame[:, :, None]
        if cfg.color == "gray" and frame.shape[2] == 3:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[:, :, None]
        if cfg.color == "rgb" and frame.shape[2] == 3:
            if not frame.flags.c_contiguous:
                frame = np.ascontiguousarray(frame)
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)  # in place: no copy
        return frame

    def _shape(self, frame: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """The frame as the sensing settings ask (region, resolution), and the region
        of the full frame it shows."""
        region = self._region()
        if region is not None:
            r0, c0, r1, c1 = region
            frame = frame[r0:r1, c0:c1]
        sensing = self.ctx.sensing
        if sensing is not None and sensing.resolution is not None:
            scale = sensing.resolution[0] / self.config.height
            size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
            if size != (frame.shape[1], frame.shape[0]):
                frame = self.cv2.resize(frame, size, interpolation=self.cv2.INTER_AREA)
                if frame.ndim == 2:  # resize drops a single channel's axis
                    frame = frame[:, :, None]
        return np.ascontiguousarray(frame), region

    def _region(self) -> tuple[int, int, int, int] | None:
        """The sensing region (or a mask's bounding box), clipped to the frame;
        None for the whole frame."""
        sensing, cfg = self.ctx.sensing, self.config
        if sensing is None:
            return None
        if sensing.mask is not None:
            rows, cols = np.nonzero(sensing.mask)
            if not rows.size:
                return None
            box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        elif sensing.region is not None:
            box = sensing.region
        else:
            return None
        r0, c0, r1, c1 = (int(v) for v in box)
        r1, c1 = min(r1, cfg.height), min(c1, cfg.width)
        if r0 >= r1 or c0 >= c1 or (r0, c0, r1, c1) == (0, 0, cfg.height, cfg.width):
            return None
        return (r0, c0, r1, c1)

    def _notes(self, grabber: FrameGrabber) -> None:
        note = self.ctx.note
        note("source", f"{self.source.kind} {self.source.target}")
        note("captured", str(grabber.captured))
        note("published", str(self.published))
        note("copied", str(self.copied))
        note("dropped_by_loop", str(grabber.overwritten))
        note("dropped_by_driver", str(grabber.driver_drops))
        note("reconnects", str(grabber.reconnects))

    def close(self) -> None:
        self._closing.set()
        self.grabber.close()
