"""Recording a run into MCAP: every message, bit-exact, without changing the run; what
cannot be written is counted; the CLI's --record."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from cli_runner import edgeloop_cli

import edgeloop
from edgeloop import Executor
from edgeloop.runtime.errors import EdgeloopError
from edgeloop.testing import RecordingSink

pytest.importorskip("mcap")
pytest.importorskip("gymnasium")

from edgeloop.runtime.recording import Recorder, read_recording

PENDULUM = Path(__file__).parents[2] / "examples" / "pendulum" / "loop.yaml"


def run_pendulum(recorder: Recorder | None) -> tuple[edgeloop.RunReport, list[np.ndarray]]:
    graph = edgeloop.load_graph(PENDULUM)
    graph.add_node("watch", RecordingSink, inputs={"obs": "sensor/obs", "u": "safety/action"})
    executor = Executor(graph, simulated=True, seed=3, recorder=recorder)
    report = executor.run(4.0)
    return report, executor.node("watch").values("obs")


def test_every_message_is_recorded_bit_exact_and_the_run_is_unchanged(tmp_path):
    plain_report, plain_obs = run_pendulum(None)
    recorder = Recorder(tmp_path / "run.mcap")
    report, observed = run_pendulum(recorder)
    recorder.close()
    assert np.array_equal(np.stack(observed), np.stack(plain_obs))  # recording changes nothing
    assert report.series == plain_report.series
    by_topic: dict[str, list] = {}
    for topic, created, message in read_recording(tmp_path / "run.mcap"):
        by_topic.setdefault(topic, []).append((created, message))
    assert set(by_topic) == {"/sensor/obs", "/controller/action", "/safety/action"}
    recorded = [m["value"] for _, m in by_topic["/sensor/obs"]]
    assert len(recorded) == len(observed) == 200
    assert all(
        a.dtype == b.dtype and a.tobytes() == b.tobytes()
        for a, b in zip(recorded, observed, strict=True)
    )
    assert [m["seq"] for _, m in by_topic["/safety/action"]] == list(range(200))
    times = [t for t, _ in by_topic["/sensor/obs"]]
    assert times[0] == 0.0 and math.isclose(times[1], 0.02)
    assert report.recording == {
        "file": str(tmp_path / "run.mcap"),
        "written": 600,
        "failed": 0,
        "last_error": "",
    }


def test_payloads_of_every_kind_come_back_as_they_were(tmp_path):
    recorder = Recorder(tmp_path / "kinds.mcap")
    payloads = [
        np.array([1.5, np.nan, -np.inf], dtype=np.float32),
        np.arange(6, dtype=np.int16).reshape(2, 3),
        np.array([1 + 2j], dtype=np.complex64),
        {"pose": np.zeros(3), "ok": True, "name": "x", "n": 3, "v": float("inf")},
        b"\x00\xff",
        None,
    ]
    for k, payload in enumerate(payloads):
        recorder.write("/n/p", payload, k, k * 0.1, k * 0.1)
    recorder.close()
    back = [m["value"] for _, _, m in read_recording(tmp_path / "kinds.mcap")]
    assert back[0].dtype == np.float32 and np.array_equal(back[0], payloads[0], equal_nan=True)
    assert back[1].dtype == np.int16 and back[1].shape == (2, 3)
    assert back[2].dtype == np.complex64 and back[2][0] == 1 + 2j
    assert back[3]["ok"] is True and back[3]["v"] == float("inf")
    assert back[3]["pose"].tolist() == [0.0, 0.0, 0.0]
    assert back[4] == b"\x00\xff" and back[5] is None


def test_what_cannot_be_recorded_is_counted_and_the_recorder_goes_on(tmp_path):
    recorder = Recorder(tmp_path / "bad.mcap")
    recorder.write("/n/p", {1.0, 2.0}, 0, 0.0, 0.0)
    recorder.write("/n/p", 2.0, 1, 0.1, 0.1)
    recorder.close()
    assert (recorder.written, recorder.failed) == (1, 1)
    assert "/n/p" in recorder.last_error and "set" in recorder.last_error
    assert [m["value"] for _, _, m in read_recording(tmp_path / "bad.mcap")] == [2.0]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_counted_not_raised():
    recorder = Recorder("/dev/full", flush_ms=0)  # every write fails: no space left
    for k in range(3):
        recorder.write("/cam/image", np.zeros((48, 64, 3), np.uint8), k, k * 0.1, k * 0.1)
    recorder.close()
    assert (recorder.written, recorder.failed) == (0, 3)
    assert "I/O error" in recorder.last_error


def test_a_file_that_is_not_a_recording_is_a_clear_error(tmp_path):
    (tmp_path / "junk.mcap").write_bytes(b"this is not mcap")
    with pytest.raises(EdgeloopError, match=r"junk\.mcap"):
        list(read_recording(tmp_path / "junk.mcap"))
    with pytest.raises(EdgeloopError, match="cannot open the recording"):
        list(read_recording(tmp_path / "missing.mcap"))


def test_run_record_from_the_command_line(tmp_path):
    made = edgeloop_cli(
        tmp_path, "run", str(PENDULUM), "--sim", "--duration", "1", "--record", "r.mcap"
    )
    assert made.returncode == 0, made.stderr
    assert "recorded 150 messages to r.mcap" in made.stdout
    assert sum(1 for _ in read_recording(tmp_path / "r.mcap")) == 150
    nowhere = edgeloop_cli(
        tmp_path, "run", str(PENDULUM), "--sim", "--record", "no/such/dir/r.mcap"
    )
    assert nowhere.returncode == 2 and "cannot write the recording" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr


def test_replay_of_a_recording_is_bit_exact_and_shows_what_a_replacement_changes(tmp_path):
    made = edgeloop_cli(
        tmp_path, "run", str(PENDULUM), "--sim", "--duration", "2", "--record", "r.mcap"
    )
    assert made.returncode == 0, made.stderr
    same = edgeloop_cli(tmp_path, "replay", "r.mcap", "--graph", str(PENDULUM))
    assert same.returncode == 0, same.stderr
    assert "played back sensor" in same.stdout and "bit-exact (nothing replaced)" in same.stdout
    assert "/controller/action │      100 │      100 │       100" in same.stdout
    other = edgeloop_cli(
        tmp_path, "replay", "r.mcap", "--graph", str(PENDULUM), "--replace", "controller=constant"
    )
    assert other.returncode == 0, other.stderr
    assert "outputs differ (with replacements)" in other.stdout
    assert "replaced controller=constant" in other.stdout
    bad = edgeloop_cli(
        tmp_path, "replay", "r.mcap", "--graph", str(PENDULUM), "--replace", "controller"
    )
    assert bad.returncode == 2 and "expected NODE=TYPE" in bad.stderr
    unknown = edgeloop_cli(
        tmp_path, "replay", "r.mcap", "--graph", str(PENDULUM), "--replace", "nosuch=constant"
    )
    assert unknown.returncode == 2 and "has no node 'nosuch'" in unknown.stderr
    live = edgeloop_cli(
        tmp_path, "run", str(PENDULUM), "--duration", "0.3", "--record", "live.mcap"
    )
    assert live.returncode == 0, live.stderr
    refused = edgeloop_cli(tmp_path, "replay", "live.mcap")
    assert refused.returncode == 2 and "recorded in real time" in refused.stderr
    (tmp_path / "short.mcap").write_bytes(b"\x89MC")
    short = edgeloop_cli(tmp_path, "replay", "short.mcap")
    assert short.returncode == 2 and "is not an MCAP recording (it ends too soon)" in short.stderr
    assert all("Traceback" not in p.stderr for p in (unknown, refused, short))


def test_the_replay_node_emits_the_recorded_outputs_at_their_times(tmp_path):
    from edgeloop.plugins.replay import ReplayConfig, ReplaySource

    recorder = Recorder(tmp_path / "r.mcap")
    for k in (0, 2):  # the node published at 0 s and 0.2 s, not at 0.1 s
        recorder.write("/cam/image", np.full((2, 2), k, np.uint8), k, k * 0.1, k * 0.1)
    recorder.close()
    config = ReplayConfig(recording=str(tmp_path / "r.mcap"), node="cam")
    inputs, outputs = ReplaySource.ports(config)
    assert inputs == () and outputs[0].name == "image" and outputs[0].dtype == "uint8"
    graph = edgeloop.LoopGraph(name="replay")
    graph.add_node("cam", "replay", rate_hz=10, config=config.__dict__)
    graph.add_node("watch", RecordingSink, inputs={"image": "cam/image"})
    executor = Executor(graph, simulated=True)
    executor.run(0.3)
    seen = executor.node("watch").received
    assert [round(t, 3) for t, _ in seen] == [0.0, 0.2]
    assert seen[1][1]["image"].tolist() == [[2, 2], [2, 2]]
    with pytest.raises(EdgeloopError, match="holds no messages of node 'camera'"):
        ReplaySource.ports(ReplayConfig(recording=str(tmp_path / "r.mcap"), node="camera"))
