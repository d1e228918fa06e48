"""ROS 2 over Zenoh: ``ros2.publish`` and ``ros2.subscribe`` against a second Zenoh
session standing in for a ROS 2 node running rmw_zenoh (issue 17, part 3).

The wire is checked field by field against ros2/rmw_zenoh's ``docs/design.md``
(commit 99a6a2bd10b949052f4f12c5854825dc005e95a5): the keys and tokens below are
built here by hand from that document, not with the code under test; CDR is read by
``rosbags``' own deserializer; type hashes are compared with values ROS 2 printed.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import numpy as np
import pytest

import edgeloop
from edgeloop.plugins import ros2_messages, ros2_wire
from edgeloop.testing import RecordingSink

zenoh = pytest.importorskip("zenoh")
pytest.importorskip("rosbags")
xxhash = pytest.importorskip("xxhash")

# Type hashes as ROS 2 itself printed or generated them (rosidl, the ros2 CLI):
PRINTED_BY_ROS = {
    # `ros2 topic info -v /image_raw` in ros-perception/image_pipeline
    # image_pipeline/doc/tutorials.rst @ 4d18545; and rosidl_generator_c output
    # (hpmicro/hpm_sdk middleware/microros/kilted/.../image__description.c @ 375f7cb)
    "sensor_msgs/msg/Image": "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",  # noqa: E501
    # rosidl_generator_c output: hpm_sdk (above) imu__description.c, and a user's
    # rosidl build tree (Zuhaib-Saadat/fyp-ros2 build/rtabmap_msgs/... @ 813e480)
    "sensor_msgs/msg/Imu": "RIHS01_7d9a00ff131080897a5ec7e26e315954b8eae3353c3f995c55faf71574000b5b",  # noqa: E501
    # rosidl_generator_c output (hpm_sdk joint_state__description.c); `ros2 topic info
    # --verbose` pasted in janvanhulzen/test_ws_09112025 readme.md @ 613a823
    "sensor_msgs/msg/JointState": "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e",  # noqa: E501
    # the ROS 2 documentation's turtlesim tutorial, `ros2 topic info /turtle1/cmd_vel
    # --verbose` (ros2/ros2_documentation @ b9f58e8); hpm_sdk twist__description.c
    "geometry_msgs/msg/Twist": "RIHS01_9c45bf16fe0983d80e3cfe750d6835843d265a9a6c46bd2e609fcddde6fb8d2a",  # noqa: E501
    # rosidl_generator_c output (hpm_sdk float64_multi_array__description.c)
    "std_msgs/msg/Float64MultiArray": "RIHS01_1025ddc6b9552d191f89ef1a8d2f60f3d373e28b283d8891ddcc974e8c55397f",  # noqa: E501
    # rosidl_generator_c output (hpm_sdk odometry__description.c; micro-ROS/micro_ros_arduino)
    "nav_msgs/msg/Odometry": "RIHS01_3cc97dc7fb7502f8714462c526d369e35b603cfc34d946e3f2eda2766dfec6e0",  # noqa: E501
    # rosidl_generator_c output (hpm_sdk clock__description.c)
    "rosgraph_msgs/msg/Clock": "RIHS01_692f7a66e93a3c83e71765d033b60349ba68023a8c689a79e48078bcb5c58564",  # noqa: E501
    # ros2/rmw_zenoh docs/design.md @ 99a6a2b (its data key example)
    "std_msgs/msg/String": "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18",  # noqa: E501
}


@pytest.mark.parametrize("ros_type", sorted(PRINTED_BY_ROS))
def test_type_hashes_are_those_ros_2_prints(ros_type):
    assert ros2_messages.type_hash(ros_type) == PRINTED_BY_ROS[ros_type]


def test_keys_and_tokens_are_those_of_the_design_document():
    string = "std_msgs/msg/String"
    hashed = PRINTED_BY_ROS[string]
    assert (
        ros2_wire.data_key(0, "/chatter", string, hashed)
        == f"0/chatter/std_msgs::msg::dds_::String_/{hashed}"
    )
    assert ros2_wire.data_key(0, "/robot1/chatter", string, hashed).startswith("0/robot1/chatter/")
    zid = "aac3178e146ba6f1fc6e6a4085e77f21"
    assert (
        ros2_wire.node_token(2, zid, 0, "/", "listener") == f"@ros2_lv/2/{zid}/0/0/NN/%/%/listener"
    )
    listener = ros2_wire.entity_token(
        2, zid, 0, 10, "MS", "/", "listener", "/chatter", string, hashed, ros2_wire.Qos(depth=10)
    )
    assert listener == (
        f"@ros2_lv/2/{zid}/0/10/MS/%/%/listener/%chatter/std_msgs::msg::dds_::String_/"
        f"{hashed}/::,10:,:,:,,"
    )
    talker = ros2_wire.entity_token(
        2,
        "8b20917502ee955ac4476e0266340d5c",
        0,
        10,
        "MP",
        "/",
        "talker",
        "/chatter",
        string,
        hashed,
        ros2_wire.Qos(depth=7),
    )
    assert talker.endswith(
        "/MP/%/%/talker/%chatter/std_msgs::msg::dds_::String_/" + hashed + "/::,7:,:,:,,"
    )
    # QoS fields equal to rmw_zenoh's defaults are left empty (qos.cpp): best effort, depth 1
    # as rclcpp's ClockQoS; transient local; the default depth 42 itself.
    assert ros2_wire.Qos("best_effort", depth=1).keyexpr() == "2::,1:,:,:,,"
    assert ros2_wire.Qos(durability="transient_local", depth=1).keyexpr() == ":1:,1:,:,:,,"
    assert ros2_wire.Qos(depth=42).keyexpr() == ros2_wire.Qos(depth=0).keyexpr() == "::,:,:,:,,"


def test_attachments_in_both_formats_read_back_and_bad_ones_are_refused():
    gid = bytes(range(16))
    current = ros2_wire.attachment(5, 1_700_000_000_123, gid)
    # design.md: 8 bytes sequence number, 8 bytes timestamp (little-endian), 1 byte
    # gid length (16), 16 bytes gid.
    assert current == struct.pack("<qq", 5, 1_700_000_000_123) + b"\x10" + gid
    keyed = ros2_wire.keyed_attachment(5, 1_700_000_000_123, gid)
    assert keyed.startswith(b"\x0fsequence_number") and len(keyed) == 77
    for data in (current, keyed):
        assert ros2_wire.read_attachment(data) == (5, 1_700_000_000_123, gid)
    for bad in (current[:-1], b"", keyed[:-3], b"\x0fsequence_numbex" + keyed[16:]):
        with pytest.raises(ValueError):
            ros2_wire.read_attachment(bad)


PAYLOADS: dict[str, tuple[str, Any]] = {
    "image": (
        "sensor_msgs/msg/Image",
        np.random.default_rng(1).integers(0, 256, (24, 32, 3), np.uint8),
    ),
    "depth": ("sensor_msgs/msg/Image", np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000),
    "imu": (
        "sensor_msgs/msg/Imu",
        {
            "orientation": np.array([0.0, 0.0, 0.6, 0.8]),
            "angular_velocity": np.array([0.1, -0.2, 0.3]),
            "linear_acceleration": np.array([0.0, 0.0, 9.81]),
            "orientation_covariance": np.eye(3).ravel() * 0.01,
            "angular_velocity_covariance": np.zeros(9),
            "linear_acceleration_covariance": np.full(9, 0.5),
        },
    ),
    "joints": (
        "sensor_msgs/msg/JointState",
        {
            "name": ["shoulder", "elbow"],
            "position": np.array([0.5, -1.25]),
            "velocity": np.array([0.0, 2.0]),
            "effort": np.array([]),
        },
    ),
    "twist": ("geometry_msgs/msg/Twist", np.array([0.5, 0.0, 0.0, 0.0, 0.0, -0.25])),
    "grid": ("std_msgs/msg/Float64MultiArray", np.arange(6.0).reshape(2, 3)),
    "odom": (
        "nav_msgs/msg/Odometry",
        {
            "position": np.array([1.0, 2.0, 0.0]),
            "orientation": np.array([0.0, 0.0, 0.0, 1.0]),
            "linear": np.array([0.3, 0.0, 0.0]),
            "angular": np.array([0.0, 0.0, 0.1]),
            "pose_covariance": np.arange(36.0),
            "twist_covariance": np.zeros(36),
            "child_frame_id": "base_link",
        },
    ),
}


class Payloads(edgeloop.Sensor):
    """Every test payload, on a port of its own, each step."""

    outputs = tuple(edgeloop.Port(name) for name in PAYLOADS)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {name: payload for name, (_, payload) in PAYLOADS.items()}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RosSide:
    """The second Zenoh session: a ROS 2 node as rmw_zenoh would be, built by hand.

    It listens (peer mode, loopback), keeps every sample edgeloop publishes under
    ``0/el_out/``, echoes each one's payload to ``el_in`` with an attachment of its
    own, and keeps the liveliness tokens it sees."""

    def __init__(self, port: int) -> None:
        config = ros2_wire.session_config("peer", [], [f"tcp/127.0.0.1:{port}"])
        self.session = zenoh.open(config)
        self.samples: list[tuple[str, bytes, bytes | None]] = []
        self.tokens: set[str] = set()  # every token seen
        self.alive: set[str] = set()  # those not undeclared since
        self._sequence = 0
        self._gid = bytes(range(100, 116))
        self._subscriber = self.session.declare_subscriber("0/el_out/**", self._echo)
        self._clock = self.session.declare_subscriber("0/clock/**", self._keep)
        self._tokens = self.session.liveliness().declare_subscriber(
            "@ros2_lv/0/**", self._token, history=True
        )

    def _token(self, sample: Any) -> None:
        key = str(sample.key_expr)
        self.tokens.add(key)
        if sample.kind == zenoh.SampleKind.DELETE:
            self.alive.discard(key)
        else:
            self.alive.add(key)

    def _keep(self, sample: Any) -> None:
        attachment = sample.attachment.to_bytes() if sample.attachment is not None else None
        self.samples.append((str(sample.key_expr), sample.payload.to_bytes(), attachment))

    def _echo(self, sample: Any) -> None:
        self._keep(sample)
        key = str(sample.key_expr).replace("0/el_out/", "0/el_in/", 1)
        self.put(key, sample.payload.to_bytes())

    def put(self, key: str, payload: bytes) -> None:
        self._sequence += 1
        attachment = struct.pack("<qqB", self._sequence, time.time_ns(), 16) + self._gid
        self.session.put(key, payload, attachment=attachment)

    def close(self) -> None:
        self.session.close()


def graph(port: int) -> edgeloop.LoopGraph:
    link = {"mode": "peer", "connect": [f"tcp/127.0.0.1:{port}"]}
    loop = edgeloop.LoopGraph(name="ros2")
    loop.add_node("source", Payloads, rate_hz=20)
    for name, (ros_type, _) in PAYLOADS.items():
        out = {"topic": f"/el_out/{name}", "type": ros_type, **link, "clock": name == "twist"}
        loop.add_node(f"pub_{name}", "ros2.publish", inputs={"msg": f"source/{name}"}, config=out)
        loop.add_node(
            f"sub_{name}",
            "ros2.subscribe",
            config={"topic": f"/el_in/{name}", "type": ros_type, **link},
        )
    loop.add_node("watch", RecordingSink, inputs={n: f"sub_{n}/msg" for n in PAYLOADS})
    return loop


def test_each_type_goes_out_and_comes_back_through_a_second_zenoh_session():
    port = free_port()
    ros = RosSide(port)
    executor = edgeloop.Executor(graph(port), simulated=False)
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(report=executor.run(120.0)))
    runner.start()
    try:
        watch = None
        deadline = time.monotonic() + 90
        while True:  # readiness: every type came back at least three times
            try:
                watch = executor.node("watch")
                if all(len(watch.values(name)) >= 3 for name in PAYLOADS):
                    break
            except (KeyError, RuntimeError):
                pass  # the loop is still being built
            assert runner.is_alive(), "the loop ended before the messages came back"
            assert time.monotonic() < deadline, "not every type came back within 90 s"
            time.sleep(0.05)
        twist_type = PAYLOADS["twist"][0]
        dds, hashed = "geometry_msgs::msg::dds_::Twist_", PRINTED_BY_ROS[twist_type]
        bad_key = f"0/el_in/twist/{dds}/{hashed}"
        ros.put(bad_key, b"\x00\x01\x00\x00\x01")  # not a Twist: dropped, counted
        while executor.node("sub_twist").ctx.notes.get("dropped") != "undecodable 1":
            assert time.monotonic() < deadline, executor.node("sub_twist").ctx.notes
            time.sleep(0.05)
        peers = {str(zid) for zid in ros.session.info.peers_zid()}
    finally:
        executor.stop()
        runner.join(timeout=60)
        ros.close()
    report = result["report"]
    store = ros2_messages.typestore()
    by_key: dict[str, list[tuple[bytes, bytes | None]]] = {}
    for key, payload, attachment in ros.samples:
        by_key.setdefault(key, []).append((payload, attachment))
    tokens = {tuple(t.split("/")) for t in ros.tokens}
    nodes = [t for t in tokens if t[5] == "NN"]
    assert len(nodes) == 1 and nodes[0][6:] == ("%", "%", "edgeloop") and nodes[0][3] == nodes[0][4]
    zid = nodes[0][2]
    assert zid in peers  # the session's id as Zenoh prints it (hex, leading zeros dropped)
    eids = [t[4] for t in tokens if t[5] != "NN"]
    assert len(eids) == len(set(eids)) == 2 * len(PAYLOADS) + 1  # + the /clock publisher
    for name, (ros_type, payload) in PAYLOADS.items():
        package, kind, type_name = ros_type.split("/")
        dds = f"{package}::{kind}::dds_::{type_name}_"
        hashed = PRINTED_BY_ROS[ros_type]
        key = f"0/el_out/{name}/{dds}/{hashed}"
        assert key in by_key, sorted(by_key)
        publisher = ("@ros2_lv", "0", zid, nodes[0][3])
        token = [t for t in tokens if t[5] == "MP" and t[9] == f"%el_out%{name}"]
        assert len(token) == 1 and token[0][:4] == publisher
        assert token[0][6:] == (
            "%",
            "%",
            "edgeloop",
            f"%el_out%{name}",
            dds,
            hashed,
            "::,10:,:,:,,",
        )
        subscription = [t for t in tokens if t[5] == "MS" and t[9] == f"%el_in%{name}"]
        assert len(subscription) == 1 and subscription[0][12] == "::,10:,:,:,,"
        gid = xxhash.xxh3_128_intdigest("/".join(token[0]).encode()).to_bytes(16, "little")
        sequences = []
        for data, attachment in by_key[key]:
            assert attachment is not None and len(attachment) == 33 and attachment[16] == 16
            sequence, stamp = struct.unpack_from("<qq", attachment)
            assert abs(stamp - time.time_ns()) < 600e9 and attachment[17:] == gid
            sequences.append(sequence)
            message = store.deserialize_cdr(data, ros_type)  # rosbags' own reader
        assert sequences == list(range(1, len(sequences) + 1))
        assert data[:4] == b"\x00\x01\x00\x00"  # CDR, little-endian, with its header
        if hasattr(message, "header"):
            assert message.header.frame_id == f"pub_{name}" and message.header.stamp.sec > 1.6e9
        got = executor.node("watch").values(name)[-1]
        assert same(payload, got), name
    twist_key = f"0/el_out/twist/geometry_msgs::msg::dds_::Twist_/{PRINTED_BY_ROS[twist_type]}"
    twist = store.deserialize_cdr(by_key[twist_key][-1][0], twist_type)
    assert (twist.linear.x, twist.angular.z) == (0.5, -0.25)
    clock_key = (
        f"0/clock/rosgraph_msgs::msg::dds_::Clock_/{PRINTED_BY_ROS['rosgraph_msgs/msg/Clock']}"
    )
    assert clock_key in by_key and len(by_key[clock_key][-1][0]) == 12
    clock_token = [t for t in tokens if t[5] == "MP" and t[9] == "%clock"]
    assert len(clock_token) == 1 and clock_token[0][12] == "2::,1:,:,:,,"
    notes = report.node("sub_twist").notes
    assert notes["dropped"] == "undecodable 1" and int(notes["received"]) >= 2


class ThreeMaps(edgeloop.Sensor):
    """Three grids, one per step, then nothing more (a map published once, updated twice)."""

    outputs = (edgeloop.Port("grid"),)

    def setup(self, ctx: edgeloop.NodeContext) -> None:
        self.sent = 0

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if self.sent == 3:
            return None
        self.sent += 1
        return {"grid": np.full((2, 2), float(self.sent))}


def test_a_transient_local_topic_keeps_its_last_messages_for_a_late_subscriber():
    import zenoh.ext

    port = free_port()
    ros = RosSide(port)
    config = {
        "topic": "/map",
        "type": "std_msgs/msg/Float64MultiArray",
        "durability": "transient_local",
        "depth": 2,
        "mode": "peer",
        "connect": [f"tcp/127.0.0.1:{port}"],
    }
    loop = edgeloop.LoopGraph(name="latched")
    loop.add_node("maps", ThreeMaps, rate_hz=50)
    loop.add_node("map", "ros2.publish", inputs={"msg": "maps/grid"}, config=config)
    executor = edgeloop.Executor(loop, simulated=False)
    runner = threading.Thread(target=executor.run, args=(120.0,))
    runner.start()
    late: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness: all three published
            try:
                if executor.node("map").ctx.notes.get("published") == "3":
                    break
            except (KeyError, RuntimeError):
                pass
            assert time.monotonic() < deadline and runner.is_alive()
            time.sleep(0.02)
        hashed = PRINTED_BY_ROS["std_msgs/msg/Float64MultiArray"]
        key = f"0/map/std_msgs::msg::dds_::Float64MultiArray_/{hashed}"
        history = zenoh.ext.HistoryConfig(detect_late_publishers=True, max_samples=2)
        subscriber = zenoh.ext.declare_advanced_subscriber(  # joins after the last one
            ros.session,
            key,
            lambda s: late.append((s.payload.to_bytes(), s.attachment.to_bytes())),
            history=history,
            subscriber_detection=True,
        )
        while len(late) < 2:
            assert time.monotonic() < deadline, f"the late subscriber got {len(late)}"
            time.sleep(0.02)
        subscriber.undeclare()
    finally:
        executor.stop()
        runner.join(timeout=60)
        ros.close()
    store = ros2_messages.typestore()
    grids = [store.deserialize_cdr(data, "std_msgs/msg/Float64MultiArray").data for data, _ in late]
    assert [g[0] for g in grids] == [2.0, 3.0]  # the last two of three, in order
    assert [struct.unpack_from("<q", a)[0] for _, a in late] == [2, 3]
    token = next(t for t in ros.tokens if "/MP/" in t)
    assert token.endswith("/:1:,2:,:,:,,")  # transient local, depth 2


def test_the_keyed_attachment_of_jazzy_before_0_2_4_is_published_when_asked():
    port = free_port()
    ros = RosSide(port)
    link = {"mode": "peer", "connect": [f"tcp/127.0.0.1:{port}"], "attachment": "keyed"}
    loop = edgeloop.LoopGraph(name="keyed")
    loop.add_node("source", Payloads, rate_hz=50)
    config = {"topic": "/el_out/twist", "type": "geometry_msgs/msg/Twist", **link}
    loop.add_node("twist", "ros2.publish", inputs={"msg": "source/twist"}, config=config)
    executor = edgeloop.Executor(loop, simulated=False)
    runner = threading.Thread(target=executor.run, args=(120.0,))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while len(ros.samples) < 2:  # readiness: samples arrived
            assert time.monotonic() < deadline and runner.is_alive()
            time.sleep(0.02)
    finally:
        executor.stop()
        runner.join(timeout=60)
        ros.close()
    _, _, attachment = ros.samples[1]
    # rmw_zenoh 0.2.0-0.2.3 (attachment_helpers.cpp @ 038b5a4): string keys, each with
    # a length byte, before the sequence number, the timestamp and the 16-byte gid.
    assert attachment[:16] == b"\x0fsequence_number"
    assert (
        attachment[24:41] == b"\x10source_timestamp" and attachment[49:61] == b"\x0asource_gid\x10"
    )
    assert struct.unpack_from("<q", attachment, 16)[0] == 2


def test_closing_undeclares_every_token_and_the_last_one_closes_the_session():
    from edgeloop.plugins.ros2 import Ros2Publish, Ros2Subscribe
    from edgeloop.plugins.ros2_wire import Participant

    port = free_port()
    ros = RosSide(port)
    link = {"mode": "peer", "connect": [f"tcp/127.0.0.1:{port}"]}
    nodes = []
    for cls, topic in ((Ros2Publish, "/el_out/a"), (Ros2Subscribe, "/el_in/a")):
        config = cls.Config(topic=topic, type="geometry_msgs/msg/Twist", clock=True, **link)
        node = cls()
        node.ctx = edgeloop.NodeContext.standalone(topic, config)
        node.config = config
        node.setup(node.ctx)
        nodes.append(node)
    try:
        (participant,) = Participant._shared.values()
        assert participant._users == 3  # one session: the topics, the /clock publisher
        deadline = time.monotonic() + 60
        while len(ros.tokens) < 4:  # readiness: the node, 2 publishers, 1 subscription
            assert time.monotonic() < deadline, ros.tokens
            time.sleep(0.02)
        # A second session on the same endpoint cannot listen where the first does.
        clash = Ros2Subscribe.Config(
            topic="/x",
            type="geometry_msgs/msg/Twist",
            mode="peer",
            connect=[],
            listen=[f"tcp/127.0.0.1:{port}"],
        )
        broken = Ros2Subscribe()
        broken.ctx = edgeloop.NodeContext.standalone("broken", clash)
        broken.config = clash
        with pytest.raises(ConnectionError, match="could not open a peer session"):
            broken.setup(broken.ctx)
        assert participant._users == 3
    finally:
        for node in nodes:
            node.close()
    assert not Participant._shared  # the last one out closed the session
    try:
        while ros.alive:  # every token goes with it: no ghost in the ROS graph
            assert time.monotonic() < deadline, ros.alive
            time.sleep(0.02)
    finally:
        ros.close()
