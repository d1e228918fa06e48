"""The ONNX model node: runs a ``.onnx`` file or an exported bundle in a loop.

The ``onnx.model`` node type (:class:`OnnxModel`) takes its ports from the model
and picks the execution provider from the graph's hardware profile. The board
needs onnxruntime and numpy only.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from edgeloop.plugins.model_binding import GRAPH_OPTION, BoundRun, FixedRun
from edgeloop.plugins.variant_ladder import VariantLadder
from edgeloop.runtime.bundles import (
    TensorSpec,
    open_model,
    read_samples,
    specs_of_session,
)
from edgeloop.runtime.device_tensors import DeviceTensor, HostCopies, on_host
from edgeloop.runtime.errors import BundleError, MissingDependencyError, NodeConfigError
from edgeloop.runtime.limits import MAX_THREADS, MAX_WARMUP
from edgeloop.runtime.node import Model, NodeContext, Port

CPU = "CPUExecutionProvider"
MEASURED_RUNS = 30
"""Timed runs per provider when the choice is measured."""
_FEEDABLE = {
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool", "str",
}  # fmt: skip


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            "onnxruntime",
            "",
            "the onnx.model node",
            fix="pip install onnxruntime, or on a Jetson NVIDIA's onnxruntime-gpu wheel for "
            "its JetPack",
        ) from None
    return onnxruntime


@dataclass(frozen=True)
class VariantSwitch:
    """Trading accuracy for time under load: the bundle variants to fall back on."""

    variants: list[str]
    """Faster variants of the model (a bundle's, e.g. ``[int8, small]``), in the order
    to fall back on them."""
    budget_ms: float | None = None
    """The model's time per step (None: the node's ``deadline_ms``): past it (p99
    over ``window`` steps) the next variant takes over. The previous one comes back
    after ``hold_s`` when its time, predicted as its calmest p99 in this loop plus
    the delay the load adds now (this variant's p99 less its calmest), is under
    80 % of the budget (a variant that has not run yet: when this one's p99 is
    under half the budget)."""
    window: int = 100
    """Steps the p99 is taken over (at least 5; 100 lets one outlier pass)."""
    hold_s: float = 2.0
    """Seconds on a variant before going back to a slower one (hysteresis); doubled,
    up to a minute, each time the slower one had to be left again soon after."""

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("switch needs at least one variant to fall back on")
        if not (self.budget_ms is None or self.budget_ms > 0):
            raise ValueError("switch needs budget_ms > 0 (or none, to use the node's deadline)")
        if not self.hold_s >= 0 or self.window < 5:
            raise ValueError("switch needs hold_s >= 0 and window >= 5")


@dataclass(frozen=True)
class OnnxModelConfig:
    model: str
    """A ``.onnx`` file or a bundle folder from ``edgeloop export`` (relative paths
    are taken from the working directory)."""
    ports: dict[str, str] = field(default_factory=dict)
    """Port name -> model input or output name, for names that are not good port
    names (``input.1``); added to (and overriding) a bundle manifest's own ``ports``;
    unmapped tensors keep their own names."""
    providers: list[str] | None = None
    """Execution providers to try, overriding the profile's (e.g. ``[CPUExecutionProvider]``)."""
    warmup: Annotated[int, Field(le=MAX_WARMUP)] = 3
    """Inferences run at setup after the first one that checks the provider (0: none;
    at most 10,000)."""
    add_batch_dim: bool = True
    """Feed an input that lacks the model's leading batch dimension with one added,
    and drop it from the outputs: a loop steps one observation at a time."""
    threads: Annotated[int | None, Field(le=MAX_THREADS)] = None
    """Intra-op threads, at most 1024; None takes the profile's ``cpu_threads`` (or
    ORT's default)."""
    variant: str | None = None
    """A bundle's other version of the model to run, e.g. ``fp16``."""
    switch: VariantSwitch | None = None
    """Switch to faster variants when the model runs over its time budget, and back
    (a ``variant`` input also picks one by name; ``auto`` hands back to the budget)."""
    io_binding: bool | Literal["fixed"] = False
    """Run through ONNX Runtime's I/O binding: inputs bound where they are (host
    arrays, or device tensors from another model node, without a copy), outputs
    made on the provider's device and copied back once. ``fixed``: every buffer
    allocated once, on the first step's shapes (no allocation per step; shapes
    cannot change), which is what a CUDA graph replays and uses by itself. On by
    itself with ``device_outputs`` or when a device tensor comes in."""
    device_outputs: list[str] = field(default_factory=list)
    """Output ports to leave on the model's device (GPU memory; the CPU's without
    a GPU) as device tensors, for model nodes in this process to take without a
    copy. Any other reader (another node type, the recorder, another process)
    gets one host copy of each message; the report's ``device_outputs`` note
    counts them. Device outputs keep the model's batch dimension."""
    check_device_outputs: bool = True
    """NaN-check device outputs, which takes a host copy of every message. Off, a
    NaN shows where the chain's outputs reach the host (most operators pass NaN on)."""
    cuda_graph: bool | None = None
    """Replay the model as a CUDA graph (fixed shapes and buffers; cuts launch
    overhead on small networks). None: as the profile's provider options say
    (``enable_cuda_graph`` for CUDA, ``trt_cuda_graph_enable`` for TensorRT);
    true or false sets them for this node. True on a model that ends up on
    another provider fails setup."""
    spin: bool = False
    """Let ONNX Runtime's CPU thread pool spin-wait for work between steps. Off: a
    pool that spins after its model's step takes the cores from the next model and
    from the loop's other nodes (two chained models on a 2-core machine took 34 ms
    a step spinning, against 18 ms without); a model alone loses about 1 % off."""
    provider_choice: Literal["order", "measured"] | None = None
    """``order``: the first provider that runs the model; ``measured``: time every one
    that runs it (and the CPU on one thread too) and keep the fastest. Default the
    profile's, else ``measured`` on desktop profiles and ``order`` on boards (where
    building a TensorRT engine for each candidate would take minutes)."""


_SIGNATURES: dict[tuple[str, float], tuple[list[TensorSpec], list[TensorSpec]]] = {}


def port_names(config: OnnxModelConfig) -> dict[str, str]:
    """Tensor name -> port name: the bundle manifest's mapping, then the config's."""
    _, manifest = open_model(config.model, config.variant)
    mapping = {**(manifest.ports if manifest is not None else {}), **config.ports}
    return {tensor: port for port, tensor in mapping.items()}


def model_signature(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of a model file or bundle (read once per file version).

    Raises:
        BundleError: a missing, tampered or unreadable model.
    """
    model_file, manifest = open_model(path)
    if manifest is not None:
        return list(manifest.inputs), list(manifest.outputs)
    key = (str(model_file.resolve()), model_file.stat().st_mtime)
    if key not in _SIGNATURES:
        session = _cpu_session(model_file)
        _SIGNATURES[key] = (
            specs_of_session(session.get_inputs()),
            specs_of_session(session.get_outputs()),
        )
    return _SIGNATURES[key]


def _cpu_session(model_file: Path) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_file), options, providers=[CPU])
    except Exception as exc:  # ORT's errors for bad files are plain RuntimeErrors
        reason = str(exc).strip().splitlines()[-1][:300]
        raise BundleError(
            f"not a loadable ONNX model: {reason}",
            path=model_file,
            fix="export the model again, or check it is an .onnx file",
        ) from None


class OnnxModel(Model):
    """Runs an ONNX model (file or bundle) with the profile's execution providers.

    Its ports come from the model: one input port per model input and one
    output port per model output, with the tensor's dtype and shape (named or
    None dimensions are free). A port is named after its tensor unless a bundle
    manifest's ``ports`` or the config's ``ports`` (port name -> tensor name,
    the config's taking precedence) gives it another name. A bundle whose
    manifest pairs state inputs with state outputs (a recurrent model) keeps
    that state inside the node: those tensors are not ports, the state starts
    at the manifest's initial values and carries over between steps, and the
    node gets a ``reset`` input. The state takes the batch of the inputs it
    steps on (a bundle exported at batch 1 steps eight networks at once when fed
    eight rows); a batch that changes starts it over, noted as ``state``. Units
    and meaning are the model's.

    With ``switch``, it trades accuracy for time under load: past its
    ``budget_ms`` (p99 over ``window`` steps, known from the second late step of
    100) the next, faster variant of the bundle takes over; after ``hold_s`` the
    previous one comes back when predicted well within the budget. A ``variant``
    input names one to run (``auto`` hands back). Every switch is a point of the
    report's series ``<id>.variant`` (0: the model, 1: the first fallback, ...)
    and noted with why; ``variant_steps`` notes how many steps each one ran.

    The session is built at setup. Providers are tried in the order of
    ``providers``, else the hardware profile's list with its options, else the
    CPU alone. A provider missing from this ONNX Runtime build, or one that ONNX
    Runtime silently replaces, is skipped; so is one that fails on real inputs:
    a bundle's sample inputs at setup (exported beside the model), else the first
    input the node gets (never made-up zeros: a shape input or a string would
    refuse them), where a failing provider gives way to the next; ``warmup`` more
    inferences run on those inputs. The run report notes ``provider`` (the one
    that runs), ``verified`` (on what), and ``skipped`` (each provider passed over
    and why). Inputs and outputs are tensors of numbers, bools or strings (a
    numpy str array in, an object array out); a model with sequences or maps at
    its inputs or outputs is refused when the graph is validated.

    With ``io_binding`` the session runs through ONNX Runtime's I/O binding
    (``fixed``: on buffers allocated once), and ``device_outputs`` leaves outputs
    on the provider's device as device tensors: another model node takes them
    without a copy, any other reader gets one host copy a message, counted in the
    ``device_outputs`` note (:mod:`edgeloop.runtime.device_tensors`). ``cuda_graph``
    replays the model as a CUDA graph. The ``placement`` note says how many of the
    model's nodes each provider took (TensorRT's fallbacks show there).

    It steps when an input arrives, or on its ``rate_hz``, and runs the model
    once every input has a message (no output before). With ``add_batch_dim``,
    inputs that lack the model's leading batch dimension get one, and outputs
    lose it again. A recurrent model steps only on a fresh model input; a
    ``reset`` message alone sets the state back to its initial values without
    stepping. A restart starts the state again from its initial values.

    Faults:
        a missing, tampered or unloadable model, or no provider that runs it,
        fails setup (and ``edgeloop validate``, for the first ones). A ``ports``
        entry naming a tensor the model does not have is a config error (the
        fix names close matches). On the first step, an input of the wrong dtype
        or shape raises (an ``exception`` fault), saying what the model expects
        and what came. Non-finite float outputs are ``non_finite`` faults.

    YAML::

        - id: policy
          type: onnx.model
          inputs: {obs: sensor/obs}
          config: {model: policy_bundle}
    """

    Config = OnnxModelConfig
    takes_device_tensors = True

    @classmethod
    def ports(cls, config: OnnxModelConfig) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        inputs, outputs = model_signature(config.model)
        names = {t.name for t in inputs} | {t.name for t in outputs}
        for port, tensor in config.ports.items():
            if tensor not in names:
                close = difflib.get_close_matches(tensor, sorted(names), n=3)
                hint = (
                    f"did you mean {', '.join(close)}?"
                    if close
                    else f"the model's tensors: {', '.join(sorted(names))}"
                )
                raise NodeConfigError(
                    f"ports maps '{port}' to '{tensor}', which the model "
                    f"{config.model} does not have",
                    node_type="onnx.model",
                    key="ports",
                    fix=hint,
                )
        for kind, tensors in (("input", inputs), ("output", outputs)):
            for t in tensors:
                if t.dtype not in _FEEDABLE:
                    raise NodeConfigError(
                        f"model {kind} '{t.name}' is a {t.dtype}, which the onnx.model node "
                        "cannot carry (tensors of numbers, bools and strings only)",
                        node_type="onnx.model",
                        key="model",
                        fix="export the model with plain tensors at its inputs and outputs",
                    )
        port_of = port_names(config)
        state_in, state_out = _state_names(config)

        def as_port(t: TensorSpec, output: bool = False) -> Port:
            shape: tuple[int | None, ...] | None
            shape = tuple(d if isinstance(d, int) else None for d in t.shape)
            if output and config.add_batch_dim and _batch_first(t):
                shape = None  # with or without its batch dimension, as the input came
            name = port_of.get(t.name, t.name)
            if t.dtype == "str":  # numpy str arrays in, object arrays of str out
                return Port(name, shape=shape, doc="strings (a numpy str or object array)")
            return Port(name, dtype=t.dtype, shape=shape)

        in_ports = tuple(as_port(t) for t in inputs if t.name not in state_in)
        out_ports = tuple(as_port(t, output=True) for t in outputs if t.name not in state_out)
        _check_binding(config, inputs + outputs, [p.name for p in out_ports])
        if state_in:  # a recurrent model: its state stays inside the node
            in_ports += (
                Port("reset", doc="any message resets the state; it never steps the model"),
            )
        if config.switch is not None:
            _, manifest = open_model(config.model)
            known = manifest.variants if manifest is not None else {}
            missing = [v for v in config.switch.variants if v not in known]
            if missing:
                raise NodeConfigError(
                    f"switch names variants the bundle lacks: {', '.join(missing)}",
                    node_type="onnx.model",
                    key="switch",
                    fix="its variants: " + (", ".join(known) or "none"),
                )
            in_ports += (
                Port(
                    "variant",
                    doc="a variant's name to run from now on (auto: back to the time "
                    "budget); wire it with trigger: false",
                ),
            )
        return in_ports, out_ports

    def setup(self, ctx: NodeContext) -> None:
        cfg: OnnxModelConfig = ctx.config
        self.model_file, self.manifest = open_model(cfg.model, cfg.variant)
        inputs, outputs = model_signature(cfg.model)
        port_of = port_names(cfg)
        pairs = self.manifest.state if self.manifest is not None else []
        state_in = {p.input for p in pairs}
        self.pairs = [(p.input, p.output) for p in pairs]
        # Each state's shape past its batch dimension, initial value and dtype: the
        # state takes the batch of the inputs it steps on (the manifest says 1).
        self.state_specs = [
            (p.input, tuple(p.shape[1:]), p.initial, _dtype_of(inputs, p.input)) for p in pairs
        ]
        self.state_batch = 0
        self.batch_changes = 0
        self._fit_state(1)  # for the provider check; the first step fits it to its batch
        self.state_batch = 0
        self.reset_seen = -1
        self.input_seen: dict[str, int] = {}
        inputs = [t for t in inputs if t.name not in state_in]
        self.feeds = [(port_of.get(t.name, t.name), t) for t in inputs]
        self.output_names = [t.name for t in outputs]
        self.output_ports = [port_of.get(t.name, t.name) for t in outputs]
        # Outputs whose first dimension is the batch dimension lose it again when
        # the node added one; scalars and fixed leading sizes are returned as they are.
        # Device outputs keep the batch dimension: an OrtValue cannot lose it uncopied.
        kept_ports = set(cfg.device_outputs)
        self.kept = {
            t.name: HostCopies()
            for t, port in zip(outputs, self.output_ports, strict=True)
            if port in kept_ports
        }
        self.device_outputs = tuple(cfg.device_outputs)  # the executor's dispatch reads it
        self.unbatch = [_batch_first(t) and t.name not in self.kept for t in outputs]
        self.device_inputs = False  # a device tensor came in: bind inputs from now on
        self._runners: dict[int, Any] = {}
        self.strings = {t.name for _, t in self.feeds if t.dtype == "str"}
        self.samples = (
            read_samples(self.model_file.parent, self.manifest) if self.manifest else None
        )
        self._untried: list[tuple[str, dict[str, Any]]] = []
        self._contenders: list[tuple[str, Any]] = []  # measured choice: (name, session)
        self.skipped: list[str] = []
        self.verified = False  # the provider ran the model on real inputs
        self.session = self._first_provider_that_runs(ctx)
        self.run = self._runner(self.session)
        self.single = (
            (self.feeds[0][0], self.feeds[0][1].name, self.output_ports[0], self.unbatch[0])
            if len(self.feeds) == 1
            and len(self.output_ports) == 1
            and not self.pairs
            and not self.strings
            else None
        )
        self.checked = False
        self.batched: bool | None = None
        if cfg.switch is not None:
            self._ready_to_switch(ctx, cfg.switch)

    def _candidates(self, ctx: NodeContext) -> list[tuple[str, dict[str, Any]]]:
        cfg: OnnxModelConfig = self.config
        if cfg.providers is not None:
            candidates = [(name, {}) for name in cfg.providers]
        elif ctx.profile is not None:
            candidates = [(p.name, dict(p.options)) for p in ctx.profile.execution_providers]
        else:
            candidates = [(CPU, {})]
        if cfg.cuda_graph is not None:  # the node's word over the profile's
            for name, options in candidates:
                if name in GRAPH_OPTION:
                    options[GRAPH_OPTION[name]] = "1" if cfg.cuda_graph else "0"
        return candidates

    def _runner(self, session: Any) -> Any:
        """How a step runs ``session``: its own ``run``, or through I/O binding as the
        config, a device tensor input or the provider's CUDA graph option asks.

        Raises:
            NodeConfigError: ``cuda_graph: true`` on a model that runs elsewhere.
        """
        if id(session) in self._runners:
            return self._runners[id(session)]
        placed = placement(session)
        if placed:
            self.ctx.note("placement", placed)
        cfg: OnnxModelConfig = self.config
        provider = session.get_providers()[0]
        options = session.get_provider_options().get(provider, {})
        graph = _truthy(options.get(GRAPH_OPTION.get(provider, "")))
        short = provider.removesuffix("ExecutionProvider")
        if cfg.cuda_graph and not graph:
            raise NodeConfigError(
                f"cuda_graph: true, but the model runs on {short}, which has no CUDA graphs"
                + (f" (skipped: {'; '.join(self.skipped)})" if self.skipped else ""),
                node_type="onnx.model",
                key="cuda_graph",
                fix="install ONNX Runtime GPU on a machine with CUDA, or set cuda_graph: false",
            )
        candidates = self._candidates(self.ctx)
        asked = [n for n, o in candidates if _truthy(o.get(GRAPH_OPTION.get(n, "")))]
        if asked and not graph:  # the profile's wish, where the model does not run
            where = ", ".join(n.removesuffix("ExecutionProvider") for n in asked)
            self.ctx.note("cuda_graph", f"asked for {where}; the model runs on {short} without one")
        mode = "fixed" if graph else cfg.io_binding
        if not mode and not self.kept and not self.device_inputs:
            runner = session.run
        else:
            kind = FixedRun if mode == "fixed" else BoundRun
            runner = kind(
                session, self.output_names, self.kept, check_finite=cfg.check_device_outputs
            )
            where = f"{runner.device}:{runner.device_id}"
            how = "fixed buffers" if mode == "fixed" else "on"
            how = f"CUDA graph, {how}" if graph else how
            self.ctx.note("io_binding", f"{how} ({where})")
        self._runners[id(session)] = runner
        return runner

    def _ready_to_switch(self, ctx: NodeContext, switch: VariantSwitch) -> None:
        """Sessions for the variants to fall back on, on the provider the model runs
        on; the node's step becomes the timed one that switches."""
        budget_ms = switch.budget_ms or ctx.deadline_ms
        if budget_ms is None:
            raise NodeConfigError(
                "switch has no time budget",
                node_type="onnx.model",
                key="switch.budget_ms",
                fix="set switch.budget_ms, or deadline_ms on the node",
            )
        self.ladder = [self.config.variant or "main", *switch.variants]
        self.sessions = [self.session]
        options = self.session.get_provider_options()
        chain = [(name, dict(options.get(name, {}))) for name in self.session.get_providers()]
        threads = self.session.get_session_options().intra_op_num_threads or None
        probe = self._sample_feed()
        for name in switch.variants:
            model_file, _ = open_model(self.config.model, name)
            session = self._session(ctx, chain, threads=threads, model_file=model_file)
            if session is None:
                raise BundleError(
                    f"variant '{name}' does not run where the model does: " + self.skipped[-1],
                    path=model_file,
                    fix="export the variant for the same providers",
                )
            failure = None if probe is None else self._failure(session, probe, runs=1)
            if failure is not None:  # checked on real inputs as the model was
                raise BundleError(
                    f"variant '{name}' fails on the bundle's sample inputs: {failure}",
                    path=model_file,
                    fix="export the variant with the model's inputs and outputs",
                )
            self.sessions.append(session)
        self.decide = VariantLadder(len(self.ladder), budget_ms / 1e3, switch.window, switch.hold_s)
        self.pinned = False
        self.switches = 0
        self.steps_on = [0] * len(self.ladder)
        self.command_seen = -1
        self.step = self._switching_step  # type: ignore[method-assign]
        ctx.note("variant", f"{self.ladder[0]} (of {', '.join(self.ladder)})")

    def _switching_step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """A step timed against the budget, after any command on ``variant``."""
        command = self.ctx.message("variant")
        if command is not None and command.seq != self.command_seen:
            self.command_seen = command.seq
            if command.data is None or command.data == "auto":
                self.pinned = False
            else:
                name = str(command.data)
                if name not in self.ladder:
                    raise ValueError(f"no variant '{name}' to switch to: {', '.join(self.ladder)}")
                self.pinned = True
                self._switch(self.ladder.index(name), "commanded")
        timed = self.checked  # the first step checks inputs and providers: not timed
        start = time.perf_counter()
        out = OnnxModel.step(self, inputs)
        if out:
            self.steps_on[self.decide.level] += 1
        if timed and out and not self.pinned:
            move = self.decide.observe(time.perf_counter() - start, self.ctx.now())
            if move is not None:
                self._switch(*move)
        return out

    def close(self) -> None:
        if getattr(self, "kept", None):
            device = getattr(self.run, "device", "cpu")
            port_of = dict(zip(self.output_names, self.output_ports, strict=True))
            self.ctx.note(
                "device_outputs",
                "; ".join(f"{port_of[name]}: {t.summary(device)}" for name, t in self.kept.items()),
            )
        if self.config.switch is not None and hasattr(self, "steps_on"):
            counts = zip(self.ladder, self.steps_on, strict=True)
            self.ctx.note("variant_steps", ", ".join(f"{name} {n}" for name, n in counts))

    def _switch(self, level: int, why: str) -> None:
        if level == self.decide.level:
            return
        now = self.ctx.now()
        self.decide.moved(level, now)
        self.session = self.sessions[level]
        self.run = self._runner(self.session)
        self.switches += 1
        self.ctx.record("variant", level)  # a series in the report: which ran when
        self.ctx.note("variant", f"{self.ladder[level]} since {now:.3f} s: {why}")
        self.ctx.note("switches", str(self.switches))

    def _choice(self, ctx: NodeContext) -> str:
        cfg: OnnxModelConfig = self.config
        if cfg.provider_choice is not None:
            return cfg.provider_choice
        if ctx.profile is None:
            return "order"
        if ctx.profile.provider_choice is not None:
            return ctx.profile.provider_choice
        return "measured" if ctx.profile.kind == "desktop" else "order"

    def _first_provider_that_runs(self, ctx: NodeContext) -> Any:
        """The session of the first provider that takes the model and runs it on the
        bundle's sample inputs; without samples, the first that takes it (the first
        real input checks it, and the next ones stand by: :meth:`_verify_on`). With
        ``provider_choice: measured``, the fastest of those that run it."""
        candidates = [(n, o) for n, o in self._candidates(ctx)]
        probe = self._sample_feed()
        if self._choice(ctx) == "measured":
            return self._measured_choice(ctx, candidates, probe)
        while candidates:
            name, _ = candidates[0]
            session = self._session(ctx, candidates)
            candidates = candidates[1:]
            if session is None:
                continue
            if probe is not None:
                failure = self._failure(session, probe, runs=1 + max(0, self.config.warmup))
                if failure is not None:
                    self._skip(name, f"failed on the sample inputs: {failure}")
                    continue
                ctx.note("verified", "on the bundle's sample inputs")
                self.verified = True
            else:
                self._untried = candidates
                ctx.note("verified", "on the first input (no sample inputs to check it before)")
            self._chose(ctx, name)
            return session
        raise self._no_provider()

    def _failure(self, session: Any, probe: dict[str, Any], runs: int) -> str | None:
        """Why ``session`` cannot run the model on ``probe`` ``runs`` times (ONNX
        Runtime's last line), or None when it can."""
        try:
            for _ in range(runs):
                session.run(self.output_names, probe)
        except Exception as exc:
            return _last_line(exc)
        return None

    def _no_provider(self) -> BundleError:
        """Why no provider runs the model (each one's reason), and what to do."""
        return BundleError(
            "no execution provider could run it: " + "; ".join(self.skipped),
            path=self.model_file,
            fix="add CPUExecutionProvider to the profile's list, or install an ONNX Runtime "
            "with the provider"
            if not any(s.startswith("CPU") for s in self.skipped)
            else "check the model runs in ONNX Runtime: even its CPU provider cannot run it",
        )

    def _measured_choice(
        self, ctx: NodeContext, candidates: list[tuple[str, dict[str, Any]]], probe: Any
    ) -> Any:
        """Every provider that takes the model (and the CPU on one thread, which beats
        a thread pool on small models) stands; the fastest on real inputs wins."""
        for index, (name, _) in enumerate(candidates):
            session = self._session(ctx, candidates[index:])
            if session is not None:
                self._contenders.append((name.removesuffix("ExecutionProvider"), session))
        own_threads = self.config.threads or (ctx.profile.cpu_threads if ctx.profile else None)
        if any(name == "CPU" for name, _ in self._contenders) and own_threads != 1:
            session = self._session(ctx, [(CPU, {})], threads=1)
            if session is not None:
                self._contenders.append(("CPU (1 thread)", session))
        if not self._contenders:
            raise self._no_provider()
        if probe is None:
            ctx.note("verified", "on the first input (no sample inputs), providers measured on it")
            self._chose(ctx, self._contenders[0][0])
            return self._contenders[0][1]
        ctx.note("verified", "on the bundle's sample inputs, providers measured on them")
        self.verified = True
        try:
            return self._fastest(probe)
        except RuntimeError as exc:
            raise BundleError(str(exc), path=self.model_file) from None

    def _fastest(self, probe: dict[str, Any]) -> Any:
        """The contender with the lowest p50 over ``MEASURED_RUNS`` runs on ``probe``.

        Raises:
            RuntimeError: none runs the model on it (each one's reason).
        """
        best: tuple[float, str, Any] | None = None
        figures = []
        for name, session in self._contenders:
            try:
                for _ in range(1 + max(3, self.config.warmup)):
                    session.run(self.output_names, probe)
                times = []
                for _ in range(MEASURED_RUNS):
                    start = time.perf_counter_ns()
                    session.run(self.output_names, probe)
                    times.append(time.perf_counter_ns() - start)
            except Exception as exc:
                self._skip(name, f"failed on real inputs: {_last_line(exc)}")
                continue
            p50 = float(np.median(times)) / 1e3
            figures.append(f"{name} {p50:.1f} µs")
            if best is None or p50 < best[0]:
                best = (p50, name, session)
        self._contenders = []
        if best is None:
            raise RuntimeError("no execution provider runs the model: " + "; ".join(self.skipped))
        self.ctx.note("measured", f"p50 over {MEASURED_RUNS} runs: " + ", ".join(figures))
        self._chose(self.ctx, best[1])
        return best[2]

    def _sample_feed(self) -> dict[str, Any] | None:
        """The bundle's example inputs with the initial state (None without them)."""
        if self.samples is None or not all(t.name in self.samples for _, t in self.feeds):
            return None
        feed = {t.name: self.samples[t.name] for _, t in self.feeds}
        if self.state_specs:
            first = next(iter(feed.values()))
            self._fit_state(first.shape[0] if first.ndim else 1)
            self.state_batch = 0
            feed.update(self.state)
        return feed

    def _session(
        self,
        ctx: NodeContext,
        chain: list[tuple[str, dict[str, Any]]],
        threads: int | None = None,
        model_file: Path | None = None,
    ) -> Any:
        """A session for ``chain[0]`` with the rest of the chain behind it, or None
        (the reason noted) when it is missing, fails, or ONNX Runtime replaces it."""
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT's own warnings would flood the console
        # Which provider took which nodes, for the report (ONNX Runtime 1.2x+; older
        # versions ignore the entry).
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        if not self.config.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        threads = (
            threads or self.config.threads or (ctx.profile.cpu_threads if ctx.profile else None)
        )
        if threads:
            options.intra_op_num_threads = threads
        available = set(ort.get_available_providers())
        name, provider_options = chain[0]
        if name not in available:
            self._skip(name, "not in this ONNX Runtime build")
            return None
        _make_cache_folders(provider_options)
        said = io.StringIO()
        try:
            # ORT prints why it fell back to the CPU, and logs the missing libraries;
            # both become the skip reason instead of noise on the console.
            ort.set_default_logger_severity(4)
            with contextlib.redirect_stdout(said):
                session = ort.InferenceSession(
                    str(model_file or self.model_file),
                    options,
                    # The rest of the chain stays behind it: what TensorRT cannot
                    # take goes to CUDA (say), not straight to the CPU.
                    providers=[c for c in chain if c[0] in available],
                )
        except Exception as exc:
            self._skip(name, f"session failed: {_last_line(exc)}")
            return None
        finally:
            ort.set_default_logger_severity(2)
        if session.get_providers()[0] != name:
            why = _ep_error(said.getvalue()) or f"fell back to {session.get_providers()[0]}"
            self._skip(name, why)
            return None
        return session

    def _skip(self, name: str, why: str) -> None:
        self.skipped.append(f"{name.removesuffix('ExecutionProvider')}: {why}")

    def _chose(self, ctx: NodeContext, name: str) -> None:
        short = name.removesuffix("ExecutionProvider")
        self.provider = short
        ctx.note("provider", short)
        if self.skipped:
            ctx.note("skipped", "; ".join(self.skipped))
            ctx.logger.info("model runs on %s; skipped %s", short, "; ".join(self.skipped))

    def _verify_on(self, feed: dict[str, Any]) -> None:
        """Check the provider on the first real input (batched as a step feeds it, with
        the state), then warm it up on it; a provider that fails gives way to the next.

        Raises:
            RuntimeError: no provider runs the model on this input (each one's reason).
        """
        probe = {name: value[None] for name, value in feed.items()} if self.batched else feed
        if self.state_specs:
            first = next(iter(probe.values()))
            self._fit_state(first.shape[0] if first.ndim else 1)
            probe = {**probe, **self.state}
        if self._contenders:  # measured choice: the fastest on this input
            self.session = self._fastest(probe)
            self.run = self._runner(self.session)
            self.verified = True
            return
        while True:
            failure = self._failure(self.session, probe, runs=1 + max(0, self.config.warmup))
            if failure is None:
                break
            current = self.session.get_providers()[0]
            self._skip(current, f"failed on the first input: {failure}")
            session = None
            while session is None and self._untried:
                name = self._untried[0][0]
                session = self._session(self.ctx, self._untried)
                self._untried = self._untried[1:]
            if session is None:
                raise RuntimeError(
                    "no execution provider runs the model on its first input: "
                    + "; ".join(self.skipped)
                )
            self.session, self.run = session, self._runner(session)
            self._chose(self.ctx, name)
        self._untried = []
        self.verified = True

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if self.checked and self.single is not None:
            # One input and one output, the usual policy: no loops, no comprehensions.
            port, tensor_name, out_port, drop = self.single
            value = inputs[port]
            if value is None:
                return None
            if self.batched:
                result = self.run([self.output_names[0]], {tensor_name: value[None]})[0]
                return {out_port: result[0] if drop else result}
            return {out_port: self.run([self.output_names[0]], {tensor_name: value})[0]}
        feed = {}
        for port, tensor in self.feeds:
            value = inputs[port]
            if value is None:
                return None  # not every input has arrived yet
            feed[tensor.name] = value
        for name in self.strings:  # ONNX Runtime takes strings as an object array
            if feed[name].dtype != object:
                feed[name] = feed[name].astype(object)
        if not self.checked:
            self._check_first(feed)
            if not self.device_inputs and any(type(v) is DeviceTensor for v in feed.values()):
                self.device_inputs = True  # bound where they are from now on
                self._runners.clear()
                self.run = self._runner(self.session)
            if not self.verified:
                self._verify_on({name: on_host(v, "provider check") for name, v in feed.items()})
        if self.pairs:
            return self._step_with_state(feed)
        if self.batched:
            feed = {name: value[None] for name, value in feed.items()}
            results = self.run(self.output_names, feed)
            return {
                port: r[0] if drop else r
                for port, r, drop in zip(self.output_ports, results, self.unbatch, strict=True)
            }
        results = self.run(self.output_names, feed)
        return dict(zip(self.output_ports, results, strict=True))

    def _step_with_state(self, feed: dict[str, Any]) -> dict[str, Any]:
        """One step of a recurrent model: the state goes in beside the inputs and the
        new state comes back; only the other outputs leave the node."""
        fresh = self._fresh_inputs(feed)
        reset = self.ctx.message("reset")
        if reset is not None and reset.seq != self.reset_seen:
            self.reset_seen = reset.seq
            self.reset_state()
        if not fresh:  # only a reset arrived: no step on inputs already stepped on
            return {}
        if self.batched:
            feed = {name: value[None] for name, value in feed.items()}
        first = next(iter(feed.values()))
        batch = first.shape[0] if first.ndim else 1
        if batch != self.state_batch:
            self._fit_state(batch)
        feed.update(self.state)
        results = dict(zip(self.output_names, self.run(self.output_names, feed), strict=True))
        for state_in, state_out in self.pairs:
            self.state[state_in] = results.pop(state_out)
        out = {}
        for name, port, drop in zip(
            self.output_names, self.output_ports, self.unbatch, strict=True
        ):
            if name in results:
                out[port] = results[name][0] if self.batched and drop else results[name]
        return out

    def _fresh_inputs(self, feed: dict[str, Any]) -> bool:
        """True when a model input has a message this node has not stepped on. A node
        stepped by hand (a test, a benchmark: no wired inputs) steps on every call."""
        fresh = False
        for port, tensor in self.feeds:
            message = self.ctx.message(port)
            if message is None:
                fresh = fresh or feed.get(tensor.name) is not None
            elif message.seq != self.input_seen.get(port):
                self.input_seen[port] = message.seq
                fresh = True
        return fresh

    def reset_state(self) -> None:
        """Every state back to its initial value (an episode's end, a command)."""
        self.state = {name: value.copy() for name, value in self.initial.items()}

    def _fit_state(self, batch: int) -> None:
        """State for ``batch`` inputs a step, from its initial values: a batch that
        changes starts the state over (noted), as rows cannot be matched up."""
        if self.state_batch:
            self.batch_changes += 1
            self.ctx.note(
                "state",
                f"batch {batch}; restarted {self.batch_changes} time(s) when the batch changed",
            )
        self.initial = {
            name: np.full((batch, *shape), initial, dtype=dtype)
            for name, shape, initial, dtype in self.state_specs
        }
        self.state_batch = batch
        self.reset_state()

    def _check_first(self, feed: dict[str, Any]) -> None:
        """Say exactly how the first inputs differ from what the model expects."""
        batched = set()
        for port, tensor in self.feeds:
            value = feed[tensor.name]
            if not isinstance(value, (np.ndarray, DeviceTensor)):
                raise TypeError(
                    f"input '{port}' is a {type(value).__name__}; the model wants a "
                    f"numpy array of {tensor.dtype}"
                )
            if tensor.dtype == "str":
                if value.dtype.kind not in "USO":
                    raise TypeError(
                        f"input '{port}' is {value.dtype}; model input '{tensor.name}' wants "
                        "strings (a numpy str or object array)"
                    )
            elif value.dtype != np.dtype(tensor.dtype):
                raise TypeError(
                    f"input '{port}' is {value.dtype}; model input '{tensor.name}' wants "
                    f"{tensor.dtype} (fix: make the upstream node output {tensor.dtype})"
                )
            want = tensor.shape
            if (
                self.config.add_batch_dim
                and len(want) == value.ndim + 1
                and (not isinstance(want[0], int) or want[0] == 1)  # a batch, not a fixed size
            ):
                want = want[1:]
                batched.add(port)
                if type(value) is DeviceTensor:
                    raise ValueError(
                        f"input '{port}' is a device tensor of shape {value.shape}, without "
                        f"the batch dimension model input '{tensor.name}' wants "
                        f"{_shape_text(tensor.shape)}: a device tensor cannot gain one "
                        "without a copy; export the two models with matching shapes"
                    )
            if len(want) != value.ndim or any(
                isinstance(w, int) and w != v for w, v in zip(want, value.shape, strict=True)
            ):
                raise ValueError(
                    f"input '{port}' has shape {value.shape}; model input '{tensor.name}' wants "
                    f"{_shape_text(tensor.shape)} (names and None are free dimensions)"
                )
        if batched and len(batched) != len(self.feeds):
            raise ValueError(
                f"inputs {sorted(batched)} lack the batch dimension but others "
                "have it: give all or none"
            )
        self.batched = bool(batched)
        self.checked = True


def _check_binding(config: OnnxModelConfig, tensors: list[TensorSpec], outputs: list[str]) -> None:
    """``device_outputs`` names output ports; I/O binding has no strings."""
    unknown = [p for p in config.device_outputs if p not in outputs]
    if unknown:
        raise NodeConfigError(
            f"device_outputs names {', '.join(unknown)}, not an output port of the model",
            node_type="onnx.model",
            key="device_outputs",
            fix="its output ports: " + ", ".join(outputs),
        )
    binds = config.io_binding or config.device_outputs or config.cuda_graph
    strings = [t.name for t in tensors if t.dtype == "str"]
    if binds and strings:
        raise NodeConfigError(
            f"I/O binding cannot carry string tensors ({', '.join(strings)})",
            node_type="onnx.model",
            key="io_binding" if config.io_binding else "device_outputs",
            fix="leave io_binding, device_outputs and cuda_graph off for this model",
        )


def placement(session: Any) -> str | None:
    """Nodes per provider, in the session's order (``TensorRT 41 nodes, CUDA 2 nodes
    (fell back)``); None where ONNX Runtime cannot say."""
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except Exception:  # an older ONNX Runtime, or the entry was not recorded
        return None
    nodes: dict[str, int] = {}
    for subgraph in subgraphs:
        nodes[subgraph.ep_name] = nodes.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    order = [p for p in session.get_providers() if p in nodes]
    parts = []
    for rank, provider in enumerate(order):
        count = nodes[provider]
        text = f"{provider.removesuffix('ExecutionProvider')} {count} node{'s' * (count != 1)}"
        parts.append(text + (" (fell back)" if rank else ""))
    return ", ".join(parts) or None


def _truthy(option: Any) -> bool:
    """A provider option's yes (ONNX Runtime takes "1"/"true"; YAML gives bools too)."""
    return str(option).lower() in ("1", "true")


def _state_names(config: OnnxModelConfig) -> tuple[set[str], set[str]]:
    """The tensors a bundle's manifest names as state inputs and outputs."""
    _, manifest = open_model(config.model, config.variant)
    pairs = manifest.state if manifest is not None else []
    return {p.input for p in pairs}, {p.output for p in pairs}


def _dtype_of(specs: list[TensorSpec], name: str) -> str:
    return next((t.dtype for t in specs if t.name == name), "float32")


def _batch_first(t: TensorSpec) -> bool:
    """True when a tensor's first dimension is a batch (free, or 1), not a fixed size."""
    return bool(t.shape) and (not isinstance(t.shape[0], int) or t.shape[0] == 1)


def _shape_text(shape: list[int | str | None]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _ep_error(printed: str) -> str:
    """The reason in ONNX Runtime's printed "EP Error" block, shortened."""
    for line in printed.splitlines():
        if line.startswith("EP Error"):
            reason = line.removeprefix("EP Error").strip()
            return (reason.split(") ", 1)[-1] if ") " in reason else reason)[:200]
    return ""


def _last_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[-1] if text else type(exc).__name__)[:200]


def _make_cache_folders(options: dict[str, Any]) -> None:
    """TensorRT writes engines into these; it does not make them."""
    for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
        if key in options:
            os.makedirs(str(options[key]), exist_ok=True)
