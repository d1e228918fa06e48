"""Which Python modules a graph, a scenario or a recording may make edgeloop import.

A loop graph is data, yet a few of its fields name code by import path: a
world's factory (the ``world`` node's ``env``, a scenario's ``world.env``), a
spiking network (``snn.torch``'s ``network``), a gymnasium id with a module
prefix (``gym.sensor``'s ``env: pkg.envs:Walker-v0`` makes gymnasium import
``pkg.envs``). Importing a module runs it, so a graph someone sent you could
run anything: ``env: os:system`` with ``kwargs: {command: ...}`` ran a shell
command (issue 14, item 4). Under an :class:`ImportPolicy` (every CLI command
that loads a graph or scenario sets one) such a path is imported only when its
module is in

- ``edgeloop`` or the package of an installed edgeloop plugin (entry points in
  the group ``edgeloop``): code the user installed;
- a package the user allows: ``--allow-import PKG`` (repeatable) or
  ``EDGELOOP_ALLOW_IMPORT=PKG,PKG``;
- the module of a ``--plugin MODULE:ATTR`` the user named;
- the folder of the graph or scenario file itself: its own modules and packages
  (the folder is put on ``sys.path`` when one is named and not importable yet).

A path into an allowed package that names what the standard library defines (a
``subprocess.run`` that package imported, ``edgeloop.cli.loops:Path``) is refused
too, unless that stdlib module is allowed by name. A refusal is a
:class:`~edgeloop.runtime.errors.PluginError` whose fix names the package to allow.

Without a policy (Python code that builds and runs its own graphs) imports are not
restricted: that code already runs whatever it chooses. :func:`restrict_imports`
sets one. Process groups get their parent's policy in their spec, not a new one.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeloop.runtime.errors import NodeConfigError, PluginError, UsageError

ENV_VAR = "EDGELOOP_ALLOW_IMPORT"
"""Environment variable: packages to allow, comma-separated (as ``--allow-import``)."""

_STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class ImportPolicy:
    """What a graph or scenario may name by import path (see the module docstring)."""

    allow: frozenset[str] = field(default_factory=frozenset)
    """Packages (top-level, or dotted for one subpackage) whose modules may be named:
    edgeloop's, installed plugins', and those the user allowed."""
    base_dir: str | None = None
    """The folder of the graph or scenario file, whose own modules may be named."""
    source: str = "the graph"
    """What names the paths, as a refusal says it ("the graph", "the scenario")."""

    def to_dict(self) -> dict[str, Any]:
        """The policy as JSON data (a process group's spec carries it)."""
        return {"allow": sorted(self.allow), "base_dir": self.base_dir, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportPolicy:
        """The policy :meth:`to_dict` wrote."""
        return cls(frozenset(data["allow"]), data.get("base_dir"), data.get("source", "the graph"))


def installed_packages() -> set[str]:
    """``edgeloop`` and the top-level packages of every installed edgeloop plugin."""
    found = {"edgeloop"}
    for ep in importlib.metadata.entry_points(group="edgeloop"):
        found.add(ep.value.split(":")[0].split(".")[0].strip())
        listed = ep.dist.read_text("top_level.txt") if ep.dist is not None else None
        found.update(name.strip() for name in (listed or "").split() if name.strip())
    return found


def import_policy(
    *,
    allow: Iterable[str] = (),
    plugins: Iterable[str] = (),
    file: str | Path | None = None,
    source: str = "the graph",
) -> ImportPolicy:
    """The policy a command runs under: installed plugins, ``allow`` and
    ``EDGELOOP_ALLOW_IMPORT``, the modules of ``plugins`` (``module:attribute``
    paths the user named) and the folder of ``file``.

    Raises:
        UsageError: an allowed name is not a dotted Python name.
    """
    packages = installed_packages()
    for name in allow:
        packages.add(_package_name(name, "--allow-import"))
    for name in os.environ.get(ENV_VAR, "").split(","):
        if name.strip():
            packages.add(_package_name(name.strip(), ENV_VAR))
    packages.update(path.partition(":")[0] for path in plugins if path.partition(":")[0])
    base_dir = str(Path(file).resolve().parent) if file is not None else None
    return ImportPolicy(frozenset(packages), base_dir, source)


def _package_name(name: str, option: str) -> str:
    if not _is_dotted(name):
        raise UsageError(
            f"{name!r} is not a Python package name",
            fix="name a package as you would import it, e.g. mpe2",
            where=option,
        )
    return name


# -- the policy in force ----------------------------------------------------------------------

_policy: ImportPolicy | None = None


def current_policy() -> ImportPolicy | None:
    """The policy in force in this process, or None (imports unrestricted)."""
    return _policy


def set_import_policy(policy: ImportPolicy | None) -> None:
    """Put ``policy`` in force for the rest of this process (a process group's worker)."""
    global _policy
    _policy = policy


@contextmanager
def restrict_imports(policy: ImportPolicy | None) -> Iterator[None]:
    """Put ``policy`` in force (for every thread of this process) until the block ends."""
    before = _policy
    set_import_policy(policy)
    try:
        yield
    finally:
        set_import_policy(before)


def import_named(path: str, *, shown: str | None = None) -> Any:
    """The object at ``module:attribute`` (or a module, without ``:``) a graph names,
    under the policy in force (unrestricted without one).

    Args:
        shown: What the graph wrote, when it is not ``path`` itself (a gymnasium id).

    Raises:
        PluginError: the policy does not allow it.
        ImportError, AttributeError: there is no such module or attribute.
    """
    policy = _policy
    if policy is None:
        module, _, attr = path.partition(":")
        found = importlib.import_module(module)
        return getattr(found, attr) if attr else found
    return allowed_import(
        path, allow=policy.allow, base_dir=policy.base_dir, source=policy.source, shown=shown
    )


def check_named(path: str, *, shown: str | None = None) -> None:
    """Refuse, before anything is imported, a path the policy in force does not allow
    (a node's Config checks its import paths with it, so validation reports them).

    Raises:
        PluginError: the policy does not allow it.
    """
    policy = _policy
    if policy is not None:
        _module_allowed(
            _split(path, shown)[0], policy.allow, policy.base_dir, policy.source, shown or path
        )


def check_config_path(
    path: str, *, key: str, node_type: str = "", shown: str | None = None
) -> None:
    """:func:`check_named` for a node's Config (its ``__post_init__``): a refusal is a
    :class:`NodeConfigError` on ``key``, which validation reports with file and line.

    Raises:
        NodeConfigError: the policy in force does not allow ``path``.
    """
    try:
        check_named(path, shown=shown)
    except PluginError as exc:
        raise NodeConfigError(exc.message, node_type=node_type, key=key, fix=exc.fix) from None


def gym_id_module(env_id: str) -> str | None:
    """The module gymnasium imports for ``env_id`` (``pkg.envs:Walker-v0`` -> ``pkg.envs``):
    ``gymnasium.make`` imports the part before a colon before it looks the id up."""
    return env_id.split(":")[0] if ":" in env_id else None


# -- the check --------------------------------------------------------------------------------


def allowed_import(
    path: str,
    *,
    allow: Iterable[str],
    base_dir: str | Path | None,
    source: str = "the graph",
    shown: str | None = None,
) -> Any:
    """Import the object at ``module:attribute`` (or a module) only if allowed.

    Args:
        path: ``package.module:attribute``, or ``package.module``.
        allow: Packages whose modules may be imported (top-level or dotted).
        base_dir: A folder whose own modules may be imported (the graph's), or None.
        source: What named the path, for the message ("the graph").
        shown: What ``source`` wrote, when not ``path`` (a gymnasium id).

    Raises:
        PluginError: neither ``allow`` nor ``base_dir`` covers the module, or the
            attribute is something the standard library defines.
        ImportError, AttributeError: there is no such module or attribute.
    """
    allow = frozenset(allow)
    named = shown or path
    module, attr = _split(path, shown)
    base = str(Path(base_dir).resolve()) if base_dir is not None else None
    local = _module_allowed(module, allow, base, source, named)
    found = importlib.import_module(module)
    top = sys.modules.get(module.split(".")[0])
    if local and not _inside(top, base):  # another module of that name won the import
        raise _refusal(named, module, source)
    target = getattr(found, attr) if attr else found
    origin = target.__name__ if inspect.ismodule(target) else getattr(target, "__module__", None)
    if (
        isinstance(origin, str)
        and module.split(".")[0] not in _STDLIB
        and origin.split(".")[0] in _STDLIB
        and not _covered(origin, allow)
    ):
        what = f"the module {origin}" if inspect.ismodule(target) else f"{origin}.{attr}"
        raise PluginError(
            f"{source} names '{named}', which is {what} of the standard library, not code "
            "of the package it names",
            plugin=named,
            fix=f"name the package's own code, or add --allow-import {origin.split('.')[0]} "
            "if you trust it",
        )
    return target


def _split(path: str, shown: str | None) -> tuple[str, str]:
    module, _, attr = path.partition(":")
    if not _is_dotted(module) or (attr and not attr.isidentifier()):
        raise PluginError(
            f"'{shown or path}' is not an import path",
            plugin=shown or path,
            fix="write package.module:attribute, e.g. mypkg.worlds:make_world",
        )
    return module, attr


def _is_dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _covered(module: str, allow: frozenset[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allow)


def _module_allowed(
    module: str, allow: frozenset[str], base_dir: str | None, source: str, named: str
) -> bool:
    """True when ``module`` is allowed as one of ``base_dir``'s own, False when by
    ``allow``; raises the refusal otherwise. Runs no module's code."""
    if _covered(module, allow):
        return False
    if base_dir is not None and _local(module.split(".")[0], base_dir):
        return True
    raise _refusal(named, module, source)


def _local(top: str, base_dir: str) -> bool:
    """Whether importing ``top`` gives the module or package in ``base_dir`` (then
    importable: ``base_dir`` joins ``sys.path`` if nothing else has that name)."""
    if importlib.machinery.PathFinder.find_spec(top, [base_dir]) is None:
        return False
    if top in sys.modules:
        return _inside(sys.modules[top], base_dir)
    spec = importlib.util.find_spec(top)  # a top-level name: imports nothing
    if spec is None:
        sys.path.append(base_dir)
        importlib.invalidate_caches()
        return True
    places = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
    return bool(places) and all(_under(p, base_dir) for p in places)


def _inside(module: Any, base_dir: str | None) -> bool:
    if module is None or base_dir is None:
        return False
    file = getattr(module, "__file__", None)
    places = [file] if file else list(getattr(module, "__path__", []))
    return bool(places) and all(_under(p, base_dir) for p in places)


def _under(place: str, base_dir: str) -> bool:
    try:
        return Path(place).resolve().is_relative_to(base_dir)
    except (OSError, ValueError):
        return False


def _refusal(named: str, module: str, source: str) -> PluginError:
    top = module.split(".")[0]
    noun = source.removeprefix("the ")
    return PluginError(
        f"{source} names '{named}'; edgeloop imports only installed plugins, modules "
        f"beside the {noun} and packages you allow",
        plugin=named,
        fix=f"add --allow-import {top} if you trust it, or set {ENV_VAR}={top}",
    )
