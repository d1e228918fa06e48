"""The node API: what a node type declares and the methods the executor calls.

A node type is a small class::

    class Gain(edgeloop.Controller):
        '''Multiplies the observation by a gain.'''

        inputs = (Port("obs", dtype="float64"),)
        outputs = (Port("action", dtype="float64"),)

        @dataclass(frozen=True)
        class Config:
            gain: float = 1.0
            '''Multiplier applied to every element.'''

        def step(self, inputs):
            return {"action": inputs["obs"] * self.config.gain}

The executor gives a node its context (``self.ctx``) and config
(``self.config``) first, then calls ``setup(ctx)`` once, ``step(inputs)``
whenever the node is triggered, and ``close()`` at the end (and around a
restart). None of them needs to call ``super()``. ``inputs`` maps
each input port to the latest payload (``None`` before the first message) or,
for a ``fifo`` port, to the list of payloads that arrived since the last step.
``step`` returns a mapping of output port to payload, or None for no output.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from edgeloop.runtime.errors import NodeConfigError

if TYPE_CHECKING:
    import numpy as np

    from edgeloop.runtime.clocks import Clock
    from edgeloop.runtime.messages import Message
    from edgeloop.runtime.profiles import HardwareProfile
    from edgeloop.runtime.sensing import SensingSpec, SensingState


@dataclass(frozen=True)
class Port:
    """A named input or output of a node type.

    Attributes:
        name: A noun for what flows (``obs``, ``action``, ``image``).
        dtype: numpy dtype name of the payload, e.g. ``"float32"``. A float
            dtype on an output makes non-finite values a fault.
        shape: Expected shape, ``None`` entries for free dimensions.
        units: Physical units, e.g. ``"rad"``, ``"N*m"``.
        doc: One line on what the value means.
    """

    name: str
    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None
    units: str = ""
    doc: str = ""

    @property
    def is_float(self) -> bool:
        """True when the declared dtype is a floating-point type."""
        return self.dtype is not None and self.dtype.startswith("f")


@dataclass(frozen=True)
class NoConfig:
    """A node type that takes no configuration."""


class NodeContext:
    """What a node gets in ``setup``: its identity, config, clock and resources.

    Attributes:
        node_id: The node's id in the graph.
        config: The node's validated Config instance.
        clock: The loop's clock (``clock.simulated`` tells which).
        logger: A logger named ``edgeloop.node.<id>``.
        profile: The graph's hardware profile (a HardwareProfile), or None.
        rng: A numpy Generator seeded from the run seed and the node id.
        seed: The run seed.
    """

    def __init__(
        self,
        *,
        node_id: str,
        config: Any,
        clock: Clock,
        rng: np.random.Generator,
        seed: int,
        profile: HardwareProfile | None,
        resources: dict[str, Any],
        metrics: dict[str, list[float]],
        deadline_ms: float | None = None,
    ) -> None:
        self.node_id = node_id
        self.deadline_ms = deadline_ms
        """The node's step deadline from the graph (None: none set)."""
        self.config = config
        self.clock = clock
        self.rng = rng
        self.seed = seed
        self.profile = profile
        self.logger = logging.getLogger(f"edgeloop.node.{node_id}")
        self._resources = resources
        self._metrics = metrics
        self._on_record: Callable[[], None] | None = None  # the executor's: flush a recording
        self._on_wake: Callable[[], None] | None = None  # the executor's: step this node soon
        self.notes: dict[str, str] = {}
        """What the node stated with :meth:`note`, shown in the run report."""
        self.safe_states: dict[str, int] = {}
        """An actuator's safe commands sent, by why (``stop``, a fault kind such as
        ``stale_input``, ``reconnect``), shown in the run report."""
        self._messages: dict[str, Callable[[], Message | None]] = {}
        self._sensed_at: float | None = None
        self.sensing: SensingState | None = None
        """A steerable sensor's current settings (rate, enabled, region or mask,
        resolution); None for other nodes."""

    @classmethod
    def standalone(
        cls,
        node_id: str,
        config: Any,
        *,
        profile: HardwareProfile | None = None,
        clock: Clock | None = None,
    ) -> NodeContext:
        """A context for a node used outside a loop (a test, a warm-up, a benchmark):
        a simulated clock unless given one, seed 0, nothing shared."""
        import numpy as np

        from edgeloop.runtime.clocks import SimClock

        return cls(
            node_id=node_id,
            config=config,
            clock=clock or SimClock(),
            rng=np.random.default_rng(0),
            seed=0,
            profile=profile,
            resources={},
            metrics={},
        )

    def message(self, port: str) -> Message | None:
        """The last message on input ``port``, with its sequence number and times
        (None before the first, and for a port that is not wired):
        ``ctx.now() - ctx.message("action").sensed`` is the sense-to-act latency
        of what an actuator is about to apply."""
        last_message = self._messages.get(port)
        return last_message() if last_message is not None else None

    def now(self) -> float:
        """Clock time in seconds since the loop started."""
        return self.clock.now_ns() / 1e9

    def sensed_at(self, t: float) -> None:
        """Say that this step's outputs derive from sensing at clock time ``t``: for a
        node that publishes older data than it received last (a delay line, a
        buffer), so latency and staleness downstream are measured from ``t``."""
        self._sensed_at = float(t)

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        """Return the loop-wide resource ``key``, creating it with ``factory`` once.

        Nodes that work on one object (a simulated plant read by a sensor and
        driven by an actuator) meet here.
        """
        if key not in self._resources:
            self._resources[key] = factory()
        return self._resources[key]

    def note(self, key: str, value: str) -> None:
        """State a fact about this node for the run report (e.g. which execution
        provider runs its model); a later note under the same key replaces it."""
        self.notes[key] = str(value)

    def wake(self) -> None:
        """Ask the loop to step this node as soon as it can; safe from any thread (a
        device's reading thread with a new frame). It works for a node of a type
        that ``wakes`` and has no ``rate_hz``, in real time in one process; elsewhere
        (simulated time, a process group, a node with a rate) it does nothing and
        the node steps on its rate."""
        if self._on_wake is not None:
            self._on_wake()

    def went_safe(self, reason: str) -> None:
        """Say that this actuator sent its safe command of its own accord (``reconnect``:
        before the first command on a link that came back), for the run report."""
        self.safe_states[reason] = self.safe_states.get(reason, 0) + 1

    def record(self, name: str, value: float) -> None:
        """Add a value to the report's series ``<node id>.<name>`` (e.g. episode returns).
        Such a value marks an event (an episode's end): a recording is flushed then."""
        self._metrics.setdefault(f"{self.node_id}.{name}", []).append(float(value))
        if self._on_record is not None:
            self._on_record()


class Node:
    """Base class of every node type.

    Subclasses set ``inputs``, ``outputs`` (tuples of :class:`Port` or names)
    and, when configurable, a frozen dataclass ``Config``.
    """

    inputs: ClassVar[tuple[Port | str, ...]] = ()
    outputs: ClassVar[tuple[Port | str, ...]] = ()
    Config: ClassVar[type] = NoConfig
    role: ClassVar[str] = "node"
    accepts_any_inputs: ClassVar[bool] = False
    """True for node types that take inputs of any name (a logger, say)."""
    sensing: ClassVar[SensingSpec | None] = None
    """Set on sensor types that take sensing commands on a ``sensing`` input
    (:mod:`edgeloop.runtime.sensing`)."""
    wakes: ClassVar[bool] = False
    """True for node types whose own thread asks the loop to step them
    (``ctx.wake``): they may have no ``rate_hz`` and step on their data."""
    takes_device_tensors: ClassVar[bool] = False
    """True for node types whose step takes a :class:`~edgeloop.runtime.device_tensors.DeviceTensor`
    as it is (a model node): others get a host copy of it."""
    external: ClassVar[bool] = False
    """True for node types that never step: their outputs come from outside the
    executor (a stand-in for a node in another process)."""

    ctx: NodeContext
    config: Any

    @classmethod
    def ports(cls, config: Any) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """The input and output ports of a node with this config.

        Most node types declare them on the class. One whose ports depend on its
        config (a model node: the model's inputs and outputs) overrides this; it
        may raise an EdgeloopError when the config names something unusable.
        """
        return port_list(cls.inputs), port_list(cls.outputs)

    @classmethod
    def sensing_spec(cls, config: Any) -> SensingSpec | None:
        """The sensing spec of a node with this config: ``cls.sensing``, unless a
        type's depends on its config (a camera's frame size sets its region grid
        and resolutions). Its rate bounds are the class's, as validation checks them."""
        return cls.sensing

    def setup(self, ctx: NodeContext) -> None:
        """Called once before the loop starts (and again after a restart).

        ``self.ctx`` and ``self.config`` are set before it runs, so an override
        need not call ``super().setup(ctx)``.

        .. versionchanged:: 0.2
            The runtime binds ``ctx`` and ``config`` before ``setup`` (issue 12);
            before, an override had to call ``super().setup(ctx)`` first.
        """

    def step(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        """Do one step of work; return output payloads by port name, or None."""
        return None

    def close(self) -> None:
        """Release what ``setup`` acquired. Called at the end and before a restart."""


class Sensor(Node):
    """A node that turns the world into messages; runs on its rate or a timer."""

    role = "sensor"


class Model(Node):
    """A node that maps inputs to predictions (e.g. an ONNX model)."""

    role = "model"


class Controller(Node):
    """A node that turns observations into actions."""

    role = "controller"


class Actuator(Node):
    """A node that acts on the world; sense-to-act latency is measured at its inputs.

    An actuator with a safe state (zero velocity, brake, hold) overrides
    :meth:`safe`; the executor calls it when the loop stops, and when the node
    faults (a stale input is a fault) before its policy applies, once per run of
    consecutive faults. Each call that sent something is counted in the report.
    """

    role = "actuator"

    def safe(self, reason: str) -> bool:
        """Put what this actuator drives in its safe state, now; ``reason`` says why
        (``stop``, or the fault's kind). Return False when the node has no safe
        state configured (nothing sent). It runs on the loop's thread under the
        node's ``close_timeout_ms``, so it must not wait on the device for long."""
        return False


class Monitor(Node):
    """A node that watches streams (logging, health) and acts on nothing."""

    role = "monitor"


def new_node(cls: type[Node], ctx: NodeContext) -> Node:
    """A node of type ``cls`` with ``ctx`` and its config bound, ready for ``setup``.

    The one way the runtime (and :mod:`edgeloop.testing`) makes a node: the
    binding comes before the node's own ``setup``, so no override has to call
    ``super().setup(ctx)`` first (issue 12).
    """
    node = cls()
    node.ctx = ctx
    node.config = ctx.config
    return node


def port_list(ports: tuple[Port | str, ...]) -> tuple[Port, ...]:
    """Normalise a declaration of ports to :class:`Port` objects."""
    return tuple(p if isinstance(p, Port) else Port(p) for p in ports)


_ADAPTERS: dict[type, TypeAdapter] = {}


def build_config(node_type: str, config_cls: type, values: Mapping[str, Any] | None) -> Any:
    """Validate a config mapping against a node type's Config dataclass.

    Raises:
        NodeConfigError: unknown keys (with close matches), missing required
            keys or values of the wrong type; ``problems`` lists every one.
    """
    values = dict(values or {})
    names = [f.name for f in dataclasses.fields(config_cls)]
    problems: list[NodeConfigError] = []
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            if close:
                fix = f"did you mean {', '.join(close)}?"
            elif names:
                fix = f"known keys: {', '.join(names)}"
            else:
                fix = "this node type takes no config"
            problems.append(
                NodeConfigError(
                    f"unknown config key '{key}' for node type '{node_type}'",
                    node_type=node_type,
                    key=key,
                    fix=fix,
                )
            )
    adapter = _ADAPTERS.get(config_cls)
    if adapter is None:
        adapter = _ADAPTERS[config_cls] = TypeAdapter(config_cls)
    try:
        config = adapter.validate_python({k: v for k, v in values.items() if k in names})
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"])
            reason = err["msg"].removeprefix("Value error, ")
            if key:
                message = f"config key '{key}' of node type '{node_type}': {reason} "
                message += f"(got {err.get('input')!r})"
            else:  # the Config's own check of several fields (__post_init__)
                message = f"config of node type '{node_type}': {reason}"
            problems.append(
                NodeConfigError(
                    message,
                    node_type=node_type,
                    key=key,
                    fix=_field_doc(config_cls, key)
                    or "see `edgeloop plugins` for the node's Config",
                )
            )
    if problems:
        first = problems[0]
        error = NodeConfigError(first.message, node_type=node_type, key=first.key, fix=first.fix)
        error.problems = problems
        raise error
    return config


def _field_doc(config_cls: type, key: str) -> str:
    """The fix for a bad value of config key ``key``: its type as a user writes it and
    its bounds in words ("expected int, at most 8192"), not the annotation as the
    code spells it (``Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]``); "" for a key
    the Config does not have (a nested one, or the Config's own check)."""
    declared = {f.name: f.type for f in dataclasses.fields(config_cls)}
    if key not in declared:
        return ""
    try:
        plain = typing.get_type_hints(config_cls)[key]
        annotated = typing.get_type_hints(config_cls, include_extras=True)[key]
    except Exception:  # a name the Config's module imports only for type checking
        return f"expected {getattr(declared[key], '__name__', declared[key])}"
    name = plain.__name__ if isinstance(plain, type) else str(plain).replace("typing.", "")
    return ", ".join([f"expected {name}", *_bounds_in_words(annotated)])


_BOUND_WORDS = (
    ("gt", "above {}"),
    ("ge", "at least {}"),
    ("lt", "below {}"),
    ("le", "at most {}"),
    ("min_length", "length at least {}"),
    ("max_length", "length at most {}"),
)


def _bounds_in_words(hint: Any) -> list[str]:
    """The bounds of an ``Annotated`` hint (or of the annotated members of a union),
    e.g. ``["above 0", "at most 8192"]``, from pydantic's ``Field`` or annotated-types."""
    metadata: list[Any] = []
    for part in (hint, *typing.get_args(hint)):  # Annotated[X, ...] or Annotated[X, ...] | None
        if typing.get_origin(part) is typing.Annotated:
            for item in part.__metadata__:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    words = []
    for constraint in metadata:
        for attr, word in _BOUND_WORDS:
            value = getattr(constraint, attr, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                shown = int(value) if float(value).is_integer() else value
                words.append(word.format(shown))
    return words


def node(
    func: Callable[..., Any] | None = None,
    *,
    outputs: tuple[str | Port, ...] = ("out",),
    role: str = "node",
) -> Any:
    """Turn a plain function into a node type.

    Positional parameters become input ports; keyword-only parameters with
    defaults become config keys. The return value is the payload of the
    single output, a tuple with one payload per output, or None. The
    docstring's ``Args:`` entries document the ports and config keys, and its
    ``Returns:`` the single output (or pass documented Ports as ``outputs``)::

        @edgeloop.node(outputs=("action",))
        def gain(obs, *, k: float = 2.0):
            '''Scales the observation.

            Args:
                obs: The observation.
                k: The gain.

            Returns:
                The scaled observation.
            '''
            return obs * k

    Returns:
        A :class:`Node` subclass named after the function.
    """

    def wrap(fn: Callable[..., Any]) -> type[Node]:
        from edgeloop.runtime.node_docs import argument_docs

        docs, returns = argument_docs(fn)
        sig = inspect.signature(fn)
        in_ports: list[Port] = []
        fields: list[tuple[str, Any, Any]] = []
        for p in sig.parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                if p.default is p.empty:
                    raise TypeError(f"config parameter '{p.name}' of {fn.__name__} needs a default")
                ann = p.annotation if p.annotation is not p.empty else Any
                doc = {"doc": docs.get(p.name, "")}
                fields.append((p.name, ann, dataclasses.field(default=p.default, metadata=doc)))
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                in_ports.append(Port(p.name, doc=docs.get(p.name, "")))
            else:
                raise TypeError(f"{fn.__name__}: *args/**kwargs cannot be ports or config")
        in_names = [p.name for p in in_ports]
        config_cls = dataclasses.make_dataclass(f"{fn.__name__}_config", fields, frozen=True)
        out_ports = port_list(outputs)
        if len(out_ports) == 1 and not out_ports[0].doc and returns:
            out_ports = (dataclasses.replace(out_ports[0], doc=returns),)
        out_names = tuple(p.name for p in out_ports)
        single = len(out_names) == 1

        def step(self: Node, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
            result = fn(*[inputs[n] for n in in_names], **self._kwargs)
            if result is None:
                return None
            if single:
                return {out_names[0]: result}
            if isinstance(result, Mapping):
                return result
            return dict(zip(out_names, result, strict=True))

        def setup(self: Node, ctx: NodeContext) -> None:
            self._kwargs = dataclasses.asdict(ctx.config)

        return type(
            fn.__name__,
            (Node,),
            {
                "__doc__": fn.__doc__ or f"Function node {fn.__name__}.",
                "__module__": fn.__module__,
                "inputs": tuple(in_ports),
                "outputs": out_ports,
                "Config": config_cls,
                "role": role,
                "setup": setup,
                "step": step,
            },
        )

    return wrap(func) if func is not None else wrap
