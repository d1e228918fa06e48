"""The wire format: round trips, zero-copy arrays over real ZeroMQ, and fuzzed frames
that are counted and dropped, never raised past the decoder."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes import control
from edgeloop.runtime.processes.wire import (
    MAGIC,
    MAX_CONTROL_BYTES,
    Decoder,
    WireError,
    decode,
    decode_control,
    encode,
    encode_control,
)

DTYPES = ["<f4", "<f8", ">f8", "<i8", "|u1", "|b1", "<c8", "<i2", "<u4", "<f2"]

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=40),
)
payloads = st.recursive(
    st.one_of(scalars, arrays),
    lambda inner: st.one_of(
        st.dictionaries(st.text(max_size=8), inner, max_size=4), st.lists(inner, max_size=4)
    ),
    max_leaves=12,
)


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        )
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return a == b and type(a) is type(b)


@settings(max_examples=200, deadline=None)
@given(payloads, st.integers(0, 2**40), st.floats(0, 1e6), st.floats(0, 1e6))
def test_every_payload_that_travels_comes_back_the_same(data, seq, created, sensed):
    message = decode(encode(Message(data, seq, created, sensed)))
    assert same(data, message.data)
    assert (message.seq, message.created, message.sensed) == (seq, created, sensed)


@pytest.mark.parametrize("size", [6, 6000])  # one frame, then header and buffer frames
def test_arrays_decode_as_read_only_views_of_the_received_frames(size):
    sent = np.arange(float(size)).reshape(2, -1)
    frames = [bytes(f) for f in encode(Message(sent, 0, 0.0, 0.0))]
    assert len(frames) == (1 if size == 6 else 2)
    array = decode(frames).data
    assert array.base is not None and not array.flags.writeable
    assert np.array_equal(array, sent)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (np.array([object()], dtype=object), "dtype"),
        ({1: 2.0}, "key"),
        ({1.5, 2.5}, "type"),
        (np.array(["a"]), "dtype"),
    ],
)
def test_payloads_that_cannot_travel_are_refused_when_sent(payload, reason):
    with pytest.raises(WireError) as caught:
        encode(Message(payload, 0, 0.0, 0.0))
    assert caught.value.reason == reason


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=80), min_size=0, max_size=4))
def test_random_frames_are_always_a_wire_error_never_a_crash(frames):
    decoder = Decoder()
    assert decoder.decode(frames) is None
    assert sum(decoder.dropped.values()) == 1 and decoder.received == 0


@settings(max_examples=500, deadline=None)
@given(payloads, st.data())
def test_damaged_messages_are_rejected_or_decode_cleanly(data, draw):
    frames = [bytearray(bytes(f)) for f in encode(Message(data, 3, 1.0, 1.0))]
    which = draw.draw(st.integers(0, len(frames) - 1))
    frame = frames[which]
    action = draw.draw(st.sampled_from(["flip", "truncate", "extend", "drop"]))
    if action == "flip" and frame:
        at = draw.draw(st.integers(0, len(frame) - 1))
        frame[at] ^= draw.draw(st.integers(1, 255))
    elif action == "truncate" and frame:
        del frame[draw.draw(st.integers(0, len(frame) - 1)) :]
    elif action == "extend":
        frame.extend(b"\x00" * draw.draw(st.integers(1, 9)))
    else:
        frames.pop(which)
    decoder = Decoder()
    message = decoder.decode([bytes(f) for f in frames])
    assert (message is None) == (sum(decoder.dropped.values()) == 1)


def test_an_oversized_message_is_counted_and_dropped():
    decoder = Decoder(max_bytes=1000)
    assert decoder.decode(encode(Message(np.zeros(200), 0, 0.0, 0.0))) is None
    assert (
        decoder.dropped == {"oversized": 1} and "more than the limit of 1000" in decoder.last_error
    )
    assert decoder.decode(encode(Message(np.zeros(10), 1, 0.0, 0.0))).seq == 1


def test_another_version_or_a_foreign_message_is_named_as_such():
    with pytest.raises(WireError, match="version 2"):
        decode([b"ELW2" + bytes(encode(Message(1.0, 0, 0.0, 0.0))[0])[4:]])
    with pytest.raises(WireError, match="not an edgeloop message"):
        decode([b'{"seq": 1}'])
    assert bytes(encode(Message(1.0, 0, 0.0, 0.0))[0]).startswith(MAGIC)


def test_a_header_that_lies_about_its_buffer_is_rejected():
    head, buffer = encode(Message(np.zeros(8192, np.float32), 0, 0.0, 0.0))  # two frames
    with pytest.raises(WireError, match="needs 32768 bytes, the buffer has 12"):
        decode([head, bytes(buffer)[:12]])
    (small,) = encode(Message(np.zeros(4, np.float32), 0, 0.0, 0.0))  # one frame
    with pytest.raises(WireError, match="needs 16 bytes, the buffer has 12"):
        decode([bytes(small)[:-4]])
    nested = encode(Message({"a": np.zeros(2), "b": b"xy"}, 0, 0.0, 0.0))
    with pytest.raises(WireError, match="not referenced"):
        decode([*nested, b"extra"])


def test_messages_cross_a_real_zeromq_socket_without_copies_and_bad_ones_are_counted(tmp_path):
    context = zmq.Context()
    address = f"ipc://{tmp_path}/wire"
    receiver = context.socket(zmq.PULL)
    receiver.bind(address)
    sender = context.socket(zmq.PUSH)
    sender.connect(address)
    try:
        image = np.random.default_rng(0).random((120, 160, 3)).astype(np.float32)
        sender.send_multipart(encode(Message(image, 7, 2.0, 1.5)), copy=False)
        sender.send_multipart([b"ELW1Jnot json"])
        sender.send_multipart(encode(Message({"pose": np.ones(3), "ok": True}, 8, 3.0, 3.0)))
        decoder = Decoder()
        received = []
        while len(received) + sum(decoder.dropped.values()) < 3:
            assert receiver.poll(5000), "nothing arrived"
            message = decoder.decode(receiver.recv_multipart(copy=False))
            if message is not None:
                received.append(message)
        assert np.array_equal(received[0].data, image) and received[0].sensed == 1.5
        assert received[1].data["ok"] is True and received[1].seq == 8
        assert decoder.dropped == {"header": 1} and decoder.received == 2
    finally:
        sender.close(linger=0)
        receiver.close(linger=0)
        context.term()


@pytest.mark.parametrize(
    "header",
    [
        b'ELW1J{"seq":1' + b"9" * 5000 + b',"created":0,"sensed":0,"data":1}',  # a huge int
        b'ELW1J{"seq":1,"created":1' + b"0" * 400 + b',"sensed":0,"data":1}',
        b'ELW1J{"seq":1,"created":0,"sensed":0,"data":{"@a":0,"dtype":"<f4","shape":[0,'
        + str(2**64).encode()
        + b"]}}",
    ],
)
def test_hostile_headers_are_counted_not_raised(header):
    decoder = Decoder()
    assert decoder.decode([header, b""]) is None and decoder.decode([header]) is None
    assert sum(decoder.dropped.values()) == 2


# -- control messages between the supervisor and its groups ----------------------------------

CONTROL = [
    control.Ready(pid=4242),
    control.Start(epoch_ns=123_456_789, resume_ns=20_000_000),
    control.Idle(due=60_000_000, rank=[3, 0]),
    control.Idle(due=None, rank=None),
    control.Turn(
        time=40_000_000,
        take=[[0, 2], [1]],
        dues={"plant": [60_000_000, 0, 0], "control": None},
        pending=[("plant", [[3]])],
        end=20_000_000_000,
    ),
    control.Turn(time=40_000_000, take=None, dues={}, pending=[], end=1),
    control.Done(reason="duration reached"),
    control.Beat(),
    control.Upstream(group="plant", why="restarted"),
    control.Stop(reason="duration reached"),
    control.Failed(message="node 'x' failed in setup"),
    control.Report(report={"graph": "g", "nodes": []}, links={"out": {}, "in": {}}),
]


@pytest.mark.parametrize("message", CONTROL, ids=lambda m: type(m).__name__)
def test_every_control_message_round_trips_as_its_own_type(message):
    frame = encode_control(message)
    assert frame.startswith(b'{"t":"')
    assert decode_control(frame) == message


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "unknown control message"),
        (b'{"t": "launch"}', "unknown control message 'launch'"),
        (b'{"t": "done"}', "Done.reason: Field required"),
        (
            b'{"t": "turn", "time": "soon", "take": null, "dues": {}, "pending": [], "end": 1}',
            "Turn.time",
        ),
        (
            b'{"t": "turn", "time": 1.5, "take": null, "dues": {}, "pending": [], "end": 1}',
            "Turn.time",
        ),
        (
            b'{"t": "turn", "time": 1, "take": [["a"]], "dues": {}, "pending": [], "end": 1}',
            "Turn.take",
        ),
        (b'{"t": "beat", "extra": 1}', "Beat has no field(s) extra"),
    ],
)
def test_a_malformed_control_message_is_a_wire_error_naming_what_is_wrong(frame, says):
    with pytest.raises(WireError, match="control") as caught:
        decode_control(frame)
    assert says in str(caught.value)
    assert caught.value.reason == "control"


def test_a_group_report_may_be_large_but_other_control_messages_may_not():
    """A world of 256 agents reported 5 MB of series after 15 s: its report came."""
    series = {f"world.latency_ms.robot_{k}": [0.25] * 1200 for k in range(1000)}
    report = control.Report({"nodes": [], "series": series}, {"out": {}, "in": {}})
    frame = encode_control(report)
    assert len(frame) > MAX_CONTROL_BYTES
    assert decode_control(frame) == report
    done = encode_control(control.Done("x" * MAX_CONTROL_BYTES))
    with pytest.raises(WireError, match="control message of 4,194,3") as caught:
        decode_control(done)
    assert caught.value.reason == "oversized"


def test_a_stream_of_like_arrays_decodes_as_each_would_alone():
    """The decoder's shortcut for an array like the last one gives what the full
    decode gives, and anything unlike it (another shape, dtype, a bad time, a flipped
    layout byte) still goes the full way, refused where it is bad."""
    decoder = Decoder()
    messages = [
        Message(np.arange(6.0).reshape(2, 3) + k, k, 0.5 * k, 0.25 * k) for k in range(3)
    ] + [
        Message(np.arange(6.0).reshape(3, 2), 3, 2.0, 1.0),  # another shape
        Message(np.arange(6, dtype=np.float32).reshape(3, 2), 4, 2.5, 1.0),  # another dtype
    ]
    for message in messages:
        got = decoder.decode(encode(message))
        assert got.data.dtype == message.data.dtype and got.data.shape == message.data.shape
        np.testing.assert_array_equal(got.data, message.data)
        assert (got.seq, got.created, got.sensed) == (message.seq, message.created, message.sensed)
    frame = bytearray(encode(messages[-1])[0])
    bad_time = bytearray(frame)
    bad_time[13:21] = struct.pack("<d", float("nan"))  # created, after magic, kind and seq
    assert decoder.decode([bytes(bad_time)]) is None and decoder.dropped["header"] == 1
    flipped = bytearray(frame)
    flipped[29] ^= 0x40  # a dtype byte: '<f4' becomes '|f4', which does not travel
    assert decoder.decode([bytes(flipped)]) is None and decoder.dropped["dtype"] == 1
    assert decoder.received == len(messages)
