"""The live view: ``edgeloop run --foxglove`` serves a running loop over the Foxglove
WebSocket protocol, and a real WebSocket client subscribes to its topics and decodes
their messages with the schemas the server advertised (issue 17, part 2)."""

from __future__ import annotations

import base64
import functools
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


@functools.cache
def message_class(schema_name: str, schema: str):
    """The class the protobuf package builds from an advertised schema."""
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(schema))
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


class Viewer:
    """A WebSocket client that does what Foxglove does: it subscribes to each wanted
    topic whenever a channel for it is advertised, and decodes messages with the
    advertised schemas. Unlike Foxglove, it subscribes again when the SDK refuses a
    channel it has just advertised as "Unknown channel ID": the SDK (0.30) sends the
    advertisement before it accepts subscriptions to the channel, so a client that
    answers at once is sometimes refused (2-5% of new channels on a loaded machine)."""

    def __init__(self, ws, topics: set[str] | None = None) -> None:
        self.ws, self.topics = ws, topics
        self.channels: dict[str, dict] = {}  # topic -> its channel now
        self.subscribed: dict[int, dict] = {}  # subscription id -> channel
        self.statuses: list[str] = []

    def next(self, timeout: float = 60) -> tuple[str, int, object] | None:
        """One frame from the server: a message as (topic, log time, decoded body),
        or None for a control frame (handled here) or none within ``timeout``."""
        try:
            frame = self.ws.recv(timeout=timeout)
        except TimeoutError:
            if timeout >= 60:
                raise
            return None
        if isinstance(frame, bytes):
            if frame[0] != 0x01:  # not message data
                return None
            channel = self.subscribed[int.from_bytes(frame[1:5], "little")]
            body = message_class(channel["schemaName"], channel["schema"]).FromString(frame[13:])
            return channel["topic"], int.from_bytes(frame[5:13], "little"), body
        message = json.loads(frame)
        if message["op"] == "status":
            self.statuses.append(message["message"])
            refused = re.fullmatch(r"Unknown channel ID: (\d+)", message["message"])
            wanted = {c["id"]: c for c in self.channels.values()}
            if refused and int(refused.group(1)) in wanted:
                self.subscribe([wanted[int(refused.group(1))]])
        elif message["op"] == "advertise":
            wanted = [c for c in message["channels"]
                      if self.topics is None or c["topic"] in self.topics]  # fmt: skip
            self.channels.update((c["topic"], c) for c in wanted)
            self.subscribe(wanted)
        return None

    def subscribe(self, channels: list[dict]) -> None:
        subscriptions = []
        for channel in channels:
            sub = len(self.subscribed) + 1
            self.subscribed[sub] = channel
            subscriptions.append({"id": sub, "channelId": channel["id"]})
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))


def same_frame(decoded: dict[str, list]) -> tuple[int, int] | None:
    """Indices of an image and a mean message with the same timestamp (the mean is of
    that frame: the model's output carries its input's sensing time)."""
    images, means = decoded["/camera/image"], decoded["/mean/mean"]
    stamps = {(m.timestamp.seconds, m.timestamp.nanos): k for k, (_, m) in enumerate(images)}
    for k, (_, mean) in enumerate(means):
        key = (mean.timestamp.seconds, mean.timestamp.nanos)
        if key in stamps:
            return stamps[key], k
    return None


def test_a_websocket_client_subscribes_and_decodes_with_the_advertised_schemas(tmp_path):
    run, url = start(tmp_path, "--foxglove", "127.0.0.1:0", "--record", "r.mcap")
    try:
        with connect(url, subprotocols=["foxglove.sdk.v1"], open_timeout=60) as ws:
            viewer = Viewer(ws, {"/camera/image", "/mean/mean"})
            decoded: dict[str, list] = {"/camera/image": [], "/mean/mean": []}
            deadline = time.monotonic() + 60
            while min(map(len, decoded.values())) < 5 or not same_frame(decoded):
                stamps = [[(m.timestamp.seconds, m.timestamp.nanos) for _, m in got[-2:]]
                          for got in decoded.values()]  # fmt: skip
                assert time.monotonic() < deadline, (
                    f"{len(decoded['/camera/image'])} images, {len(decoded['/mean/mean'])} "
                    f"means, no shared stamp; the last stamps {stamps}; "
                    f"statuses {viewer.statuses}"
                )
                got = viewer.next()
                if got:
                    topic, log_time, body = got
                    decoded[topic].append((log_time, body))
            schemas = {topic: c["schemaName"] for topic, c in viewer.channels.items()}
            assert schemas == {
                "/camera/image": "foxglove.RawImage",
                "/mean/mean": "edgeloop.Numbers",
            }
    finally:
        run.send_signal(signal.SIGINT)  # Ctrl-C: the run ends and reports
        stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    image_stamp, mean_stamp = same_frame(decoded)  # a frame and its mean: one sensing time
    log_time, image = decoded["/camera/image"][image_stamp]
    assert (image.width, image.height, image.encoding, image.step) == (32, 24, "rgb8", 96)
    assert image.frame_id == "camera_optical" and len(image.data) == 32 * 24 * 3
    pixels = np.frombuffer(image.data, np.uint8).reshape(24, 32, 3)
    assert log_time > 1.6e18 and image.timestamp.seconds > 1.6e9  # Unix times: the date
    _, mean = decoded["/mean/mean"][mean_stamp]
    assert mean.dtype == "<f8" and list(mean.shape) == [3]
    assert np.allclose(mean.values, pixels.reshape(-1, 3).mean(axis=0))
    found = re.search(
        r"live view ws://\S+: 1 client\(s\), (\d+) subscription\(s\), ([\d,]+)", stdout
    )
    assert found, stdout
    received = sum(map(len, decoded.values()))
    assert int(found.group(1)) == 2  # refused subscriptions are not counted
    assert int(found.group(2).replace(",", "")) >= received  # offered: at least what came


REFUSED_WHILE_CHANNELS_COME = """
import itertools, json, sys, threading
import numpy as np
from websockets.sync.client import connect
from edgeloop.runtime.live_view import LiveView

NOBODYS = 10**6  # channel ids from here on are no one's
CHANNELS = 100
view = LiveView("127.0.0.1", 0, simulated=True)
view.write("/first/x", np.array([0.0]), 0, 0.0, 0.0)
advertised, refused, all_refused = threading.Semaphore(0), [], threading.Event()
failed = []


def client():
    ids = itertools.count(1)
    url = f"ws://127.0.0.1:{view.live.port}"
    with connect(url, subprotocols=["foxglove.sdk.v1"], close_timeout=1) as ws:
        while not all_refused.is_set():
            frame = ws.recv(timeout=60)
            if isinstance(frame, bytes):  # a message on a channel it subscribed to
                continue
            message = json.loads(frame)
            if message["op"] == "advertise":  # at once: the new one, and one no one has
                wanted = [c["id"] for c in message["channels"]] + [NOBODYS + len(refused)]
                ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                    {"id": next(ids), "channelId": id} for id in wanted]}))
                advertised.release()
            elif message["op"] == "status" and message["message"].startswith("Unknown"):
                if int(message["message"].split()[-1]) >= NOBODYS:  # not the SDK's race
                    refused.append(message["message"])
                if len(refused) == CHANNELS:
                    all_refused.set()


def watched():
    try:
        client()
    except BaseException as exc:
        failed.append(repr(exc))
        all_refused.set()
        advertised.release()


thread = threading.Thread(target=watched)
thread.start()
for k in range(CHANNELS):  # a channel made while the server refuses the last subscription
    view.write(f"/node{k}/x", np.array([float(k)]), 1, 0.1, 0.1)
    view.write(f"/node{k}/x", np.array([float(k)]), 2, 0.2, 0.2)
    assert advertised.acquire(timeout=60), "no advertisement came"
all_refused.wait(60)
thread.join()
view.close()
print("refusals answered:", len(refused), failed)
sys.exit(1 if failed else 0)
"""


def test_the_live_view_keeps_serving_while_the_sdk_refuses_subscriptions(tmp_path):
    """A subscription the SDK refuses is logged by it while it holds the client's
    channel map, and that log line needs the GIL: a Python thread waiting on that map
    with the GIL held (closing a channel did) would hang the process for good. Here
    100 channels are made while a client subscribes to each at once (the SDK's race
    refuses some) and to a channel no one has each time: all 100 refusals come back
    and the process ends."""
    script = tmp_path / "refusals.py"
    script.write_text(REFUSED_WHILE_CHANNELS_COME)
    run = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        stdout, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise AssertionError(
            "the live view hung (a deadlock) while subscriptions were refused"
        ) from None
    assert run.returncode == 0, stderr
    assert int(re.search(r"refusals answered: (\d+)", stdout).group(1)) == 100


def next_control(ws, op: str) -> dict:
    """The next control message of kind ``op`` (others and data frames skipped)."""
    while True:
        frame = ws.recv(timeout=60)
        if isinstance(frame, str) and json.loads(frame)["op"] == op:
            return json.loads(frame)


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
