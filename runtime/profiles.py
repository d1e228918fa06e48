"""Hardware profiles: what a device is, what software it pairs with, and how to run models on it.

One YAML file per device in ``edgeloop.hardware_profiles`` (the built-ins) or
anywhere on disk (a user's own, loaded by path). Every figure in a built-in
file carries a comment naming its source; a figure that could not be sourced
is left out, so every field but the identity is optional.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeloop.runtime.errors import GraphProblem, ProfileError
from edgeloop.runtime.graph import LoopGraph
from edgeloop.runtime.provider_options import option_problem

PROFILE_PACKAGE = "edgeloop.hardware_profiles"


class _Strict(BaseModel):
    # strict: a profile is data; "6" is not a core count and "yes" is not a boolean.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Cpu(_Strict):
    """The CPU complex."""

    arch: Literal["aarch64", "x86_64"]
    cores: int | None = Field(default=None, gt=0)
    model: str | None = None
    """e.g. "Arm Cortex-A78AE"."""


class Gpu(_Strict):
    """The GPU, where there is one."""

    architecture: str | None = None
    """e.g. "Ampere"."""
    compute_capability: str | None = Field(default=None, pattern=r"^\d+\.\d+$")
    cuda_cores: int | None = Field(default=None, gt=0)
    tensor_cores: int | None = Field(default=None, ge=0)


class Memory(_Strict):
    """Main memory."""

    size_gb: float = Field(gt=0)
    shared_with_gpu: bool
    """True on every Jetson: CPU and GPU draw on the same memory."""
    bandwidth_gb_s: float | None = Field(default=None, gt=0)


class Throughput(_Strict):
    """Peak figures from datasheets (marketing peaks, not what a model reaches)."""

    int8_tops: float | None = Field(default=None, gt=0)
    int8_tops_sparse: bool = False
    """True when ``int8_tops`` counts structured sparsity (NVIDIA's Orin figures do)."""
    fp16_tflops: float | None = Field(default=None, gt=0)
    dla_cores: int | None = Field(default=None, ge=0)


class PowerMode(_Strict):
    """One nvpmodel power mode."""

    name: str
    watts: float | None = Field(default=None, gt=0)


class Software(_Strict):
    """The software stack the device pairs with (e.g. one JetPack release)."""

    jetpack: str | None = None
    l4t: str | None = None
    cuda: str | None = None
    tensorrt: str | None = None
    cudnn: str | None = None
    onnxruntime: str | None = None
    python: str | None = None
    max_onnx_opset: int | None = Field(default=None, ge=7)
    """Highest ONNX opset the device's TensorRT ONNX parser accepts; None when unknown
    (or when there is no TensorRT)."""


ProviderName = Literal["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


class HealthSources(_Strict):
    """Where the device reports its health: what ``board.health`` should find (it
    finds the files itself; a rail listed here and missing there is noted)."""

    power_monitor: Literal["ina3221", "ina3221x", "ina238"] | None = None
    """The power monitor's kernel driver (``ina3221x``: L4T's IIO driver of JetPack 4)."""
    power_monitor_path: str | None = None
    """Where its files are, e.g. ``/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon*``."""
    rails: list[str] = Field(default_factory=list)
    """The rails it reports, by label."""
    input_rail: str | None = None
    """The rail that is the board's whole input power; None: no single rail is."""
    gpu_load: str | None = None
    """The GPU load file (per mille)."""
    thermal_zones: list[str] = Field(default_factory=list)
    """Thermal zone types the device has."""


class ExecutionProvider(_Strict):
    """One ONNX Runtime execution provider, with its options (passed as given)."""

    name: ProviderName
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_options(self) -> ExecutionProvider:
        for option in self.options:
            problem = option_problem(self.name, option)
            if problem is not None:
                raise ValueError(problem)
        return self


class Budgets(_Strict):
    """What a loop on the device may spend."""

    model_memory_mb: float | None = Field(default=None, gt=0)
    """Memory the model's parameters and activations may take (a fraction of the
    shared memory: the OS, the loop and the sensors need the rest)."""
    loop_latency_ms: float | None = Field(default=None, gt=0)
    """Sense-to-act budget the device is expected to meet for a control loop."""


class HardwareProfile(_Strict):
    """A device edgeloop can deploy to."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    description: str
    kind: Literal["jetson", "desktop"]
    cpu: Cpu
    memory: Memory
    gpu: Gpu | None = None
    throughput: Throughput = Field(default_factory=Throughput)
    power_modes: list[PowerMode] = Field(default_factory=list)
    software: Software = Field(default_factory=Software)
    execution_providers: list[ExecutionProvider] = Field(min_length=1)
    """In order of preference; the model node skips one that is unavailable."""

    @field_validator("execution_providers")
    @classmethod
    def _each_once(cls, providers: list[ExecutionProvider]) -> list[ExecutionProvider]:
        names = [p.name for p in providers]
        if len(set(names)) != len(names):
            raise ValueError(f"a provider is listed twice: {names}")
        return providers

    sensing_costs: dict[str, float] = Field(default_factory=dict)
    """Energy units of one reading by sensor node type on this device (e.g.
    ``{grid.camera: 2.5}``); a node's own ``sensing.cost_per_reading`` wins."""

    provider_choice: Literal["order", "measured"] | None = None
    """How the model node picks among the providers that run a model: the first in
    ``execution_providers`` order, or the fastest measured at warm-up. Default:
    measured on desktops, order on boards (TensorRT engine builds are slow)."""
    cpu_threads: int | None = Field(default=None, gt=0)
    """ONNX Runtime intra-op threads for the CPU provider (None: ORT's default)."""
    budgets: Budgets = Field(default_factory=Budgets)
    health: HealthSources = Field(default_factory=HealthSources)
    """Where the device reports its power, temperatures and GPU load."""

    def provider_names(self) -> list[str]:
        """The execution providers in order of preference."""
        return [p.name for p in self.execution_providers]


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped in ``edgeloop.hardware_profiles``."""
    folder = resources.files(PROFILE_PACKAGE)
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """A built-in profile by name (``jetson-orin-nano-8gb``) or a profile file by path.

    Raises:
        ProfileError: no such profile (with close matches), an unreadable file,
            or one that breaks the schema (file, line, field and fix of each problem).
    """
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or "/" in str(path):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ProfileError(
                [
                    GraphProblem(
                        f"cannot read profile file: {reason}", file=str(path), fix="check the path"
                    )
                ]
            ) from None
        return _parse(text, str(path))
    name = str(name_or_path)
    known = builtin_profile_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `edgeloop profiles`"
        raise ProfileError(
            [
                GraphProblem(
                    f"unknown hardware profile '{name}'",
                    fix=f"{hint}; or give the path of a profile file",
                )
            ]
        )
    resource = resources.files(PROFILE_PACKAGE).joinpath(f"{name}.yaml")
    return _parse(resource.read_text(), f"hardware_profiles/{name}.yaml")


def profile_source(name_or_path: str | Path) -> str:
    """The YAML text of a profile, comments (the sources of its figures) included."""
    if name_or_path in builtin_profile_names():
        return resources.files(PROFILE_PACKAGE).joinpath(f"{name_or_path}.yaml").read_text()
    return Path(name_or_path).read_text()


def graph_profile(graph: LoopGraph) -> HardwareProfile | None:
    """The profile a graph names: a built-in name, or a file path, relative paths
    taken from the graph file's folder.

    Raises:
        ProfileError: as :func:`load_profile`.
    """
    if graph.profile is None:
        return None
    reference: str | Path = graph.profile
    path = Path(graph.profile)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in graph.profile
    if looks_like_path and not path.is_absolute() and graph.file:
        reference = Path(graph.file).parent / path
    return load_profile(reference)


def _parse(text: str, file: str) -> HardwareProfile:
    # Line numbers and friendly messages come from the graph loader's machinery.
    from edgeloop.runtime.graph_yaml import problem_from_pydantic
    from edgeloop.runtime.yaml_files import parse_with_lines

    data, lines, duplicates = parse_with_lines(text, file, ProfileError)
    if not isinstance(data, dict):
        raise ProfileError(
            [
                GraphProblem(
                    "a hardware profile must be a mapping",
                    file=file,
                    line=1,
                    fix="see hardware_profiles/desktop-cpu.yaml",
                )
            ]
        )
    try:
        profile = HardwareProfile.model_validate(data)
    except ValidationError as exc:
        problems = [problem_from_pydantic(e, file, lines, HardwareProfile) for e in exc.errors()]
        raise ProfileError(duplicates + problems) from None
    if duplicates:
        raise ProfileError(duplicates)
    return profile


def profile_summary(profile: HardwareProfile) -> dict[str, Any]:
    """The few facts a listing shows."""
    return {
        "name": profile.name,
        "kind": profile.kind,
        "memory_gb": profile.memory.size_gb,
        "compute_capability": profile.gpu.compute_capability if profile.gpu else None,
        "tensorrt": profile.software.tensorrt,
        "max_onnx_opset": profile.software.max_onnx_opset,
        "providers": " -> ".join(
            n.removesuffix("ExecutionProvider") for n in profile.provider_names()
        ),
    }
