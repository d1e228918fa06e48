"""Loop graphs: the YAML schema (pydantic models) and the Python builder.

A graph is a list of nodes wired ``port: other_node/output`` (or to a timer,
``timer/20ms``) plus contracts: named sensor-to-actuator paths with an
end-to-end deadline. The YAML file is a serialisation of :class:`LoopGraph`;
building one in Python gives the same object::

    graph = LoopGraph(name="demo")
    graph.add_node("imu", "my.imu", rate_hz=100)
    graph.add_node("ctl", "pid", inputs={"obs": "imu/obs"})
    graph.add_node("motor", "my.motor", inputs={"action": "ctl/action"})
    graph.add_contract("imu_to_motor", ["imu", "ctl", "motor"], deadline_ms=5)
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeloop.runtime.errors import GraphError, GraphProblem
from edgeloop.runtime.limits import (
    MAX_CPU,
    MAX_MS,
    MAX_QUEUE_SIZE,
    MAX_RATE_HZ,
    MAX_RESTARTS,
    MAX_SPIN_US,
    MIN_RATE_HZ,
    MIN_TIMER_PERIOD_NS,
)
from edgeloop.runtime.node import Node

TIMER_PREFIX = "timer/"
_TIMER_RE = re.compile(r"^timer/(\d+(?:\.\d+)?)\s*(us|ms|s|hz)$", re.IGNORECASE)
_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
_UNIT_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_M = TypeVar("_M", bound=BaseModel)


def timer_period_ns(source: str) -> int | None:
    """Period of a ``timer/<n><unit>`` source in ns (units us, ms, s, hz), else None."""
    period = _timer_period(source)
    if period is None or not math.isfinite(period):
        return None
    period = round(period)
    return period if period >= 1 else None  # under 1 ns rounds to 0: a timer that never advances


def _timer_period(source: str) -> float | None:
    """Period in ns as written, unrounded (inf for ``timer/1e-300hz``), or None."""
    m = _TIMER_RE.match(source)
    if m is None:
        return None
    value, unit = float(m.group(1)), m.group(2).lower()
    if value <= 0:
        return None
    return 1e9 / value if unit == "hz" else value * _UNIT_NS[unit]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class InputSpec(_Strict):
    """Where one input port gets its messages from, and how they queue."""

    source: str = Field(alias="from")
    """``node/output`` or ``timer/<period>`` (e.g. ``timer/20ms``, ``timer/50hz``); a
    timer's period is from 1 us to one day."""
    queue: Literal["latest", "fifo"] = "latest"
    """``latest`` keeps one message (an unread one overwritten is a drop); ``fifo``
    keeps up to ``size`` and drops the oldest when full."""
    size: int = Field(default=16, gt=0, le=MAX_QUEUE_SIZE)
    """Bound of a ``fifo`` queue, at most 100,000 messages."""
    feedback: bool = False
    """Marks an edge that closes a cycle; it delivers but does not trigger the node."""
    trigger: bool = True
    """Whether a message on this port makes the node step (ignored for rate-driven nodes)."""
    stale_ms: float | None = Field(default=None, gt=0, le=MAX_MS, allow_inf_nan=False)
    """A message older than this when the node steps is a ``stale_input`` fault (at
    most 86,400,000: one day)."""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"from": value} if isinstance(value, str) else value

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        if value.startswith(TIMER_PREFIX):
            period = _timer_period(value)
            if period is None:
                raise ValueError(
                    f"bad timer '{value}': write timer/<number><unit> with unit us, ms, s or hz, "
                    "e.g. timer/20ms"
                )
            if not MIN_TIMER_PERIOD_NS <= period <= MAX_MS * 1_000_000:
                raise ValueError(
                    f"timer '{value}' has a period of {period / 1e9:g} s, outside 1 us to one "
                    "day: write a period from timer/1us (timer/1000000hz) to timer/86400s"
                )
        elif value.count("/") != 1 or not all(value.split("/")):
            raise ValueError(f"bad source '{value}': write other_node/output or timer/20ms")
        return value

    @model_validator(mode="after")
    def _size_needs_fifo(self) -> InputSpec:
        if self.queue == "latest" and "size" in self.model_fields_set:
            raise ValueError("size bounds a fifo queue; a latest queue holds one message")
        return self

    @property
    def is_timer(self) -> bool:
        return self.source.startswith(TIMER_PREFIX)

    @property
    def node(self) -> str:
        return self.source.split("/", 1)[0]

    @property
    def port(self) -> str:
        return self.source.split("/", 1)[1]


class RestartPolicy(_Strict):
    """Backoff of the ``restart`` fault policy."""

    max_restarts: int = Field(default=3, ge=0, le=MAX_RESTARTS)
    """Restarts allowed in one run (at most 1,000,000); one more fault after that
    stops the loop."""
    backoff_ms: float = Field(default=10.0, gt=0, le=MAX_MS, allow_inf_nan=False)
    """Wait before the first restart; doubles after each consecutive fault. At most
    86,400,000 (one day), as every millisecond setting."""
    max_backoff_ms: float = Field(default=1000.0, gt=0, le=MAX_MS, allow_inf_nan=False)
    """Upper bound of the wait."""
    setup_timeout_ms: float = Field(default=10_000.0, gt=0, le=MAX_MS, allow_inf_nan=False)
    """A restarted node's ``setup`` (run off the loop's thread in real time) that
    takes longer is a failed restart."""


FaultAction = Literal["restart", "hold_last", "fallback", "stop"]


class FaultPolicy(_Strict):
    """What happens when a node faults: written in YAML as ``restart``,
    ``hold_last``, ``stop``, ``{fallback: node_id}`` or ``{restart: {...}}``."""

    action: FaultAction = "restart"
    fallback: str | None = None
    restart: RestartPolicy = Field(default_factory=RestartPolicy)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value == "fallback":
                raise ValueError("fallback needs a node: write on_fault: {fallback: <node id>}")
            return {"action": value}
        if isinstance(value, dict) and "action" not in value and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "fallback":
                return {"action": "fallback", "fallback": arg}
            if key == "restart":
                return {"action": "restart", "restart": arg or {}}
        return value

    @model_validator(mode="after")
    def _fallback_named(self) -> FaultPolicy:
        if self.action == "fallback" and not self.fallback:
            raise ValueError("fallback needs a node: write on_fault: {fallback: <node id>}")
        return self

    def to_yaml_value(self) -> Any:
        # The short forms, where they lose nothing; the full mapping otherwise.
        default_restart = self.restart == RestartPolicy()
        if self.action == "fallback" and default_restart:
            return {"fallback": self.fallback}
        if self.action == "restart" and self.fallback is None and not default_restart:
            return {"restart": self.restart.model_dump()}
        if self.fallback is None and default_restart:
            return self.action
        return {"action": self.action, **self.model_dump(exclude_defaults=True)}


class SensingBounds(_Strict):
    """A graph's narrowing of a steerable sensor's rate bounds, and its cost per reading."""

    min_rate_hz: float | None = Field(default=None, gt=0, le=MAX_RATE_HZ, allow_inf_nan=False)
    max_rate_hz: float | None = Field(default=None, gt=0, le=MAX_RATE_HZ, allow_inf_nan=False)
    """Each at most 1,000,000 Hz, as ``rate_hz``."""
    cost_per_reading: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Energy units of one full reading (from the sensor's datasheet, say)."""


class PortRecordSpec(_Strict):
    """How one output port is recorded (``--record``) and shown live (``--foxglove``)."""

    frame_id: str | None = None
    """The frame of reference its messages name (Foxglove, ROS); default the node's id."""
    image: Literal["auto", "rgb", "bgr", "mono", "never"] = "auto"
    """``auto``: uint8 ``H x W x C`` arrays (C = 1, 3, 4) are RGB(A) images; ``bgr``:
    the same in BGR order; ``mono``: 2-D uint8, uint16 and float32 arrays are images
    too; ``never``: arrays stay arrays."""
    compress: Literal["jpeg", "png"] | None = None
    """Write its images compressed (needs OpenCV or Pillow). jpeg is lossy: replay
    compares such a port within a mean difference of 3 (of 255); png is exact."""
    quality: int = Field(default=90, ge=1, le=100)
    """jpeg quality."""


class NodeSpec(_Strict):
    """One node of a graph as written in YAML (the running object is a :class:`Node`)."""

    id: str = Field(pattern=_ID_PATTERN)
    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    outputs: list[str] | None = None
    """Outputs used; defaults to every output the node type declares."""
    rate_hz: float | None = Field(default=None, ge=MIN_RATE_HZ, le=MAX_RATE_HZ, allow_inf_nan=False)
    """Run periodically at this rate (inputs are then sampled, not triggering); from
    1e-6 (one tick in 11.6 days) to 1,000,000 (a 1 us period)."""
    deadline_ms: float | None = Field(default=None, gt=0, le=MAX_MS, allow_inf_nan=False)
    """A step that takes longer than this (wall time) is a deadline miss. At most
    86,400,000 (one day), as every millisecond setting."""
    watchdog_ms: (
        Annotated[float, Field(gt=0, le=MAX_MS, allow_inf_nan=False)] | Literal["off"] | None
    ) = None
    """A step running longer (wall time) is interrupted and faults as ``hung``; a
    hang nothing can interrupt (C code holding the GIL) ends the process within
    twice the longest watchdog in it (at least 2 s). Default: 10 x ``deadline_ms``, at least
    2000; ``off`` for none (YAML's bare ``off`` reads as false: both mean none)."""
    close_timeout_ms: float = Field(default=2000.0, gt=0, le=MAX_MS, allow_inf_nan=False)
    """A ``close`` that takes longer is left behind (logged, counted in the report)."""
    on_fault: FaultPolicy = Field(default_factory=FaultPolicy)
    group: str = "main"
    """Process group, for placing nodes in separate processes."""
    isolate: Literal["process"] | None = None
    """``process``: run the node in a process group of its own (named after it), so
    a hang or crash in C code takes down only that group, which its policy restarts."""
    sensing: SensingBounds | None = None
    """For a sensor that takes sensing commands: narrower rate bounds, cost per reading."""
    record: dict[str, PortRecordSpec] = Field(default_factory=dict)
    """Per output port: its frame id, whether it is an image, and compression."""

    @field_validator("watchdog_ms", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare off as false

    @model_validator(mode="before")
    @classmethod
    def _own_group(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("isolate") == "process":
            node_id, group = value.get("id"), value.get("group", "main")
            if group not in ("main", node_id):
                raise ValueError(
                    f"isolate: process puts '{node_id}' in a group of its own; "
                    f"remove group: {group} or isolate"
                )
            value = {**value, "group": node_id}
        return value


class GroupSpec(_Strict):
    """How the supervisor treats one process group (``groups:`` in the graph)."""

    on_crash: Literal["restart", "stop"] = "restart"
    """A group's process that dies or stops sending heartbeats is restarted (real
    time only: a simulated run stops, since its lockstep cannot be resumed) or
    ends the run."""
    restart: RestartPolicy = Field(default_factory=lambda: RestartPolicy(backoff_ms=200.0))
    heartbeat_timeout_ms: float = Field(default=2000.0, gt=0, le=MAX_MS, allow_inf_nan=False)
    """No heartbeat for this long (a step stuck, say) counts as a crash."""
    cpus: list[Annotated[int, Field(ge=0, le=MAX_CPU)]] | None = Field(default=None, min_length=1)
    """CPUs this group's process runs on (instead of ``realtime.cpus``)."""


class RealtimeSpec(_Strict):
    """How the loop's process runs on the OS (``realtime:`` in the graph; ``edgeloop
    run`` flags override it). Applied after the nodes are set up, undone when the
    loop ends; an option the OS refuses stops the run before it starts, saying which
    limit to raise, unless ``best_effort``. In simulated time only ``gc`` applies."""

    cpus: list[Annotated[int, Field(ge=0, le=MAX_CPU)]] | None = Field(default=None, min_length=1)
    """CPUs the loop's process (every thread of it) runs on, e.g. ``[2, 3]``: keep
    them clear of the camera pipeline's (a process group's ``cpus`` overrides this)."""
    priority: int | None = Field(default=None, ge=1, le=99)
    """Real-time priority (1-99) of the thread that steps the nodes; needs
    CAP_SYS_NICE or an rtprio limit. Node threads and ONNX Runtime's pool keep theirs.
    Under it the spin window stays under half the shortest period and the loop sleeps
    at least 50 us once per period of busy time, so an overrunning loop cannot starve
    the machine."""
    policy: Literal["fifo", "rr"] = "fifo"
    """SCHED_FIFO (runs until it sleeps) or SCHED_RR (time-sliced among equals)."""
    lock_memory: bool = False
    """Lock every page the process has mapped after setup (``mlockall(MCL_CURRENT)``),
    so the loop never waits for one to be paged in; needs CAP_IPC_LOCK or a large
    enough memlock limit. Memory allocated later is not locked (locking it too,
    MCL_FUTURE, makes large allocations fail under the default limits)."""
    gc: Literal["default", "between_ticks", "off"] = "default"
    """Python's garbage collector: ``default`` (runs whenever allocations trigger
    it, inside a step), ``between_ticks`` (setup's objects frozen, collections only
    after a tick's steps are done), ``off`` (frozen, never collects: for loops that
    make no reference cycles). The report counts collections and their pauses."""
    spin_us: float = Field(default=200.0, ge=0, le=MAX_SPIN_US, allow_inf_nan=False)
    """How long before a timer is due the loop stops sleeping and spins: less jitter
    from the OS's wake-up, for CPU (the report gives the share of a core it cost);
    0 never spins. Held under half the shortest timer period."""
    best_effort: bool = False
    """Run on when the OS refuses an option, listing it under ``refused`` in the
    report, instead of refusing to start."""


class ContractSpec(_Strict):
    """A named sensor-to-actuator path with an end-to-end deadline."""

    name: str
    path: list[str] = Field(min_length=2)
    deadline_ms: float = Field(gt=0, le=MAX_MS, allow_inf_nan=False)
    """End-to-end deadline, at most 86,400,000 (one day)."""


class LoopGraph(_Strict):
    """A loop graph: nodes, their wiring and the loop's contracts."""

    name: str
    profile: str | None = None
    """Hardware profile the loop targets (e.g. ``jetson-orin-nano-8gb``)."""
    nodes: list[NodeSpec] = Field(default_factory=list)
    contracts: list[ContractSpec] = Field(default_factory=list)
    groups: dict[str, GroupSpec] = Field(default_factory=dict)
    """Crash policies of process groups by name; a group not listed gets the defaults."""
    realtime: RealtimeSpec = Field(default_factory=RealtimeSpec)
    """CPU affinity, real-time priority, locked memory, garbage collection and spin."""

    _file: str | None = PrivateAttr(default=None)
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)
    # Set on the partial graph of a file that broke the schema: the file's index
    # of each kept node and contract, the fields left out of each, and the ids of
    # the nodes left out whole.
    _source_index: dict[str, list[int]] = PrivateAttr(default_factory=dict)
    _dropped: dict[tuple[str, int], dict[tuple[Any, ...], Any]] = PrivateAttr(default_factory=dict)
    _unparsed_ids: frozenset[str] = PrivateAttr(default=frozenset())
    _local_types: dict[str, type[Node]] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # Equal content is an equal graph: where it was loaded from (file, lines) does not count.
        if not isinstance(other, LoopGraph):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    # -- builder -------------------------------------------------------------------

    def add_node(
        self,
        id: str,
        type: str | type[Node],
        *,
        config: dict[str, Any] | None = None,
        inputs: dict[str, str | dict[str, Any] | InputSpec] | None = None,
        outputs: list[str] | None = None,
        rate_hz: float | None = None,
        deadline_ms: float | None = None,
        on_fault: str | dict[str, Any] | FaultPolicy = "restart",
        group: str = "main",
        sensing: dict[str, Any] | None = None,
        record: dict[str, dict[str, Any]] | None = None,
    ) -> NodeSpec:
        """Add a node; ``type`` is a registered name or a Node class used directly.

        Raises:
            GraphError: a field breaks the schema (e.g. ``rate_hz=0``, a bad source).
        """
        type_name = type if isinstance(type, str) else type.__name__
        known = self._local_types.get(type_name)
        if known is not None and known is not type:
            raise GraphError(
                [
                    GraphProblem(
                        f"another node class is already called '{type_name}' in this graph "
                        f"({known.__module__}.{known.__qualname__})",
                        field=field_path(("nodes", len(self.nodes), "type")),
                        fix="give one of the classes another name",
                    )
                ]
            )
        spec = _validated(
            NodeSpec,
            ("nodes", len(self.nodes)),
            {
                "id": id,
                "type": type_name,
                "config": dict(config or {}),
                "inputs": {
                    k: v.model_dump(by_alias=True, exclude_unset=True)
                    if isinstance(v, InputSpec)
                    else v
                    for k, v in (inputs or {}).items()
                },
                "outputs": outputs,
                "rate_hz": rate_hz,
                "deadline_ms": deadline_ms,
                "on_fault": (
                    on_fault.model_dump() if isinstance(on_fault, FaultPolicy) else on_fault
                ),
                "group": group,
                "sensing": sensing,
                "record": dict(record or {}),
            },
        )
        if not isinstance(type, str):
            self._local_types[type_name] = type
        self.nodes.append(spec)
        return spec

    def add_contract(self, name: str, path: list[str], *, deadline_ms: float) -> ContractSpec:
        """Add a sensor-to-actuator contract over ``path`` (node ids, in order).

        Raises:
            GraphError: a field breaks the schema (e.g. a path of one node).
        """
        contract = _validated(
            ContractSpec,
            ("contracts", len(self.contracts)),
            {"name": name, "path": list(path), "deadline_ms": deadline_ms},
        )
        self.contracts.append(contract)
        return contract

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id (KeyError if none)."""
        for spec in self.nodes:
            if spec.id == node_id:
                return spec
        raise KeyError(node_id)

    @property
    def local_types(self) -> dict[str, type[Node]]:
        """Node classes passed to :meth:`add_node` directly, by name."""
        return dict(self._local_types)

    # -- where things are written ---------------------------------------------------

    @property
    def file(self) -> str | None:
        """The YAML file this graph was loaded from, if any."""
        return self._file

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """1-based line of the YAML entry at ``loc`` (or its closest parent)."""
        return nearest_line(self._lines, loc)

    def source_loc(self, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        """``loc`` as it is in the file: for a partial graph, ``nodes[i]`` is renumbered."""
        index = self._source_index.get(loc[0]) if loc else None
        if index is None or len(loc) < 2:
            return loc
        return (loc[0], index[loc[1]], *loc[2:])

    @property
    def unparsed_ids(self) -> frozenset[str]:
        """Ids of nodes a partial graph left out (their problems are reported already)."""
        return self._unparsed_ids

    def dropped_fields(self, kind: str, index: int) -> dict[tuple[Any, ...], Any]:
        """Fields a partial graph left out of its entry ``index`` of ``kind``
        (``"nodes"`` or ``"contracts"``) because they broke the schema, by location
        within the entry (``("rate_hz",)``, ``("inputs", "obs")``), with the value
        written (None for a required field that is missing). Their problems are
        reported already: a check that would read one of them is skipped."""
        return self._dropped.get((kind, index), {})

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The graph as plain data, in the YAML file's shape (defaults left out)."""
        nodes = []
        for spec in self.nodes:
            entry: dict[str, Any] = {"id": spec.id, "type": spec.type}
            if spec.config:
                entry["config"] = dict(spec.config)
            if spec.inputs:
                entry["inputs"] = {port: _input_to_yaml(inp) for port, inp in spec.inputs.items()}
            for key in ("outputs", "rate_hz", "deadline_ms", "watchdog_ms"):
                if getattr(spec, key) is not None:
                    entry[key] = getattr(spec, key)
            if spec.close_timeout_ms != NodeSpec.model_fields["close_timeout_ms"].default:
                entry["close_timeout_ms"] = spec.close_timeout_ms
            if spec.on_fault != FaultPolicy():
                entry["on_fault"] = spec.on_fault.to_yaml_value()
            if spec.isolate is not None:
                entry["isolate"] = spec.isolate
            elif spec.group != "main":
                entry["group"] = spec.group
            if spec.sensing is not None:
                entry["sensing"] = spec.sensing.model_dump(exclude_none=True)
            if spec.record:
                entry["record"] = {
                    port: r.model_dump(exclude_defaults=True) for port, r in spec.record.items()
                }
            nodes.append(entry)
        data: dict[str, Any] = {"name": self.name}
        if self.profile is not None:
            data["profile"] = self.profile
        data["nodes"] = nodes
        if self.contracts:
            data["contracts"] = [c.model_dump() for c in self.contracts]
        if self.groups:
            data["groups"] = {
                k: g.model_dump(exclude_defaults=True) for k, g in self.groups.items()
            }
        if self.realtime != RealtimeSpec():
            data["realtime"] = self.realtime.model_dump(exclude_defaults=True)
        return data

    def to_yaml(self) -> str:
        """The graph as YAML text that :func:`load_graph` reads back to an equal graph."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def write(self, path: str | Path) -> None:
        """Write the graph as YAML to ``path``."""
        Path(path).write_text(self.to_yaml())


def _validated(model: type[_M], loc: tuple[Any, ...], data: dict[str, Any]) -> _M:
    """``model`` from ``data``, schema errors raised as a GraphError (fields under ``loc``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        from edgeloop.runtime.graph_yaml import problem_from_pydantic

        problems = [
            problem_from_pydantic({**e, "loc": loc + tuple(e["loc"])}, None, {})
            for e in exc.errors()
        ]
        raise GraphError(problems) from None


def nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    """The line of ``loc`` in a YAML line index, or of its closest indexed parent."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def field_path(loc: tuple[Any, ...]) -> str:
    """Write a location tuple the way users read it: ``nodes[2].inputs.obs``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _input_to_yaml(inp: InputSpec) -> Any:
    data = inp.model_dump(by_alias=True, exclude_defaults=True)
    data["from"] = inp.source
    return inp.source if list(data) == ["from"] else data
