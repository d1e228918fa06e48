"""A node type's documentation, read from its code: one source for every fact.

The tables of inputs, outputs and config come from the code itself: each
:class:`~edgeloop.runtime.node.Port`'s ``doc``, ``dtype``, ``shape`` and
``units``, and each Config field's type, default and docstring (the string
literal under the field, as gymnasium and CleanRL write them, or
``field(metadata={"doc": ...})``). The class docstring holds the prose only::

    class Gain(edgeloop.Controller):
        '''Multiplies the observation by a gain.

        Any longer description.

        Faults:
            What this node treats as a fault, and what it does about it.

        YAML::

            - id: gain
              type: mylab.gain
              inputs: {obs: sensor/obs}
        '''

``edgeloop plugins show TYPE``, ``docs/node-types.md`` and
:func:`edgeloop.testing.check_node` (which fails a type with an undocumented
port or config field) all read it through :func:`describe_node_type`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import textwrap
import typing
from dataclasses import dataclass
from typing import Any

from edgeloop.runtime.node import Node, Port, port_list

_SECTION = re.compile(r"^(Faults|YAML|Example):{1,2}(?:\s+(.*))?$")


@dataclass(frozen=True)
class ConfigFieldDoc:
    """One config key: its name, type, default (as YAML would show it) and meaning."""

    name: str
    type: str
    default: str
    doc: str
    required: bool = False


@dataclass(frozen=True)
class NodeTypeDoc:
    """Everything ``edgeloop plugins show`` prints about a node type.

    Attributes:
        name: The type name graphs use.
        role: sensor, model, controller, actuator, monitor or node.
        plugin: The plugin that registered it.
        summary: The docstring's first line.
        description: The docstring's prose after the summary.
        inputs: Declared input ports (a steerable sensor's ``sensing`` included).
        outputs: Declared output ports.
        config: The Config's fields.
        faults: What the type treats as a fault (the docstring's Faults section).
        yaml: A YAML snippet of a node of this type (the docstring's YAML section).
        notes: Facts of the class: any input names accepted, ports from the config.
    """

    name: str
    role: str
    plugin: str
    summary: str
    description: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    config: tuple[ConfigFieldDoc, ...]
    faults: str
    yaml: str
    notes: tuple[str, ...]

    def missing_docs(self) -> list[str]:
        """What has no doc: ``input 'x'``, ``output 'y'``, ``config 'z'``, ``docstring``."""
        missing = [] if self.summary else ["docstring"]
        missing += [f"input '{p.name}'" for p in self.inputs if not p.doc.strip()]
        missing += [f"output '{p.name}'" for p in self.outputs if not p.doc.strip()]
        missing += [f"config '{f.name}'" for f in self.config if not f.doc.strip()]
        return missing

    def markdown(self) -> str:
        """The type's reference as Markdown (a section of ``docs/node-types.md``)."""
        lines = [f"## `{self.name}`", "", f"*{self.role}, plugin `{self.plugin}`*", ""]
        lines += [self.summary, ""]
        if self.description:
            lines += [self.description, ""]
        lines += [f"- {note}" for note in self.notes] + ([""] if self.notes else [])
        for title, ports in (("Inputs", self.inputs), ("Outputs", self.outputs)):
            if ports:
                lines += [f"**{title}**", "", "| port | dtype | shape | units | meaning |"]
                lines += ["|---|---|---|---|---|"]
                lines += [f"| `{p.name}` | {' | '.join(_cells(port_row(p)[1:]))} |" for p in ports]
                lines += [""]
        if self.config:
            lines += ["**Config**", "", "| key | type | default | meaning |", "|---|---|---|---|"]
            lines += [
                f"| `{f.name}` | {' | '.join(_cells(config_row(f)[1:]))} |" for f in self.config
            ]
            lines += [""]
        if self.faults:
            lines += ["**Faults**", "", self.faults, ""]
        if self.yaml:
            lines += ["```yaml", self.yaml, "```", ""]
        return "\n".join(lines)


def port_row(port: Port) -> tuple[str, str, str, str, str]:
    """A port as table cells: name, dtype, shape, units, meaning."""
    shape = "-" if port.shape is None else _shape(port.shape)
    return (port.name, port.dtype or "any", shape, port.units or "-", port.doc)


def config_row(field: ConfigFieldDoc) -> tuple[str, str, str, str]:
    """A config field as table cells: key, type, default, meaning."""
    return (field.name, field.type, "(required)" if field.required else field.default, field.doc)


def describe_node_type(cls: type[Node], name: str | None = None, plugin: str = "") -> NodeTypeDoc:
    """The documentation of node type ``cls``, read from its code."""
    summary, description, sections = _split_docstring(cls.__dict__.get("__doc__") or "")
    inputs = port_list(cls.inputs)
    notes = []
    if cls.sensing is not None:  # every steerable sensor takes commands on `sensing`
        inputs += (
            Port(
                "sensing",
                doc="sensing commands (rate, enabled, read, region, mask, "
                "resolution); see the README's action-to-sensing section",
            ),
        )
        spec = cls.sensing
        notes.append(
            f"steerable: rate {spec.min_rate_hz:g}..{spec.max_rate_hz:g} Hz"
            + (
                f", resolutions {', '.join('x'.join(map(str, r)) for r in spec.resolutions)}"
                if spec.resolutions
                else ""
            )
            + (", regions and masks" if spec.region else "")
        )
    if cls.accepts_any_inputs:
        notes.append("takes inputs of any name")
    if cls.ports.__func__ is not Node.ports.__func__:  # type: ignore[attr-defined]
        notes.append("further ports come from its config (see the description)")
    return NodeTypeDoc(
        name=name or cls.__name__,
        role=cls.role,
        plugin=plugin,
        summary=summary,
        description=description,
        inputs=inputs,
        outputs=port_list(cls.outputs),
        config=tuple(config_fields(cls.Config)),
        faults=sections.get("Faults", ""),
        yaml=sections.get("YAML", "") or sections.get("Example", ""),
        notes=tuple(notes),
    )


def config_fields(config_cls: type) -> list[ConfigFieldDoc]:
    """The fields of a Config dataclass with their types, defaults and docs."""
    docs = field_docstrings(config_cls)
    hints = _type_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.default is not dataclasses.MISSING:
            default = _yaml_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _yaml_value(f.default_factory())
        else:
            default = ""
        doc = f.metadata.get("doc") or docs.get(f.name, "")
        out.append(
            ConfigFieldDoc(f.name, _type_name(hints.get(f.name, f.type)), default, doc, required)
        )
    return out


def field_docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings of a class and its bases: the string literal written
    right under an annotated field (Python keeps them only in the source)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # built in Python at run time, or no file
            continue
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def _split_docstring(doc: str) -> tuple[str, str, dict[str, str]]:
    """Summary, description, and the Faults / YAML sections of a class docstring."""
    text = inspect.cleandoc(doc)
    if not text:
        return "", "", {}
    lines = text.splitlines()
    summary_lines = []
    while lines and lines[0].strip():
        summary_lines.append(lines.pop(0).strip())
    prose: list[str] = []
    sections: dict[str, list[str]] = {}
    current = prose
    for line in lines:
        match = _SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
            if match.group(2):  # "Faults: text" on the heading's line
                current.append("    " + match.group(2))
        else:
            current.append(line)
    return (
        " ".join(summary_lines),
        "\n".join(prose).strip(),
        {k: textwrap.dedent("\n".join(v)).strip() for k, v in sections.items()},
    )


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a forward reference that cannot be resolved: keep the strings
        return {}


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, float) else str(value)


def _shape(shape: tuple[int | None, ...]) -> str:
    dims = ", ".join("n" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def _cells(values: tuple[str, ...]) -> list[str]:
    return [v.replace("|", "\\|").replace("\n", " ") or "-" for v in values]
