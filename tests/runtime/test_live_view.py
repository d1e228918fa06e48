"""The live view: ``edgeloop run --foxglove`` serves a running loop over the Foxglove
WebSocket protocol, and a real WebSocket client subscribes to its topics and decodes
their messages with the schemas the server advertised (issue 17, part 2)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import edgeloop_cli

pytest.importorskip("foxglove")
pytest.importorskip("websockets")

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
GRAPH = """
name: live
nodes:
  - id: camera
    type: test.frames
    rate_hz: 50
    record: {image: {frame_id: camera_optical}}
  - id: mean
    type: test.mean
    inputs: {image: camera/image}
"""


def start(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    """The loop in real time under the real CLI, and the URL it says it serves."""
    shutil.copy(ROOT / "tests" / "kinds_plugin.py", tmp_path)
    (tmp_path / "live.yaml").write_text(GRAPH)
    command = [sys.executable, "-m", "edgeloop", "run", "live.yaml", "--plugin", "kinds_plugin"]
    run = subprocess.Popen(
        [*command, "--duration", "120", *options],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = []
    for line in run.stderr:  # readiness: the server listens once this line is out
        lines.append(line)
        found = re.search(r"foxglove live view on (ws://\S+)", line)
        if found:
            return run, found.group(1)
    raise AssertionError("the run never said where it serves: " + "".join(lines))


def message_class(channel: dict):
    """The class the protobuf package builds from an advertised schema."""
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


def same_frame(decoded: dict[int, list]) -> tuple[int, int] | None:
    """Indices of an image and a mean message with the same timestamp (the mean is of
    that frame: the model's output carries its input's sensing time)."""
    stamps = {(m.timestamp.seconds, m.timestamp.nanos): k for k, (_, m) in enumerate(decoded[1])}
    for k, (_, mean) in enumerate(decoded[2]):
        key = (mean.timestamp.seconds, mean.timestamp.nanos)
        if key in stamps:
            return stamps[key], k
    return None


def test_a_websocket_client_subscribes_and_decodes_with_the_advertised_schemas(tmp_path):
    run, url = start(tmp_path, "--foxglove", "127.0.0.1:0", "--record", "r.mcap")
    try:
        with connect(url, subprotocols=["foxglove.sdk.v1"], open_timeout=60) as ws:
            channels: dict[str, dict] = {}
            deadline = time.monotonic() + 60
            while not {"/camera/image", "/mean/mean"} <= set(channels):
                assert time.monotonic() < deadline, f"advertised only {sorted(channels)}"
                frame = ws.recv(timeout=60)
                if isinstance(frame, str) and json.loads(frame)["op"] == "advertise":
                    for channel in json.loads(frame)["channels"]:
                        channels[channel["topic"]] = channel
            image_channel, mean_channel = channels["/camera/image"], channels["/mean/mean"]
            assert image_channel["schemaName"] == "foxglove.RawImage"
            assert mean_channel["schemaName"] == "edgeloop.Numbers"
            subscriptions = {1: image_channel, 2: mean_channel}
            ws.send(
                json.dumps(
                    {
                        "op": "subscribe",
                        "subscriptions": [
                            {"id": sub, "channelId": channel["id"]}
                            for sub, channel in subscriptions.items()
                        ],
                    }
                )
            )
            decoded: dict[int, list] = {1: [], 2: []}
            deadline = time.monotonic() + 60
            while min(map(len, decoded.values())) < 5 or not same_frame(decoded):
                # Failed once in a loaded CI run, waiting out the loop: say what came.
                stamps = [[(m.timestamp.seconds, m.timestamp.nanos) for _, m in got[-2:]]
                          for got in decoded.values()]  # fmt: skip
                assert time.monotonic() < deadline, (
                    f"{len(decoded[1])} images, {len(decoded[2])} means, no shared stamp; "
                    f"the last stamps {stamps}"
                )
                frame = ws.recv(timeout=60)
                if isinstance(frame, bytes) and frame[0] == 0x01:  # message data
                    sub = int.from_bytes(frame[1:5], "little")
                    log_time = int.from_bytes(frame[5:13], "little")
                    body = message_class(subscriptions[sub]).FromString(frame[13:])
                    decoded[sub].append((log_time, body))
    finally:
        run.send_signal(signal.SIGINT)  # Ctrl-C: the run ends and reports
        stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    image_stamp, mean_stamp = same_frame(decoded)  # a frame and its mean: one sensing time
    log_time, image = decoded[1][image_stamp]
    assert (image.width, image.height, image.encoding, image.step) == (32, 24, "rgb8", 96)
    assert image.frame_id == "camera_optical" and len(image.data) == 32 * 24 * 3
    pixels = np.frombuffer(image.data, np.uint8).reshape(24, 32, 3)
    assert log_time > 1.6e18 and image.timestamp.seconds > 1.6e9  # Unix times: the date
    _, mean = decoded[2][mean_stamp]
    assert mean.dtype == "<f8" and list(mean.shape) == [3]
    assert np.allclose(mean.values, pixels.reshape(-1, 3).mean(axis=0))
    found = re.search(r"live view ws://\S+: 1 client\(s\), 2 subscription\(s\), ([\d,]+)", stdout)
    assert found, stdout
    received = sum(map(len, decoded.values()))
    assert int(found.group(1).replace(",", "")) >= received  # offered: at least what came


def test_nothing_is_encoded_for_a_port_nobody_watches():
    from edgeloop.runtime.live_view import LiveView

    viewer = LiveView("127.0.0.1", 0, simulated=True)
    try:
        encoded = []
        real_log = viewer.log
        frames = threading.Event()

        def counting_log(*args):  # the real log, counted
            done = real_log(*args)
            encoded.append(done)
            frames.set()
            return done

        viewer.log = counting_log
        for k in range(5):
            viewer.write("/camera/image", np.zeros((8, 8, 3), np.uint8), k, k * 0.1, k * 0.1)
        # The first message makes (and advertises) the channel; with no subscriber
        # the others are not even encoded.
        assert encoded == [True, False, False, False, False]
        assert viewer.summary()["offered"] == 0 and viewer.failed == 0
    finally:
        viewer.close()


def test_a_bad_address_or_a_split_graph_is_a_clear_error(tmp_path):
    shutil.copy(ROOT / "tests" / "kinds_plugin.py", tmp_path)
    (tmp_path / "live.yaml").write_text(GRAPH)
    base = ["run", "--plugin", "kinds_plugin", "--sim"]
    bad = edgeloop_cli(tmp_path, *base, "live.yaml", "--foxglove", "localhost:port")
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr
    processes = ROOT / "examples" / "pendulum" / "processes.yaml"
    split = edgeloop_cli(tmp_path, *base, processes, "--foxglove")
    assert split.returncode == 2 and "--foxglove watches one process" in split.stderr
    assert "Traceback" not in bad.stderr + split.stderr
