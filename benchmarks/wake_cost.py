"""What a process pays for the first Python it runs after waking from an idle gap.

A receiver blocked in ZeroMQ is woken by a message every ``--gap-ms``. It then
times one small operation, a different one each message, and the same operations
back to back in a tight loop (hot). On a VM the operations run one to two orders
of magnitude slower after the gap than hot: caches and the TLB go cold while the
vCPU idles. This is where the 8-byte hop's time beyond raw pyzmq goes (issue
20): decoding a message touches a few dozen operations right after the wake,
and each costs its cold price, while raw pyzmq's baseline touches almost none.
It fails unless every message arrived and every operation was timed.

    python benchmarks/wake_cost.py [--messages 400] [--gap-ms 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import struct
import time
import timeit
from typing import Any

import numpy as np
import zmq

from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes.wire import Decoder, encode

RECEIVER_CPU, SENDER_CPU = 1, 0
_TIMES = struct.Struct("<Qdd")
_FRAME = encode(Message(np.zeros(3), 1, 1.0, 0.0))[0]


def _python_loop() -> int:
    total = 0
    for i in range(30):
        total += i
    return total


def operations(decoder: Decoder) -> dict[str, Any]:
    """Name -> a small operation on a 24-byte message."""
    return {
        "nothing": lambda buffer: None,
        "struct unpack (3 fields)": lambda buffer: _TIMES.unpack_from(buffer, 0),
        "numpy frombuffer + reshape": lambda buffer: np.frombuffer(buffer, np.float64).reshape(
            (3,)
        ),
        "a 30-step Python loop": lambda buffer: _python_loop(),
        "edgeloop decode of a 3-float array": lambda buffer: decoder.decode([_FRAME]),
    }


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


def receive(endpoint: str, count: int, ready: Any, out: Any) -> None:
    _pin(RECEIVER_CPU)
    ops = operations(Decoder())
    names = list(ops)
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.connect(endpoint)
    ready.set()
    cold: dict[str, list[float]] = {name: [] for name in names}
    for k in range(count):
        frame = socket.recv(copy=False)
        name = names[k % len(names)]
        start = time.perf_counter()
        ops[name](frame.buffer)
        cold[name].append(time.perf_counter() - start)
    socket.close(linger=0)
    out.put(cold)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=400, help="messages (woken operations)")
    parser.add_argument("--gap-ms", type=float, default=3.0, help="idle gap between messages")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    endpoint = f"ipc:///tmp/edgeloop-wake-{os.getpid()}"
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.bind(endpoint)
    receiver = ctx.Process(target=receive, args=(endpoint, args.messages, ready, out))
    receiver.start()
    ready.wait()
    time.sleep(0.3)  # the receiver's connection is up
    _pin(SENDER_CPU)
    for _ in range(args.messages):
        socket.send(np.zeros(3).tobytes())
        time.sleep(args.gap_ms / 1e3)
    cold = out.get(timeout=60)
    receiver.join(timeout=10)
    socket.close(linger=0)
    timed = sum(len(v) for v in cold.values())
    if timed != args.messages:
        raise SystemExit(f"{timed} of {args.messages} woken operations were timed")
    buffer = memoryview(np.zeros(3).tobytes())
    print(
        f"after a {args.gap_ms:g} ms idle gap (woken by a message) against hot, p50 in µs; "
        f"receiver on CPU {RECEIVER_CPU}"
    )
    for name, op in operations(Decoder()).items():
        hot = timeit.timeit(lambda op=op: op(buffer), number=20000) / 20000
        after = float(np.median(cold[name]))
        print(f"  {name:<36}: {after * 1e6:7.2f} after the gap, {hot * 1e6:6.2f} hot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
