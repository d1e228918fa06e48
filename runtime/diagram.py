"""A loop graph as text or as a Mermaid flowchart, for ``edgeloop graph``."""

from __future__ import annotations

from edgeloop.runtime.graph import LoopGraph, NodeSpec


def _schedule(spec: NodeSpec) -> str:
    if spec.rate_hz is not None:
        return f" @ {spec.rate_hz:g} Hz"
    timers = [inp.source for inp in spec.inputs.values() if inp.is_timer]
    return f" @ {', '.join(timers)}" if timers else ""


def graph_text(graph: LoopGraph) -> str:
    """One block per node: its type and schedule, then where each input comes from."""
    lines = [f"{graph.name}" + (f"  (profile {graph.profile})" if graph.profile else "")]
    for spec in graph.nodes:
        extra = []
        if spec.deadline_ms is not None:
            extra.append(f"deadline {spec.deadline_ms:g} ms")
        if spec.on_fault.action != "restart":
            extra.append(
                f"on_fault {spec.on_fault.action}"
                + (f" -> {spec.on_fault.fallback}" if spec.on_fault.fallback else "")
            )
        if spec.group != "main":
            extra.append(f"group {spec.group}")
        suffix = f"  [{'; '.join(extra)}]" if extra else ""
        lines.append(f"  {spec.id} ({spec.type}){_schedule(spec)}{suffix}")
        for port, inp in spec.inputs.items():
            flags = [inp.queue + (f"[{inp.size}]" if inp.queue == "fifo" else "")]
            if inp.feedback:
                flags.append("feedback")
            if inp.stale_ms is not None:
                flags.append(f"stale {inp.stale_ms:g} ms")
            lines.append(f"    {port} <- {inp.source}  ({', '.join(flags)})")
    for c in graph.contracts:
        lines.append(f"  contract {c.name}: {' -> '.join(c.path)} within {c.deadline_ms:g} ms")
    return "\n".join(lines)


def graph_mermaid(graph: LoopGraph) -> str:
    """A Mermaid ``flowchart LR``; feedback edges are dashed, timers are circles."""
    lines = ["flowchart LR"]
    timers: dict[str, str] = {}
    for spec in graph.nodes:
        label = f"{spec.id}<br/><small>{spec.type}{_schedule(spec)}</small>"
        lines.append(f'    {_mid(spec.id)}["{label}"]')
    for spec in graph.nodes:
        for port, inp in spec.inputs.items():
            if inp.is_timer:
                tid = timers.setdefault(inp.source, f"timer_{len(timers)}")
                lines.append(f'    {tid}(("{inp.source}")) -->|{port}| {_mid(spec.id)}')
            else:
                arrow = "-.->" if inp.feedback else "-->"
                label = inp.port if inp.port == port else f"{inp.port} : {port}"
                lines.append(f"    {_mid(inp.node)} {arrow}|{label}| {_mid(spec.id)}")
        if spec.on_fault.action == "fallback":
            target = _mid(spec.on_fault.fallback or "")
            lines.append(f"    {_mid(spec.id)} -. fallback .-> {target}")
    return "\n".join(lines)


def _mid(node_id: str) -> str:
    # Mermaid ids take no '-'; escape so that 'a-b' and 'a_b' stay two nodes.
    return "n_" + node_id.replace("_", "__").replace("-", "_h")
