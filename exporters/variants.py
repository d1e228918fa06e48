"""Another version of a bundle's model beside it: a smaller network, say, that a
model node falls back on under load (``switch:``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeloop.runtime.bundles import read_manifest, sha256_of, verify_bundle, write_manifest
from edgeloop.runtime.errors import ExportError


def add_variant(bundle: str | Path, name: str, model: str | Path) -> Path:
    """Copy ``model`` into ``bundle`` as variant ``name``; it must take the same inputs
    and give the same outputs (names, dtypes; sizes may differ where dynamic).

    Raises:
        ExportError: the name is taken, or the model's inputs or outputs differ.
    """
    import onnxruntime as ort

    from edgeloop.runtime.bundles import specs_of_session

    folder, model = Path(bundle), Path(model)
    manifest = read_manifest(folder)
    verify_bundle(folder, manifest)
    if name in manifest.variants or not name.isidentifier():
        raise ExportError(f"'{name}' is taken or not a plain name", fix="another variant name")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    mine = [(t.name, t.dtype) for t in specs_of_session(session.get_inputs())]
    theirs = [(t.name, t.dtype) for t in manifest.inputs]
    mine_out = [(t.name, t.dtype) for t in specs_of_session(session.get_outputs())]
    theirs_out = [(t.name, t.dtype) for t in manifest.outputs]
    if mine != theirs or mine_out != theirs_out:
        raise ExportError(
            f"{model} takes {mine} and gives {mine_out}; the bundle's model takes {theirs} "
            f"and gives {theirs_out}",
            fix="export the variant with the same input and output names and dtypes",
        )
    target = folder / f"model_{name}.onnx"
    shutil.copyfile(model, target)
    manifest.variants[name] = target.name
    manifest.files[target.name] = sha256_of(target)
    write_manifest(folder, manifest)
    return target
