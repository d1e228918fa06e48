"""What recording costs the loop: the same run without a recorder and with one,
for each flush policy, alternating in the same process.

The loop is the 4-node chain of ``loop_overhead.py`` (an 8-float reading, a 2x8
model, a clip, an actuator) in simulated time as fast as it goes: every tick
records 3 messages. Policies: flushed every 100 ms (the default), every
message, and every 100 ms with fsync (power-loss safe). Fails unless every
recorded run wrote every message.

    python benchmarks/recording_cost.py
    python benchmarks/recording_cost.py --ticks 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from loop_overhead import chain_graph  # beside this script

import edgeloop
from edgeloop.runtime.recording import Recorder

POLICIES = {  # name -> Recorder options, None: no recording
    "no recording": None,
    "flush every 100 ms": {"flush_ms": 100.0},
    "flush every message": {"flush_ms": 0.0},
    "fsync every 100 ms": {"flush_ms": 100.0, "fsync": True},
}


def us_per_tick(ticks: int, options: dict | None, folder: Path) -> float:
    rate = 1000.0
    recorder = Recorder(folder / "run.mcap", **options) if options is not None else None
    executor = edgeloop.Executor(chain_graph(rate), simulated=True, recorder=recorder)
    report = executor.run(duration_s=ticks / rate)
    assert report.node("actuator").calls == ticks, report.node("actuator")
    if recorder is not None:
        recorder.close()
        expected = 3 * ticks  # reading, estimate, action per tick
        if recorder.written != expected or recorder.failed:
            raise SystemExit(f"recorded {recorder.written} of {expected} messages")
    return report.wall_s / ticks * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=20_000, help="ticks per run")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats (median)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in POLICIES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, options in POLICIES.items():
                times[name].append(us_per_tick(args.ticks, options, Path(tmp)))
    base = statistics.median(times["no recording"])
    print(f"4-node chain, {args.ticks:,} ticks (3 messages each), median of {args.repeats}")
    for name, samples in times.items():
        us = statistics.median(samples)
        print(f"  {name:<20}: {us:7.2f} us/tick  ({us / base:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
