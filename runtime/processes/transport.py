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

A slot is a sealed memfd whose descriptor, not its name, goes to the receiver
over a Unix socket beside the ZeroMQ link (:mod:`edgeloop.runtime.processes.slots`
says why, and how the hand-over is guarded). A notice names a slot, and the
receiver looks the name up among the slots its own sender handed over; it never
opens a path. A symlink, a hardlink, a file under /dev/shm or another edge's slot
named in a notice is refused and counted (``dropped["notice"]`` in its decoder).

Where memfds, seals or descriptor passing are missing (not Linux), every
message travels inline. So does a large message sent before a receiver's
channel is up (the first moments of a connection, or after the sender restarted:
it then asks the receiver to offer its channel again), counted in
``inline_fallbacks``. :meth:`Sender.wait_for_receiver` returns once the
receiver's hello has arrived, and the hello comes after its offer.
"""

from __future__ import annotations

import ctypes
import math
import struct
import time
import weakref
from collections import deque
from typing import Any

import numpy as np
import zmq

from edgeloop.runtime.errors import EdgeloopError, TransportError, WireError
from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes.security import CurveClient, CurveServer, check_bind
from edgeloop.runtime.processes.slots import _HANDOVER as _HANDOVER  # tests build hand-overs
from edgeloop.runtime.processes.slots import _NAME, SEALED_MEMORY, SlotInbox, SlotPool, _Slot
from edgeloop.runtime.processes.slots import _TOKEN_BYTES as _TOKEN_BYTES  # and offers
from edgeloop.runtime.processes.wire import (
    DEFAULT_MAX_BYTES,
    DTYPES,
    MAGIC,
    Decoder,
    encode,
)

DEFAULT_THRESHOLD = 64 * 1024
"""Arrays of at least this many bytes go through shared memory (see benchmarks/hop_latency.py)."""

_NOTICE = struct.Struct("<Qdd4sBIIH")  # seq, created, sensed, dtype, ndim, slot, generation, name
_SIZE = struct.Struct("<Q")
_RELEASE = struct.Struct("<II")
_KIND_NOTICE = b"S"
_KIND_RELEASE = b"R"
_KIND_HELLO = b"H"
_KIND_OFFER = b"O"  # receiver -> sender over ZeroMQ: token, then its channel's name
_KIND_ASK = b"Q"  # sender -> receiver over ZeroMQ: offer your channel (again)
_ASK_EVERY_S = 1.0


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
        self._pool = SlotPool()
        self._prefix = self._pool.prefix
        self._loaned: dict[int, _Slot] = {}
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
        if self._pool.slots:
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
            if slot is not None and not (data.flags.c_contiguous and self._pool.channels):
                # a strided view of the loan (copied like any array), or the receiver
                # that held the slot's descriptor is gone: the loan goes back
                self._pool.free.append(slot)
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
                self._pool.free.append(slot)
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
        if not self._pool.channels:  # no receiver could map a slot
            self._ask_for_channel()
            return None
        return self._pool.take(nbytes, self.max_slots)

    @property
    def _slots(self) -> list[_Slot]:
        """The pool's slots (tests look at their descriptors and names)."""
        return self._pool.slots

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
            self._pool.release(*_RELEASE.unpack_from(frame, 1))
        elif kind == _KIND_OFFER:
            if self.threshold is not None:
                self._pool.open_channel(frame[1:])
        elif frame == _KIND_HELLO:
            self._greeted = True
        # anything else: the receiver never sends it; ignore noise

    @property
    def slots_in_use(self) -> int:
        """Slots a receiver still holds (releases that have arrived are counted back)."""
        if self._pool.slots:  # nothing lent out, nothing to come back
            self._read_incoming()
        return len(self._pool.slots) - len(self._pool.free) - len(self._loaned)

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._pool.close()


class Receiver:
    """The receiving end of one edge; bad messages are counted in ``decoder``.

    Args:
        endpoint: The sender's endpoint.
        max_bytes: Largest inline message accepted.
        curve: Keys to reach a sender that requires CURVE.
        context: The ZeroMQ context (default: the process's shared one).
        bind: Bind ``endpoint`` and wait for a sender to connect (an outside
            process sending to a ``zmq.source``) instead of connecting to it. The
            sender then opens with an ask, answered with an offer and a hello.
        deferred_releases: Releases wait in ``pending_releases`` until
            :meth:`send_releases`, for a receiver whose socket one thread reads while
            the arrays are dropped in another (ZeroMQ sockets are not thread-safe).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        curve: CurveClient | None = None,
        context: zmq.Context | None = None,
        bind: bool = False,
        deferred_releases: bool = False,
    ) -> None:
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self._bound = bind
        self.pending_releases: deque[tuple[int, int]] | None = (
            deque() if deferred_releases else None
        )
        if curve is not None:
            curve.apply(self.socket)
        try:
            if bind:
                check_bind(endpoint, encrypted=False)
                self.socket.bind(endpoint)
            else:
                self.socket.connect(endpoint)
        except (zmq.ZMQError, EdgeloopError) as exc:
            self.socket.close(linger=0)
            if isinstance(exc, EdgeloopError):
                raise
            raise TransportError(f"cannot bind {endpoint}: {exc}", fix="another endpoint") from None
        self.decoder = Decoder(max_bytes)
        self._inbox = SlotInbox(self.decoder, listen=curve is None)
        self._closed = False
        if not bind:  # a bound receiver offers when its sender asks
            self._offer()

    def _offer(self) -> None:
        """Tell the sender where to hand its slots over, and the token to show."""
        if self._closed:
            return
        offer = self._inbox.offer()
        if offer is None:
            return
        try:
            self.socket.send(_KIND_OFFER + offer, zmq.NOBLOCK)
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
            if self._bound:  # an outside sender asks first: it may send once greeted
                self.hello()
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
        slot_index, shared = self._inbox.mapped(name)
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

    def hello(self) -> None:
        """Tell the sender this receiver is connected (see :meth:`Sender.wait_for_receiver`)."""
        self.socket.send(_KIND_HELLO)

    def _release(self, index: int, generation: int) -> None:
        if self.pending_releases is not None:
            self.pending_releases.append((index, generation))  # deque appends: any thread
            return
        if not self._closed:
            try:
                self.socket.send(_KIND_RELEASE + _RELEASE.pack(index, generation), zmq.NOBLOCK)
            except zmq.ZMQError:  # the sender is gone: nothing to hand back
                pass

    def send_releases(self) -> None:
        """Send the releases waiting in ``pending_releases`` (from the socket's thread)."""
        pending = self.pending_releases
        while pending:
            index, generation = pending.popleft()
            if not self._closed:
                try:
                    self.socket.send(_KIND_RELEASE + _RELEASE.pack(index, generation), zmq.NOBLOCK)
                except zmq.ZMQError:  # the sender is gone: nothing to hand back
                    pass

    def close(self) -> None:
        self._closed = True
        self.socket.close(linger=0)
        self._inbox.close()
