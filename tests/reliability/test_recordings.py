"""Recordings lose nothing that was flushed, and a damaged one fails in one clear way.

A run killed with SIGKILL (one process, or the supervisor of several) leaves a
file readable up to its last flush; a killed supervisor's parts are merged by
``edgeloop recording repair`` and on the next read; every truncation and every
single-bit flip of a recording gives its messages (perhaps different ones) or one
RecordingError, never another exception (issue 14, item 1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeloop.cli import main
from edgeloop.runtime.errors import RecordingError
from edgeloop.runtime.mcap_records import scan
from edgeloop.runtime.recording import (
    Recorder,
    merge_recordings,
    parts_dir,
    read_metadata,
    read_recording,
)

ROOT = Path(__file__).resolve().parents[2]
PENDULUM = ROOT / "examples" / "pendulum"


def start_run(tmp_path: Path, graph: Path, name: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "edgeloop", "run", str(graph), "--record", name]
    command += ["--duration", "60", "--record-flush-ms", "20"]
    return subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_until(ready, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, f"the run ended before {what}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what} within 120 s"
        time.sleep(0.05)


def test_a_run_killed_with_sigkill_leaves_a_recording_readable_to_its_last_flush(tmp_path, capsys):
    run = start_run(tmp_path, PENDULUM / "loop.yaml", "r.mcap")
    recording = tmp_path / "r.mcap"
    # Readiness: a flushed message on the actuator's topic (the loop is running).
    wait_until(
        lambda: recording.exists() and recording.stat().st_size > 4000, run, "a flushed recording"
    )
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)

    found = scan(recording)
    assert not found.complete and found.stopped
    messages = list(read_recording(recording))
    topics = {topic for topic, _, _ in messages}
    assert {"/sensor/obs", "/controller/action", "/safety/action"} <= topics
    assert read_metadata(recording)["graph"].endswith("loop.yaml")  # written first

    assert main(["recording", "info", str(recording)]) == 1
    assert "recording repair" in capsys.readouterr().err
    assert main(["recording", "repair", str(recording)]) == 0
    assert scan(recording).complete

    def index(entries: list) -> list:
        return [(topic, created, body["seq"]) for topic, created, body in entries]

    assert index(list(read_recording(recording))) == index(messages)


def test_a_killed_supervisors_parts_are_merged_by_repair_and_on_the_next_read(tmp_path, capsys):
    run = start_run(tmp_path, PENDULUM / "processes.yaml", "g.mcap")
    folder = parts_dir(tmp_path / "g.mcap")

    def both_parts_flushed() -> bool:
        parts = list(folder.glob("*.mcap")) if folder.is_dir() else []
        return len(parts) == 2 and all(p.stat().st_size > 2000 for p in parts)

    wait_until(both_parts_flushed, run, "two flushed parts")
    run.send_signal(signal.SIGKILL)  # the groups die with it (PR_SET_PDEATHSIG)
    run.wait(timeout=60)
    assert not (tmp_path / "g.mcap").exists() and folder.is_dir()

    assert main(["recording", "repair", str(tmp_path / "g.mcap")]) == 0
    out = capsys.readouterr().out
    assert "repaired" in out and "read up to its last flush" in out
    assert not folder.exists()
    topics = {topic for topic, _, _ in read_recording(tmp_path / "g.mcap")}
    assert {"/sensor/obs", "/controller/action", "/motor/episode_return"} & topics
    assert read_metadata(tmp_path / "g.mcap")["graph"].endswith("processes.yaml")


def small_recording(path: Path) -> Path:
    recorder = Recorder(path, flush_ms=0)
    recorder.add_metadata({"graph": "loop.yaml", "seed": 3})
    recorder.write("/a/value", np.array([1.5, -2.0]), 0, 0.01, 0.0)
    recorder.write("/a/value", np.array([2.5, np.nan]), 1, 0.02, 0.01)
    recorder.write("/b/command", {"rate_hz": 5.0}, 0, 0.03, 0.02)
    recorder.close()
    return path


def read_or_refuse(path: Path) -> str:
    """What reading ``path`` gave: 'read', or 'refused' (one RecordingError)."""
    try:
        list(read_recording(path))
        read_metadata(path)
    except RecordingError:
        return "refused"
    return "read"


def test_every_truncation_of_a_recording_reads_its_prefix_or_is_refused(tmp_path):
    whole = small_recording(tmp_path / "whole.mcap").read_bytes()
    cut = tmp_path / "cut.mcap"
    seen = set()
    for length in range(len(whole)):
        cut.write_bytes(whole[:length])
        seen.add(read_or_refuse(cut))  # any other exception fails the test
    assert seen == {"read", "refused"}  # short files are refused, longer ones read


def test_every_single_bit_flip_of_a_recording_reads_or_is_refused(tmp_path):
    whole = bytearray(small_recording(tmp_path / "whole.mcap").read_bytes())
    flipped = tmp_path / "flipped.mcap"
    outcomes = {"read": 0, "refused": 0}
    for bit in range(len(whole) * 8):
        damaged = bytearray(whole)
        damaged[bit // 8] ^= 1 << (bit % 8)
        flipped.write_bytes(damaged)
        outcomes[read_or_refuse(flipped)] += 1
    assert outcomes["read"] and outcomes["refused"]


def test_a_part_that_ends_on_a_record_boundary_is_noted_not_counted_as_failed(tmp_path):
    whole = small_recording(tmp_path / "part.mcap")
    found = scan(whole)
    end_of_last_message = _end_of_messages(whole.read_bytes())
    cut = tmp_path / "plant.0.mcap"
    cut.write_bytes(whole.read_bytes()[:end_of_last_message])
    summary = merge_recordings([cut], tmp_path / "merged.mcap")
    assert summary["failed"] == 0 and summary["written"] == len(found.messages)
    assert summary["cut_short"] == [
        "plant.0.mcap: it ends after its last message, without a summary"
    ]


def _end_of_messages(data: bytes) -> int:
    """The offset just after the last Message record (opcode 0x05) of an MCAP file."""
    offset, end = 8, 8
    while offset + 9 <= len(data):
        opcode = data[offset]
        length = int.from_bytes(data[offset + 1 : offset + 9], "little")
        offset += 9 + length
        if opcode == 0x05:
            end = offset
    return end


@pytest.mark.parametrize("flush_ms", [0.0, 20.0])
def test_the_recorder_flushes_so_a_reader_sees_messages_while_it_runs(tmp_path, flush_ms):
    recorder = Recorder(tmp_path / "live.mcap", flush_ms=flush_ms)
    try:
        recorder.write("/a/value", 1.0, 0, 0.0, 0.0)
        deadline = time.monotonic() + 30
        while not _flushed(tmp_path / "live.mcap"):  # by its thread, or at once
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        recorder.close()
    assert os.path.getsize(tmp_path / "live.mcap") > 0 and scan(tmp_path / "live.mcap").complete


def _flushed(path: Path) -> bool:
    try:
        return len(scan(path).messages) >= 1
    except RecordingError:  # not even the header reached the file yet
        return False


def test_an_episodes_end_flushes_the_recording_at_once(tmp_path):
    import edgeloop

    graph = edgeloop.load_graph(PENDULUM / "loop.yaml")
    for spec in graph.nodes:
        if spec.type.startswith("gym."):
            spec.config["max_episode_steps"] = 20  # an episode ends every 0.4 s
    recorder = Recorder(tmp_path / "r.mcap", flush_ms=86_400_000)  # never by time here
    try:
        report = edgeloop.Executor(graph, simulated=True, recorder=recorder).run(1.0)
        assert len(report.series["motor.episode_return"]) == 2
        flushed = scan(tmp_path / "r.mcap").messages  # before close: what the ends flushed
        assert flushed and max(m.log_time for _, m in flushed) >= 0.7e9  # the 2nd end
    finally:
        recorder.close()


def test_a_run_still_writing_its_parts_keeps_them_until_it_ends(tmp_path):
    folder = parts_dir(tmp_path / "r.mcap")
    folder.mkdir()
    small_recording(folder / "plant.0.mcap")
    # A process standing in for the supervisor: alive, and an edgeloop one.
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "edgeloop"],
        stdin=subprocess.PIPE,
    )
    try:
        facts = {"supervisor_pid": writer.pid, "groups": ["plant"], "metadata": {}}
        (folder / "run.json").write_text(json.dumps(facts))
        with pytest.raises(
            RecordingError, match=f"still being written by the run in process {writer.pid}"
        ):
            list(read_recording(tmp_path / "r.mcap"))
        assert (folder / "plant.0.mcap").exists()  # nothing merged, nothing removed
    finally:
        writer.communicate(b"")  # the run ends
    assert len(list(read_recording(tmp_path / "r.mcap"))) == 3  # now merged and read
    assert not folder.exists()
