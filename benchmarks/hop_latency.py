"""One hop between two processes: edgeloop's transport against raw pyzmq and a
shared-memory floor, in the same run.

Measured as dora-rs measures it: the sender writes its clock into the message,
the receiver subtracts it from its own clock on arrival (one machine, one
monotonic clock); 500 messages per size, a few ms apart; p50 and p99. Sender
and receiver are pinned to the same two cores for every variant (a cross-core
wake-up costs tens of microseconds on these VMs, so placement must not differ).

Variants:
- raw pyzmq: PUSH/PULL over ipc, the payload's bytes sent with copy=False;
- shm floor: the payload already in shared memory, only an 8-byte notice sent;
- shm floor + memcpy: the sender first copies the payload into shared memory;
- edgeloop, own array: ``Sender.send`` of an array the node allocated (inline
  below the threshold, one copy into a slot above it);
- edgeloop, transport buffer: the node wrote into ``Sender.buffer`` (no copy).

    python benchmarks/hop_latency.py [--messages 500] [--gap-ms 3]
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

SIZES = {"8 B": 8, "4 KB": 4096, "400 KB": 400 * 1024, "4 MB": 4 * 1024 * 1024}
SENDER_CPU, RECEIVER_CPU = 0, min(1, (os.cpu_count() or 1) - 1)


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def receive(kind: str, endpoint: str, count: int, ready: mp.Event, out: mp.Queue) -> None:
    _pin(RECEIVER_CPU)
    latencies = []
    if kind.startswith("edgeloop"):
        from edgeloop.runtime.processes.transport import Receiver

        receiver = Receiver(endpoint)
        ready.set()
        for _ in range(count):
            message = receiver.recv()
            latencies.append(time.perf_counter() - message.created)
            del message  # hands a shared-memory slot back at once
        receiver.close()
    else:
        socket = zmq.Context.instance().socket(zmq.PULL)
        socket.connect(endpoint)
        ready.set()
        for _ in range(count):
            frame = socket.recv(copy=False)
            now = time.perf_counter()
            latencies.append(now - np.frombuffer(frame.buffer[:8], np.float64)[0])
        socket.close(linger=0)
    out.put(latencies)


def send(kind: str, endpoint: str, size: int, count: int, gap: float) -> list[float]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    receiver = ctx.Process(target=receive, args=(kind, endpoint, count, ready, out))
    _pin(SENDER_CPU)
    payload = np.zeros(max(size // 8, 1), np.float64)
    if kind.startswith("edgeloop"):
        from edgeloop.runtime.messages import Message
        from edgeloop.runtime.processes.transport import DEFAULT_THRESHOLD, Sender

        sender = Sender(endpoint)
        receiver.start()
        ready.wait()
        time.sleep(0.2)
        for seq in range(count):
            if kind == "edgeloop, transport buffer":
                array = sender.buffer(payload.shape, payload.dtype)
                array[:1] = seq  # the node's own writing is not the transport's time
            else:
                array = payload
            sender.send(Message(array, seq, time.perf_counter(), 0.0))
            time.sleep(gap)
        latencies = out.get(timeout=60)
        # a loan, or an own array over the threshold, that went inline (no slot, or the
        # receiver's channel was not up) would be timed as shared memory: none may
        loans = kind == "edgeloop, transport buffer"
        expected = count if loans or payload.nbytes >= DEFAULT_THRESHOLD else 0
        if sender.shared != expected:
            raise SystemExit(f"{kind}, {size} B: {sender.shared} of {count} went through shm")
        sender.close()
    else:
        socket = zmq.Context.instance().socket(zmq.PUSH)
        socket.bind(endpoint)
        shared = None
        if kind.startswith("shm"):
            fd, path = tempfile.mkstemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
            os.ftruncate(fd, payload.nbytes)
            shared = np.frombuffer(mmap.mmap(fd, payload.nbytes), np.float64)
            os.close(fd)
            os.unlink(path)
        receiver.start()
        ready.wait()
        time.sleep(0.2)
        stamp = np.zeros(1, np.float64)
        for _ in range(count):
            if kind == "raw pyzmq":
                payload[0] = time.perf_counter()
                socket.send(payload, copy=False)
            else:
                stamp[0] = time.perf_counter()
                if kind == "shm floor + memcpy":
                    shared[...] = payload
                socket.send(stamp.tobytes())
            time.sleep(gap)
        latencies = out.get(timeout=60)
        socket.close(linger=0)
    receiver.join(timeout=10)
    if len(latencies) != count:  # a figure of messages that did not travel is no figure
        raise SystemExit(f"{kind}, {size} B: {len(latencies)} of {count} messages arrived")
    return latencies


KINDS = (
    "raw pyzmq",
    "shm floor",
    "shm floor + memcpy",
    "edgeloop, own array",
    "edgeloop, transport buffer",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--gap-ms", type=float, default=3.0)
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds (this VM drifts over seconds)"
    )
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="edgeloop-hop-")
    results: dict[tuple[str, str], tuple[float, float]] = {}
    per_round = max(1, args.messages // args.rounds)
    print(
        f"{per_round * args.rounds} messages per size and variant, {args.gap_ms} ms apart, in "
        f"{args.rounds} interleaved rounds; sender on CPU {SENDER_CPU}, receiver on CPU "
        f"{RECEIVER_CPU}; one-way latency in µs (p50 / p99)"
    )
    samples: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for label, size in SIZES.items():
            for kind in KINDS:
                endpoint = f"ipc://{folder}/{r}-{abs(hash((kind, label)))}"
                lat = send(kind, endpoint, size, per_round, args.gap_ms / 1000)
                samples.setdefault((kind, label), []).extend(lat)
    print(f"{'':28}" + "".join(f"{label:>18}" for label in SIZES))
    for kind in KINDS:
        row = f"{kind:28}"
        for label in SIZES:
            p50, p99 = np.percentile(np.asarray(samples[kind, label]) * 1e6, [50, 99])
            results[kind, label] = (p50, p99)
            row += f"{p50:9.0f} /{p99:6.0f}  "
        print(row, flush=True)
    print("\nratios of p50:")
    for label in ("8 B", "4 KB"):
        own = results["edgeloop, own array", label][0]
        print(f"  {label}: edgeloop / raw pyzmq = {own / results['raw pyzmq', label][0]:.2f}")
    big = "4 MB"
    print(
        f"  {big}: edgeloop transport buffer / shm floor = "
        f"{results['edgeloop, transport buffer', big][0] / results['shm floor', big][0]:.2f}"
    )
    print(
        f"  {big}: edgeloop own array / (shm floor + memcpy) = "
        f"{results['edgeloop, own array', big][0] / results['shm floor + memcpy', big][0]:.2f}"
    )
    print(
        f"  {big}: edgeloop own array / raw pyzmq = "
        f"{results['edgeloop, own array', big][0] / results['raw pyzmq', big][0]:.2f}"
    )


if __name__ == "__main__":
    main()
