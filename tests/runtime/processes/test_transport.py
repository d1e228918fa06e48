"""The transport: inline and shared-memory messages over real ZeroMQ, slots recycled only
when the reader lets go, zero-copy loans, another process, and bad notices dropped.
(Hostile peers against shared memory: tests/reliability/test_shared_memory.py.)"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes.transport import Receiver, Sender
from edgeloop.runtime.processes.wire import MAGIC

SHM_DIR = Path("/dev/shm")


@pytest.fixture
def edge(tmp_path):
    endpoint = f"ipc://{tmp_path}/edge"
    sender = Sender(endpoint, max_slots=2)
    receiver = Receiver(endpoint)
    connect(sender, receiver)
    yield sender, receiver
    receiver.close()
    sender.close()


def connect(sender: Sender, receiver: Receiver) -> None:
    """Wait until the two ends are connected (sending never blocks, so it drops until then)
    and the receiver has offered its channel for slots (its hello comes after the offer)."""
    receiver.hello()
    assert sender.wait_for_receiver(5), "the receiver never said hello"
    deadline = time.monotonic() + 5
    while not sender.send(Message("hello", 0, 0.0, 0.0)):
        assert time.monotonic() < deadline, "the ends never connected"
        time.sleep(0.005)
    assert receiver.recv(5).data == "hello"
    sender.sent = sender.dropped = 0


def wait_released(sender: Sender, held: int) -> None:
    """Wait (at most 5 s) until only ``held`` slots are still out with the receiver."""
    deadline = time.monotonic() + 5
    while sender.slots_in_use > held and time.monotonic() < deadline:
        time.sleep(0.002)
    out = sender.slots_in_use
    assert out <= held, f"{out} slots never came back"


def image(k: float) -> np.ndarray:
    return np.full((64, 64, 8), k, dtype=np.float32)  # 128 KiB: above the threshold


def test_small_messages_travel_inline_and_large_arrays_through_shared_memory(edge):
    sender, receiver = edge
    sender.send(Message({"v": 1.5}, 0, 1.0, 0.5))
    sender.send(Message(image(3.0), 1, 2.0, 1.5))
    small, large = receiver.recv(5), receiver.recv(5)
    assert small.data == {"v": 1.5} and (small.seq, small.sensed) == (0, 0.5)
    assert np.array_equal(large.data, image(3.0)) and (large.seq, large.created) == (1, 2.0)
    assert not large.data.flags.writeable
    assert (sender.sent, sender.shared, sender.copies, sender.dropped) == (2, 1, 1, 0)


def test_a_slot_is_not_reused_while_the_reader_still_holds_a_view_of_it(edge):
    sender, receiver = edge
    sender.send(Message(image(1.0), 0, 0.0, 0.0))
    held = receiver.recv(5).data[3:5]  # a view keeps the whole slot
    for k in range(2, 6):
        sender.send(Message(image(float(k)), k, 0.0, 0.0))
        message = receiver.recv(5)
        assert message.data[0, 0, 0] == k
        del message
        gc.collect()
        wait_released(sender, 1)  # only the held slot stays out
    assert np.all(held == 1.0)  # never overwritten
    assert sender.inline_fallbacks == 0
    del held
    gc.collect()
    wait_released(sender, 0)
    sender.send(Message(image(9.0), 9, 0.0, 0.0))
    assert receiver.recv(5).data[0, 0, 0] == 9.0
    assert sender.shared == 6


def test_when_every_slot_is_held_the_message_travels_inline_instead(edge):
    sender, receiver = edge
    held = []
    for k in range(4):
        sender.send(Message(image(float(k)), k, 0.0, 0.0))
        held.append(receiver.recv(5).data)
    assert [h[0, 0, 0] for h in held] == [0.0, 1.0, 2.0, 3.0]
    assert sender.shared == 2 and sender.inline_fallbacks == 2


def test_a_loaned_output_buffer_is_sent_without_a_copy(edge):
    sender, receiver = edge
    out = sender.buffer((64, 64, 8), np.float32)
    out[...] = 4.0
    sender.send(Message(out, 0, 0.0, 0.0))
    assert np.all(receiver.recv(5).data == 4.0)
    assert (sender.shared, sender.copies) == (1, 0)


def test_an_array_from_another_process_arrives_through_shared_memory(tmp_path):
    endpoint = f"ipc://{tmp_path}/cross"
    receiver = Receiver(endpoint)
    receiver.hello()
    script = (
        "import sys, numpy as np, time\n"
        "from edgeloop.runtime.processes.transport import Sender\n"
        "from edgeloop.runtime.messages import Message\n"
        f"s = Sender({endpoint!r})\n"
        "assert s.wait_for_receiver(20)\n"  # its channel is up: the buffer is a slot
        "out = s.buffer((256, 256), np.float64)\n"
        "out[...] = np.arange(256.0)\n"
        "while not s.send(Message(out, 5, 1.0, 1.0)):\n"  # until connected
        "    time.sleep(0.01)\n"
        "sys.stdin.readline()\n"  # hold the slot until the parent has read it
        "print(s.shared, s.copies, s._prefix)\n"
        "s.close()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        message = receiver.recv(20)
        assert message is not None and message.seq == 5
        assert np.array_equal(message.data[7], np.arange(256.0))
        out, _ = child.communicate("go\n", timeout=20)
    finally:
        child.kill()
        receiver.close()
    shared, copies, prefix = out.split()
    assert (shared, copies) == ("1", "0")
    assert not list(SHM_DIR.glob(f"{prefix}*"))  # the sender removed its slots


@pytest.mark.parametrize(
    "notice",
    [
        MAGIC + b"S" + b"\x00" * 5,
        MAGIC + b"S" + b"\x01" * 200,
    ],
)
def test_bad_notices_are_counted_and_dropped(tmp_path, notice):
    endpoint = f"ipc://{tmp_path}/bad"
    peer = zmq.Context.instance().socket(zmq.DEALER)
    peer.bind(endpoint)
    receiver = Receiver(endpoint)
    try:
        peer.send(notice)
        assert receiver.recv(5) is None
        assert sum(receiver.decoder.dropped.values()) == 1
    finally:
        receiver.close()
        peer.close(linger=0)


def test_a_notice_naming_a_file_outside_edgeloop_slots_is_refused(tmp_path):
    import struct

    endpoint = f"ipc://{tmp_path}/evil"
    peer = zmq.Context.instance().socket(zmq.DEALER)
    peer.bind(endpoint)
    receiver = Receiver(endpoint)
    name = b"../../etc/passwd"
    head = struct.pack("<Qdd4sBIIH", 0, 0.0, 0.0, b"|u1 ", 1, 0, 1, len(name))
    try:
        peer.send(MAGIC + b"S" + head + name + struct.pack("<Q", 16))
        assert receiver.recv(5) is None
        assert "not an edgeloop shared-memory name" in receiver.decoder.last_error
    finally:
        receiver.close()
        peer.close(linger=0)


def test_curve_lets_an_allowed_peer_in_and_refuses_one_without_the_key(tmp_path):
    from edgeloop.runtime.processes.security import CurveClient, CurveServer, generate_keys

    _, server_secret = generate_keys(tmp_path / "server", "board")
    client_public, client_secret = generate_keys(tmp_path / "client", "desk")
    _, stranger_secret = generate_keys(tmp_path / "stranger", "other")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "desk.key").write_bytes(client_public.read_bytes())
    server_public = tmp_path / "server" / "board.key"
    sender = Sender(
        f"tcp://127.0.0.1:{free_port()}",
        curve=CurveServer(server_secret, allowed),
    )
    endpoint = sender.socket.getsockopt_string(zmq.LAST_ENDPOINT)
    friend = Receiver(endpoint, curve=CurveClient(client_secret, server_public))
    stranger = Receiver(endpoint, curve=CurveClient(stranger_secret, server_public))
    plain = Receiver(endpoint)
    try:
        deadline = time.monotonic() + 10
        received = None
        seq = 0
        while received is None and time.monotonic() < deadline:
            sender.send(Message(np.arange(4.0), seq, 0.0, 0.0))  # round-robins to connected peers
            seq += 1
            received = friend.recv(0.1)
        assert received is not None and np.array_equal(received.data, np.arange(4.0))
        for _ in range(5):
            sender.send(Message(np.arange(4.0), seq, 0.0, 0.0))
            seq += 1
        assert stranger.recv(0.5) is None and plain.recv(0.1) is None
        assert sender.threshold is None  # across machines: no shared memory
    finally:
        for receiver in (friend, stranger, plain):
            receiver.close()
        sender.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5999", "tcp://*:5999", "tcp://10.1.2.3:5999"])
def test_binding_beyond_loopback_without_curve_is_refused(endpoint):
    from edgeloop.runtime.errors import EdgeloopError

    with pytest.raises(EdgeloopError, match="without CURVE would open the loop"):
        Sender(endpoint)


def test_keys_are_never_overwritten_and_a_bad_key_file_is_named(tmp_path):
    from edgeloop.runtime.errors import EdgeloopError
    from edgeloop.runtime.processes.security import CurveServer, generate_keys

    generate_keys(tmp_path, "board")
    with pytest.raises(EdgeloopError, match="exists already"):
        generate_keys(tmp_path, "board")
    (tmp_path / "broken.key_secret").write_text("not a key")
    with pytest.raises(EdgeloopError, match=r"broken\.key_secret"):
        Sender(
            f"tcp://127.0.0.1:{free_port()}",
            curve=CurveServer(tmp_path / "broken.key_secret", tmp_path),
        )


def test_sending_never_blocks_a_loop_it_drops_and_counts_instead(tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody"
    sender = Sender(endpoint, queue=4, max_slots=1)
    try:
        assert sender.send(Message(1.0, 0, 0.0, 0.0)) is False  # nobody connected yet
        assert sender.send(Message(image(1.0), 1, 0.0, 0.0)) is False
        assert sender.dropped == 2 and sender.slots_in_use == 0  # the slot came back
        receiver = Receiver(endpoint)
        deadline = time.monotonic() + 5
        while not sender.send(Message(2.0, 2, 0.0, 0.0)) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the connection is up
        results = [sender.send(Message(float(k), k, 0.0, 0.0)) for k in range(3, 200)]
        assert not all(results) and sender.dropped > 2  # the unread queue filled: dropped
        first = receiver.recv(5)
        assert first is not None and first.data == 2.0
        receiver.close()
    finally:
        sender.close()


def test_slots_are_anonymous_memory_so_a_killed_sender_leaves_no_file_behind(tmp_path):
    script = (
        "import numpy as np, os\n"
        "from edgeloop.runtime.processes.transport import Receiver, Sender\n"
        f"s = Sender('ipc://{tmp_path}/killed')\n"
        f"r = Receiver('ipc://{tmp_path}/killed')\n"
        "r.hello()\n"
        "assert s.wait_for_receiver(10)\n"
        "s.buffer((64, 1024), np.float32)\n"  # makes a slot
        "print(s._prefix, os.readlink(f'/proc/self/fd/{s._slots[0].fd}'), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"  # no close, no exit handlers
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    prefix, slot = child.stdout.split(" ", 1)
    assert slot.startswith(f"/memfd:{prefix}-0")  # a memfd: no name to leave behind
    assert not list(SHM_DIR.glob(f"{prefix}*"))


def test_notices_naming_unusable_files_are_counted_and_a_remote_edge_lends_no_memory(tmp_path):
    import os
    import struct

    endpoint = f"ipc://{tmp_path}/hostile"
    peer = zmq.Context.instance().socket(zmq.DEALER)
    peer.bind(endpoint)
    receiver = Receiver(endpoint)
    empty = SHM_DIR / f"edgeloop-{os.getpid()}-0badf00d-0"
    empty.touch()
    link = SHM_DIR / f"edgeloop-{os.getpid()}-0badf00d-1"
    link.symlink_to(empty)
    try:
        for name in (empty.name, link.name):
            head = struct.pack("<Qdd4sBIIH", 0, 0.0, 0.0, b"|u1 ", 1, 0, 1, len(name))
            peer.send(MAGIC + b"S" + head + name.encode() + struct.pack("<Q", 16))
            assert receiver.recv(5) is None
        assert receiver.decoder.dropped["notice"] == 2
        assert "was not handed over by this edge's sender" in receiver.decoder.last_error
    finally:
        receiver.close()
        peer.close(linger=0)
        link.unlink()
        empty.unlink()
    remote = Sender(f"ipc://{tmp_path}/remote", threshold=None)
    try:
        assert not remote.buffer((64, 1024), np.float32).base  # plain memory, not a slot
    finally:
        remote.close()


def test_a_strided_view_of_a_loan_is_copied_and_the_loan_comes_back(edge):
    sender, receiver = edge
    for k in range(4):
        loan = sender.buffer((128, 256), np.float32)
        loan[...] = k
        sender.send(Message(loan.T, k, 0.0, 0.0))  # not contiguous: copied
        assert receiver.recv(5).data[0, 0] == k
        gc.collect()
        wait_released(sender, 0)
    assert sender.inline_fallbacks == 0 and sender.copies == 4


def test_a_restarted_sender_is_offered_the_receivers_channel_again(tmp_path):
    endpoint = f"ipc://{tmp_path}/restart"
    first, receiver = Sender(endpoint), Receiver(endpoint)
    second = None
    try:
        connect(first, receiver)
        first.send(Message(image(1.0), 0, 0.0, 0.0))
        assert receiver.recv(5).data[0, 0, 0] == 1.0 and first.shared == 1
        first.close()
        second = Sender(endpoint)  # the receiver's offer went to the first: it must ask
        deadline = time.monotonic() + 10
        k = 0
        while second.shared < 2 and time.monotonic() < deadline:
            k += 1
            if second.send(Message(image(float(k)), k, 0.0, 0.0)):
                message = receiver.recv(5)  # the ask between messages is no message
                assert message is not None and message.data[0, 0, 0] == k
            else:
                time.sleep(0.01)  # until the receiver has reconnected
        assert second.shared == 2 and second.inline_fallbacks >= 1
        assert receiver.decoder.dropped == {}
    finally:
        receiver.close()
        first.close()
        if second is not None:
            second.close()
