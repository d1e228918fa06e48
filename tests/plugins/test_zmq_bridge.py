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
  - id: outside
    type: zmq.sink
    inputs: {{echo: planner/value}}
    config: {{endpoint: "{sink}"}}
"""


@pytest.fixture
def running_loop(tmp_path):
    import tempfile

    short = tempfile.mkdtemp(prefix="el-")  # an ipc path must fit a Unix socket's 107 bytes
    source, sink = f"ipc://{short}/in", f"ipc://{short}/out"
    graph = tmp_path / "outside.yaml"
    graph.write_text(GRAPH.format(source=source, sink=sink))
    loop = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "run", str(graph), "--duration", "120",
         "--json", str(tmp_path / "report.json"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    context = zmq.Context.instance()
    push, sub = context.socket(zmq.PUSH), context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"echo")
    push.connect(source)  # ZeroMQ connects whenever the loop has bound
    sub.connect(sink)
    yield push, sub, tmp_path / "report.json", loop
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
    seq = struct.unpack_from("<Q", frames[0], 5)[0] if frames[0][4:5] in (b"a", b"A") else None
    while time.monotonic() < deadline:
        if loop is not None and loop.poll() is not None:
            raise AssertionError(f"the loop ended: {loop.communicate()[1]}")
        push.send_multipart(frames)
        while sub.poll(100):
            _topic, message = read(sub.recv_multipart())
            if seq is None or message["seq"] == seq:
                return message
    raise AssertionError("no echo")


def test_a_client_from_the_document_alone_feeds_and_reads_a_running_loop(running_loop):
    push, sub, report_path, loop = running_loop
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
    assert int(nodes["outside"]["notes"]["sent"]) >= 4
    assert not nodes["planner"]["faults"] and not nodes["outside"]["faults"]
    assert math.isfinite(nodes["planner"]["p50_us"])
