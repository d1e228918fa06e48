"""One hop from a process outside edgeloop into a node: zmq.source against raw pyzmq.

An outside client (a subprocess with nothing but pyzmq and struct) PUSHes small
messages in the wire format (kind ``a``, one float64, its send time on the
monotonic clock as ``sensed``) at a steady rate. Each round times two receivers
in turn, in the same run:

- raw: a PULL socket in this process, ``recv`` in a loop, the latency taken right
  after ``recv`` returns;
- edgeloop: ``zmq.source`` (no rate: it steps on each message) -> an actuator
  node, the latency taken in the actuator's step (send to step, as the loop's
  sense-to-act figures count it).

    python benchmarks/bridge_latency.py [--rounds 3] [--messages 1000] [--rate-hz 500]

It fails when a receiver did not get the messages the client sent.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import zmq

from edgeloop import Actuator, Executor, LoopGraph, Port

WARMUP = 50  # first messages not counted: connections and caches warming
CLIENT = r"""
import struct, sys, time, zmq
endpoint, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
push = zmq.Context.instance().socket(zmq.PUSH)
push.connect(endpoint)
head = struct.Struct("<Qdd4sBQd")  # docs/wire.md, kind a: one float64
start = time.monotonic()
for seq in range(count):
    delay = start + seq / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    now = time.monotonic()
    push.send(b"ELW1a" + head.pack(seq, now, now, b"<f8 ", 1, 1, float(seq)))
push.close(linger=5000)
"""


def client(endpoint: str, count: int, rate_hz: float) -> subprocess.Popen:
    command = [sys.executable, "-c", CLIENT, endpoint, str(count), str(rate_hz)]
    return subprocess.Popen(command)


def raw_round(endpoint: str, count: int, rate_hz: float) -> list[float]:
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(endpoint)
    sender = client(endpoint, count, rate_hz)
    latencies = []
    try:
        for _ in range(count):
            if not pull.poll(30_000):
                break
            frame = pull.recv()
            latencies.append(time.monotonic() - struct.unpack_from("<d", frame, 21)[0])
    finally:
        sender.wait(timeout=60)
        pull.close(linger=0)
    return [x * 1e6 for x in latencies[WARMUP:]]


class Timing(Actuator):
    """Records how long each message took from the client's send to this step."""

    inputs = (Port("value", doc="the client's message"),)

    def setup(self, ctx):
        self.latencies: list[float] = []

    def step(self, inputs):
        message = self.ctx.message("value")
        if inputs["value"] is not None and message is not None:
            self.latencies.append(self.ctx.now() - message.sensed)


def edgeloop_round(endpoint: str, count: int, rate_hz: float) -> list[float]:
    graph = LoopGraph(name="bridge-latency")
    graph.add_node("outside", "zmq.source", config={"endpoint": endpoint})
    graph.add_node("timing", Timing, inputs={"value": "outside/value"})
    executor = Executor(graph)

    def drive() -> None:
        while not hasattr(getattr(executor._loop_parts, "runners", {}).get("timing"), "node"):
            time.sleep(0.01)  # the loop is set up: its socket is bound
        sender = client(endpoint, count, rate_hz)
        sender.wait(timeout=60)
        node = executor.node("timing")
        deadline = time.monotonic() + 5
        while len(node.latencies) < count and time.monotonic() < deadline:
            time.sleep(0.01)  # the last messages still on their way
        executor.stop("client done")

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    executor.run(600)
    driver.join()
    return [x * 1e6 for x in executor.node("timing").latencies[WARMUP:]]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate-hz", type=float, default=500.0)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="el-bench-")
    raw_all: list[float] = []
    ours_all: list[float] = []
    expected = args.messages - WARMUP
    for round_ in range(args.rounds):
        raw = raw_round(f"ipc://{folder}/raw{round_}", args.messages, args.rate_hz)
        ours = edgeloop_round(f"ipc://{folder}/ours{round_}", args.messages, args.rate_hz)
        print(
            f"round {round_ + 1}: raw {len(raw)} messages p50 {statistics.median(raw):.1f} us | "
            f"edgeloop {len(ours)} messages p50 {statistics.median(ours):.1f} us"
        )
        if len(raw) != expected or len(ours) < 0.99 * expected:
            print(f"FAILED: expected {expected} messages counted per receiver")
            return 1
        raw_all += raw
        ours_all += ours
    raw_p50, ours_p50 = statistics.median(raw_all), statistics.median(ours_all)
    print(
        f"one hop, outside PUSH client -> node, {args.rate_hz:g} Hz: raw pyzmq p50 {raw_p50:.1f} "
        f"us (p99 {np.percentile(raw_all, 99):.1f}); zmq.source -> node p50 {ours_p50:.1f} us "
        f"(p99 {np.percentile(ours_all, 99):.1f}); ratio {ours_p50 / raw_p50:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
