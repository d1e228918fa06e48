"""Messages between processes: a ZeroMQ socket per edge, shared memory for large arrays.

A :class:`Sender` binds a DEALER socket; the :class:`Receiver` at the other end
connects one. Small messages travel inline in the wire format
(:mod:`edgeloop.runtime.processes.wire`). An array of ``threshold`` bytes or more goes
through a shared-memory slot, and only a small notice crosses the socket:

- a node that asks :meth:`Sender.buffer` for its output array writes straight
  into a slot, and sending it copies nothing;
- an array the node allocated itself is copied into a slot once.

Slots are recycled safely. The receiver's array is a read-only view of the slot,
and the slot goes back to the sender (a release message on the same socket)
only when that array and every view of it are gone, so a reader never sees a
buffer overwritten while it holds it. When every slot is in use the message
travels inline instead (counted as ``inline_fallbacks``); nothing blocks.

Shared memory that no one can take away (issue 14, item 5). A slot is an
anonymous memfd sealed against shrinking and growing, and its descriptor, not
its name, goes to the receiver, over a Unix socket beside the ZeroMQ link
(ZeroMQ cannot carry descriptors):

1. the receiver listens on an abstract Unix socket of a random name and sends
   that name with a random token to its sender as its first frame;
2. the sender connects (to a socket of its own user only), sends the token and
   its slot-name prefix, then each slot's descriptor when it makes the slot,
   always before the slot's first notice;
3. the receiver accepts only a connection of its own user that opens with its
   token, and maps only descriptors that
   :func:`~edgeloop.runtime.processes.security.slot_file_problem` passes: a
   regular file of its user with no name in any file system, of exactly the
   announced size, sealed, and named with that sender's prefix.

The token travels only on the ZeroMQ link the receiver itself connected, so the
channel belongs to the process bound at its endpoint. The receiver listens
rather than the sender so that a slot's descriptor is already queued at the
receiver when its notice arrives, and neither side ever waits on the other.
A notice names a slot, and the receiver looks the name up among the slots its
own sender handed over; it never opens a path. A symlink, a hardlink, a file
under /dev/shm or another edge's slot named in a notice is refused and counted
(``dropped["notice"]`` in its decoder); a descriptor refused at the hand-over
counts as ``dropped["slot"]``, a connection refused as ``dropped["channel"]``.
None of them maps anything.

Why seals and not checks on files: a process that reads a mapped page past the
end of a file that another process has shrunk dies of SIGBUS, and for a file in
/dev/shm no check closes that window. An fstat after mapping is stale the moment
it returns; any process of the same user can open the file and ftruncate it at
any time; and Python cannot catch a SIGBUS and go on, nor copy out of a mapping
in a way that survives one (reading with pread instead would cost a copy of
every message, the thing shared memory is for). A seal is kept by the kernel on
the file itself: once sealed, no descriptor and no /proc/PID/fd path lets any
process shrink it, so neither the receiver's mapping nor the sender's can ever
lose a page. Memfds also vanish with their last user, so a sender killed with
SIGKILL leaves nothing behind.

Where memfds, seals or descriptor passing are missing (not Linux), every
message travels inline. So does a large message sent before a receiver's
channel is up (the first moments of a connection, or after the sender restarted:
it then asks the receiver to offer its channel again), counted in
``inline_fallbacks``. :meth:`Sender.wait_for_receiver` returns once the
receiver's hello has arrived, and the hello comes after its offer.
"""

from __future__ import annotations

import ctypes
import hmac
import math
import mmap
import os
import re
import socket
import struct
import sys
import time
import weakref
from typing import Any

import numpy as np
import zmq

from edgeloop.runtime.errors import EdgeloopError, TransportError, WireError
from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes.security import (
    SLOT_SEALS,
    CurveClient,
    CurveServer,
    check_bind,
    peer_uid,
    seal_slot,
    slot_file_problem,
)
from edgeloop.runtime.processes.wire import (
    DEFAULT_MAX_BYTES,
    DTYPES,
    MAGIC,
    Decoder,
    encode,
)

DEFAULT_THRESHOLD = 64 * 1024
"""Arrays of at least this many bytes go through shared memory (see benchmarks/hop_latency.py)."""

SEALED_MEMORY = (
    sys.platform == "linux"
    and SLOT_SEALS is not None
    and hasattr(os, "memfd_create")
    and hasattr(socket, "send_fds")
)
"""Whether this platform has sealed memfds and descriptor passing; without them
no edge uses shared memory."""

_PREFIX = re.compile(r"edgeloop-\d+-[0-9a-f]{8}")
_NAME = re.compile(r"edgeloop-\d+-[0-9a-f]{8}-\d+(r\d+)*")
_CHANNEL = re.compile(r"edgeloop-\d+-[0-9a-f]{8}-fd")
_NOTICE = struct.Struct("<Qdd4sBIIH")  # seq, created, sensed, dtype, ndim, slot, generation, name
_SIZE = struct.Struct("<Q")
_RELEASE = struct.Struct("<II")
_HANDOVER = struct.Struct("<IQ")  # slot index, size; then the name, beside the descriptor
_TOKEN_BYTES = 16
_KIND_NOTICE = b"S"
_KIND_RELEASE = b"R"
_KIND_HELLO = b"H"
_KIND_OFFER = b"O"  # receiver -> sender over ZeroMQ: token, then its channel's name
_KIND_ASK = b"Q"  # sender -> receiver over ZeroMQ: offer your channel (again)
_ASK_EVERY_S = 1.0
# On the channel (sender -> receiver): b"H" + token + prefix first, then b"S" + _HANDOVER + name
# with one descriptor for each slot.


class _Slot:
    """One sealed memfd of ``size`` bytes, mapped by the sender; ``fd`` stays open
    to hand to receivers that connect later."""

    def __init__(self, name: str, size: int, index: int) -> None:
        self.name, self.size, self.index = name, size, index
        self.generation = 0
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            # Reserve the pages now: with memory short, a plain ftruncate succeeds and
            # the first write into the slot kills the process with SIGBUS.
            os.posix_fallocate(self.fd, 0, size)
            seal_slot(self.fd)  # its size is fixed for good: no one can shrink it
            self.map = mmap.mmap(self.fd, size)
        except OSError:
            os.close(self.fd)
            raise
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.frombuffer(self.map, dtype=dtype, count=math.prod(shape)).reshape(shape)

    def hand_over(self, channel: socket.socket) -> None:
        """Send this slot's descriptor to a receiver's channel (raises OSError)."""
        head = _KIND_NOTICE + _HANDOVER.pack(self.index, self.size) + self.name.encode()
        socket.send_fds(channel, [head], [self.fd], socket.MSG_NOSIGNAL)

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            self.map.close()
        except BufferError:  # a loaned array still points here; the OS frees it later
            pass
        os.close(self.fd)
        self.fd = -1


class Sender:
    """The sending end of one edge.

    Args:
        endpoint: Where to bind, e.g. ``ipc:///tmp/edgeloop/cam.ipc`` or
            ``tcp://127.0.0.1:5555``.
        threshold: Arrays of at least this many bytes go through shared memory
            (receivers on another machine need ``threshold=None``: inline only).
        max_slots: Shared-memory slots at most; more in flight travel inline.
        queue: Messages queued for a receiver that has not read them before new
            ones are dropped (sending never blocks a loop).
        curve: Encrypt and accept only clients with allowed keys (for tcp between
            machines; shared memory is then off). Without it, tcp binds only to loopback.
        context: The ZeroMQ context (default: the process's shared one).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        threshold: int | None = DEFAULT_THRESHOLD,
        max_slots: int = 8,
        queue: int = 100,
        curve: CurveServer | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        check_bind(endpoint, encrypted=curve is not None)
        # an authenticated peer is on another machine: no shared memory
        shared = curve is None and SEALED_MEMORY
        self.threshold = threshold if shared else None
        self.max_slots = max_slots
        self._prefix = f"edgeloop-{os.getpid()}-{os.urandom(4).hex()}"
        self._slots: list[_Slot] = []
        self._free: list[_Slot] = []
        self._loaned: dict[int, _Slot] = {}
        self._channels: dict[str, socket.socket] = {}  # a receiver's channel name -> connection
        self._replaced = 0
        self._asked = -math.inf
        self._greeted = False
        self._auth = None
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, queue)
        try:
            self._auth = curve.apply(self.socket) if curve is not None else None
            self.socket.bind(endpoint)
        except (zmq.ZMQError, EdgeloopError) as exc:
            self.close()
            if isinstance(exc, EdgeloopError):
                raise
            raise TransportError(f"cannot bind {endpoint}: {exc}", fix="another endpoint") from None
        self.sent = 0
        self.dropped = 0
        """Messages dropped because no receiver was connected or its queue was full."""
        self.shared = 0
        """Messages sent through shared memory."""
        self.copies = 0
        """Arrays copied into a slot (a node's own arrays; loaned buffers need none)."""
        self.inline_fallbacks = 0
        """Large arrays sent inline: every slot was in use, or no receiver's channel was up."""
        self.bytes = 0
        """Bytes sent: the frames of inline messages, the arrays of shared ones."""

    def buffer(self, shape: tuple[int, ...] | int, dtype: Any = np.float32) -> np.ndarray:
        """A writable array in a shared-memory slot: fill it and :meth:`send` it to
        pass it on with no copy. Falls back to an ordinary array when no slot is free."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dtype = np.dtype(dtype)
        if self.threshold is None:  # no shared memory on this edge (a remote receiver)
            return np.empty(shape, dtype)
        slot = self._slot(math.prod(shape) * dtype.itemsize)
        if slot is None:
            return np.empty(shape, dtype)
        array = slot.array(shape, dtype)
        self._loaned[slot.address] = slot
        return array

    def send(self, message: Message) -> bool:
        """Send a message (large arrays through shared memory) without ever blocking.

        Returns:
            False when it was dropped (counted in ``dropped``): no receiver is
            connected, or the receiver has ``queue`` messages it has not read.
        """
        if self._slots:
            self._read_incoming()
        data = message.data
        loaned = (
            self._loaned.pop(data.__array_interface__["data"][0], None)
            if type(data) is np.ndarray and self._loaned
            else None
        )
        if loaned is not None or (
            self.threshold is not None
            and type(data) is np.ndarray
            and data.nbytes >= self.threshold
            and data.dtype.str in DTYPES
            and data.ndim <= 32
        ):
            slot = loaned
            if slot is not None and not (data.flags.c_contiguous and self._channels):
                # a strided view of the loan (copied like any array), or the receiver
                # that held the slot's descriptor is gone: the loan goes back
                self._free.append(slot)
                slot = None
                if data.flags.c_contiguous:  # ZeroMQ must not send from a slot lent again
                    data = np.array(data)
                    message = Message(data, message.seq, message.created, message.sensed)
            if slot is None:
                slot = self._slot(data.nbytes)
                if slot is not None:
                    slot.array(data.shape, data.dtype)[...] = data  # the one copy
                    self.copies += 1
            if slot is not None:
                return self._send_notice(message, data, slot, loaned=slot is loaned)
            self.inline_fallbacks += 1
        frames = encode(message)
        try:
            self.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        self.bytes += sum(memoryview(f).nbytes for f in frames)
        return True

    def _send_notice(
        self, message: Message, data: np.ndarray, slot: _Slot, *, loaned: bool
    ) -> bool:
        slot.generation = (slot.generation + 1) & 0xFFFFFFFF
        name = slot.name.encode()
        head = _NOTICE.pack(
            message.seq,
            message.created,
            message.sensed,
            data.dtype.str.encode().ljust(4),
            data.ndim,
            slot.index,
            slot.generation,
            len(name),
        )
        shape = b"".join(_SIZE.pack(n) for n in data.shape)
        try:
            self.socket.send(MAGIC + _KIND_NOTICE + head + name + shape, zmq.NOBLOCK, copy=False)
        except zmq.Again:  # never reached the receiver: the slot is the node's or free again
            if loaned:
                self._loaned[slot.address] = slot
            else:
                self._free.append(slot)
            self.dropped += 1
            return False
        self.sent += 1
        self.shared += 1
        self.bytes += data.nbytes
        return True

    def _slot(self, nbytes: int) -> _Slot | None:
        """A free slot of at least ``nbytes`` whose descriptor the receiver has: reused,
        or made and handed over while under ``max_slots``; None: send inline."""
        self._read_incoming()
        if not self._channels:  # no receiver could map a slot
            self._ask_for_channel()
            return None
        fits = [s for s in self._free if s.size >= nbytes]
        if fits:
            slot = min(fits, key=lambda s: s.size)
            self._free.remove(slot)
            return slot
        size = max(4096, 1 << (nbytes - 1).bit_length())  # a power of two: reusable
        if len(self._slots) < self.max_slots:
            try:
                slot = _Slot(f"{self._prefix}-{len(self._slots)}", size, len(self._slots))
            except OSError:  # memory short: the message goes inline
                return None
            self._slots.append(slot)
            return self._hand_over(slot)
        if self._free:  # none large enough: replace the smallest free one
            old = min(self._free, key=lambda s: s.size)
            self._free.remove(old)
            old.close()
            self._replaced += 1
            try:
                slot = _Slot(f"{self._prefix}-{old.index}r{self._replaced}", size, old.index)
            except OSError:  # the index stays taken by the closed slot: one slot fewer
                self._slots[old.index] = old
                old.generation = (old.generation + 1) & 0xFFFFFFFF
                return None
            self._slots[old.index] = slot
            return self._hand_over(slot)
        return None

    def _hand_over(self, slot: _Slot) -> _Slot | None:
        """Send a new slot's descriptor to every receiver's channel, before its first
        notice; None (the slot kept free) when no channel took it."""
        for name, channel in list(self._channels.items()):
            try:
                slot.hand_over(channel)
            except OSError:  # the receiver is gone, or not reading: it gets inline messages
                channel.close()
                del self._channels[name]
        if self._channels:
            return slot
        self._free.append(slot)
        return None

    def _open_channel(self, offer: bytes) -> None:
        """Connect to the channel a receiver offered; hand it every slot so far."""
        token, name = offer[:_TOKEN_BYTES], offer[_TOKEN_BYTES:].decode("ascii", "replace")
        if (
            self.threshold is None
            or len(token) != _TOKEN_BYTES
            or not _CHANNEL.fullmatch(name)
            or name in self._channels
        ):
            return
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            channel.setblocking(False)  # never wait on a receiver: a full backlog is refused
            channel.connect("\0" + name)
            if peer_uid(channel) != os.geteuid():  # another user's socket: lend it nothing
                raise PermissionError(name)
            channel.send(_KIND_HELLO + token + self._prefix.encode(), socket.MSG_NOSIGNAL)
            for slot in self._slots:
                if slot.fd >= 0:
                    slot.hand_over(channel)
        except OSError:  # gone, refused or not ours: its large messages travel inline
            channel.close()
            return
        self._channels[name] = channel

    def _ask_for_channel(self) -> None:
        """Ask the receiver to offer its channel (again, after this sender restarted),
        at most once a second."""
        now = time.monotonic()
        if self.threshold is not None and now - self._asked >= _ASK_EVERY_S:
            self._asked = now
            try:
                self.socket.send(MAGIC + _KIND_ASK, zmq.NOBLOCK)
            except zmq.Again:  # nobody connected yet
                pass

    def wait_for_receiver(self, timeout_s: float) -> bool:
        """Wait until a receiver has said :meth:`Receiver.hello` (sending before a
        receiver is connected drops the message); False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self._greeted:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(max(1, int(left * 1000))):
                return False
            self._on_frame(self.socket.recv())
        return True

    def _read_incoming(self) -> None:
        """Take what the receivers sent: releases, channel offers, hellos."""
        while True:
            try:
                frame = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_frame(frame)

    def _on_frame(self, frame: bytes) -> None:
        kind = frame[:1]
        if kind == _KIND_RELEASE and len(frame) == 1 + _RELEASE.size:
            index, generation = _RELEASE.unpack_from(frame, 1)
            if index < len(self._slots):
                slot = self._slots[index]
                if slot.generation == generation and slot not in self._free:
                    self._free.append(slot)
        elif kind == _KIND_OFFER:
            self._open_channel(frame[1:])
        elif frame == _KIND_HELLO:
            self._greeted = True
        # anything else: the receiver never sends it; ignore noise

    @property
    def slots_in_use(self) -> int:
        """Slots a receiver still holds (releases that have arrived are counted back)."""
        if self._slots:  # nothing lent out, nothing to come back
            self._read_incoming()
        return len(self._slots) - len(self._free) - len(self._loaned)

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for slot in self._slots:
            slot.close()
        self._slots.clear()
        self._free.clear()


class _Channel:
    """A sender's connection to a receiver: its slots' descriptors arrive here."""

    def __init__(self, connection: socket.socket) -> None:
        self.socket = connection
        self.prefix: str | None = None
        """The sender's slot-name prefix, once it has shown the receiver's token."""
        self.names: dict[int, str] = {}
        """Slot index -> the name of the slot mapped for it."""


class Receiver:
    """The receiving end of one edge; bad messages are counted in ``decoder``.

    Args:
        endpoint: The sender's endpoint.
        max_bytes: Largest inline message accepted.
        curve: Keys to reach a sender that requires CURVE.
        context: The ZeroMQ context (default: the process's shared one).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        curve: CurveClient | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self.socket)
        self.socket.connect(endpoint)
        self.decoder = Decoder(max_bytes)
        self._maps: dict[str, tuple[int, mmap.mmap]] = {}  # slot name -> (index, mapping)
        self._channels: list[_Channel] = []
        self._refused = ("", "")  # the last slot refused at the hand-over, and why
        self._token = os.urandom(_TOKEN_BYTES)
        self._listener = None if curve is not None else self._listen()
        self._closed = False
        self._offer()

    def _listen(self) -> socket.socket | None:
        """The abstract Unix socket the sender hands slots over (None: inline only)."""
        if not SEALED_MEMORY:
            return None
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            listener.bind(f"\0edgeloop-{os.getpid()}-{os.urandom(4).hex()}-fd")
            listener.listen(8)
            listener.setblocking(False)
        except OSError:
            listener.close()
            return None
        return listener

    def _offer(self) -> None:
        """Tell the sender where to hand its slots over, and the token to show."""
        if self._listener is None or self._closed:
            return
        name = self._listener.getsockname()[1:]  # the abstract name, without its NUL
        try:
            self.socket.send(_KIND_OFFER + self._token + name, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds, for a bad message, or
        (without a timeout) when the only frame waiting was the sender asking for
        this receiver's channel."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if timeout is not None and not self.socket.poll(int(timeout * 1000)):
            return None
        while True:
            frames = [self.socket.recv(copy=False)]  # cheaper than recv_multipart for one frame
            while frames[-1].more:
                frames.append(self.socket.recv(copy=False))
            head = frames[0].buffer
            tag = bytes(head[: len(MAGIC) + 1]) if len(frames) == 1 else b""
            if tag == MAGIC + _KIND_NOTICE:
                try:
                    message = self._from_notice(head)
                except (WireError, ValueError, OverflowError) as exc:
                    self.decoder.dropped[getattr(exc, "reason", "notice")] += 1
                    self.decoder.last_error = str(exc)
                    return None
                self.decoder.received += 1
                return message
            if tag != MAGIC + _KIND_ASK or len(head) != len(tag):
                return self.decoder.decode(frames)
            self._offer()  # not a message: wait on for one, but never block without a timeout
            left = 0 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self.socket.poll(left):
                return None

    def _from_notice(self, head: memoryview) -> Message:
        start = len(MAGIC) + 1
        if len(head) < start + _NOTICE.size:
            raise WireError("notice", "shared-memory notice too short")
        seq, created, sensed, dtype, ndim, index, generation, name_len = _NOTICE.unpack_from(
            head, start
        )
        at = start + _NOTICE.size
        if len(head) != at + name_len + ndim * _SIZE.size or ndim > 32:
            raise WireError("notice", "shared-memory notice length does not add up")
        name = bytes(head[at : at + name_len]).decode("ascii", errors="replace")
        if not _NAME.fullmatch(name):
            raise WireError("notice", f"not an edgeloop shared-memory name: {name[:40]!r}")
        dtype = dtype.rstrip(b" ").decode("ascii", errors="replace")
        if dtype not in DTYPES:
            raise WireError("dtype", f"dtype {dtype!r} does not travel")
        shape = [_SIZE.unpack_from(head, at + name_len + k * _SIZE.size)[0] for k in range(ndim)]
        for t in (created, sensed):
            if not math.isfinite(t):
                raise WireError("header", "times must be finite")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        slot = self._maps.get(name)
        if slot is None:
            self._take_slots()
            slot = self._maps.get(name)
            if slot is None:  # a path is never opened: links and other edges' slots end here
                if self._refused[0] == name:
                    why = self._refused[1]
                    raise WireError("notice", f"slot {name} was refused at the hand-over: it {why}")
                raise WireError("notice", f"slot {name} was not handed over by this edge's sender")
        slot_index, shared = slot
        if index != slot_index:
            raise WireError("notice", f"slot {name} is slot {slot_index}, not {index}")
        if nbytes > len(shared):
            raise WireError("notice", f"{dtype} {tuple(shape)} is larger than slot {name}")
        # A ctypes view per message: numpy views of it keep it alive, and when the last
        # one is gone the finalizer hands the slot back to the sender.
        holder = (ctypes.c_char * max(nbytes, 1)).from_buffer(shared)
        array = np.frombuffer(holder, dtype=dtype, count=math.prod(shape)).reshape(shape)
        array.flags.writeable = False
        weakref.finalize(holder, self._release, index, generation)
        return Message(array, seq, created, sensed)

    def _take_slots(self) -> None:
        """Accept the sender's connection and map the slots handed over since last time."""
        if self._listener is None:
            return
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # none waiting (BlockingIOError), or out of descriptors
                break
            connection.setblocking(False)
            if peer_uid(connection) != os.geteuid():
                self._refuse("channel", "a process of another user connected to this edge")
                connection.close()
                continue
            self._channels.append(_Channel(connection))
        for channel in list(self._channels):
            while self._take_slot(channel):
                pass

    def _take_slot(self, channel: _Channel) -> bool:
        """Read one message from a channel; False when there is none (or the channel is done)."""
        try:
            data, fds, flags, _ = socket.recv_fds(channel.socket, 1024, 1)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._close_channel(channel)
            return False
        try:
            if not data and not fds:  # the sender closed its end
                self._close_channel(channel)
                return False
            if channel.prefix is None:  # first: the token this receiver sent its sender
                prefix = data[1 + _TOKEN_BYTES :].decode("ascii", "replace")
                if (
                    fds
                    or data[:1] != _KIND_HELLO
                    or not hmac.compare_digest(data[1 : 1 + _TOKEN_BYTES], self._token)
                    or not _PREFIX.fullmatch(prefix)
                ):
                    self._refuse("channel", "a connection that did not show this edge's token")
                    self._close_channel(channel)
                    return False
                channel.prefix = prefix
                return True
            self._map_slot(channel, data, fds, flags)
            return True
        finally:
            for fd in fds:  # a mapping keeps its own descriptor
                os.close(fd)

    def _map_slot(self, channel: _Channel, data: bytes, fds: list[int], flags: int) -> None:
        if (
            flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
            or data[:1] != _KIND_NOTICE
            or len(data) < 1 + _HANDOVER.size
            or len(fds) != 1
        ):
            self._refuse_slot("?", "is not handed over as one name and one descriptor")
            return
        index, size = _HANDOVER.unpack_from(data, 1)
        name = data[1 + _HANDOVER.size :].decode("ascii", "replace")[:80]
        if not _NAME.fullmatch(name) or not name.startswith(f"{channel.prefix}-"):
            self._refuse_slot(name, f"is not named as sender {channel.prefix}'s slots are")
        elif name in self._maps:
            self._refuse_slot(name, "was handed over twice")
        elif (problem := slot_file_problem(fds[0], size)) is not None:
            self._refuse_slot(name, problem)
        else:
            try:
                shared = mmap.mmap(fds[0], size)
            except (OSError, ValueError, OverflowError) as exc:
                self._refuse_slot(name, f"cannot be mapped: {exc}")
                return
            replaced = channel.names.get(index)
            if replaced is not None:  # the sender made a larger slot in its place
                self._unmap(replaced)
            channel.names[index] = name
            self._maps[name] = (index, shared)

    def _refuse_slot(self, name: str, why: str) -> None:
        self._refused = (name, why)
        self._refuse("slot", f"slot {name} {why}")

    def _refuse(self, reason: str, why: str) -> None:
        self.decoder.dropped[reason] += 1
        self.decoder.last_error = why

    def _close_channel(self, channel: _Channel) -> None:
        channel.socket.close()
        self._channels.remove(channel)
        for name in channel.names.values():
            self._unmap(name)

    def _unmap(self, name: str) -> None:
        slot = self._maps.pop(name, None)
        if slot is not None:
            try:
                slot[1].close()
            except BufferError:  # arrays still held by the node; freed with them
                pass

    def hello(self) -> None:
        """Tell the sender this receiver is connected (see :meth:`Sender.wait_for_receiver`)."""
        self.socket.send(_KIND_HELLO)

    def _release(self, index: int, generation: int) -> None:
        if not self._closed:
            try:
                self.socket.send(_KIND_RELEASE + _RELEASE.pack(index, generation), zmq.NOBLOCK)
            except zmq.ZMQError:  # the sender is gone: nothing to hand back
                pass

    def close(self) -> None:
        self._closed = True
        self.socket.close(linger=0)
        for channel in list(self._channels):
            self._close_channel(channel)
        if self._listener is not None:
            self._listener.close()
        for name in list(self._maps):
            self._unmap(name)
