"""Where a ``camera`` node's frames come from (OpenCV), and its calibration.

A source is written as a user would say it:

- a device: ``0`` or ``/dev/video0`` (V4L2 on Linux);
- a video file: ``drive.mkv``;
- a network stream: ``rtsp://...``, ``http(s)://...``, ``rtmp://...``;
- a GStreamer pipeline ending in ``appsink`` (anything with a ``!`` in it),
  e.g. :data:`JETSON_CSI` or :data:`JETSON_USB_MJPEG`.

PyPI's ``opencv-python-headless`` is built without GStreamer; JetPack's OpenCV
has it. A pipeline asked of an OpenCV without it fails setup saying so, with
the fix, rather than OpenCV's silent "not opened".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgeloop.runtime.errors import MissingDependencyError, NodeConfigError, TransportError
from edgeloop.runtime.limits import MAX_FILE_BYTES

JETSON_CSI = (
    "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,"
    "framerate=30/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
    "video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
)
"""A Jetson CSI camera (IMX219/IMX477...) through the ISP, 1280x720 at 30 fps."""

JETSON_USB_MJPEG = (
    "v4l2src device=/dev/video0 io-mode=2 ! image/jpeg,width=1280,height=720,framerate=30/1 ! "
    "nvv4l2decoder mjpeg=1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
    "video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
)
"""A USB camera's MJPEG decoded by the Jetson's hardware JPEG decoder (NVJPG)."""

_STREAM = re.compile(r"^(rtsp|rtsps|http|https|rtmp|udp|tcp)://", re.IGNORECASE)
_DEVICE_PATH = re.compile(r"^/dev/video\d+$")


def cv2_module() -> Any:
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError("opencv-python-headless", "camera", "camera") from None
    return cv2


def has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (``cv2.getBuildInformation()``)."""
    info = cv2_module().getBuildInformation()
    match = re.search(r"GStreamer:\s*(\S+)", info)
    return match is not None and match.group(1).upper() not in ("NO", "OFF")


@dataclass(frozen=True)
class Source:
    """A parsed ``source``: its kind (``device``, ``file``, ``stream``, ``gstreamer``)
    and what OpenCV opens."""

    kind: str
    target: int | str

    @property
    def live(self) -> bool:
        """Frames come at the source's pace (a file is paced by the node instead)."""
        return self.kind != "file"


def parse_source(source: int | str) -> Source:
    """What a config's ``source`` names; ValueError for an empty one."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return Source("device", int(source))
    text = source.strip()
    if not text:
        raise ValueError("source is empty: give a device (0, /dev/video0), file, URL or pipeline")
    if "!" in text:
        return Source("gstreamer", text)
    if _STREAM.match(text):
        return Source("stream", text)
    if _DEVICE_PATH.match(text):
        return Source("device", text)
    return Source("file", text)


def open_capture(source: Source, width: int, height: int, fps: float | None) -> Any:
    """An opened ``cv2.VideoCapture``, or a TransportError saying what to check."""
    cv2 = cv2_module()
    if source.kind == "gstreamer" and not has_gstreamer():
        raise NodeConfigError(
            "this OpenCV is built without GStreamer, so it cannot open a GStreamer pipeline",
            key="source",
            fix="on a Jetson, use JetPack's OpenCV (it has GStreamer): `pip uninstall "
            "opencv-python-headless` so it is not shadowed; elsewhere, build OpenCV with "
            "-DWITH_GSTREAMER=ON, or give a device index, file or URL instead",
        )
    if source.kind == "file" and not Path(str(source.target)).exists():
        raise TransportError(f"video file {source.target} does not exist", fix="check the path")
    api = {
        "gstreamer": cv2.CAP_GSTREAMER,
        "device": cv2.CAP_V4L2 if _is_linux() else cv2.CAP_ANY,
        "file": cv2.CAP_FFMPEG,
        "stream": cv2.CAP_FFMPEG,
    }[source.kind]
    capture = cv2.VideoCapture(source.target, api)
    if not capture.isOpened():
        capture.release()
        raise TransportError(
            f"cannot open camera source {source.target!r} ({source.kind})",
            fix={
                "device": "check the camera is plugged in (`ls /dev/video*`) and that this "
                "user may use it (the video group)",
                "file": "check the file is a video FFmpeg can read",
                "stream": "check the URL and that the stream is up",
                "gstreamer": "try the pipeline with gst-launch-1.0, ending it in fakesink",
            }[source.kind],
        )
    if source.kind == "device":  # ask; the node resizes whatever the driver gives
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            capture.set(cv2.CAP_PROP_FPS, fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
    return capture


def _is_linux() -> bool:
    import sys

    return sys.platform.startswith("linux")


@dataclass(frozen=True)
class Calibration:
    """A camera's intrinsics: ``camera_matrix`` K (3x3), distortion coefficients
    and the image size they were measured at."""

    width: int
    height: int
    camera_matrix: np.ndarray
    distortion: np.ndarray
    distortion_model: str = "plumb_bob"

    def scaled(self, width: int, height: int, region: tuple[int, int, int, int] | None):
        """The intrinsics of a frame cropped to ``region`` (rows, columns of the
        full frame) and then scaled to ``width`` x ``height``."""
        k = self.camera_matrix.astype(np.float64, copy=True)
        r0, c0, r1, c1 = region or (0, 0, self.height, self.width)
        k[0, 2] -= c0
        k[1, 2] -= r0
        sx, sy = width / (c1 - c0), height / (r1 - r0)
        k[0, 0] *= sx
        k[0, 2] *= sx
        k[1, 1] *= sy
        k[1, 2] *= sy
        return k

    def info(
        self, width: int, height: int, region: tuple[int, int, int, int] | None, rectified: bool
    ) -> dict[str, Any]:
        """The ``camera_info`` payload for frames of this size and region."""
        return {
            "width": width,
            "height": height,
            "K": self.scaled(width, height, region),
            "D": np.zeros(5) if rectified else self.distortion.astype(np.float64),
            "distortion_model": self.distortion_model,
        }


def load_calibration(path: str) -> Calibration:
    """A ROS ``camera_info`` YAML (``camera_matrix: {rows, cols, data}``...) or an
    OpenCV FileStorage YAML (``%YAML:1.0``, ``camera_matrix: !!opencv-matrix``)."""
    file = Path(path)
    if not file.is_file():
        raise NodeConfigError(f"calibration file {path} does not exist", key="calibration")
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"it is larger than {MAX_FILE_BYTES:,} bytes")
        text = file.read_text()
        if text.lstrip().startswith("%YAML:1.0"):
            return _opencv_calibration(path)
        data = yaml.safe_load(text)
        k = _matrix(data["camera_matrix"], (3, 3))
        d = np.asarray(data["distortion_coefficients"]["data"], dtype=np.float64)
        return Calibration(
            int(data["image_width"]),
            int(data["image_height"]),
            k,
            d,
            str(data.get("distortion_model", "plumb_bob")),
        )
    except NodeConfigError:
        raise
    except Exception as exc:
        raise NodeConfigError(
            f"calibration file {path} is not a camera_info: {type(exc).__name__}: {exc}",
            key="calibration",
            fix="write image_width, image_height, camera_matrix {rows, cols, data} and "
            "distortion_coefficients {data} (ROS camera_info), or an OpenCV FileStorage file",
        ) from None


def _matrix(entry: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    matrix = np.asarray(entry["data"], dtype=np.float64).reshape(entry["rows"], entry["cols"])
    if matrix.shape != shape:
        raise ValueError(f"camera_matrix is {matrix.shape}, not {shape}")
    return matrix


def _opencv_calibration(path: str) -> Calibration:
    cv2 = cv2_module()
    storage = cv2.FileStorage(path, cv2.FILE_STORAGE_READ)
    try:
        k = storage.getNode("camera_matrix").mat()
        d = storage.getNode("distortion_coefficients").mat()
        width = int(storage.getNode("image_width").real())
        height = int(storage.getNode("image_height").real())
    finally:
        storage.release()
    if k is None or d is None or not width or not height:
        raise ValueError("needs camera_matrix, distortion_coefficients, image_width, image_height")
    return Calibration(width, height, k.reshape(3, 3), d.reshape(-1))
