"""Shared memory a same-user peer cannot crash (issue 14, item 5), with real processes,
real files and real sockets.

Before: a peer that truncated a slot file after its notice killed the receiver with
SIGBUS, and a hardlink or another edge's live slot named in a notice was mapped.
Now a slot is a sealed memfd whose descriptor the receiver's own sender hands over;
a notice is only a name looked up among those. The peer here speaks the slot
protocol by hand, so it can hand over anything under any name.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes.security import SLOT_SEALS
from edgeloop.runtime.processes.transport import (
    _HANDOVER,
    _NOTICE,
    _SIZE,
    _TOKEN_BYTES,
    SEALED_MEMORY,
    Receiver,
    Sender,
)
from edgeloop.runtime.processes.wire import MAGIC, encode

pytestmark = pytest.mark.skipif(not SEALED_MEMORY, reason="sealed memfds are Linux only")

SHM_DIR = Path("/dev/shm")
SIZE = 64 * 1024
NOBODY = 65534


class HandMadeSender:
    """A peer bound at a receiver's endpoint that speaks the slot protocol by hand."""

    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)
        self.prefix = f"edgeloop-{os.getpid()}-{os.urandom(4).hex()}"
        self.channel: socket.socket | None = None

    def take_offer(self, timeout_s: float = 10) -> tuple[bytes, str]:
        """The receiver's token and channel name, from its first frames."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.socket.poll(100):
                frame = self.socket.recv()
                if frame[:1] == b"O":
                    token = frame[1 : 1 + _TOKEN_BYTES]
                    return token, frame[1 + _TOKEN_BYTES :].decode()
        raise AssertionError("the receiver never offered its channel")

    def connect_channel(self, token: bytes | None = None) -> None:
        right_token, name = self.take_offer()
        self.channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel.connect("\0" + name)
        self.channel.send(b"H" + (token or right_token) + self.prefix.encode())

    def hand_over(self, fd: int, size: int, name: str, index: int = 0) -> None:
        head = b"S" + _HANDOVER.pack(index, size) + name.encode()
        socket.send_fds(self.channel, [head], [fd])

    def notice(self, name: str, nbytes: int, index: int = 0, seq: int = 0) -> None:
        head = _NOTICE.pack(seq, 0.0, 0.0, b"|u1 ", 1, index, 1, len(name))
        self.socket.send(MAGIC + b"S" + head + name.encode() + _SIZE.pack(nbytes))

    def send(self, message: Message) -> None:
        self.socket.send_multipart(encode(message))

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.socket.close(linger=0)


def memfd(size: int, fill: int, *, sealed: bool = True) -> int:
    fd = os.memfd_create("edgeloop-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.pwrite(fd, bytes([fill]) * size, 0)
    if sealed:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SLOT_SEALS)
    return fd


def run_receiver(endpoint: str, count: int) -> subprocess.Popen:
    """A receiver in its own process (a SIGBUS shows as its exit status): it reads
    ``count`` messages and holds them all, then reads every byte of each and prints
    what it got and its counters."""
    script = (
        "import json, sys\n"
        "from edgeloop.runtime.processes.transport import Receiver\n"
        f"r = Receiver({endpoint!r})\n"
        "r.hello()\n"
        f"held = [r.recv(10) for _ in range({count})]\n"
        "got = [None if m is None else [m.seq, int(m.data.sum())] for m in held]\n"
        "print(json.dumps({'got': got, 'dropped': r.decoder.dropped,"
        " 'last_error': r.decoder.last_error}))\n"
        "r.close()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(child: subprocess.Popen) -> dict:
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, f"the receiver died ({child.returncode}): {err[-2000:]}"
    return json.loads(out)


def test_the_attack_kills_a_reader_of_a_plain_shared_memory_file(tmp_path):
    """The control: what these tests guard against really is fatal."""
    path = SHM_DIR / f"edgeloop-test-{os.getpid()}-plain"
    path.write_bytes(b"\1" * SIZE)
    script = (
        "import mmap, os, sys\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
        f"m = mmap.mmap(fd, {SIZE})\n"
        f"os.truncate({str(path)!r}, 0)\n"  # any process of the user could do this
        f"print(sum(m[k] for k in range(0, {SIZE}, 4096)))\n"
    )
    try:
        child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    finally:
        path.unlink()
    assert child.returncode == -signal.SIGBUS


def test_no_process_can_shrink_a_slot_a_receiver_holds_and_it_reads_on(tmp_path):
    endpoint = f"ipc://{tmp_path}/edge"
    sender = Sender(endpoint)
    receiver = run_receiver(endpoint, 3)
    try:
        assert sender.wait_for_receiver(20)
        first = sender.buffer(SIZE * 16, np.uint8)
        first[...] = 1
        assert sender.send(Message(first, 0, 0.0, 0.0))
        # Another process of the same user goes for the slot through /proc.
        slot = f"/proc/{os.getpid()}/fd/{sender._slots[0].fd}"
        attack = (
            "import os\n"
            f"fd = os.open({slot!r}, os.O_RDWR)\n"
            f"for shrink in (lambda: os.ftruncate(fd, 0), lambda: os.truncate({slot!r}, 4096)):\n"
            "    try:\n"
            "        shrink()\n"
            "        print('shrunk')\n"
            "    except PermissionError:\n"
            "        print('refused')\n"
        )
        attacker = subprocess.run(
            [sys.executable, "-c", attack], capture_output=True, text=True, timeout=60
        )
        assert attacker.stdout.split() == ["refused", "refused"], attacker.stderr
        for seq in (1, 2):
            assert sender.send(Message(np.full(SIZE * 4, seq, np.uint8), seq, 0.0, 0.0))
        report = finish(receiver)
        assert sender.shared == 3
    finally:
        receiver.kill()
        sender.close()
    assert report["got"] == [[0, SIZE * 16], [1, SIZE * 4], [2, SIZE * 8]]
    assert report["dropped"] == {}


def test_a_shrinkable_file_is_refused_and_truncating_it_after_the_notice_harms_nothing(
    tmp_path,
):
    endpoint = f"ipc://{tmp_path}/edge"
    peer = HandMadeSender(endpoint)
    receiver = run_receiver(endpoint, 3)
    unsealed = memfd(SIZE, 1, sealed=False)
    good = memfd(SIZE, 2)
    try:
        peer.connect_channel()
        peer.hand_over(unsealed, SIZE, f"{peer.prefix}-0")
        peer.notice(f"{peer.prefix}-0", SIZE, seq=0)
        os.ftruncate(unsealed, 0)  # after the notice, before the receiver reads it
        peer.send(Message(np.full(8, 3, np.uint8), 1, 0.0, 0.0))
        peer.hand_over(good, SIZE, f"{peer.prefix}-1", index=1)
        peer.notice(f"{peer.prefix}-1", SIZE, index=1, seq=2)
        report = finish(receiver)
    finally:
        receiver.kill()
        peer.close()
        os.close(unsealed)
        os.close(good)
    assert report["got"] == [None, [1, 24], [2, 2 * SIZE]]  # it reads on
    assert report["dropped"] == {"slot": 1, "notice": 1}


def plain_file(links: int) -> int:
    path = SHM_DIR / f"edgeloop-test-{os.getpid()}-{links}"
    path.write_bytes(b"\0" * SIZE)
    fd = os.open(path, os.O_RDWR)
    extra = [SHM_DIR / f"{path.name}-{k}" for k in range(1, links)]
    for name in extra:
        os.link(path, name)
    return fd


def cleanup_plain_files() -> None:
    for path in SHM_DIR.glob(f"edgeloop-test-{os.getpid()}-*"):
        path.unlink()


def symlink_fd(tmp_path: Path) -> int:
    target = tmp_path / "target"
    target.write_bytes(b"\0" * SIZE)
    (tmp_path / "link").symlink_to(target)
    return os.open(tmp_path / "link", os.O_PATH | os.O_NOFOLLOW)


def another_users_memfd(tmp_path: Path) -> int:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a memfd to another user")
    fd = memfd(SIZE, 0)
    os.fchown(fd, NOBODY, NOBODY)
    return fd


HAND_OVERS = {
    "an unsealed memfd": (lambda tmp_path: memfd(SIZE, 0, sealed=False), SIZE, "not sealed"),
    "a size other than announced": (lambda tmp_path: memfd(SIZE, 0), 2 * SIZE, "not the"),
    "a file with one name": (lambda tmp_path: plain_file(1), SIZE, "1 name"),
    "a hardlinked file": (lambda tmp_path: plain_file(2), SIZE, "2 name"),
    "a symlink": (symlink_fd, SIZE, "not a regular file"),
    "another user's memfd": (another_users_memfd, SIZE, f"belongs to user {NOBODY}"),
}


@pytest.mark.parametrize("case", list(HAND_OVERS))
def test_a_descriptor_that_is_not_a_sealed_slot_is_refused_and_counted(tmp_path, case):
    make, size, why = HAND_OVERS[case]
    fd = make(tmp_path)
    good = memfd(SIZE, 5)
    endpoint = f"ipc://{tmp_path}/edge"
    peer = HandMadeSender(endpoint)
    receiver = Receiver(endpoint)
    try:
        peer.connect_channel()
        peer.hand_over(fd, size, f"{peer.prefix}-0")
        peer.notice(f"{peer.prefix}-0", SIZE)
        assert receiver.recv(10) is None
        assert receiver.decoder.dropped == {"slot": 1, "notice": 1}
        assert "refused at the hand-over" in receiver.decoder.last_error
        assert why in receiver.decoder.last_error
        peer.hand_over(good, SIZE, f"{peer.prefix}-1", index=1)
        peer.notice(f"{peer.prefix}-1", SIZE, index=1, seq=1)
        message = receiver.recv(10)  # and it reads on
        assert message is not None and np.all(message.data == 5)
    finally:
        receiver.close()
        peer.close()
        os.close(fd)
        os.close(good)
        cleanup_plain_files()


def test_a_slot_named_as_another_senders_is_refused_at_the_hand_over(tmp_path):
    endpoint = f"ipc://{tmp_path}/edge"
    peer = HandMadeSender(endpoint)
    receiver = Receiver(endpoint)
    fd = memfd(SIZE, 0)
    try:
        peer.connect_channel()
        other = f"edgeloop-{os.getpid()}-0badf00d-0"  # a well-formed name, not its prefix
        peer.hand_over(fd, SIZE, other)
        peer.notice(other, SIZE)
        assert receiver.recv(10) is None
        assert receiver.decoder.dropped == {"slot": 1, "notice": 1}
        assert "is not named as sender" in receiver.decoder.last_error
    finally:
        receiver.close()
        peer.close()
        os.close(fd)


def test_a_channel_without_the_receivers_token_is_refused(tmp_path):
    endpoint = f"ipc://{tmp_path}/edge"
    peer = HandMadeSender(endpoint)
    receiver = Receiver(endpoint)
    fd = memfd(SIZE, 0)
    try:
        peer.connect_channel(token=b"\0" * _TOKEN_BYTES)
        peer.hand_over(fd, SIZE, f"{peer.prefix}-0")
        peer.notice(f"{peer.prefix}-0", SIZE)
        assert receiver.recv(10) is None
        assert receiver.decoder.dropped == {"channel": 1, "notice": 1}
    finally:
        receiver.close()
        peer.close()
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_a_channel_from_another_users_process_is_refused_even_with_the_token(tmp_path):
    endpoint = f"ipc://{tmp_path}/edge"
    peer = HandMadeSender(endpoint)
    receiver = Receiver(endpoint)
    token, name = peer.take_offer()
    script = (
        "import fcntl, os, socket, sys\n"  # before setuid: the stdlib may be root's alone
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        f"c.connect('\\0' + {name!r})\n"
        f"c.send(b'H' + {token!r} + {peer.prefix.encode()!r})\n"
        "fd = os.memfd_create('x', os.MFD_ALLOW_SEALING)\n"
        f"os.ftruncate(fd, {SIZE})\n"
        f"fcntl.fcntl(fd, fcntl.F_ADD_SEALS, {SLOT_SEALS})\n"
        f"head = b'S' + {_HANDOVER.pack(0, SIZE)!r} + {peer.prefix.encode()!r} + b'-0'\n"
        "socket.send_fds(c, [head], [fd])\n"
        "print('handed over', flush=True)\n"
        "sys.stdin.read()\n"  # keep the connection until told
    )
    stranger = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert stranger.stdout.readline() == b"handed over\n"
        peer.notice(f"{peer.prefix}-0", SIZE)
        assert receiver.recv(10) is None
        assert receiver.decoder.dropped == {"channel": 1, "notice": 1}
    finally:
        stranger.communicate(b"", timeout=30)
        receiver.close()
        peer.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_a_sender_lends_no_slot_to_a_channel_of_another_user(tmp_path):
    name = f"edgeloop-{os.getpid()}-0badf00d-fd"
    script = (
        "import os, socket, sys\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        f"s.bind('\\0' + {name!r}); s.listen(1)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    stranger = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    endpoint = f"ipc://{tmp_path}/edge"
    sender = Sender(endpoint)
    fake = zmq.Context.instance().socket(zmq.DEALER)
    fake.setsockopt(zmq.LINGER, 0)
    fake.connect(endpoint)
    try:
        assert stranger.stdout.readline() == b"ready\n"
        fake.send(b"O" + b"\1" * _TOKEN_BYTES + name.encode())
        fake.send(b"H")
        assert sender.wait_for_receiver(10)
        assert sender.buffer(SIZE, np.uint8).base is None  # plain memory: no slot was made
        assert not sender._slots
    finally:
        stranger.communicate(b"", timeout=30)
        fake.close(linger=0)
        sender.close()


def test_notices_naming_links_files_or_another_edges_live_slot_are_refused(tmp_path):
    a_sender, a_receiver = Sender(f"ipc://{tmp_path}/a"), Receiver(f"ipc://{tmp_path}/a")
    b_sender, b_receiver = Sender(f"ipc://{tmp_path}/b"), Receiver(f"ipc://{tmp_path}/b")
    stem = f"edgeloop-{os.getpid()}-0badf00d"
    target = SHM_DIR / f"{stem}-0"
    try:
        for sender, receiver in ((a_sender, a_receiver), (b_sender, b_receiver)):
            receiver.hello()
            assert sender.wait_for_receiver(10)
            assert sender.send(Message(np.full(SIZE, 1, np.uint8), 0, 0.0, 0.0))
            held = receiver.recv(10)
            assert held is not None and sender.shared == 1
        target.write_bytes(b"\0" * SIZE)
        os.link(target, SHM_DIR / f"{stem}-1")
        (SHM_DIR / f"{stem}-2").symlink_to(target)
        names = [
            b_sender._slots[0].name,  # another edge's live slot
            f"{stem}-0",  # a file under /dev/shm
            f"{stem}-1",  # a hardlink to it
            f"{stem}-2",  # a symlink to it
            f"{a_sender._prefix}-7",  # this edge's naming, a slot it never made
        ]
        for name in names:
            head = _NOTICE.pack(0, 0.0, 0.0, b"|u1 ", 1, 0, 1, len(name))
            a_sender.socket.send(MAGIC + b"S" + head + name.encode() + _SIZE.pack(SIZE))
            assert a_receiver.recv(10) is None
            assert "was not handed over by this edge's sender" in a_receiver.decoder.last_error
        assert a_receiver.decoder.dropped == {"notice": len(names)}
        assert a_sender.send(Message(np.full(SIZE, 9, np.uint8), 1, 0.0, 0.0))
        message = a_receiver.recv(10)  # and it reads on
        assert message is not None and np.all(message.data == 9) and a_sender.shared == 2
    finally:
        for path in SHM_DIR.glob(f"{stem}-*"):
            path.unlink()
        for end in (a_receiver, b_receiver, a_sender, b_sender):
            end.close()
