"""Run metrics: latency recorders and the run report (table and JSON).

Recording is an ``append`` of integer nanoseconds to a list on the per-tick
path; lists are folded into a log-spaced histogram (1 % wide bins) every few
thousand timer firings, so memory stays bounded on long runs while short runs
keep exact percentiles.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgeloop.runtime.graph import LoopGraph

_FOLD_AT = 1 << 15
_BIN_RATIO = 1.01
_LOG_RATIO = math.log(_BIN_RATIO)
_N_BINS = int(math.log(1e13) / _LOG_RATIO) + 2  # up to ~3 hours in ns


class LatencyRecorder:
    """Collects durations; ``samples.append`` is the only per-tick cost.

    Args:
        to_ns: What one recorded unit is in ns (1 for ns, 1e9 for seconds), so
            the per-tick path can append whatever it has without converting.
    """

    __slots__ = ("_folded", "_hist", "_max", "_to_ns", "samples")

    def __init__(self, to_ns: float = 1) -> None:
        self._to_ns = to_ns
        self.samples: list[float] = []
        self._hist: np.ndarray | None = None
        self._folded = 0
        self._max = 0

    def fold_if_large(self) -> None:
        """Move samples into the histogram once there are many of them."""
        if len(self.samples) >= _FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        if not self.samples:
            return
        values = np.asarray(self.samples, dtype=np.float64) * self._to_ns
        self.samples.clear()
        self._max = max(self._max, int(values.max()))
        bins = np.floor(np.log(np.maximum(values, 1.0)) / _LOG_RATIO).astype(np.int64)
        counts = np.bincount(np.clip(bins, 0, _N_BINS - 1), minlength=_N_BINS)
        self._hist = counts if self._hist is None else self._hist + counts
        self._folded += len(values)

    @property
    def count(self) -> int:
        return self._folded + len(self.samples)

    def summary_ns(self) -> tuple[float, float, float]:
        """(p50, p99, max) in ns; exact until the first fold, then within 1 %."""
        if self.count == 0:
            return (math.nan, math.nan, math.nan)
        samples = list(self.samples)  # a copy: another thread (edgeloop top) may be reading
        hist = self._hist
        if hist is None:
            values = np.asarray(samples, dtype=np.float64) * self._to_ns
            p50, p99 = np.percentile(values, [50, 99])
            return (float(p50), float(p99), float(values.max()))
        worst = self._max
        if samples:  # fold a copy into a copy; the recorder itself is left as it is
            values = np.asarray(samples, dtype=np.float64) * self._to_ns
            worst = max(worst, int(values.max()))
            bins = np.floor(np.log(np.maximum(values, 1.0)) / _LOG_RATIO).astype(np.int64)
            hist = hist + np.bincount(np.clip(bins, 0, _N_BINS - 1), minlength=_N_BINS)
        cumulative = np.cumsum(hist)
        total = cumulative[-1]

        def quantile(q: float) -> float:
            index = int(np.searchsorted(cumulative, q * total))
            return _BIN_RATIO ** (index + 0.5)

        return (quantile(0.5), quantile(0.99), float(worst))


@dataclass
class NodeStats:
    """Per-node figures of one run. Latencies are wall-clock step times in µs."""

    id: str
    type: str
    calls: int = 0
    p50_us: float = math.nan
    p99_us: float = math.nan
    max_us: float = math.nan
    deadline_ms: float | None = None
    deadline_misses: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    skipped: int = 0
    """Steps not taken while the node was down (a restart's backoff and setup)."""
    down_s: float = 0.0
    """Clock time the node was down: restart backoff plus the fresh instance's setup."""
    notes: dict[str, str] = field(default_factory=dict)
    """Facts the node stated (``ctx.note``), e.g. the execution provider its model runs on."""
    safe_states: dict[str, int] = field(default_factory=dict)
    """An actuator's safe commands sent, by why: ``stop``, a fault kind
    (``stale_input``, ``exception``...), ``hung`` (another node hung the process),
    ``reconnect``."""
    sensing: dict[str, Any] | None = None
    """A steerable sensor's readings, readings skipped against its maximum rate,
    sensing cost, final rate, and the commands it got, clamped and rejected."""
    role: str = "node"
    """The node type's role: sensor, model, controller, actuator, monitor."""


@dataclass
class ContractStats:
    """Per-contract sense-to-act latency (clock time: simulated in --sim runs), ms."""

    name: str
    path: list[str]
    deadline_ms: float
    count: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    deadline_misses: int = 0


@dataclass
class TimerStats:
    """How late timers fired (not measured in simulated time, where every timer is
    on time), and ticks skipped by overruns."""

    source: str
    period_ms: float
    fired: int = 0
    jitter_p50_us: float = math.nan
    jitter_p99_us: float = math.nan
    jitter_max_us: float = math.nan
    overruns: int = 0


@dataclass
class RunReport:
    """Everything measured in one run; ``to_json`` writes it for tools."""

    graph: str
    simulated: bool
    seed: int
    stop_reason: str
    stopped_by_fault: bool
    """True when a node's fault policy (``stop``, or ``restart`` past its limit) ended the run."""
    duration_s: float
    wall_s: float
    nodes: list[NodeStats]
    contracts: list[ContractStats]
    timers: list[TimerStats]
    series: dict[str, list[float]] = field(default_factory=dict)
    fault_log: list[dict[str, Any]] = field(default_factory=list)
    recording: dict[str, Any] | None = None
    """File, messages written and failed, when the run was recorded."""
    groups: list[dict[str, Any]] | None = None
    """Per process group of a run split across processes: its nodes, pid, crashes,
    restarts, and the messages and bytes its links sent, dropped and received."""
    energy: dict[str, Any] | None = None
    """Energy measured on the board's power rails (a ``board.health`` node's
    ``energy_j``): the joules, and per sensor reading and per model inference (the
    board's whole draw over each: an upper bound on what one costs)."""
    realtime: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per process (``main``, or each process group): the real-time options in force
    (CPUs, scheduler, locked MiB, spin window), any refused, the garbage
    collections and their pauses, and the share of a core the timer's spin took."""

    def node(self, node_id: str) -> NodeStats:
        """The stats of one node (KeyError if none)."""
        for stats in self.nodes:
            if stats.id == node_id:
                return stats
        raise KeyError(node_id)

    def contract(self, name: str) -> ContractStats:
        """The stats of one contract (KeyError if none)."""
        for stats in self.contracts:
            if stats.name == name:
                return stats
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        """The report back from :meth:`to_dict` (JSON nulls back to NaN)."""
        return cls(
            **{
                **data,
                "nodes": _stats(NodeStats, data["nodes"]),
                "contracts": _stats(ContractStats, data["contracts"]),
                "timers": _stats(TimerStats, data["timers"]),
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _stats(kind: type, items: list[dict[str, Any]]) -> list[Any]:
    floats = {f for f, t in kind.__annotations__.items() if t == "float"}
    return [
        kind(**{k: math.nan if k in floats and v is None else v for k, v in i.items()})
        for i in items
    ]


def nodes_to_dicts(nodes: list[NodeStats]) -> list[dict[str, Any]]:
    """Node figures as JSON-ready data (NaN as null), e.g. for a heartbeat."""
    return _json_safe([asdict(n) for n in nodes])


def nodes_from_dicts(items: list[dict[str, Any]]) -> list[NodeStats]:
    """The inverse of :func:`nodes_to_dicts`."""
    return _stats(NodeStats, items)


def run_duration(
    *, simulated: bool, stop_reason: str, asked_s: float | None, reached_s: float, wall_s: float
) -> float:
    """How long a run ran, as its report says: the duration asked for when a simulated
    run reached it, the clock time reached when it stopped early, the wall clock's in
    real time."""
    if not simulated:
        return wall_s
    if stop_reason == "duration reached" and asked_s is not None:
        return asked_s
    return reached_s


class ReportBuilder:
    """Assembles a :class:`RunReport` from the parts of a run: one executor's
    figures, or the reports of every process group of a run split across processes.

    One place decides what a report says: nodes in graph order, contracts with
    their full paths, the fault log in time order, and the duration
    (:func:`run_duration`).
    """

    def __init__(self, graph: LoopGraph, *, simulated: bool, seed: int) -> None:
        self.graph = graph
        self.simulated = simulated
        self.seed = seed
        self.nodes: list[NodeStats] = []
        self.contracts: list[ContractStats] = []
        self.timers: list[TimerStats] = []
        self.series: dict[str, list[float]] = {}
        self.fault_log: list[dict[str, Any]] = []
        self.realtime: dict[str, dict[str, Any]] = {}
        self.reached_s = 0.0
        """The latest clock time any part reached, seconds."""

    def add(
        self,
        *,
        nodes: list[NodeStats],
        contracts: list[ContractStats],
        timers: list[TimerStats],
        series: dict[str, list[float]],
        fault_log: list[dict[str, Any]],
        reached_s: float,
        realtime: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """The figures of one executor (of the whole graph, or of one group)."""
        self.realtime.update(realtime or {})
        self.nodes += nodes
        self.contracts += contracts
        self.timers += timers
        self.series.update(series)
        self.fault_log += fault_log
        self.reached_s = max(self.reached_s, reached_s)

    def add_ended_process(self, nodes: list[NodeStats], why: str) -> None:
        """The figures of a process that ended without its report (killed, hung),
        as of its last heartbeat: summed into its nodes' figures from the process
        that replaced it (percentiles: the larger sample's), noted on each node."""
        by_id = {n.id: n for n in self.nodes}
        note = f"includes a process that ended ({why}), up to its last heartbeat"
        for lost in nodes:
            node = by_id.get(lost.id)
            if node is None:
                lost.notes = {**lost.notes, "figures": note}
                self.nodes.append(lost)
                by_id[lost.id] = lost
                continue
            if lost.calls > node.calls:
                node.p50_us, node.p99_us = lost.p50_us, lost.p99_us
            node.max_us = max(node.max_us, lost.max_us) if node.calls else lost.max_us
            node.calls += lost.calls
            node.deadline_misses += lost.deadline_misses
            node.restarts += lost.restarts
            node.skipped += lost.skipped
            node.down_s += lost.down_s
            for port, drops in lost.drops.items():
                node.drops[port] = node.drops.get(port, 0) + drops
            for kind, count in lost.faults.items():
                node.faults[kind] = node.faults.get(kind, 0) + count
            node.notes = {**node.notes, "figures": note}

    def add_report(self, report: RunReport, *, leave_out_types: tuple[str, ...] = ()) -> None:
        """The report of one process group, without its nodes of ``leave_out_types``
        (stand-ins for nodes another group runs)."""
        self.add(
            nodes=[n for n in report.nodes if n.type not in leave_out_types],
            contracts=report.contracts,
            timers=report.timers,
            series=report.series,
            fault_log=report.fault_log,
            reached_s=report.duration_s,
            realtime=report.realtime,
        )

    def build(
        self,
        *,
        stop_reason: str,
        stopped_by_fault: bool,
        asked_s: float | None,
        wall_s: float,
        recording: dict[str, Any] | None = None,
        groups: list[dict[str, Any]] | None = None,
    ) -> RunReport:
        """The report; ``asked_s`` is the duration the run was asked for (None: none)."""
        duration = run_duration(
            simulated=self.simulated,
            stop_reason=stop_reason,
            asked_s=asked_s,
            reached_s=self.reached_s,
            wall_s=wall_s,
        )
        order = {spec.id: i for i, spec in enumerate(self.graph.nodes)}
        paths = {c.name: list(c.path) for c in self.graph.contracts}
        for contract in self.contracts:  # a group's contract keeps the whole graph's path
            contract.path = paths.get(contract.name, contract.path)
        return RunReport(
            graph=self.graph.name,
            simulated=self.simulated,
            seed=self.seed,
            stop_reason=stop_reason,
            stopped_by_fault=stopped_by_fault,
            duration_s=duration if math.isfinite(duration) else wall_s,
            wall_s=wall_s,
            nodes=sorted(self.nodes, key=lambda n: order.get(n.id, len(order))),
            contracts=self.contracts,
            timers=self.timers,
            series={k: list(v) for k, v in self.series.items()},
            fault_log=sorted(self.fault_log, key=lambda f: f.get("time_s") or 0.0),
            recording=recording,
            groups=groups,
            energy=measured_energy(self.nodes),
            realtime=dict(self.realtime),
        )


HEALTH_TYPE = "board.health"


def measured_energy(nodes: list[NodeStats]) -> dict[str, Any] | None:
    """The joules ``board.health`` nodes measured, per reading of the other sensors and
    per inference of the models; None when no node measured any."""
    meters = [n for n in nodes if n.type == HEALTH_TYPE and "energy_j" in n.notes]
    if not meters:
        return None
    joules = sum(float(n.notes["energy_j"]) for n in meters)
    readings = sum(n.calls for n in nodes if n.role == "sensor" and n.type != HEALTH_TYPE)
    inferences = sum(n.calls for n in nodes if n.role == "model")
    energy: dict[str, Any] = {"joules": joules, "meters": [n.id for n in meters]}
    energy["readings"], energy["inferences"] = readings, inferences
    if readings:
        energy["per_reading_mj"] = 1e3 * joules / readings
    if inferences:
        energy["per_inference_mj"] = 1e3 * joules / inferences
    return energy


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
