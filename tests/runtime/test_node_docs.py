"""A node type's documentation is read from its code, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import edgeloop
from edgeloop.runtime.node_docs import describe_node_type, reference_markdown
from edgeloop.testing import check_node

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BaseConfig:
    gain: float = 2.0
    """Multiplier applied to every element."""


@dataclass(frozen=True)
class GainConfig(BaseConfig):
    offset: float = 0.0
    """Added after the gain,
    in the observation's units."""
    names: list[str] = field(default_factory=lambda: ["x"], metadata={"doc": "Element names."})
    limit: float | None = None
    """Largest output; None for none."""


class Gain(edgeloop.Controller):
    """Multiplies the observation by a gain.

    It steps on each observation.

    Faults:
        none of its own.

    YAML::

        - id: gain
          type: mylab.gain
    """

    inputs = (edgeloop.Port("obs", dtype="float64", shape=(3,), units="m", doc="position"),)
    outputs = (edgeloop.Port("action", dtype="float64", doc="gain * obs + offset"),)
    Config = GainConfig


def test_ports_config_faults_and_yaml_come_from_the_class():
    doc = describe_node_type(Gain, "mylab.gain", "mylab")
    assert doc.summary == "Multiplies the observation by a gain."
    assert doc.description == "It steps on each observation."
    assert doc.faults == "none of its own."
    assert doc.yaml == "- id: gain\n  type: mylab.gain"
    assert [(p.name, p.units, p.doc) for p in doc.inputs] == [("obs", "m", "position")]
    fields = {f.name: (f.type, f.default, f.doc) for f in doc.config}
    assert fields == {
        "gain": ("float", "2.0", "Multiplier applied to every element."),  # inherited
        "offset": ("float", "0.0", "Added after the gain, in the observation's units."),
        "names": ("list[str]", "[x]", "Element names."),
        "limit": ("float | None", "null", "Largest output; None for none."),
    }
    assert doc.missing_docs() == []
    markdown = doc.markdown()
    assert "| `obs` | float64 | (3,) | m | position |" in markdown
    assert "| `limit` | float \\| None | null | Largest output; None for none. |" in markdown


def test_a_steerable_sensor_shows_its_sensing_input_and_bounds():
    info = edgeloop.PluginRegistry().node_type("grid.camera")
    doc = describe_node_type(info.cls, info.name, info.plugin)
    assert doc.inputs[-1].name == "sensing" and doc.inputs[-1].doc
    assert any(note.startswith("steerable: rate") for note in doc.notes)


def test_a_function_node_documents_its_ports_and_config_from_its_docstring():
    @edgeloop.node(outputs=("action",))
    def scale(obs, *, k: float = 2.0):
        """Scales the observation.

        Args:
            obs: The observation,
                of any shape.
            k: The gain.

        Returns:
            The scaled observation.
        """
        return obs * k

    doc = describe_node_type(scale)
    assert doc.inputs[0].doc == "The observation, of any shape."
    assert doc.outputs[0].doc == "The scaled observation."
    assert [(f.name, f.doc) for f in doc.config] == [("k", "The gain.")]
    assert doc.description == ""  # Args and Returns feed the tables, not the prose
    assert check_node(scale, inputs=[{"obs": np.ones(2)}])[0]["action"].tolist() == [2.0, 2.0]


def test_the_committed_node_type_reference_is_what_the_code_says():
    registry = edgeloop.PluginRegistry()
    docs = [
        describe_node_type(info.cls, name, info.plugin)
        for name, info in sorted(registry.node_types.items())
        if info.plugin in ("builtin", "worlds")
    ]
    committed = (ROOT / "docs" / "node-types.md").read_text()
    assert committed == reference_markdown(docs), (
        "docs/node-types.md is stale: run "
        "`edgeloop plugins docs --only builtin --only worlds -o docs/node-types.md`"
    )
    assert all(doc.missing_docs() == [] for doc in docs)
