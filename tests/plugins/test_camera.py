"""camera and video.file against real OpenCV on video files written in the test.

This machine has no camera: a video file is read through the same capture
thread, frame hand-over, shaping and reconnect code a device goes through
(only the V4L2 open and its driver timestamps are device-only)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import video_files

from edgeloop import Controller, Executor, LoopGraph, Port
from edgeloop.runtime.errors import NodeSetupError
from edgeloop.testing import RecordingSink

cv2 = pytest.importorskip("cv2")


def images(executor: Executor) -> list[np.ndarray]:
    return [v for v in executor.node("sink").values("image") if v is not None]


def file_loop(
    config: dict[str, Any],
    rate_hz: float,
    node_type: str = "video.file",
    commands: dict[int, Any] | None = None,
) -> LoopGraph:
    """The node reading a file, into a sink; with ``commands``, a Commander sending
    those sensing commands at 50 Hz."""
    graph = LoopGraph(name="video")
    if commands is not None:
        graph.add_node("steer", Commander, rate_hz=50, config={"commands": commands})
    graph.add_node(
        "camera",
        node_type,
        rate_hz=rate_hz,
        config=config,
        on_fault="hold_last",
        inputs={"sensing": "steer/command"} if commands is not None else {},
    )
    sink_inputs = {"image": "camera/image"}
    if node_type == "camera":
        sink_inputs["info"] = "camera/camera_info"
    graph.add_node("sink", RecordingSink, inputs=sink_inputs)
    return graph


def test_video_file_plays_every_frame_exactly_in_order(tmp_path):
    path = video_files.write_video(tmp_path / "v.mkv", frames=12)
    executor = Executor(file_loop({"path": str(path), "pace": "every"}, 100), simulated=True)
    report = executor.run(0.2)
    got = images(executor)
    assert len(got) == 12  # then the file ended
    for k, image in enumerate(got):
        assert np.array_equal(image, video_files.frame(k)[:, :, ::-1])  # RGB, bit-exact
    assert report.node("camera").notes["ended_at_s"] == "0.120"


@pytest.mark.parametrize(("rate_hz", "published", "skipped"), [(60, 30, 0), (15, 15, 14)])
def test_video_file_at_its_recorded_pace_skips_what_a_slower_loop_misses(
    tmp_path, rate_hz, published, skipped
):
    path = video_files.write_video(tmp_path / "v.mkv", frames=30, fps=30)
    executor = Executor(file_loop({"path": str(path)}, rate_hz), simulated=True)
    report = executor.run(1.0)
    got = [video_files.index_of(image) for image in images(executor)]
    assert len(got) == published and got == sorted(set(got))
    assert got[:3] == [0, 1, 2] if rate_hz == 60 else got[:3] == [0, 2, 4]
    assert report.node("camera").notes["skipped"] == str(skipped)


def test_video_file_loops_when_asked(tmp_path):
    path = video_files.write_video(tmp_path / "v.mkv", frames=5)
    config = {"path": str(path), "pace": "every", "at_end": "loop"}
    executor = Executor(file_loop(config, 100), simulated=True)
    report = executor.run(0.12)
    assert [video_files.index_of(i) for i in images(executor)] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert report.node("camera").notes["plays"] == "3"


def test_a_missing_video_file_fails_setup_naming_it(tmp_path):
    graph = file_loop({"path": str(tmp_path / "nowhere.mkv")}, 30)
    with pytest.raises(NodeSetupError, match=r"nowhere\.mkv does not exist"):
        Executor(graph, simulated=True).run(0.1)


def test_the_camera_hands_over_the_newest_frame_and_counts_what_it_dropped(tmp_path):
    path = video_files.write_video(tmp_path / "v.mkv", frames=90, fps=60)
    executor = Executor(file_loop({"source": str(path), "width": 64, "height": 48}, 20, "camera"))
    report = executor.run(1.0)
    got = images(executor)
    indices = [video_files.index_of(i) for i in got]
    assert indices == sorted(set(indices)) and len(indices) >= 5
    for image in got:  # each one exactly the frame it says it is
        assert np.array_equal(image, video_files.frame(video_files.index_of(image))[:, :, ::-1])
    notes = report.node("camera").notes
    captured, published = int(notes["captured"]), int(notes["published"])
    assert published == len(got)
    # A 60 fps camera read at 20 Hz: about two frames in three are replaced unread.
    assert captured - published - int(notes["dropped_by_loop"]) in (0, 1)  # 1: one unread at stop
    assert int(notes["dropped_by_loop"]) > published
    sink = executor.node("sink")
    assert all(t >= 0 for t, _ in sink.received)


@dataclass(frozen=True)
class ScriptConfig:
    commands: dict[int, Any] = field(default_factory=dict)
    """Sensing command to send at each step number."""


class Commander(Controller):
    """Sends scripted sensing commands."""

    outputs = (Port("command", doc="a sensing command"),)
    Config = ScriptConfig

    def setup(self, ctx):
        self.n = 0

    def step(self, inputs):
        self.n += 1
        command = self.config.commands.get(self.n - 1)
        return None if command is None else {"command": command}


def test_region_resolution_and_rate_commands_shape_what_the_camera_publishes(tmp_path):
    path = video_files.write_video(tmp_path / "v.mkv", frames=300, fps=100)
    commands = {2: {"region": [8, 16, 40, 48]}, 8: {"resolution": [24, 32]}, 14: {"rate_hz": 5.0}}
    config = {"source": str(path), "width": 64, "height": 48}
    executor = Executor(file_loop(config, 50, "camera", commands))
    report = executor.run(1.0)
    shapes = [image.shape for image in images(executor)]
    assert shapes[0] == (48, 64, 3)
    assert (32, 32, 3) in shapes  # the region
    assert shapes[-1] == (16, 16, 3)  # the region at half resolution
    sensing = report.node("camera").sensing
    assert sensing["rate_hz"] == 5.0 and sensing["rejected"] == {}
    assert sensing["cost"] < sensing["readings"]  # a region and a half resolution cost less


def test_a_file_cut_short_is_a_camera_that_went_away_and_is_reopened(tmp_path):
    path = video_files.write_video(tmp_path / "v.mkv", frames=200, fps=100)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 4])  # cut short: about 50 frames left
    config = {"source": str(path), "width": 64, "height": 48, "reconnect_ms": 20}
    executor = Executor(file_loop(config, 50, "camera"))

    def stop_after_the_reconnect() -> None:
        wait_until = threading.Event()
        while not wait_until.wait(0.01):
            loop = executor._loop_parts
            runner = getattr(loop, "runners", {}).get("camera")
            if runner is not None and runner.node.grabber.reconnects >= 1:
                executor.stop("reopened")
                return

    watcher = threading.Thread(target=stop_after_the_reconnect, daemon=True)
    watcher.start()
    report = executor.run(30.0)
    assert report.stop_reason == "reopened"
    faults = [f for f in report.fault_log if f["node"] == "camera"]
    assert faults and "went away (end of file)" in faults[0]["error"]
    assert report.node("camera").notes["reconnects"] == "1"


def test_a_gstreamer_pipeline_on_an_opencv_without_it_says_so_with_the_fix(tmp_path):
    from edgeloop.plugins.camera_sources import JETSON_CSI, has_gstreamer

    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    graph = file_loop({"source": JETSON_CSI}, 30, "camera")
    with pytest.raises(NodeSetupError, match="built without GStreamer") as caught:
        Executor(graph).run(0.1)
    assert "JetPack's OpenCV" in str(caught.value)


CAMERA_INFO = """\
image_width: 64
image_height: 48
camera_name: test
camera_matrix: {rows: 3, cols: 3, data: [60.0, 0, 32.0, 0, 60.0, 24.0, 0, 0, 1]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [DIST, 0, 0, 0, 0]}
"""


def test_calibration_is_published_fitted_to_the_region_and_undistorts_on_request(tmp_path):
    path = video_files.write_video(tmp_path / "v.mkv", frames=200, fps=100)
    plain = tmp_path / "plain.yaml"
    plain.write_text(CAMERA_INFO.replace("DIST", "0.0"))
    config = {"source": str(path), "width": 64, "height": 48, "calibration": str(plain)}
    executor = Executor(file_loop(config, 50, "camera", {3: {"region": [8, 16, 40, 48]}}))
    executor.run(0.5)
    infos = [i for i in executor.node("sink").values("info") if i is not None]
    first, last = infos[0], infos[-1]
    assert np.allclose(first["K"], [[60, 0, 32], [0, 60, 24], [0, 0, 1]])
    assert np.allclose(last["K"], [[60, 0, 16], [0, 60, 16], [0, 0, 1]])  # shifted by the region
    assert (last["width"], last["height"]) == (32, 32)

    bent = tmp_path / "bent.yaml"
    bent.write_text(CAMERA_INFO.replace("DIST", "-0.3"))
    for calibration, undistort in ((plain, True), (bent, True)):
        config = {"source": str(path), "width": 64, "height": 48}
        config |= {"calibration": str(calibration), "undistort": undistort}
        executor = Executor(file_loop(config, 20, "camera"))
        executor.run(0.3)
        image = images(executor)[-1]
        written = video_files.frame(video_files.index_of(image))[:, :, ::-1]
        same = np.array_equal(image[1:], written[1:])  # row 0 carries the index
        assert same == (calibration is plain), calibration


def test_a_camera_that_stalls_is_a_fault_and_is_reopened(tmp_path):
    import os

    video = video_files.write_video(tmp_path / "v.mkv", frames=300, fps=100).read_bytes()
    fifo = tmp_path / "stalling.mkv"  # a source whose read() blocks once the data stops
    os.mkfifo(fifo)
    feeding = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(video[: len(video) // 4])
            pipe.flush()
            feeding.wait()  # holds the pipe open, silent, until the test is done

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    config = {"source": str(fifo), "width": 64, "height": 48, "stall_ms": 300}
    executor = Executor(file_loop(config, 50, "camera"))

    def stop_after_the_stall() -> None:
        while not feeding.wait(0.01):
            if any(f["node"] == "camera" for f in list(executor._fault_log)):
                executor.stop("stalled")
                return

    watcher = threading.Thread(target=stop_after_the_stall, daemon=True)
    watcher.start()
    try:
        report = executor.run(30.0)
    finally:
        feeding.set()
    assert report.stop_reason == "stalled"
    (fault,) = [f for f in report.fault_log if f["node"] == "camera"]
    assert "delivered no frame" in fault["error"] and "stall_ms 300" in fault["error"]
    assert int(report.node("camera").notes["published"]) > 5  # it ran until the stall


def test_without_a_rate_the_camera_steps_on_each_frame_it_captures(tmp_path):
    path = video_files.write_video(tmp_path / "v.mkv", frames=40, fps=50)
    graph = LoopGraph(name="frames")
    graph.add_node("camera", "camera", config={"source": str(path), "width": 64, "height": 48})
    graph.add_node("sink", RecordingSink, inputs={"image": "camera/image"})
    executor = Executor(graph)
    report = executor.run(0.5)
    notes = report.node("camera").notes
    got = [video_files.index_of(i) for i in images(executor)]
    assert len(got) >= 10 and got == sorted(set(got))
    assert int(notes["published"]) == len(got)
    # Each frame is stepped as it comes (on a loaded machine a late wake may miss one).
    assert int(notes["dropped_by_loop"]) <= len(got) // 4
    assert len(report.timers) == 0  # no timer: the frames drove it


def test_the_blob_tracker_finds_the_centre_of_its_colour_and_says_when_it_sees_none():
    from edgeloop.plugins.vision import BlobTracker
    from edgeloop.testing import start_node

    tracker = start_node(BlobTracker, {"color": [220, 40, 40], "tolerance": 30, "stride": 1})
    image = np.full((40, 80, 3), 90, dtype=np.uint8)
    image[10:20, 60:70] = (215, 45, 38)  # right of centre, above it
    x, y, share = tracker.step({"image": image})["target"]
    assert x == pytest.approx(2 * 65 / 80 - 1) and y == pytest.approx(2 * 15 / 40 - 1)
    assert share == pytest.approx(100 / (40 * 80))
    nothing = tracker.step({"image": np.full((40, 80, 3), 90, dtype=np.uint8)})["target"]
    assert nothing.tolist() == [0.0, 0.0, 0.0]


def test_the_camera_follow_example_turns_toward_the_target_and_ends_safe(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("serial")
    script = Path(__file__).parents[2] / "examples" / "camera-follow" / "run.py"
    run = subprocess.run(
        [sys.executable, str(script), "--duration", "1.5", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    motor = next(n for n in report["nodes"] if n["id"] == "motor")
    assert motor["safe_states"] == {"stop": 1} and not motor["faults"]
    commands = [json.loads(line)["command"][0] for line in open(tmp_path / "motor.jsonl")]
    assert len(commands) > 20 and commands[-1] == 0.0
    assert max(commands) > 0.3  # the target swung right of centre: the motor turned toward it


def test_a_camera_reads_an_http_stream(tmp_path):
    import functools
    import http.server

    video_files.write_video(tmp_path / "stream.mkv", frames=60, fps=30)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stream.mkv"
        config = {"source": url, "width": 64, "height": 48}
        executor = Executor(file_loop(config, 50, "camera"))
        report = executor.run(0.4)
    finally:
        server.shutdown()
        server.server_close()
    got = images(executor)
    assert got
    for image in got:  # whole frames, decoded from the stream
        assert np.array_equal(image, video_files.frame(video_files.index_of(image))[:, :, ::-1])
    notes = report.node("camera").notes
    assert notes["source"] == f"stream {url}"
    # A file served over HTTP is not paced like a live stream: it is read to its end at
    # once, and the end is a stream cut (a fault), after which the camera reconnects.
    assert any("went away (read failed)" in f["error"] for f in report.fault_log)
    assert int(notes["reconnects"]) >= 1
