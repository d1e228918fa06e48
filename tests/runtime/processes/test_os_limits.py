"""Open files for process groups: raised where allowed, refused up front where not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import edgeloop_cli

from edgeloop.runtime.graph_yaml import load_graph
from edgeloop.runtime.processes.os_limits import files_needed, sockets_needed
from edgeloop.runtime.processes.placement import split_graph

LINKS = 40


def many_links(folder: Path, links: int = LINKS) -> Path:
    """Group a publishes ``links`` ports that group b reads: a link each."""
    lines = ["name: wide", "nodes:"]
    for k in range(links):
        lines.append(
            f"  - {{id: c{k}, type: constant, rate_hz: 20, group: a, config: {{value: [1.0]}}}}"
        )
    inputs = ", ".join(f"i{k}: c{k}/action" for k in range(links))
    lines.append(
        f"  - {{id: sink, type: log, group: b, config: {{every: 1000}}, inputs: {{{inputs}}}}}"
    )
    path = folder / "wide.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def limited(soft: int, hard: int) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit is not installed")
    return [prlimit, f"--nofile={soft}:{hard}", "--"]


def test_each_group_needs_files_for_its_links(tmp_path):
    plans = split_graph(load_graph(many_links(tmp_path)))
    assert len(plans["a"].outbound) == LINKS and len(plans["b"].inbound) == LINKS
    assert files_needed(plans["a"]) == 32 + 4 * LINKS
    assert files_needed(plans["b"]) == 32 + 3 * LINKS
    # In lockstep: its turn socket, and one to each group it may pass the turn to.
    assert files_needed(plans["b"], turn_peers=1) == 32 + 3 * LINKS + 3 + 4


def test_too_few_open_files_is_refused_before_anything_starts(tmp_path):
    many_links(tmp_path)
    done = edgeloop_cli(tmp_path, "run", "wide.yaml", "--duration", "0.5", prefix=limited(100, 100))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        f"group 'a' needs about {32 + 4 * LINKS} open files for its {LINKS} links, and a "
        "process here may open 100 (hard limit 100); one other group needs more too" in done.stderr
    )
    assert "LimitNOFILE=" in done.stderr and "started:" not in done.stderr


def test_a_soft_limit_below_the_hard_one_is_raised_and_the_run_goes_on(tmp_path):
    many_links(tmp_path)
    done = edgeloop_cli(
        tmp_path, "run", "wide.yaml", "--duration", "0.5", "--quiet", prefix=limited(100, 4096)
    )
    assert done.returncode == 0, done.stderr


def test_a_group_with_more_links_than_zeromq_allows_by_default_runs(tmp_path):
    """ZeroMQ allows 1,023 sockets in a context unless told otherwise (a world of 300
    agents passes it): each group's bridge raises that to what its links need."""
    many_links(tmp_path, links=1100)
    plans = split_graph(load_graph(tmp_path / "wide.yaml"))
    assert sockets_needed(plans["b"]) > 1023
    done = edgeloop_cli(
        tmp_path, "run", "wide.yaml", "--sim", "--duration", "0.1", "--quiet", "--json", "r.json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    sink = next(node for node in report["nodes"] if node["id"] == "sink")
    assert sink["calls"] == 2 * 1100  # every port's message at 0 and 50 ms got through
