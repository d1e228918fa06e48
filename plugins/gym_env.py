"""Setting physical parameters of a gymnasium environment, by attribute name.

One implementation for everything that changes an env's dynamics in place: the
``gym.sensor``/``gym.actuator`` plant's ``task``, and the task spaces of the sims
layer (``TaskSpace.apply`` calls :func:`set_env_attributes`; sims may import
plugins, never the reverse). Imports neither gymnasium nor anything above the
runtime.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from edgeloop.runtime.errors import TaskSpaceError


def set_env_attributes(env: Any, values: Mapping[str, float]) -> None:
    """Write ``values`` onto ``env.unwrapped`` and recompute what is derived from them.

    Each value is converted to the type of the attribute's current value when
    that is a Python int or float (so an ``int`` attribute stays an ``int``);
    otherwise it is written as given. Then quantities the env keeps as products
    of its parameters are refreshed (CartPole's ``total_mass`` and
    ``polemass_length``). The change takes effect at the next ``step``, no reset
    needed. Nothing is written when a name is unknown.

    Args:
        env: A gymnasium environment (wrapped or not).
        values: Attribute names of ``env.unwrapped`` (e.g. Pendulum-v1: ``m``,
            ``l``) to their new values.

    Raises:
        TaskSpaceError: ``env.unwrapped`` has no attribute of one of the names (the
            fix names close matches, or the env's numeric attributes).
    """
    target = env.unwrapped
    for name in values:
        if not hasattr(target, name):
            raise TaskSpaceError(
                f"{_env_name(env)} has no attribute '{name}' to set", fix=_fix(env, name)
            )
    for name, value in values.items():
        current = getattr(target, name)
        setattr(target, name, type(current)(value) if isinstance(current, (int, float)) else value)
    _refresh_derived(target)


def _refresh_derived(env: Any) -> None:
    """CartPole keeps products of its parameters; recompute them after a change.

    ``env`` is the unwrapped environment; others are left as they are.
    """
    if hasattr(env, "polemass_length") and hasattr(env, "masspole"):
        env.total_mass = env.masspole + env.masscart
        env.polemass_length = env.masspole * env.length


def _numeric_attributes(env: Any) -> list[str]:
    """Public attributes of ``env.unwrapped`` that hold a number, sorted."""
    target = env.unwrapped
    names = []
    for name in dir(target):
        if name.startswith("_") or isinstance(getattr(type(target), name, None), property):
            continue  # properties may compute (or seed) something on first access
        try:
            value = getattr(target, name)
        except Exception:  # a property that needs state the env does not have yet
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            names.append(name)
    return sorted(names)


def _fix(env: Any, name: str) -> str:
    numbers = _numeric_attributes(env)
    by_lower = {n.lower(): n for n in numbers}  # Acrobot's are upper case: LINK_MASS_1
    close = [by_lower[n] for n in difflib.get_close_matches(name.lower(), list(by_lower), n=3)]
    if close:
        return f"did you mean {', '.join(close)}?"
    if numbers:
        return f"use an attribute of env.unwrapped; numeric ones: {', '.join(numbers)}"
    return "use an attribute of env.unwrapped; see the env's source"


def _env_name(env: Any) -> str:
    spec = getattr(env, "spec", None)
    return getattr(spec, "id", None) or type(env.unwrapped).__name__
