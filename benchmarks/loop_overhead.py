"""Executor overhead against a hand-written loop, and real-time timer jitter.

A chain sensor -> model -> controller -> actuator does exactly what four plain
functions do: the sensor returns an 8-float array, the model multiplies it by
an 8x2 matrix, the controller clips to [-1, 1], the actuator stores the value.
The executor drives it in simulated time as fast as possible with metrics on;
the baseline is a Python loop calling the same four functions, in the same run.

    python benchmarks/loop_overhead.py            # overhead + 30 s real-time jitter
    python benchmarks/loop_overhead.py --ticks 200000 --realtime-s 0
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import time
from typing import Any

import numpy as np

import edgeloop
from edgeloop import Actuator, Controller, LoopGraph, Model, Port, Sensor
from edgeloop.runtime.wiring import OutPort

WEIGHTS = np.linspace(-0.5, 0.5, 16).reshape(8, 2)
READING = np.linspace(-2.0, 2.0, 8)


# -- the four plain functions ------------------------------------------------------
def sense() -> np.ndarray:
    return READING.copy()


def infer(x: np.ndarray) -> np.ndarray:
    return x @ WEIGHTS


def control(y: np.ndarray) -> np.ndarray:
    return np.clip(y, -1.0, 1.0)


class Store:
    last: Any = None


def act(u: np.ndarray, store: type[Store] = Store) -> None:
    store.last = u


# -- the same functions as node types ------------------------------------------------
class BenchSensor(Sensor):
    outputs = (Port("reading", dtype="float64", shape=(8,)),)

    def step(self, inputs):
        return {"reading": sense()}


class BenchModel(Model):
    inputs = (Port("reading", dtype="float64", shape=(8,)),)
    outputs = (Port("estimate", dtype="float64", shape=(2,)),)

    def step(self, inputs):
        return {"estimate": infer(inputs["reading"])}


class BenchController(Controller):
    inputs = (Port("estimate", dtype="float64", shape=(2,)),)
    outputs = (Port("action", dtype="float64", shape=(2,)),)

    def step(self, inputs):
        return {"action": control(inputs["estimate"])}


class BenchActuator(Actuator):
    inputs = (Port("action", dtype="float64", shape=(2,)),)

    def step(self, inputs):
        act(inputs["action"])


def chain_graph(rate_hz: float) -> LoopGraph:
    graph = LoopGraph(name="overhead")
    graph.add_node("sensor", BenchSensor, rate_hz=rate_hz)
    graph.add_node("model", BenchModel, inputs={"reading": "sensor/reading"})
    graph.add_node("controller", BenchController, inputs={"estimate": "model/estimate"})
    graph.add_node("actuator", BenchActuator, inputs={"action": "controller/action"})
    graph.add_contract(
        "sense_to_act", ["sensor", "model", "controller", "actuator"], deadline_ms=20
    )
    return graph


def bare_us_per_tick(ticks: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(ticks):
        act(control(infer(sense())))
    return (time.perf_counter() - t0) / ticks * 1e6


def floor_us_per_tick(ticks: int) -> float:
    """The same four node objects through the least a measured loop must do:
    time each step, check float outputs are finite, hand the output on."""
    chain = [BenchSensor(), BenchModel(), BenchController(), BenchActuator()]
    ports = ["reading", "estimate", "action", None]
    inputs: list[dict[str, Any]] = [{}, {"reading": None}, {"estimate": None}, {"action": None}]
    samples: list[list[int]] = [[], [], [], []]
    perf, isfinite, fsum = time.perf_counter_ns, math.isfinite, math.fsum
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(ticks):
        for i, node in enumerate(chain):
            start = perf()
            out = node.step(inputs[i])
            samples[i].append(perf() - start)
            if out:
                data = out[ports[i]]
                if not isfinite(fsum(data.tolist())):
                    raise ValueError("non-finite")
                inputs[i + 1][ports[i]] = data
    return (time.perf_counter() - t0) / ticks * 1e6


def executor_us_per_tick(ticks: int, *, output_contracts: bool = True) -> float:
    """The executor's time per tick; ``output_contracts=False`` runs the very same
    executor with the dtype/shape check of its ports switched off, to price it."""
    rate = 1000.0
    executor = edgeloop.Executor(chain_graph(rate), simulated=True)
    original_init = OutPort.__init__
    if not output_contracts:

        def unchecked_init(port: OutPort, declared: Port) -> None:
            original_init(port, declared)
            port.checks_type = False

        OutPort.__init__ = unchecked_init  # type: ignore[method-assign]
    gc.collect()
    try:
        report = executor.run(duration_s=ticks / rate)
    finally:
        OutPort.__init__ = original_init  # type: ignore[method-assign]
    assert report.node("actuator").calls == ticks, report.node("actuator")
    return report.wall_s / ticks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=20_000, help="ticks per measurement")
    parser.add_argument("--repeats", type=int, default=25, help="alternating repeats (median kept)")
    parser.add_argument(
        "--realtime-s",
        type=float,
        default=30.0,
        help="seconds of the 50 Hz real-time jitter run (0 skips it)",
    )
    args = parser.parse_args()

    bare, floor, loop, unchecked = [], [], [], []
    for _ in range(args.repeats):
        bare.append(bare_us_per_tick(args.ticks))
        floor.append(floor_us_per_tick(args.ticks))
        loop.append(executor_us_per_tick(args.ticks))
        unchecked.append(executor_us_per_tick(args.ticks, output_contracts=False))
    bare_us, floor_us = statistics.median(bare), statistics.median(floor)
    loop_us, unchecked_us = statistics.median(loop), statistics.median(unchecked)
    print(f"4-node chain, {args.ticks:,} ticks, median of {args.repeats} alternating repeats")
    print(f"  hand-written loop : {bare_us:6.2f} us/tick")
    print(
        f"  minimal dispatch  : {floor_us:6.2f} us/tick  (node objects, step timing and "
        f"finite checks only: ratio {floor_us / bare_us:.2f})"
    )
    print(f"  edgeloop executor : {loop_us:6.2f} us/tick  (simulated clock, metrics on)")
    print(f"  added per node    : {(loop_us - bare_us) / 4:6.2f} us")
    print(
        f"  output contracts  : {loop_us - unchecked_us:6.2f} us/tick  (dtype and shape of "
        f"3 ports; without them {unchecked_us:.2f} us/tick)"
    )
    print(f"  ratio             : {loop_us / bare_us:6.2f}  (target <= 2.0, aim 1.5)")

    if args.realtime_s > 0:
        report = edgeloop.Executor(chain_graph(50.0)).run(duration_s=args.realtime_s)
        timer = report.timers[0]
        contract = report.contracts[0]
        print(
            f"real-time 50 Hz for {args.realtime_s:g} s: {timer.fired} ticks, "
            f"timer jitter p50 {timer.jitter_p50_us:.1f} us, p99 {timer.jitter_p99_us:.1f} us, "
            f"max {timer.jitter_max_us:.1f} us, overruns {timer.overruns}; "
            f"sense-to-act p50 {contract.p50_ms * 1e3:.1f} us, p99 {contract.p99_ms * 1e3:.1f} us"
        )


if __name__ == "__main__":
    main()
