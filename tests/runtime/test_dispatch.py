"""Generated steps (runtime/dispatch.py): each node's step is written out for its
ports, a chain of receivers that only one output triggers runs in one function,
and what they do is what the general path does."""

from __future__ import annotations

import math

import numpy as np

from edgeloop import Controller, Executor, LoopGraph, Port, Sensor
from edgeloop.runtime.dispatch import _MAX_INLINE


class Reading(Sensor):
    outputs = (Port("x", dtype="float64", shape=(4,)),)

    def step(self, inputs):
        return {"x": np.full(4, self.ctx.now())}


class Double(Controller):
    inputs = (Port("x", dtype="float64", shape=(4,)),)
    outputs = (Port("x", dtype="float64", shape=(4,)),)

    def step(self, inputs):
        return {"x": inputs["x"] * 2}


class Count(Controller):
    """Declares an int port (no NaN check) and returns nothing every other step."""

    inputs = (Port("x"),)
    outputs = (Port("n", dtype="int64", shape=()),)

    def setup(self, ctx):
        super().setup(ctx)
        self.seen = []

    def step(self, inputs):
        self.seen.append(float(inputs["x"][0]))
        return {"n": np.int64(len(self.seen))} if len(self.seen) % 2 else None


def chain(length: int) -> LoopGraph:
    graph = LoopGraph(name="chain")
    graph.add_node("sense", Reading, rate_hz=100)
    source = "sense/x"
    for k in range(length):
        graph.add_node(f"double{k}", Double, inputs={"x": source})
        source = f"double{k}/x"
    graph.add_node("count", Count, inputs={"x": source})
    return graph


def run(graph: LoopGraph, seconds: float = 0.5) -> tuple[Executor, object]:
    executor = Executor(graph, simulated=True)
    return executor, executor.run(seconds)


def test_a_chain_runs_in_one_function_with_one_clock_reading_between_steps():
    executor, report = run(chain(2))
    source = executor._loop_parts.runners["sense"].run.source
    for node in ("sense", "double0", "double1", "count"):
        assert f"# {node}\n" in source
        assert report.node(node).calls == 50
    assert source.count("t1 = perf()") == 4  # one reading after each step
    assert source.count("t0 = perf()") == 1  # and one before the first
    assert ".run()" not in source  # nothing called: every receiver is written inline
    # Each node's step timed: the figures are there for every node.
    assert all(math.isfinite(report.node(n).p50_us) for n in ("sense", "double0", "count"))
    counted = executor.node("count").seen
    assert np.allclose(counted, [4 * k / 100 for k in range(50)])  # doubled twice


def test_checks_are_written_for_what_each_port_declares():
    executor, _ = run(chain(1))
    runners = executor._loop_parts.runners
    sense, count = runners["sense"].run.source, runners["count"].run.source
    # A small float vector: the sum of its elements decides finiteness.
    assert "isfinite(sum(data.tolist()))" in sense
    # An int port has no NaN check; no deadline was set, so none is checked.
    assert "isfinite" not in count and "finite(data)" not in count
    assert "node_missed" not in sense


def test_a_deadline_and_a_contract_are_written_into_the_node_that_ends_them():
    graph = chain(1)
    graph.nodes[1].deadline_ms = 5.0
    graph.add_contract("path", ["sense", "double0", "count"], deadline_ms=1e-6)
    executor, report = run(graph)
    source = executor._loop_parts.runners["sense"].run.source
    assert "if t1 - t0 > 5000000:" in source
    assert "contract_missed" in source
    contract = report.contract("path")
    # Simulated time stands still within a tick: the path took no clock time.
    assert contract.count == 50 and contract.p50_ms == 0.0 and contract.deadline_misses == 0


def test_a_chain_longer_than_one_function_calls_on_and_loses_nothing():
    executor, report = run(chain(_MAX_INLINE + 3))
    first = executor._loop_parts.runners["sense"].run.source
    assert first.count("t1 = perf()") == _MAX_INLINE
    assert first.rstrip().endswith(".run()")  # the rest in the next function
    assert report.node("count").calls == 50
    assert np.isclose(executor.node("count").seen[-1], 49 / 100 * 2 ** (_MAX_INLINE + 3))


def test_a_fault_inside_a_chain_is_handled_by_its_policy_and_the_chain_goes_on():
    class Flaky(Controller):
        inputs = (Port("x", dtype="float64", shape=(4,)),)
        outputs = (Port("x", dtype="float64", shape=(4,)),)

        def step(self, inputs):
            if round(inputs["x"][0] * 100) % 10 == 3:
                return {"x": np.full(4, np.nan)}  # a non-finite output: a fault
            return {"x": inputs["x"]}

    graph = LoopGraph(name="flaky")
    graph.add_node("sense", Reading, rate_hz=100)
    graph.add_node("flaky", Flaky, inputs={"x": "sense/x"}, on_fault="hold_last")
    graph.add_node("count", Count, inputs={"x": "flaky/x"})
    executor, report = run(graph)
    assert report.node("flaky").faults == {"non_finite": 5}
    # The five faulted steps handed on the last good output instead (hold_last).
    assert report.node("count").calls == 50
    held = [(k - 1 if k % 10 == 3 else k) / 100 for k in range(50)]
    assert np.allclose(executor.node("count").seen, held)
