"""``edgeloop plugins`` and ``edgeloop profiles``: what is installed, and each in full."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from edgeloop.cli._common import add_plugins, check_writable, out, registry, write_text
from edgeloop.runtime.errors import UsageError
from edgeloop.runtime.node_docs import (
    NodeTypeDoc,
    config_row,
    describe_node_type,
    literal,
    port_row,
    reference_markdown,
)


def register(commands: Any) -> None:
    plugins = commands.add_parser(
        "plugins",
        help="list node types (and plugins that failed to load), or show one in full",
        description="List every node type registered through the 'edgeloop' entry-point "
        "group, and plugins that failed to load with why. `edgeloop plugins show TYPE` "
        "prints one type's ports, config (types, defaults, meaning), faults and a YAML "
        "snippet, read from its code.",
        usage="edgeloop plugins [-h] [--plugin MODULE:ATTR] [show TYPE | docs [-o FILE]]",
    )
    add_plugins(plugins)
    plugins.set_defaults(handler=plugins_command)
    plugins_sub = plugins.add_subparsers(dest="plugins_command", title="subcommands", metavar="")
    show = plugins_sub.add_parser(
        "show",
        help="print one node type in full",
        description="Print a node type's summary, inputs, outputs, config, faults and a "
        "YAML snippet.",
    )
    show.add_argument("type", help="a node type name (see `edgeloop plugins`)")
    add_plugins(show)
    show.set_defaults(handler=plugin_show_command)
    docs = plugins_sub.add_parser(
        "docs",
        help="write the Markdown reference of node types",
        description="Write every registered node type's reference (ports, config, faults, "
        "YAML) as Markdown, generated from the code. edgeloop's own docs/node-types.md is "
        "`edgeloop plugins docs --only builtin --only worlds -o docs/node-types.md`.",
    )
    docs.add_argument("-o", "--out", type=Path, metavar="FILE", help="file (default: stdout)")
    docs.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PLUGIN",
        help="only the types of this plugin (repeatable; see the plugin column of "
        "`edgeloop plugins`)",
    )
    add_plugins(docs)
    docs.set_defaults(handler=plugin_docs_command)

    profiles = commands.add_parser(
        "profiles",
        help="list hardware profiles, or show one",
        description="List the hardware profiles edgeloop ships (devices it deploys to), or "
        "print one with the source of each figure. A graph names one with 'profile:'.",
        usage="edgeloop profiles [-h] [show NAME]",
    )
    profiles.set_defaults(handler=profiles_command)
    profiles_sub = profiles.add_subparsers(dest="profiles_command", title="subcommands", metavar="")
    show = profiles_sub.add_parser(
        "show", help="print one profile", description="Print a profile file, sources included."
    )
    show.add_argument("name", help="a profile name (see `edgeloop profiles`) or a file path")
    show.set_defaults(handler=profile_show_command)


# -- plugins --------------------------------------------------------------------------------


def plugins_command(args: argparse.Namespace) -> int:
    loaded = registry(args.plugins)
    table = Table(title="node types", title_justify="left")
    for col in ("type", "role", "plugin", "description"):
        table.add_column(col)
    for name in sorted(loaded.node_types):
        info = loaded.node_types[name]
        table.add_row(name, info.cls.role, info.plugin, Text(info.description))
    out.print(table)
    out.print("`edgeloop plugins show TYPE` prints a type's ports, config and faults.")
    if loaded.failures:
        failed = Table(title="plugins that failed to load", title_justify="left")
        failed.add_column("plugin")
        failed.add_column("error")
        for failure in loaded.failures:
            failed.add_row(failure.name, Text(failure.error))
        out.print(failed)
    return 0


def plugin_show_command(args: argparse.Namespace) -> int:
    loaded = registry(args.plugins)
    info = loaded.node_type(args.type)  # an unknown name is a user error with close matches
    print_node_type(describe_node_type(info.cls, info.name, info.plugin))
    return 0


def plugin_docs_command(args: argparse.Namespace) -> int:
    loaded = registry(args.plugins)
    unknown = sorted(set(args.only) - {info.plugin for info in loaded.node_types.values()})
    if unknown:
        raise UsageError(
            f"--only {', '.join(unknown)}: no such plugin registered node types",
            fix="see the plugin column of `edgeloop plugins`",
        )
    docs = [
        describe_node_type(info.cls, name, info.plugin)
        for name, info in sorted(loaded.node_types.items())
        if not args.only or info.plugin in args.only
    ]
    text = reference_markdown(docs)
    if args.out is None:
        sys.stdout.write(text)
    else:
        check_writable(args.out, "-o")
        write_text(args.out, text, "-o")
        out.print(f"{len(docs)} node types written to {args.out}", highlight=False)
    return 0


def print_node_type(doc: NodeTypeDoc) -> None:
    """A node type's documentation on the terminal."""
    out.print(f"[bold]{escape(doc.name)}[/]  ({doc.role}, plugin {escape(doc.plugin)})")
    out.print(Text(literal(doc.summary)))
    if doc.description:
        out.print()
        out.print(Text(literal(doc.description)))
    for note in doc.notes:
        out.print(Text(f"- {note}"))
    for title, ports in (("inputs", doc.inputs), ("outputs", doc.outputs)):
        if ports:
            table = Table(title=title, title_justify="left")
            for col in ("port", "dtype", "shape", "units", "meaning"):
                table.add_column(col)
            for port in ports:
                table.add_row(*(Text(literal(cell)) for cell in port_row(port)))
            out.print(table)
    if doc.config:
        table = Table(title="config", title_justify="left")
        for col in ("key", "type", "default", "meaning"):
            table.add_column(col)
        for field in doc.config:
            table.add_row(*(Text(literal(cell)) for cell in config_row(field)))
        out.print(table)
    if doc.faults:
        out.print("[bold]faults[/]")
        out.print(Text(literal(doc.faults)))
    if doc.yaml:
        out.print("[bold]YAML[/]")
        out.print(Syntax(doc.yaml, "yaml", theme="ansi_dark", background_color="default"))


# -- profiles -------------------------------------------------------------------------------


def profiles_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.profiles import builtin_profile_names, load_profile, profile_summary

    table = Table(title="hardware profiles", title_justify="left")
    columns = {
        "name": "name",
        "kind": "kind",
        "memory GB": "memory_gb",
        "compute": "compute_capability",
        "TensorRT": "tensorrt",
        "max opset": "max_onnx_opset",
        "providers": "providers",
    }
    for col in columns:
        table.add_column(col, justify="right" if col in ("memory GB", "max opset") else "left")
    for name in builtin_profile_names():
        row = profile_summary(load_profile(name))
        table.add_row(*(_cell(row[key]) for key in columns.values()))
    out.print(table)
    out.print("`edgeloop profiles show NAME` prints one with its sources.")
    return 0


def profile_show_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.profiles import load_profile, profile_source

    load_profile(args.name)  # validates, and names the problem if it does not
    sys.stdout.write(profile_source(args.name))
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)
