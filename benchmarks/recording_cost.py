"""What recording costs: per message against writing the same bytes to a file, and
per loop tick against the same loop unrecorded.

Part 1, per message (the issue 17 aim: a camera frame at most 1.5x the raw write).
A 640x480 RGB frame (written as ``foxglove.RawImage``) and an 8-float array (as
``edgeloop.Numbers``) go through ``Recorder.write``; the raw baseline writes the
same payload's bytes (``tobytes()``) to a plain file in the same folder. The two
alternate message by message, so both meet the same page-cache state; the
recorder flushes every 100 ms from its thread, the raw file is flushed as often.

Part 2, per tick: the 4-node chain of ``loop_overhead.py`` (3 small messages a
tick) and a camera loop (a 640x480 frame a tick into a sink) in simulated time,
as fast as they go, unrecorded and recorded (flushed every 100 ms, every
message, and every 100 ms with fsync), alternating in the same process.

Fails unless every message it timed is in the file it was written to (the
recording read back; the raw file's size).

    python benchmarks/recording_cost.py
    python benchmarks/recording_cost.py --messages 2000 --ticks 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from loop_overhead import chain_graph  # beside this script

import edgeloop
from edgeloop.runtime.mcap_records import scan
from edgeloop.runtime.recording import Recorder

PAYLOADS = {
    "640x480 RGB frame": np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8),
    "8-float array": np.linspace(0.0, 1.0, 8, dtype=np.float32),
}
POLICIES = {  # name -> Recorder options, None: no recording
    "no recording": None,
    "flush every 100 ms": {"flush_ms": 100.0},
    "flush every message": {"flush_ms": 0.0},
    "fsync every 100 ms": {"flush_ms": 100.0, "fsync": True},
}


def per_message(name: str, payload: np.ndarray, count: int, folder: Path) -> tuple[float, float]:
    """p50 microseconds per message: recorded, and written raw."""
    recorder = Recorder(folder / "messages.mcap", flush_ms=100.0)
    recorded, raw = [], []
    flushed = time.perf_counter()
    with (folder / "raw.bin").open("wb") as file:
        for k in range(count):
            t0 = time.perf_counter()
            recorder.write("/bench/payload", payload, k, k * 1e-3, k * 1e-3)
            t1 = time.perf_counter()
            file.write(payload.tobytes())
            t2 = time.perf_counter()
            recorded.append(t1 - t0)
            raw.append(t2 - t1)
            if t2 - flushed > 0.1:  # as the recorder's thread does
                file.flush()
                flushed = t2
    recorder.close()
    found = scan(folder / "messages.mcap")
    if recorder.written != count or len(found.messages) != count:
        raise SystemExit(f"{name}: recorded {len(found.messages)} of {count} messages")
    if (folder / "raw.bin").stat().st_size != count * payload.nbytes:
        raise SystemExit(f"{name}: the raw file misses bytes")
    return statistics.median(recorded) * 1e6, statistics.median(raw) * 1e6


class FrameSource(edgeloop.Sensor):
    """A new 640x480 frame every step (a row changes, so frames differ)."""

    outputs = (edgeloop.Port("image", dtype="uint8", shape=(480, 640, 3)),)

    def setup(self, ctx: edgeloop.NodeContext) -> None:
        self._frame = PAYLOADS["640x480 RGB frame"].copy()
        self._row = 0

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self._row = (self._row + 1) % 480
        self._frame[self._row] ^= 0xFF
        return {"image": self._frame}


class FrameSink(edgeloop.Actuator):
    inputs = (edgeloop.Port("image", dtype="uint8"),)

    def step(self, inputs: dict[str, Any]) -> None:
        return None


def camera_graph(rate_hz: float) -> edgeloop.LoopGraph:
    graph = edgeloop.LoopGraph(name="camera")
    graph.add_node("camera", FrameSource, rate_hz=rate_hz)
    graph.add_node("sink", FrameSink, inputs={"image": "camera/image"})
    return graph


LOOPS = {  # name -> (graph, messages recorded per tick, its last node)
    "4-node chain": (chain_graph, 3, "actuator"),
    "camera loop": (camera_graph, 1, "sink"),
}


def us_per_tick(loop: str, ticks: int, options: dict | None, folder: Path) -> float:
    make, per_tick, last = LOOPS[loop]
    rate = 1000.0
    recorder = Recorder(folder / "run.mcap", **options) if options is not None else None
    executor = edgeloop.Executor(make(rate), simulated=True, recorder=recorder)
    report = executor.run(duration_s=ticks / rate)
    assert report.node(last).calls == ticks, report.node(last)
    if recorder is not None:
        recorder.close()
        expected = per_tick * ticks
        if recorder.written != expected or recorder.failed:
            raise SystemExit(f"{loop}: recorded {recorder.written} of {expected} messages")
    return report.wall_s / ticks * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000, help="messages per payload")
    parser.add_argument("--ticks", type=int, default=5000, help="ticks per loop run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # on disk, where recordings go
        folder = Path(tmp)
        print(f"per message, p50 of {args.messages:,} (recorded and raw alternating)")
        for name, payload in PAYLOADS.items():
            recorded, raw = per_message(name, payload, args.messages, folder)
            print(
                f"  {name:<18}: recorded {recorded:8.1f} us, raw write {raw:8.1f} us "
                f"({recorded / raw:.2f}x)"
            )
        for loop in LOOPS:
            ticks = args.ticks if loop == "4-node chain" else args.ticks // 10
            times: dict[str, list[float]] = {name: [] for name in POLICIES}
            for _ in range(args.repeats):
                for name, options in POLICIES.items():
                    times[name].append(us_per_tick(loop, ticks, options, folder))
            base = statistics.median(times["no recording"])
            print(f"{loop}, {ticks:,} ticks, median of {args.repeats}")
            for name, samples in times.items():
                us = statistics.median(samples)
                print(f"  {name:<20}: {us:8.2f} us/tick  (+{us - base:.2f} us, {us / base:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
