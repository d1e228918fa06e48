"""The run report as rich tables, for the end of ``edgeloop run``."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from edgeloop.runtime.metrics import RunReport


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def report_tables(report: RunReport) -> Group:
    """Nodes, contracts, timers, series and faults of a run, one table each."""
    clock = "simulated" if report.simulated else "real-time"
    title = (
        f"{report.graph}: {report.duration_s:.2f} s {clock} ({report.wall_s:.2f} s wall), "
        f"seed {report.seed}, stopped: {report.stop_reason}"
    )
    nodes = Table(title=title, title_justify="left")
    for col in (
        "node",
        "type",
        "calls",
        "p50 µs",
        "p99 µs",
        "max µs",
        "deadline misses",
        "drops",
        "faults",
        "restarts",
    ):
        nodes.add_column(col, justify="left" if col in ("node", "type", "faults") else "right")
    for n in report.nodes:
        misses = f"{n.deadline_misses}" + (f" / {n.deadline_ms:g} ms" if n.deadline_ms else "")
        faults = ", ".join(f"{k} {v}" for k, v in n.faults.items()) or "0"
        nodes.add_row(
            n.id,
            n.type,
            f"{n.calls:,}",
            _num(n.p50_us),
            _num(n.p99_us),
            _num(n.max_us),
            misses,
            f"{sum(n.drops.values()):,}",
            faults,
            f"{n.restarts} ({n.down_s:.2f} s down)" if n.restarts else "0",
        )
    parts: list[Table | Text] = [nodes]
    noted = [n for n in report.nodes if n.notes or n.safe_states]
    if noted:
        notes = Table(title="node notes", title_justify="left")
        notes.add_column("node")
        notes.add_column("note")
        notes.add_column("value")
        for n in noted:
            if n.safe_states:
                sent = ", ".join(f"{why} {count}" for why, count in n.safe_states.items())
                notes.add_row(n.id, "safe commands", Text(sent))
            for key, value in n.notes.items():
                notes.add_row(n.id, key, Text(value))
        parts.append(notes)
    if report.contracts:
        contracts = Table(title="sense-to-act contracts (clock time)", title_justify="left")
        for col in (
            "contract",
            "path",
            "count",
            "p50 ms",
            "p99 ms",
            "max ms",
            "deadline ms",
            "misses",
        ):
            contracts.add_column(col, justify="left" if col in ("contract", "path") else "right")
        for c in report.contracts:
            contracts.add_row(
                c.name,
                " -> ".join(c.path),
                f"{c.count:,}",
                _num(c.p50_ms, 3),
                _num(c.p99_ms, 3),
                _num(c.max_ms, 3),
                f"{c.deadline_ms:g}",
                str(c.deadline_misses),
            )
        parts.append(contracts)
    if report.timers:
        timers = Table(title="timers", title_justify="left")
        for col in (
            "timer",
            "period ms",
            "fired",
            "jitter p50 µs",
            "jitter p99 µs",
            "jitter max µs",
            "overruns",
        ):
            timers.add_column(col, justify="left" if col == "timer" else "right")
        for t in report.timers:
            timers.add_row(
                t.source,
                f"{t.period_ms:g}",
                f"{t.fired:,}",
                _num(t.jitter_p50_us),
                _num(t.jitter_p99_us),
                _num(t.jitter_max_us),
                str(t.overruns),
            )
        parts.append(timers)
    shown = {
        name: f
        for name, f in report.realtime.items()
        if not report.simulated or f["gc"] != "default"  # in simulated time only gc applies
    }
    if shown:
        parts.append(_realtime_table(shown))
        for name, f in shown.items():
            for refused in f.get("refused", []):
                parts.append(Text(f"{name}: refused, ran without it: {refused}", style="yellow"))
    if report.energy is not None:
        parts.append(Text(_energy_line(report.energy)))
    if report.series:
        series = Table(title="series", title_justify="left")
        for col in ("series", "count", "mean", "min", "max", "last"):
            series.add_column(col, justify="left" if col == "series" else "right")
        for name, values in report.series.items():
            if values:
                series.add_row(
                    name,
                    str(len(values)),
                    _num(sum(values) / len(values), 2),
                    _num(min(values), 2),
                    _num(max(values), 2),
                    _num(values[-1], 2),
                )
        parts.append(series)
    steered = [n for n in report.nodes if n.sensing is not None]
    if steered:
        sensing = Table(
            title="sensing (skipped: readings not taken against the full rate)",
            title_justify="left",
        )
        for col in (
            "sensor",
            "readings",
            "skipped",
            "full Hz",
            "cost",
            "rate Hz",
            "commands",
            "clamped",
            "rejected",
        ):
            sensing.add_column(col, justify="left" if col == "sensor" else "right")
        for n in steered:
            s = n.sensing
            rate = "off" if not s["enabled"] else (f"{s['rate_hz']:g}" if s["rate_hz"] else "-")
            sensing.add_row(
                n.id,
                f"{s['readings']:,}",
                f"{s['skipped']:,}",
                f"{s['full_rate_hz']:g}",
                _num(s["cost"], 1),
                rate,
                str(s["commands"]),
                str(s["clamped"]),
                str(sum(s["rejected"].values())),
            )
        parts.append(sensing)
    if report.groups:
        groups = Table(
            title="process groups (messages and bytes their links sent to other groups)",
            title_justify="left",
        )
        for col in (
            "group",
            "nodes",
            "pid",
            "crashes",
            "restarts",
            "sent",
            "bytes",
            "dropped",
            "bad in",
        ):
            groups.add_column(col, justify="left" if col in ("group", "nodes") else "right")
        for g in report.groups:
            groups.add_row(
                g["name"],
                ", ".join(g["nodes"]),
                str(g["pid"]),
                str(g["crashes"]),
                str(g["restarts"]),
                f"{g['sent']:,}",
                f"{g['bytes']:,}",
                str(g["dropped"]),
                str(g["bad"]),
            )
        parts.append(groups)
    if report.fault_log:
        faults = Table(title=f"faults (last 10 of {len(report.fault_log)})", title_justify="left")
        for col in ("t s", "node", "kind", "action", "error"):
            faults.add_column(col)
        for f in report.fault_log[-10:]:
            faults.add_row(
                f"{f['time_s']:.3f}", f["node"], f["kind"], f["action"], Text(f["error"])
            )
        parts.append(faults)
    return Group(*parts)


def _energy_line(energy: dict) -> str:
    line = f"energy measured on the power rails ({', '.join(energy['meters'])}): "
    line += f"{energy['joules']:.2f} J"
    for what, key in (("reading", "readings"), ("inference", "inferences")):
        if energy.get(f"per_{what}_mj") is not None:
            line += f"; {energy[f'per_{what}_mj']:.2f} mJ per {what} ({energy[key]:,} {key})"
    return line + " (the whole board's draw over each)"


def _realtime_table(figures: dict[str, dict]) -> Table:
    table = Table(title="real time (gc pauses: the longest and their total)", title_justify="left")
    for col in ("process", "cpus", "scheduler", "locked MiB", "gc", "collections", "pauses ms",
                "spin µs", "spin % core", "refused"):  # fmt: skip
        table.add_column(col, justify="left" if col == "process" else "right")
    for name, f in figures.items():
        table.add_row(
            name,
            ",".join(map(str, f["cpus"])) if "cpus" in f else "any",
            f.get("scheduler", "normal"),
            _num(f.get("locked_mib")),
            f["gc"],
            f"{f['gc_collections']:,}",
            f"{f['gc_pause_max_ms']:.2f} / {f['gc_pause_total_ms']:.1f}",
            _num(f.get("spin_window_us"), 0),
            _num(f.get("spin_cpu_percent"), 2),
            str(len(f.get("refused", []))),
        )
    return table


def print_report(report: RunReport, console: Console | None = None) -> None:
    """Print the report tables to ``console`` (stdout by default)."""
    (console or Console()).print(report_tables(report))
