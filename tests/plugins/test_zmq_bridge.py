"""An outside process joins a running ``edgeloop run``: a client written from
docs/wire.md alone (pyzmq, struct and json; no edgeloop import in the client)
feeds a zmq.source and reads a zmq.sink."""

from __future__ import annotations

import json
import math
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest
import zmq

# -- the client: written from docs/wire.md ---------------------------------------------------

MAGIC = b"ELW1"
HEAD = struct.Struct("<Qdd4sB")  # seq, created, sensed, dtype, ndim


def array_frames(seq: int, sensed: float, dtype: str, shape: list[int], data: bytes) -> list:
    """Kind ``a`` up to 16 KiB, else kind ``A`` with a buffer frame."""
    now = time.monotonic()
    kind = b"a" if len(data) <= 16 * 1024 else b"A"
    head = MAGIC + kind + HEAD.pack(seq, now, sensed, dtype.encode().ljust(4), len(shape))
    head += b"".join(struct.pack("<Q", n) for n in shape)
    return [head + data] if kind == b"a" else [head, data]


def json_frames(seq: int, sensed: float, tree: object, buffers: list[bytes]) -> list:
    body = {"seq": seq, "created": time.monotonic(), "sensed": sensed, "data": tree}
    return [MAGIC + b"J" + json.dumps(body).encode(), *buffers]


def read(frames: list[bytes]) -> tuple[str, dict]:
    """A zmq.sink message: its topic and its fields (arrays as dtype, shape, bytes)."""
    topic, head, *buffers = frames
    assert head[:4] == MAGIC
    kind = head[4:5]
    if kind in (b"a", b"A"):
        seq, _created, sensed, dtype, ndim = HEAD.unpack_from(head, 5)
        shape = [struct.unpack_from("<Q", head, 34 + 8 * k)[0] for k in range(ndim)]
        data = head[34 + 8 * ndim :] if kind == b"a" else buffers[0]
        value = {"dtype": dtype.decode().strip(), "shape": shape, "bytes": data}
        return topic.decode(), {"seq": seq, "sensed": sensed, "value": value}
    assert kind == b"J"
    body = json.loads(head[5:])
    return topic.decode(), {"seq": body["seq"], "sensed": body["sensed"], "value": body["data"]}


# -- the test ---------------------------------------------------------------------------------

GRAPH = """\
name: outside
nodes:
  - id: planner
    type: zmq.source
    config: {{endpoint: "{source}"}}
  - id: camera
    type: zmq.source
    config: {{endpoint: "{shared}", shared_memory: true}}
  - id: outside
    type: zmq.sink
    inputs: {{echo: planner/value, frame: camera/value}}
    config: {{endpoint: "{sink}"}}
"""


@pytest.fixture
def running_loop(tmp_path):
    import tempfile

    short = tempfile.mkdtemp(prefix="el-")  # an ipc path must fit a Unix socket's 107 bytes
    source, sink = f"ipc://{short}/in", f"ipc://{short}/out"
    shared = f"ipc://{short}/shared"
    graph = tmp_path / "outside.yaml"
    graph.write_text(GRAPH.format(source=source, sink=sink, shared=shared))
    loop = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", str(graph), "--duration", "120",
         "--json", str(tmp_path / "report.json"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    context = zmq.Context.instance()
    push, sub = context.socket(zmq.PUSH), context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"echo")
    sub.setsockopt(zmq.SUBSCRIBE, b"frame")
    push.connect(source)  # ZeroMQ connects whenever the loop has bound
    sub.connect(sink)
    yield push, sub, tmp_path / "report.json", loop, shared
    push.close(linger=0)
    sub.close(linger=0)
    if loop.poll() is None:
        loop.kill()
    loop.wait(timeout=60)
    shutil.rmtree(short, ignore_errors=True)


def exchange(push, sub, frames: list, loop=None, timeout_s: float = 60.0) -> dict:
    """Send ``frames`` until their echo comes back (the first sends may be lost while
    the subscription travels: a readiness signal, not a sleep), and return it."""
    deadline = time.monotonic() + timeout_s
    sent = read([b"", *frames])[1]["value"]  # the sink's seq is the loop's count: match values
    while time.monotonic() < deadline:
        if loop is not None and loop.poll() is not None:
            raise AssertionError(f"the loop ended: {loop.communicate()[1]}")
        push.send_multipart(frames)
        while sub.poll(100):
            _topic, message = read(sub.recv_multipart())
            if message["value"] == sent:
                return message
    raise AssertionError("no echo")


def test_a_client_from_the_document_alone_feeds_and_reads_a_running_loop(running_loop):
    push, sub, report_path, loop, _ = running_loop
    # A small array (kind a), sensed 5 ms ago on the client's monotonic clock.
    sensed = time.monotonic() - 0.005
    small = exchange(
        push,
        sub,
        loop=loop,
        frames=array_frames(1, sensed, "<f8", [3], struct.pack("<3d", 1, 2, 3)),
    )
    assert small["value"]["dtype"] == "<f8" and small["value"]["shape"] == [3]
    assert struct.unpack("<3d", small["value"]["bytes"]) == (1.0, 2.0, 3.0)
    assert small["sensed"] == pytest.approx(sensed, abs=0.002)  # its sensing time kept
    # A large array (kind A, 1 MiB: a camera frame from another process).
    pixels = bytes(range(256)) * 4096
    big = exchange(push, sub, array_frames(2, time.monotonic(), "|u1", [512, 512, 4], pixels))
    assert big["value"]["shape"] == [512, 512, 4] and big["value"]["bytes"] == pixels
    # A JSON tree with an array in it.
    tree = {"@m": {"mode": "track", "gains": {"@a": 0, "dtype": "<f4", "shape": [2]}}}
    message = exchange(
        push, sub, json_frames(3, time.monotonic(), tree, [struct.pack("<2f", 1, 2)])
    )
    echoed = message["value"]["@m"]
    assert echoed["mode"] == "track" and echoed["gains"]["dtype"] == "<f4"
    # Garbage is dropped and counted, and the loop goes on; so is a non-finite value
    # (in a loop, one is a fault).
    push.send_multipart([b"not a message"])
    push.send_multipart(json_frames(4, time.monotonic(), {"@f": "nan"}, []))
    push.send_multipart([b"ELW2" + array_frames(4, 0.0, "<f8", [1], bytes(8))[0][4:]])
    after = exchange(push, sub, array_frames(5, time.monotonic(), "<f8", [1], struct.pack("<d", 5)))
    assert struct.unpack("<d", after["value"]["bytes"]) == (5.0,)
    loop.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop with the report
    loop.wait(timeout=60)
    report = json.loads(report_path.read_text())
    nodes = {n["id"]: n for n in report["nodes"]}
    assert nodes["planner"]["notes"]["dropped"] == "magic 2, non_finite 1"
    # Every echo above arrived, so the sink sent each; its count says so (once in a
    # loaded CI run it said 3 of 4 steps: a step with nothing new is possible there).
    outside = nodes["outside"]
    assert 3 <= int(outside["notes"]["sent"]) <= outside["calls"], outside
    assert not nodes["planner"]["faults"] and not nodes["outside"]["faults"]
    assert math.isfinite(nodes["planner"]["p50_us"])


class SharedMemoryClient:
    """A sender of large arrays through shared memory, from docs/wire.md: a DEALER
    that asks, a descriptor channel, sealed memfd slots, notices and releases."""

    def __init__(self, endpoint: str) -> None:
        import os
        import socket

        self.dealer = zmq.Context.instance().socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(endpoint)
        offer, greeted = b"", False
        deadline = time.monotonic() + 60
        while not (offer and greeted):  # ask until the source answers: offer, then hello
            assert time.monotonic() < deadline, "no offer from the source"
            self.dealer.send(MAGIC + b"Q")
            while self.dealer.poll(100):
                frame = self.dealer.recv()
                if frame[:1] == b"O":
                    offer = frame[1:]
                elif frame == b"H":
                    greeted = True
        token, channel_name = offer[:16], offer[16:].decode("ascii")
        self.channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel.connect("\0" + channel_name)
        self.prefix = f"edgeloop-{os.getpid()}-{os.urandom(4).hex()}"
        self.channel.send(b"H" + token + self.prefix.encode())
        self.slots: dict[int, tuple[str, object]] = {}

    def slot(self, index: int, size: int):
        import fcntl
        import mmap
        import os
        import socket

        name = f"{self.prefix}-{index}"
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.posix_fallocate(fd, 0, size)
        fcntl.fcntl(
            fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        )
        mapping = mmap.mmap(fd, size)
        head = b"S" + struct.pack("<IQ", index, size) + name.encode()
        socket.send_fds(self.channel, [head], [fd])  # before the slot's first notice
        os.close(fd)
        self.slots[index] = (name, mapping)
        return mapping

    def notice(self, seq: int, index: int, generation: int, dtype: str, shape: list[int]):
        name = self.slots[index][0].encode()
        now = time.monotonic()
        head = struct.pack("<Qdd4sBIIH", seq, now, now, dtype.encode().ljust(4), len(shape),
                           index, generation, len(name))  # fmt: skip
        return [MAGIC + b"S" + head + name + b"".join(struct.pack("<Q", n) for n in shape)]

    def released(self, index: int, generation: int, timeout_s: float = 60) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.dealer.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            frame = self.dealer.recv()
            if frame == b"R" + struct.pack("<II", index, generation):
                return True
        return False

    def close(self) -> None:
        self.dealer.close(linger=0)
        self.channel.close()
        for _, mapping in self.slots.values():
            mapping.close()


def test_large_arrays_come_in_through_shared_memory_from_the_document_alone(running_loop):
    push, sub, report_path, loop, shared = running_loop
    exchange(push, sub, array_frames(1, time.monotonic(), "<f8", [1], bytes(8)), loop=loop)
    client = SharedMemoryClient(shared)  # the sink's subscription is up: no echo is lost
    try:
        size = 512 * 512 * 4  # a 1 MiB RGBA frame: a power of two, as a slot's size is
        slots = [client.slot(0, size), client.slot(1, size)]  # double buffering
        generation = {0: 0, 1: 0}
        for seq in range(1, 6):
            index = seq % 2
            if seq > 2:  # a slot comes back once a newer message replaced its array
                assert client.released(index, generation[index]), "the slot never came back"
            generation[index] += 1
            slots[index][:] = bytes([seq]) * size
            client.dealer.send_multipart(
                client.notice(seq, index, generation[index], "|u1", [512, 512, 4])
            )
            deadline = time.monotonic() + 60
            while True:
                assert sub.poll(int(max(1, deadline - time.monotonic()) * 1000)), "no echo"
                topic, message = read(sub.recv_multipart())
                if topic == "frame" and message["value"]["bytes"][:1] == bytes([seq]):
                    break
            assert message["value"]["shape"] == [512, 512, 4]
            assert message["value"]["bytes"] == bytes([seq]) * size  # read from the slot
    finally:
        client.close()
    loop.send_signal(signal.SIGINT)
    loop.wait(timeout=60)
    report = json.loads(report_path.read_text())
    camera = next(n for n in report["nodes"] if n["id"] == "camera")
    assert camera["notes"]["dropped"] == "0" and camera["notes"]["received"] == "5"


def test_the_external_planner_example_spins_the_pendulum_at_its_setpoints(tmp_path):
    from pathlib import Path

    example = Path(__file__).parents[2] / "examples" / "external-planner"
    short = Path(tempfile.mkdtemp(prefix="el-"))
    setpoints, state = f"ipc://{short}/setpoints", f"ipc://{short}/state"
    graph = (example / "loop.yaml").read_text()
    graph = graph.replace("ipc:///tmp/edgeloop-planner-setpoints", setpoints)
    graph = graph.replace("ipc:///tmp/edgeloop-planner-state", state)
    (tmp_path / "loop.yaml").write_text(graph)
    loop = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", str(tmp_path / "loop.yaml"), "--duration",
         "120", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        planner = subprocess.run(
            [sys.executable, str(example / "planner.py"), "--seconds", "6",
             "--setpoints", setpoints, "--state", state],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        loop.send_signal(signal.SIGINT)
        loop.wait(timeout=60)
        shutil.rmtree(short, ignore_errors=True)
    assert planner.returncode == 0, planner.stdout + planner.stderr
    rows = [line.split() for line in planner.stdout.splitlines()[1:]]
    speed = {float(target): float(mean) for target, mean, _ in rows}
    assert speed[3.0] > 1.5 and speed[-3.0] < -1.5 and speed[5.0] > 3.0  # it follows the plan


def test_curve_keys_let_only_an_allowed_client_in_and_silence_makes_the_input_stale(tmp_path):
    import socket as sockets
    import threading

    from edgeloop import Executor, LoopGraph
    from edgeloop.runtime.processes.security import generate_keys

    _, server_secret = generate_keys(tmp_path / "board", "board")
    client_public, client_secret = generate_keys(tmp_path / "desk", "desk")
    _, stranger_secret = generate_keys(tmp_path / "other", "other")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "desk.key").write_bytes(client_public.read_bytes())
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    graph = LoopGraph(name="keyed")
    config = {"endpoint": endpoint, "secret_key": str(server_secret), "allowed_keys": str(allowed)}
    graph.add_node("outside", "zmq.source", config=config)
    setpoint = {"from": "outside/value", "trigger": False, "stale_ms": 200}
    graph.add_node(
        "ctl",
        "pid",
        rate_hz=50,
        on_fault="hold_last",
        inputs={"measurement": "outside/value", "setpoint": setpoint},
    )
    executor = Executor(graph)

    import zmq.auth

    def client(secret) -> zmq.Socket:
        public, private = zmq.auth.load_certificate(str(secret))
        server_public, _ = zmq.auth.load_certificate(str(tmp_path / "board" / "board.key"))
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.curve_secretkey, push.curve_publickey = private, public
        push.curve_serverkey = server_public
        push.connect(endpoint)
        return push

    sent = {"friend": 0}

    def talk() -> None:
        try:
            while not hasattr(getattr(executor._loop_parts, "runners", {}).get("outside"), "node"):
                time.sleep(0.01)
            node = executor.node("outside")
            stranger, friend = client(stranger_secret), client(client_secret)
            for k in range(200):  # until the friend's messages arrive (its handshake done)
                for push in (stranger, friend):  # the stranger never connects: never block
                    try:
                        frames = array_frames(k, time.monotonic(), "<f8", [1], bytes(8))
                        push.send_multipart(frames, zmq.NOBLOCK)
                        sent["friend"] += push is friend
                    except zmq.Again:
                        pass
                if node.decoder.received >= 5:
                    break
                time.sleep(0.02)
            ctl = executor._loop_parts.runners["ctl"]  # silence: its setpoint goes stale
            deadline = time.monotonic() + 60
            while not ctl.faults.get("stale_input") and time.monotonic() < deadline:
                time.sleep(0.01)
            friend.close()
            stranger.close()
        finally:
            executor.stop("done")

    talker = threading.Thread(target=talk, daemon=True)
    talker.start()
    report = executor.run(60)
    talker.join()
    assert report.stop_reason == "done"
    received = int(report.node("outside").notes["received"])
    assert 5 <= received <= sent["friend"]  # the friend's only: the stranger never got in
    assert report.node("ctl").faults.get("stale_input", 0) > 0  # silence is a stale input


def test_a_subscriber_that_does_not_read_costs_drops_not_time():
    import numpy as np

    from edgeloop import Executor, LoopGraph, Port, Sensor

    class Frames(Sensor):
        """A 1 MiB frame per step."""

        outputs = (Port("frame", dtype="float32", doc="zeros"),)

        def step(self, inputs):
            return {"frame": np.zeros(1 << 18, np.float32)}

    short = tempfile.mkdtemp(prefix="el-")
    endpoint = f"ipc://{short}/frames"
    graph = LoopGraph(name="slow-reader")
    graph.add_node("camera", Frames, rate_hz=100)
    graph.add_node("outside", "zmq.sink", inputs={"frame": "camera/frame"},
                   config={"endpoint": endpoint, "queue": 2})  # fmt: skip
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 2)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)  # subscribed, and never reading
    try:
        report = Executor(graph).run(1.0)
    finally:
        sub.close(linger=0)
        shutil.rmtree(short, ignore_errors=True)
    notes = report.node("outside").notes
    assert int(notes["dropped"]) > 0 and int(notes["sent"]) > 0
    # Every frame was sent or dropped at once: none waited for the reader.
    assert int(notes["sent"]) + int(notes["dropped"]) == report.node("camera").calls


def test_a_source_without_a_rate_in_simulated_time_says_it_never_steps():
    from edgeloop import Executor, LoopGraph

    short = tempfile.mkdtemp(prefix="el-")
    graph = LoopGraph(name="sim")
    graph.add_node("outside", "zmq.source", config={"endpoint": f"ipc://{short}/in"})
    try:
        report = Executor(graph, simulated=True).run(0.1)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert report.node("outside").notes["steps"] == (
        "never: in simulated time nothing wakes it; give it rate_hz"
    )
