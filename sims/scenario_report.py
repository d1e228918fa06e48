"""What a scenario run shows: the results table and the trajectory plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table

from edgeloop.runtime.metrics import RunReport


def _num(value: float | None, digits: int = 2) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:,.{digits}f}"
    )


def scenario_table(name: str, metrics: dict[str, Any]) -> Table:
    """Per agent: return, sensing energy, sense-to-act latency, deadline misses;
    team totals in the last row and the caption."""
    table = Table(
        title=f"scenario {name}: {metrics['agents']} agents, {metrics['steps']:,} world steps",
        title_justify="left",
    )
    for col in ("agent", "return", "sensing energy", "p50 ms", "p99 ms", "misses", "miss %"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for a in metrics["per_agent"]:
        table.add_row(
            a["agent"],
            _num(a["return"]),
            _num(a["energy"], 1),
            _num(a["latency_p50_ms"], 3),
            _num(a["latency_p99_ms"], 3),
            str(a["misses"]),
            _num(100 * a["miss_rate"], 2),
        )
    table.add_section()
    table.add_row(
        "team",
        _num(metrics["team_return"]),
        _num(metrics["sensing_energy"], 1),
        "",
        _num(metrics["latency_p99_ms"], 3),
        str(sum(a["misses"] for a in metrics["per_agent"])),
        _num(100 * metrics["miss_rate"], 2),
    )
    table.caption = (
        f"episodes finished {metrics['episodes']} · sensing energy per unit of return "
        f"{_num(metrics['energy_per_return'])} · "
        f"messages between processes {metrics['messages']:,} "
        f"({metrics['bytes']:,} bytes, {metrics['dropped']:,} dropped) · "
        f"deadline: an answer before the next world step ({metrics['period_ms']:g} ms)"
    )
    table.caption_justify = "left"
    return table


def plot_trajectories(
    report: RunReport, agents: list[str], path: str | Path, title: str
) -> Path | None:
    """A PNG of every agent's path (from the world's ``x``/``y`` infos), readings
    marked where the agent sensed; None when the world reports no positions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report.series
    if not any(f"world.x.{a}" in series for a in agents):
        return None
    breaks = [int(s) for s in series.get("world.episode_end", [])]
    fig, ax = plt.subplots(figsize=(6, 6))
    for agent in agents:
        xs = list(series.get(f"world.x.{agent}", []))
        ys = list(series.get(f"world.y.{agent}", []))
        for at in reversed(breaks):  # a new episode starts elsewhere: no line across
            if 0 < at < len(xs):
                xs.insert(at, math.nan)
                ys.insert(at, math.nan)
        energy = list(series.get(f"world.energy.{agent}", []))
        for at in reversed(breaks):
            if 0 < at < len(energy):
                energy.insert(at, 0.0)
        (line,) = ax.plot(xs, ys, lw=1, label=agent)
        sensed = [(x, y) for x, y, e in zip(xs, ys, energy, strict=False) if e > 0]
        if sensed:
            ax.scatter(*zip(*sensed, strict=True), s=12, color=line.get_color(), marker="o")
    ax.set_aspect("equal")
    ax.set_title(title + (f" ({len(breaks) + 1} episodes)" if breaks else ""))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if len(agents) <= 12:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
