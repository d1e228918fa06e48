"""What simulated time costs across processes: the split pendulum in lockstep
against its floor, in the same run.

``examples/pendulum/processes.yaml`` runs the plant (sensor, motor) and the
control side (controller, safety) in two processes. Each 50 Hz tick carries two
deliveries between them (the observation out, the action back), so no lockstep
protocol can beat two one-way hops a tick: the floor is 2 x the raw pyzmq
one-way hop between two processes, measured here as half a PUSH/PULL round trip
over ipc, back to back as lockstep passes its turns. The run-loop wall time per
tick (from the start signal to the end, process start-up left out) is set
against it, beside the same graph in one process.

The benchmark fails unless every node ran every tick in both runs and the two
runs give bit-identical episode returns and step counts.

    python benchmarks/lockstep_cost.py [--ticks 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import zmq

import edgeloop
from edgeloop.runtime.processes.supervisor import Supervisor

GRAPH = Path(__file__).resolve().parents[1] / "examples" / "pendulum" / "processes.yaml"
RATE_HZ = 50


def _echo(pull: str, push: str, count: int) -> None:
    context = zmq.Context()
    inbox, outbox = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    inbox.connect(pull)
    outbox.connect(push)
    for _ in range(count + 1):  # one to say it is up
        outbox.send(inbox.recv())
    context.destroy(linger=0)


def raw_one_way_s(count: int) -> float:
    """Median of half a PUSH/PULL round trip of a 24-byte frame over ipc."""
    folder = tempfile.mkdtemp(prefix="lockstep-cost-")
    there, back = f"ipc://{folder}/there", f"ipc://{folder}/back"
    context = zmq.Context()
    out, inbox = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    out.bind(there)
    inbox.bind(back)
    echo = mp.get_context("spawn").Process(target=_echo, args=(there, back, count))
    echo.start()
    out.send(b"up")
    inbox.recv()  # the echo is connected both ways
    payload, trips = bytes(24), []
    for _ in range(count):
        t0 = time.perf_counter()
        out.send(payload)
        inbox.recv()
        trips.append(time.perf_counter() - t0)
    echo.join(timeout=10)
    context.destroy(linger=0)
    if len(trips) != count:
        raise SystemExit(f"raw pyzmq: {len(trips)} of {count} round trips")
    return statistics.median(trips) / 2


def returns_and_calls(report) -> tuple[list[float], dict[str, int]]:
    return (
        list(report.series.get("motor.episode_return", [])),
        {n.id: n.calls for n in report.nodes},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=1000, help="50 Hz ticks per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (median kept)")
    args = parser.parse_args()
    duration = args.ticks / RATE_HZ
    graph = edgeloop.load_graph(GRAPH)
    split, single, hops = [], [], []
    for _ in range(args.repeats):
        hops.append(raw_one_way_s(args.ticks))
        lockstep = Supervisor(graph, simulated=True).run(duration)
        alone = edgeloop.Executor(graph, simulated=True).run(duration)
        for report, name in ((lockstep, "lockstep"), (alone, "one process")):
            calls = returns_and_calls(report)[1]
            if report.stop_reason != "duration reached" or calls["motor"] != args.ticks:
                raise SystemExit(f"{name}: {report.stop_reason}, motor ran {calls['motor']}")
        if returns_and_calls(lockstep) != returns_and_calls(alone):
            raise SystemExit("lockstep and one process differ: not the same run")
        split.append(lockstep.wall_s / args.ticks)
        single.append(alone.wall_s / args.ticks)
    hop = statistics.median(hops)
    floor = 2 * hop
    per_tick = statistics.median(split)
    print(f"split pendulum, {args.ticks:,} ticks in simulated time, median of {args.repeats}")
    print(f"  raw pyzmq one-way hop     : {hop * 1e6:8.1f} us")
    print(f"  floor (2 hops a tick)     : {floor * 1e3:8.3f} ms/tick")
    print(f"  lockstep, two processes   : {per_tick * 1e3:8.3f} ms/tick "
          f"({per_tick * args.ticks:.2f} s run loop)")  # fmt: skip
    print(f"  one process               : {statistics.median(single) * 1e3:8.3f} ms/tick")
    print(f"  lockstep / floor          : {per_tick / floor:8.2f}  (target <= 2)")
    print("  results: bit-identical to one process (episode returns, step counts)")


if __name__ == "__main__":
    main()
