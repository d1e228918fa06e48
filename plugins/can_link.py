"""The CAN side of the ``can.*`` node types: python-can and cantools loaded on use,
a bus opened (and reopened with backoff), DBC signals found by name, and receive
timestamps put on the loop's clock."""

from __future__ import annotations

import time
from typing import Any

from edgeloop.plugins.backoff import DeviceLink
from edgeloop.runtime.errors import MissingDependencyError, NodeConfigError, TransportError

CAN_ERR_BUSOFF = 0x40  # SocketCAN's error class bit for bus-off (linux/can/error.h)


def can_module() -> Any:
    try:
        import can
    except ImportError:
        raise MissingDependencyError("python-can", "can", "can.sensor") from None
    return can


def load_dbc(path: str) -> Any:
    try:
        import cantools
    except ImportError:
        raise MissingDependencyError("cantools", "can", "can.sensor") from None
    try:
        return cantools.database.load_file(path, database_format="dbc")
    except FileNotFoundError:
        raise NodeConfigError(f"DBC file {path} does not exist", key="dbc") from None
    except Exception as exc:
        raise NodeConfigError(
            f"DBC file {path} cannot be read: {type(exc).__name__}: {exc}",
            key="dbc",
            fix="check it is a DBC file (cantools loads it with cantools.database.load_file)",
        ) from None


def open_bus(interface: str, channel: str, bitrate: int | None, filters: list[dict]) -> Any:
    can = can_module()
    options: dict[str, Any] = {"interface": interface, "channel": channel}
    if bitrate is not None:
        options["bitrate"] = bitrate
    try:
        # SocketCAN filters in the kernel and still delivers error frames; python-can's
        # other interfaces filter in software and would drop them: the node filters.
        kernel_filters = filters if interface == "socketcan" and filters else None
        return can.Bus(can_filters=kernel_filters, **options)
    except (can.CanError, OSError, ValueError, ImportError) as exc:
        raise TransportError(
            f"cannot open CAN bus {interface}:{channel}: {exc}",
            fix="check the interface is up (`ip link show can0`; `ip link set can0 up type can "
            "bitrate 500000`) and that python-can supports it",
        ) from None


def signal_owners(db: Any, signals: list[str], key: str) -> list[tuple[Any, str]]:
    """``(message, signal name)`` for each ``Message.Signal`` (or a signal name that
    exactly one message has); NodeConfigError naming what is unknown."""
    owners = []
    for name in signals:
        message_name, _, signal = name.rpartition(".")
        candidates = (
            [db.get_message_by_name(message_name)]
            if message_name and message_name in {m.name for m in db.messages}
            else [m for m in db.messages if any(s.name == name for s in m.signals)]
        )
        signal = signal if message_name else name
        found = [m for m in candidates if any(s.name == signal for s in m.signals)]
        if len(found) != 1:
            known = ", ".join(f"{m.name}.{s.name}" for m in db.messages for s in m.signals)
            why = "is in several messages" if found else "is not in the DBC file"
            raise NodeConfigError(f"signal '{name}' {why}", key=key, fix=f"name one of: {known}")
        owners.append((found[0], signal))
    return owners


def can_link(cfg: Any, filters: list[dict]) -> DeviceLink:
    """The node's bus, opened now (setup fails if it cannot be) and opened again with
    backoff after it fails."""
    return DeviceLink(
        lambda: open_bus(cfg.interface, cfg.channel, cfg.bitrate, filters),
        lambda bus: bus.shutdown(),
        cfg.reconnect_ms / 1e3,
        cfg.max_reconnect_ms / 1e3,
    )


def on_loop_clock(timestamp: float, clock: Any) -> float:
    """A frame's receive timestamp (python-can's: seconds of the wall clock) on the
    loop's clock; the time now where it is not plausible (simulated time)."""
    now = clock.now_ns() / 1e9
    if clock.simulated:
        return now
    stamped = timestamp - (time.time() - now)
    return stamped if 0.0 <= now - stamped < 1.0 else now
