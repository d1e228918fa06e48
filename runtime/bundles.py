"""Model bundles: a folder with the model file(s) and ``manifest.json``.

The exporter writes bundles; the ONNX model node reads them. The manifest
records what the model expects and how it was made, and the sha256 of every
file, so a tampered or truncated model is refused before a session is built.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeloop.runtime.errors import BundleError

MANIFEST = "manifest.json"


class TensorSpec(BaseModel):
    """One model input or output."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: str
    """numpy dtype name, e.g. ``float32``."""
    shape: list[int | str | None]
    """Fixed sizes as ints; dynamic dimensions by name (``batch``) or None."""


class StatePair(BaseModel):
    """A recurrent model's state: fed in on ``input``, returned on ``output``, and
    carried from one step to the next by the model node (a spiking network's
    membrane potentials, say)."""

    model_config = ConfigDict(extra="forbid")

    input: str
    output: str
    shape: list[int]
    """With the batch dimension (1) first."""
    initial: float = 0.0
    """Every element's value at the start and after a reset."""


class BundleManifest(BaseModel):
    """``manifest.json``: what is in a bundle and how it was made."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    edgeloop_version: str
    created: str
    """ISO 8601 time of export."""
    model: str
    """File name of the ONNX model inside the bundle."""
    variants: dict[str, str] = Field(default_factory=dict)
    """Other versions of the model by name, e.g. ``{"fp16": "model_fp16.onnx"}``
    (same inputs and outputs)."""
    profile: str | None = None
    """Hardware profile the model was exported and checked for."""
    opset: int | None = None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ports: dict[str, str] = Field(default_factory=dict)
    """Port name -> tensor name, for tensors whose names are not good port names;
    a model node's own ``ports`` config overrides it."""
    constants: dict[str, Any] = Field(default_factory=dict)
    """Pre/post-processing constants (observation normalisation, action bounds)."""
    files: dict[str, str]
    """sha256 (hex) of every file in the bundle but the manifest, by name."""
    parity: dict[str, Any] = Field(default_factory=dict)
    precheck: dict[str, Any] = Field(default_factory=dict)
    state: list[StatePair] = Field(default_factory=list)
    """State inputs and outputs the model node carries across steps (not ports)."""
    samples: str | None = None
    """An ``.npz`` file of real example inputs (one array per model input, state
    inputs left out): the model node checks each execution provider on them."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_model(path: str | Path, variant: str | None = None) -> tuple[Path, BundleManifest | None]:
    """The ONNX file to load from a ``.onnx`` path or a bundle folder (its main model,
    or the named ``variant``), and the bundle's manifest (None for a bare model file).

    Raises:
        BundleError: the path does not exist, the manifest is missing or invalid,
            a file's sha256 differs from the manifest's (tampered or truncated), or
            the bundle has no such variant.
    """
    path = Path(path)
    if path.is_dir():
        manifest = _verified_manifest(path)
        if variant is None:
            return path / manifest.model, manifest
        if variant not in manifest.variants:
            known = ", ".join(manifest.variants) or "none"
            raise BundleError(
                f"no '{variant}' variant in this bundle (it has: {known})",
                path=path,
                fix="export with that variant, or leave 'variant' out",
            )
        return path / manifest.variants[variant], manifest
    if variant is not None:
        raise BundleError(
            "a variant needs a bundle folder, not a single .onnx file",
            path=path,
            fix="leave 'variant' out, or point at a bundle",
        )
    if not path.is_file():
        raise BundleError(
            "no such model file or bundle folder",
            path=path,
            fix="check the path (a .onnx file or a folder with manifest.json)",
        )
    return path, None


_VERIFIED: dict[tuple[Any, ...], BundleManifest] = {}


def _verified_manifest(folder: Path) -> BundleManifest:
    """The bundle's manifest once every file matched its sha256; hashed again only
    when a file's size or modification time changed (a graph opens its model often)."""
    stamp = tuple(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns)
        for f in sorted(folder.iterdir())
        if f.is_file()
    )
    key = (str(folder.resolve()), stamp)
    if key not in _VERIFIED:
        manifest = read_manifest(folder)
        verify_bundle(folder, manifest)
        _VERIFIED[key] = manifest
    return _VERIFIED[key]


# ONNX Runtime's tensor type strings and the numpy dtypes they hold.
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "str",  # numpy str arrays in, object arrays of str out
}


def specs_of_session(args: list[Any]) -> list[TensorSpec]:
    """TensorSpecs of an ONNX Runtime session's ``get_inputs()`` or ``get_outputs()``."""
    return [
        TensorSpec(
            name=a.name,
            dtype=ORT_DTYPES.get(a.type, a.type),
            shape=[d if isinstance(d, int) else (d or None) for d in a.shape],
        )
        for a in args
    ]


def zeros_for(spec: TensorSpec) -> Any:
    """A zero array of the spec's dtype (empty strings for a string tensor), free
    dimensions taken as 1."""
    import numpy as np

    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    if spec.dtype == "str":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=spec.dtype)


def read_samples(folder: Path, manifest: BundleManifest) -> dict[str, Any] | None:
    """A bundle's example inputs by tensor name (None when it has none); the file
    was checked against its sha256 with the rest of the bundle.

    Raises:
        BundleError: the file is not an ``.npz`` of plain arrays.
    """
    if manifest.samples is None:
        return None
    import numpy as np

    try:
        with np.load(folder / manifest.samples, allow_pickle=False) as found:
            return {name: found[name] for name in found.files}
    except (OSError, ValueError) as exc:
        raise BundleError(
            f"its sample inputs cannot be read: {exc}",
            path=folder / manifest.samples,
            fix="export the bundle again",
        ) from None


def read_manifest(folder: Path) -> BundleManifest:
    """Read and validate ``manifest.json`` of a bundle folder."""
    manifest_path = folder / MANIFEST
    try:
        data = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BundleError(
            f"no {MANIFEST} in this folder",
            path=folder,
            fix="point at a bundle made by `edgeloop export`, or at a .onnx file",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(
            f"{MANIFEST} is not readable JSON: {exc}",
            path=manifest_path,
            fix="export the bundle again",
        ) from None
    try:
        return BundleManifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise BundleError(
            f"{MANIFEST} field '{where}': {err['msg']}",
            path=manifest_path,
            fix="export the bundle again",
        ) from None


def verify_bundle(folder: Path, manifest: BundleManifest) -> None:
    """Check every file the manifest lists against its sha256.

    Raises:
        BundleError: a file is missing or its content changed.
    """
    for model in [manifest.model, *manifest.variants.values(), manifest.samples]:
        if model is not None and model not in manifest.files:
            raise BundleError(
                f"the manifest lists no sha256 for the model file '{model}'",
                path=folder / MANIFEST,
                fix="export the bundle again",
            )
    for name, expected in manifest.files.items():
        file = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(
                f"the manifest names a file outside the bundle: '{name}'",
                path=folder / MANIFEST,
                fix="export the bundle again",
            )
        if not file.is_file():
            raise BundleError(
                f"'{name}' is missing from the bundle",
                path=folder,
                fix="copy the whole bundle folder again",
            )
        actual = sha256_of(file)
        if actual != expected:
            raise BundleError(
                f"'{name}' does not match its sha256 in the manifest (expected "
                f"{expected[:12]}..., found {actual[:12]}...): it was changed or truncated",
                path=folder,
                fix="copy the bundle again from where it was exported",
            )


def write_manifest(folder: Path, manifest: BundleManifest) -> None:
    """Write ``manifest.json`` into a bundle folder."""
    (folder / MANIFEST).write_text(json.dumps(manifest.model_dump(), indent=2) + "\n")
