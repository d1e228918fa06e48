"""Reading a camera on a thread of its own (:class:`FrameGrabber`), keeping the
newest frame: the ``camera`` node's capture side."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeloop.plugins.backoff import reopen_with_backoff
from edgeloop.plugins.camera_sources import Source, cv2_module


class FrameGrabber:
    """Reads frames from one capture on a thread of its own, keeping the newest.

    A read that fails (a camera unplugged, a stream cut, a file ended) closes the
    capture and says why once (``take_loss``); the thread then reopens it with
    backoff. A grabber stuck inside ``read()`` cannot be interrupted: the node
    abandons it (``abandon``) and starts another; the stuck one exits if its
    read ever returns.
    """

    def __init__(
        self,
        open_once: Callable[[], Any],
        source: Source,
        clock: Any,
        enabled: Callable[[], bool],
        backoff_s: tuple[float, float],
        first: Any = None,
        reconnects: int = 0,
        wake: Callable[[], None] = lambda: None,
        prepare: Callable[[np.ndarray], np.ndarray] = lambda frame: frame,
    ) -> None:
        self._open_once = open_once
        self._wake = wake
        self._prepare = prepare
        self._source = source
        self._clock = clock
        self._enabled = enabled
        self._backoff_s = backoff_s
        self._capture = first
        self._lock = threading.Lock()
        self._latest: tuple[np.ndarray, float, bool] | None = None
        self._lost = ""
        self.stopping = threading.Event()
        self.captured = self.overwritten = self.driver_drops = 0
        self.reconnects = reconnects
        self.last_frame_s = clock.now_ns() / 1e9  # or when the capture was (re)opened
        self.fps = 0.0
        self._thread = threading.Thread(target=self._run, name="edgeloop-camera", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cv2 = cv2_module()
        if self._capture is None and not self._reopen():
            return
        self._opened()
        previous_driver_s = None
        while not self.stopping.is_set():
            if not self._enabled():  # turned off: read nothing (a camera's power, a file's place)
                self.stopping.wait(0.01)
                self._next_due = time.perf_counter()
                self.last_frame_s = self._clock.now_ns() / 1e9  # silence while off is no stall
                continue
            if not self._source.live:
                self._pace()
            why = ""
            try:
                ok, frame = self._capture.read()
                if ok and frame is not None:
                    prepared = self._prepare(frame)  # here, while it is in this core's cache
                else:
                    why = "end of file" if self._source.kind == "file" else "read failed"
            except Exception as exc:  # OpenCV's error on a frame it cannot take: a cut
                why = f"{type(exc).__name__}: {exc}"
            if self.stopping.is_set():
                break
            if why:
                self._drop(why)
                if not self._reopen():
                    return
                self._opened()
                previous_driver_s = None
                continue
            now = self._clock.now_ns() / 1e9
            sensed = now
            copied = prepared is not frame and not np.may_share_memory(prepared, frame)
            driver_s = self._driver_time(cv2, now)
            if driver_s is not None:
                sensed = driver_s
                if previous_driver_s is not None and self.fps:
                    missed = round((driver_s - previous_driver_s) * self.fps) - 1
                    self.driver_drops += max(0, missed)
                previous_driver_s = driver_s
            with self._lock:
                if self._latest is not None:
                    self.overwritten += 1
                self._latest = (prepared, sensed, copied)
                self.captured += 1
                self.last_frame_s = now
            self._wake()
        self._release()

    def _opened(self) -> None:
        cv2 = cv2_module()
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0 < self.fps <= 1000:
            self.fps = 30.0 if not self._source.live else 0.0
        self.last_frame_s = self._clock.now_ns() / 1e9
        self._next_due = time.perf_counter()

    def _pace(self) -> None:
        """A file plays at its own frame rate, as a camera would deliver it."""
        delay = self._next_due - time.perf_counter()
        if delay > 0:
            self.stopping.wait(delay)
        self._next_due = max(self._next_due + 1.0 / self.fps, time.perf_counter() - 1.0)

    def _driver_time(self, cv2: Any, now: float) -> float | None:
        """A device's own capture time (V4L2 buffer timestamps, CLOCK_MONOTONIC like
        the loop's real clock) on the loop's clock; None where there is none."""
        if self._source.kind != "device" or self._clock.simulated:
            return None
        ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        origin_ns = time.perf_counter_ns() - self._clock.now_ns()
        stamped = (ms * 1e6 - origin_ns) / 1e9
        return stamped if 0.0 <= now - stamped < 1.0 else None  # a plausible stamp only

    def _drop(self, why: str) -> None:
        self._lost = why
        self._release()
        self._wake()  # the next step says so

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def _reopen(self) -> bool:
        self._capture = reopen_with_backoff(self._open_once, self.stopping, *self._backoff_s)
        if self._capture is None:
            return False
        self.reconnects += 1
        return True

    @property
    def up(self) -> bool:
        return self._capture is not None

    def take(self) -> tuple[np.ndarray, float, bool] | None:
        """The newest frame not taken yet, its sensing time and whether preparing it
        copied it out of the decoded buffer; None when there is none."""
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    def take_loss(self) -> str:
        lost, self._lost = self._lost, ""
        return lost

    def abandon(self) -> None:
        """Stop (a thread stuck in ``read()`` ends when it returns, if ever)."""
        self.stopping.set()

    def close(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=1.0)  # one stuck in read() or open() is left behind
        if not self._thread.is_alive():
            self._release()
