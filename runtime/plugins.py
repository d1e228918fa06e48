"""Plugin discovery: the pluggy manager, entry points, and the node-type table."""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
from dataclasses import dataclass
from typing import Any

import pluggy

from edgeloop.runtime import hookspecs
from edgeloop.runtime.errors import PluginError, UnknownNodeTypeError
from edgeloop.runtime.node import Node

ENTRY_POINT_GROUP = "edgeloop"
_log = logging.getLogger("edgeloop.plugins")


@dataclass(frozen=True)
class NodeTypeInfo:
    """A registered node type.

    Attributes:
        name: The name graphs use in ``type:``.
        cls: The Node subclass.
        plugin: Name of the plugin that registered it.
    """

    name: str
    cls: type[Node]
    plugin: str

    @property
    def description(self) -> str:
        """First line of the class docstring."""
        doc = (inspect.getdoc(self.cls) or "").strip()
        return doc.splitlines()[0].replace("``", "") if doc else ""  # no RST literals


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded; the others still are."""

    name: str
    error: str


class PluginRegistry:
    """The pluggy manager plus the node types its plugins registered.

    Args:
        entry_points: Load plugins from the ``edgeloop`` entry-point group
            (edgeloop's built-in node types come in the same way).
        plugins: Extra plugin objects to register, as ``{name: plugin}``.
    """

    def __init__(self, *, entry_points: bool = True, plugins: dict[str, Any] | None = None) -> None:
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.node_types: dict[str, NodeTypeInfo] = {}
        if entry_points:
            self._load_entry_points()
        for name, plugin in (plugins or {}).items():
            self.add_plugin(plugin, name)

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``registry.hook.edgeloop_loop_started(...)``)."""
        return self.manager.hook

    def _load_entry_points(self) -> None:
        seen: dict[str, str] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if seen.get(ep.name) == ep.value:  # one distribution visible twice on sys.path
                continue
            if ep.name in seen:
                self.failures.append(
                    PluginFailure(
                        ep.name,
                        f"two plugins are named '{ep.name}' ({seen[ep.name]} and {ep.value}); "
                        "the second was not loaded (fix: rename one entry point)",
                    )
                )
                continue
            seen[ep.name] = ep.value
            try:
                plugin = ep.load()
                self.add_plugin(plugin, ep.name)
            except Exception as exc:  # one broken plugin must not hide the others
                self.failures.append(PluginFailure(ep.name, f"{type(exc).__name__}: {exc}"))

    def add_plugin(self, plugin: Any, name: str) -> None:
        """Register a plugin object and the node types it contributes, all or nothing.

        Raises:
            PluginError: it implements a hook that does not exist (a typo) or with
                an argument its spec lacks; its registration hook raised; or it
                registers a name another plugin already has, or something that is
                not a Node subclass.
        """
        try:
            self.manager.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin '{name}': {exc}",
                plugin=name,
                fix="take only the arguments the hook spec lists (runtime/hookspecs.py)",
            ) from None
        try:
            self._check_hook_names(plugin, name)
            contributed = self._contributed_types(plugin, name)
        except BaseException:
            self.manager.unregister(plugin)
            raise
        for type_name, cls in contributed.items():
            self.node_types[type_name] = NodeTypeInfo(type_name, cls, name)

    def _check_hook_names(self, plugin: Any, name: str) -> None:
        """A ``@hookimpl`` named after no spec would never be called: refuse it."""
        specs = [n for n in dir(hookspecs) if n.startswith("edgeloop_")]
        for hook_name, caller in vars(self.manager.hook).items():
            if caller.spec is not None or not any(
                impl.plugin is plugin for impl in caller.get_hookimpls()
            ):
                continue
            # Matched without the shared prefix, which makes any two names look alike.
            bare = {name.removeprefix("edgeloop_"): name for name in specs}
            close = [
                bare[m]
                for m in difflib.get_close_matches(hook_name.removeprefix("edgeloop_"), bare, n=1)
            ]
            raise PluginError(
                f"plugin '{name}' implements '{hook_name}', which is no edgeloop hook, so it "
                "would never be called",
                plugin=name,
                fix=f"rename it {close[0]}" if close else f"use one of {', '.join(specs)}",
            )

    def _contributed_types(self, plugin: Any, name: str) -> dict[str, type[Node]]:
        impls = [
            impl
            for impl in self.manager.hook.edgeloop_register_node_types.get_hookimpls()
            if impl.plugin is plugin
        ]
        if not impls:
            if callable(getattr(plugin, "edgeloop_register_node_types", None)):
                raise PluginError(
                    f"plugin '{name}' defines edgeloop_register_node_types without "
                    "@edgeloop.hookimpl, so it is not a hook",
                    plugin=name,
                    fix="decorate it",
                )
            return {}
        try:
            contributed = dict(impls[0].function() or {})
        except Exception as exc:
            raise PluginError(
                f"plugin '{name}' failed in edgeloop_register_node_types: "
                f"{type(exc).__name__}: {exc}",
                plugin=name,
            ) from exc
        for type_name, cls in contributed.items():
            if not (isinstance(cls, type) and issubclass(cls, Node)):
                raise PluginError(
                    f"plugin '{name}' registered node type '{type_name}' as {cls!r}, "
                    "which is not a subclass of edgeloop.Node",
                    plugin=name,
                    fix="register Node subclasses only",
                )
            self._refuse_duplicate(type_name, cls, name)
        return contributed

    def add_node_type(self, name: str, cls: type[Node], *, plugin: str = "local") -> None:
        """Register one node type directly (used for node classes passed in Python)."""
        self._refuse_duplicate(name, cls, plugin)
        self.node_types[name] = NodeTypeInfo(name, cls, plugin)

    def _refuse_duplicate(self, name: str, cls: type[Node], plugin: str) -> None:
        existing = self.node_types.get(name)
        if existing is not None and existing.cls is not cls:
            raise PluginError(
                f"node type '{name}' is registered twice: by plugin '{existing.plugin}' "
                f"and by plugin '{plugin}'",
                plugin=plugin,
                fix="rename one of them",
            )

    def node_type(self, name: str) -> NodeTypeInfo:
        """Look up a node type by name.

        Raises:
            UnknownNodeTypeError: no plugin registered it (with close matches).
        """
        try:
            return self.node_types[name]
        except KeyError:
            raise UnknownNodeTypeError(name, sorted(self.node_types)) from None


def import_object(path: str) -> Any:
    """The object at ``module:attribute`` (or a whole module, without ``:``).

    Raises:
        ImportError, AttributeError: there is no such module or attribute.
    """
    module, _, attr = path.partition(":")
    found = importlib.import_module(module)
    return getattr(found, attr) if attr else found


def import_plugin(path: str) -> Any:
    """The plugin object at ``module:attribute`` (or a whole module), e.g. for the
    processes of a graph split into groups, which load plugins by import path.

    Raises:
        PluginError: it cannot be imported.
    """
    try:
        return import_object(path)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"cannot import plugin '{path}': {exc}",
            plugin=path,
            fix="module:attribute of an importable module",
        ) from None


def fire_hook(
    registry: PluginRegistry,
    hook: str,
    arguments: dict[str, Any],
    *,
    fault_log: list[dict[str, Any]],
    time_s: float,
) -> None:
    """Fire a notification hook with ``arguments``; a plugin raising is logged and
    recorded in ``fault_log`` (kind ``hook_error``, at ``time_s``), never fatal."""
    try:
        getattr(registry.hook, hook)(**arguments)
    except Exception as exc:
        _log.error("a plugin's %s raised %s: %s", hook, type(exc).__name__, exc)
        fault_log.append(
            {
                "node": "(plugins)",
                "kind": "hook_error",
                "error": f"{hook}: {type(exc).__name__}: {exc}",
                "action": "ignored",
                "time_s": time_s,
            }
        )
