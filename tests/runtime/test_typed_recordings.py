"""Typed recordings: each payload in the form Foxglove and ROS tools read (images as
foxglove.RawImage, numbers Foxglove plots, arrays as binary, the rest as tagged JSON),
each read back exactly; the schemas checked by the protobuf package itself; frame ids
and times where Foxglove expects them; old JSON recordings still read; replay
bit-exact on images and typed arrays, within a tolerance on jpeg (issue 17, part 1)."""

from __future__ import annotations

import enum
import json
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import edgeloop_cli

pytest.importorskip("mcap")
pytest.importorskip("foxglove")

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from mcap.reader import make_reader

from edgeloop.runtime.record_codecs import PortRecording, encode, kinds
from edgeloop.runtime.recording import Recorder, read_recording

RNG = np.random.default_rng(7)
PAYLOADS = {
    "rgb": RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    "rgba": RNG.integers(0, 256, (5, 4, 4), dtype=np.uint8),
    "gray1": RNG.integers(0, 256, (5, 4, 1), dtype=np.uint8),
    "rgb_view": RNG.integers(0, 256, (8, 10, 3), dtype=np.uint8)[::2, 1:7],  # not contiguous
    "f32": np.array([1.5, np.nan, -np.inf, 0.1], dtype=np.float32),
    "int16": np.arange(6, dtype=np.int16).reshape(2, 3),
    "big_endian": np.array([1.25, -3.5], dtype=">f8"),
    "complex": np.array([1 + 2j, np.nan], dtype=np.complex64),
    "huge_uint": np.array([2**64 - 1, 3], dtype=np.uint64),
    "long": RNG.standard_normal(1000).astype(np.float32),
    "empty": np.zeros((0, 3)),
    "strings": np.array(["ab", "xyz"]),
    "times": np.array(["2026-12-05T10:00"], dtype="datetime64[s]"),
    "bools": np.array([True, False]),
    "float": 0.1,
    "int": 3,
    "huge_int": 2**70,
    "bool": True,
    "nan": float("nan"),
    "np_scalar": np.float32(2.5),
    "np_float64": np.float64(0.25),  # a float subclass: still a numpy scalar
    "np_int": np.int64(-(2**60)),
    "zero_d": np.array(4.0),
    "none": None,
    "text": "nan",
    "inf_text": "inf",
    "lookalike": {"dtype": "<f4", "shape": [1], "data": [1.0]},
    "tag_lookalike": {"__float__": "nan"},
    "nested": {"pose": np.zeros(3), "ok": True, "n": 3, "v": float("inf"), "t": (1, "a")},
    "int_keys": {1: "one", (2, 3): [np.int8(4)]},
    "bytes": b"\x00\xff",
    "list": [1, 2.5, None, [np.arange(70.0)]],
}


def same(a, b) -> bool:
    """Equal in value and type, arrays by dtype, shape and bytes (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and np.isnan(a):
        return np.isnan(b)
    return a == b


def record(path: Path, payloads: dict, **options) -> None:
    recorder = Recorder(path, flush_ms=0, **options)
    for k, (name, payload) in enumerate(payloads.items()):
        recorder.write(f"/n/{name}", payload, 0, 0.01 * k, 0.01 * k - 0.005)
    recorder.close()
    assert (recorder.written, recorder.failed) == (len(payloads), 0), recorder.last_error


def test_every_payload_reads_back_exactly_in_its_own_form(tmp_path):
    record(tmp_path / "kinds.mcap", PAYLOADS)
    back = {t.split("/")[2]: m for t, _, m in read_recording(tmp_path / "kinds.mcap")}
    for name, payload in PAYLOADS.items():
        assert same(back[name]["value"], payload), name
        assert back[name]["exact"] and back[name]["seq"] == 0
    schemas = {}
    with (tmp_path / "kinds.mcap").open("rb") as file:
        for schema, channel, _ in make_reader(file).iter_messages():
            schemas[channel.topic.split("/")[2]] = schema.name
    assert {n for n, s in schemas.items() if s == "foxglove.RawImage"} == {
        "rgb",
        "rgba",
        "gray1",
        "rgb_view",
    }
    assert {n for n, s in schemas.items() if s == "edgeloop.Numbers"} == {
        "f32",
        "int16",
        "big_endian",
        "bools",
        "float",
        "int",
        "bool",
        "nan",
        "np_scalar",
        "np_float64",
        "zero_d",
        "empty",
    }
    assert {n for n, s in schemas.items() if s == "edgeloop.Array"} == {
        "complex",
        "huge_uint",
        "long",
        "strings",
        "times",
    }
    # Beyond 2**53 an integer would not survive a float64: tagged JSON keeps it.
    assert schemas["nested"] == schemas["huge_int"] == schemas["np_int"] == "edgeloop.Value"


def test_nan_bits_and_number_subclasses_come_back_too(tmp_path):
    negative_nan = struct.unpack("<d", bytes.fromhex("010000000000f0ff"))[0]
    signalling = np.frombuffer(bytes.fromhex("0000803f0100807f"), "<f4").copy()  # 1.0, sNaN

    class Mode(enum.IntEnum):
        AUTO = 2

    payloads = {
        "negative_nan": negative_nan,
        "in_a_list": [negative_nan, 1.0],
        "small_array": np.array([negative_nan, 2.0]),
        "signalling": signalling,
        "mode": Mode.AUTO,
    }
    record(tmp_path / "bits.mcap", payloads)
    back = {t.split("/")[2]: m["value"] for t, _, m in read_recording(tmp_path / "bits.mcap")}
    assert struct.pack("<d", back["negative_nan"]) == struct.pack("<d", negative_nan)
    assert struct.pack("<d", back["in_a_list"][0]) == struct.pack("<d", negative_nan)
    assert back["small_array"].tobytes() == payloads["small_array"].tobytes()
    assert back["signalling"].tobytes() == signalling.tobytes()  # not quieted
    assert back["mode"] == 2 and type(back["mode"]) is int  # a subclass of int reads as int


def protobuf_class(schema_name: str, schema_data: bytes):
    """The message class the protobuf package builds from a recorded schema."""
    files = descriptor_pb2.FileDescriptorSet.FromString(schema_data)
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


def test_the_schemas_decode_every_message_with_the_protobuf_package(tmp_path):
    image = PAYLOADS["rgb"]
    kind, body = encode(image, 1_500_000_123, PortRecording(frame_id="cam"))
    from foxglove.messages import RawImage, Timestamp

    sdk = RawImage(
        timestamp=Timestamp(1, 500_000_123),
        frame_id="cam",
        width=64,
        height=48,
        encoding="rgb8",
        step=192,
        data=image.tobytes(),
    )
    assert kind == "foxglove.RawImage" and body == sdk.encode()  # the SDK's own bytes
    numbers = protobuf_class("edgeloop.Numbers", kinds()["edgeloop.Numbers"].schema)
    kind, body = encode(PAYLOADS["f32"], -2_000_000_001, PortRecording(frame_id="x"))
    decoded = numbers.FromString(body)
    assert kind == "edgeloop.Numbers" and decoded.dtype == "<f4"
    assert list(decoded.shape) == [4] and np.array_equal(
        np.array(decoded.values, np.float32), PAYLOADS["f32"], equal_nan=True
    )
    assert (decoded.timestamp.seconds, decoded.timestamp.nanos) == (-3, 999_999_999)
    array = protobuf_class("edgeloop.Array", kinds()["edgeloop.Array"].schema)
    kind, body = encode(PAYLOADS["complex"], 5, PortRecording(frame_id="x"))
    decoded = array.FromString(body)
    assert kind == "edgeloop.Array" and decoded.dtype == "<c8" and list(decoded.shape) == [2]
    assert decoded.data == PAYLOADS["complex"].tobytes()
    kind, body = encode({"a": float("nan")}, 5, PortRecording(frame_id="x"))
    assert kind == "edgeloop.Value"
    assert json.loads(body) == {
        "timestamp": {"sec": 0, "nsec": 5},
        "value": {"a": {"__float__": "nan"}},
    }


def test_frame_ids_and_times_are_where_foxglove_looks_for_them(tmp_path):
    ports = {"/cam/image": PortRecording(frame_id="camera_optical")}
    recorder = Recorder(tmp_path / "sim.mcap", flush_ms=0, ports=ports)
    recorder.write("/cam/image", PAYLOADS["rgb"], 0, 0.25, 0.2)
    recorder.write("/imu/rate", np.ones(3), 0, 0.5, 0.45)
    recorder.close()
    found = {}
    with (tmp_path / "sim.mcap").open("rb") as file:
        reader = make_reader(file)
        for schema, channel, message in reader.iter_messages():
            found[channel.topic] = (schema, channel, message)
        clock = next(m for m in reader.iter_metadata() if m.name == "edgeloop.clock")
    assert clock.metadata == {"simulated": "true", "origin_unix_ns": "0"}
    schema, channel, message = found["/cam/image"]
    image = protobuf_class(schema.name, schema.data).FromString(message.data)
    assert (
        image.frame_id == "camera_optical"
        and channel.metadata["edgeloop.frame_id"] == "camera_optical"
    )
    assert message.log_time == message.publish_time == 250_000_000  # created, simulated time
    assert (image.timestamp.seconds, image.timestamp.nanos) == (0, 200_000_000)  # sensed
    assert found["/imu/rate"][1].metadata["edgeloop.frame_id"] == "imu"  # the node's id
    # Real time: Unix times, so Foxglove shows the date; reading gives loop times back.
    before = time.time_ns()
    live = Recorder(tmp_path / "live.mcap", flush_ms=0, simulated=False)
    live.write("/imu/rate", np.ones(3), 0, 0.5, 0.45)
    live.close()
    with (tmp_path / "live.mcap").open("rb") as file:
        ((_, _, message),) = make_reader(file).iter_messages()
    assert before - 10**9 <= message.log_time - 500_000_000 <= time.time_ns()
    ((_, created, entry),) = read_recording(tmp_path / "live.mcap")
    assert created == pytest.approx(0.5, abs=1e-6) and entry["sensed"] == pytest.approx(
        0.45, abs=1e-6
    )


@pytest.mark.parametrize("compress", ["jpeg", "png"])
def test_a_port_marked_compressed_is_a_compressed_image(tmp_path, compress):
    yy, xx = np.mgrid[0:48, 0:64]  # smooth, as camera frames are: jpeg keeps it close
    image = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)
    ports = {"/cam/image": PortRecording(frame_id="cam", compress=compress, quality=90)}
    recorder = Recorder(tmp_path / "c.mcap", flush_ms=0, ports=ports)
    recorder.write("/cam/image", image, 0, 0.0, 0.0)
    recorder.write("/cam/gray", image[..., 0], 0, 0.0, 0.0)  # no mark: a plain array
    recorder.write("/cam/image", image[..., :1], 1, 0.1, 0.1)  # another layout: tagged
    recorder.close()
    back = {t: m for t, _, m in read_recording(tmp_path / "c.mcap")}
    got, later = [m for t, _, m in read_recording(tmp_path / "c.mcap") if t == "/cam/image"]
    assert later["exact"] and np.array_equal(later["value"], image[..., :1])
    assert got["value"].shape == image.shape and got["value"].dtype == np.uint8
    if compress == "png":
        assert got["exact"] and np.array_equal(got["value"], image)
    else:
        assert not got["exact"] and np.abs(got["value"].astype(float) - image).mean() < 3
    assert back["/cam/gray"]["exact"] and np.array_equal(back["/cam/gray"]["value"], image[..., 0])
    size = (tmp_path / "c.mcap").stat().st_size
    assert size < image.nbytes * 2  # the colour frame went compressed, the gray one raw


def test_recordings_written_before_typed_messages_still_read(tmp_path):
    """A file as edgeloop 0.2 wrote it: schemaless JSON, arrays as lists."""
    from mcap.writer import Writer

    with (tmp_path / "old.mcap").open("wb") as file:
        writer = Writer(file, use_chunking=False)
        writer.start(profile="", library="edgeloop")
        channel = writer.register_channel(topic="/s/obs", message_encoding="json", schema_id=0)
        bodies = [
            {
                "seq": 0,
                "sensed": 0.0,
                "value": {"dtype": "<f4", "shape": [2], "data": [1, "nan"]},
            },
            {"seq": 1, "sensed": 0.02, "value": {"pose": {"bytes": "00ff"}, "v": "-inf"}},
        ]
        for k, body in enumerate(bodies):
            data = json.dumps(body).encode()
            writer.add_message(channel, log_time=k * 20_000_000, data=data, publish_time=0)
        writer.add_metadata("edgeloop.run", {"graph": "loop.yaml", "simulated": "True"})
        writer.finish()
    back = list(read_recording(tmp_path / "old.mcap"))
    assert [t for _, t, _ in back] == [0.0, 0.02]
    first, second = back[0][2], back[1][2]
    assert first["value"].dtype == np.float32 and first["value"][0] == 1
    assert np.isnan(first["value"][1])
    assert second["value"] == {"pose": b"\x00\xff", "v": float("-inf")} and second["seq"] == 1


KINDS_GRAPH = """
name: kinds
nodes:
  - id: camera
    type: test.frames
    rate_hz: 10
    record: {depth: {image: mono, frame_id: depth_optical}}
  - id: mean
    type: test.mean
    inputs: {image: camera/image}
    record: {copy: {compress: COMPRESS}}
"""


@pytest.mark.parametrize("compress", ["png", "jpeg"])
def test_replay_is_bit_exact_on_images_and_typed_arrays(tmp_path, compress):
    shutil.copy(Path(__file__).parents[1] / "kinds_plugin.py", tmp_path)
    (tmp_path / "kinds.yaml").write_text(KINDS_GRAPH.replace("COMPRESS", compress))
    plugin = ("--plugin", "kinds_plugin")
    made = edgeloop_cli(
        tmp_path, "run", "kinds.yaml", *plugin, "--sim", "--duration", "1", "--record", "k.mcap"
    )
    assert made.returncode == 0, made.stderr
    topics = {t: m["value"] for t, _, m in read_recording(tmp_path / "k.mcap")}
    assert topics["/camera/depth"].dtype == np.uint16 and topics["/camera/depth"].shape == (24, 32)
    replay = edgeloop_cli(tmp_path, "replay", "k.mcap", "--graph", "kinds.yaml", *plugin)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "played back camera" in replay.stdout and "bit-exact (nothing replaced)" in replay.stdout
    for topic in ("/mean/copy", "/mean/mean"):  # recorded, replayed, identical
        assert re.search(topic + r"\s+│\s+10\s+│\s+10\s+│\s+10\s", replay.stdout), topic
    info = edgeloop_cli(tmp_path, "recording", "info", "k.mcap")
    assert info.returncode == 0, info.stderr
    assert "foxglove.RawImage" in info.stdout and "foxglove.CompressedImage" in info.stdout


def test_a_record_entry_for_a_port_the_node_has_not_is_a_clear_error(tmp_path):
    shutil.copy(Path(__file__).parents[1] / "kinds_plugin.py", tmp_path)
    graph = KINDS_GRAPH.replace("{depth: {image: mono", "{dpeth: {image: mono")
    (tmp_path / "kinds.yaml").write_text(graph.replace("COMPRESS", "jpeg"))
    (tmp_path / "lossy.yaml").write_text(KINDS_GRAPH.replace("COMPRESS", "gif"))
    typo = edgeloop_cli(tmp_path, "validate", "kinds.yaml", "--plugin", "kinds_plugin")
    assert typo.returncode != 0 and "node 'camera' has no output 'dpeth' to record" in typo.stderr
    assert "depth" in typo.stderr and "kinds.yaml" in typo.stderr  # the close match, the file
    gif = edgeloop_cli(tmp_path, "validate", "lossy.yaml", "--plugin", "kinds_plugin")
    assert gif.returncode != 0 and "compress" in gif.stderr and "'jpeg'" in gif.stderr
    assert "Traceback" not in typo.stderr + gif.stderr
