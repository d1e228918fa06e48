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

Notices name a slot file under the shared-memory folder; a receiver opens only
names of the form the senders make, checks the file is large enough, and
validates dtype and shape like any wire message. Bad messages are counted and
dropped by the receiver's :class:`~edgeloop.runtime.processes.wire.Decoder`.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import re
import stat
import struct
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from edgeloop.runtime.errors import EdgeloopError, TransportError, WireError
from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes.security import CurveClient, CurveServer, check_bind
from edgeloop.runtime.processes.wire import (
    DEFAULT_MAX_BYTES,
    DTYPES,
    MAGIC,
    Decoder,
    encode,
)

DEFAULT_THRESHOLD = 64 * 1024
"""Arrays of at least this many bytes go through shared memory (see benchmarks/hop_latency.py)."""

SHM_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
_NAME = re.compile(r"edgeloop-\d+-[0-9a-f]{8}-\d+(r\d+)*")
_NOTICE = struct.Struct("<Qdd4sBIIH")  # seq, created, sensed, dtype, ndim, slot, generation, name
_SIZE = struct.Struct("<Q")
_RELEASE = struct.Struct("<II")
_KIND_NOTICE = b"S"
_KIND_RELEASE = b"R"
_KIND_HELLO = b"H"


class _Slot:
    """One shared-memory file of ``size`` bytes, mapped by the sender."""

    def __init__(self, folder: Path, name: str, size: int, index: int) -> None:
        self.name, self.size, self.index = name, size, index
        self.generation = 0
        self.path = folder / name
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            # Reserve the pages now: on a full /dev/shm a plain ftruncate succeeds and
            # the first write into the slot kills the process with SIGBUS.
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        except OSError:
            self.path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.frombuffer(self.map, dtype=dtype, count=math.prod(shape)).reshape(shape)

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:  # a loaned array still points here; the OS frees it later
            pass
        self.path.unlink(missing_ok=True)


def remove_stale_slots(folder: Path = SHM_DIR) -> int:
    """Delete slot files left by senders that died without closing (a SIGKILL, say):
    those whose process is gone. Returns how many were removed."""
    removed = 0
    for path in folder.glob("edgeloop-*"):
        try:
            if not _NAME.fullmatch(path.name):
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                continue  # only our own regular files
            os.kill(int(path.name.split("-")[1]), 0)
        except ProcessLookupError:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        except (OSError, OverflowError, ValueError):  # alive, gone already, or a silly pid
            pass
    return removed


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


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
        self.threshold = None if curve is not None else threshold
        self.max_slots = max_slots
        self._prefix = f"edgeloop-{os.getpid()}-{os.urandom(4).hex()}"
        self._slots: list[_Slot] = []
        self._paths: list[Path] = []  # every slot file made, removed at close or exit
        weakref.finalize(self, _unlink_all, self._paths)
        remove_stale_slots()
        self._free: list[_Slot] = []
        self._loaned: dict[int, _Slot] = {}
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
        """Large arrays sent inline because every slot was in use."""
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
        self._collect_releases()
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
            if slot is not None and not data.flags.c_contiguous:
                self._free.append(slot)  # a strided view of the loan: copied like any array
                slot = None
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
        """A free slot of at least ``nbytes``: reused, or made while under ``max_slots``."""
        self._collect_releases()
        fits = [s for s in self._free if s.size >= nbytes]
        if fits:
            slot = min(fits, key=lambda s: s.size)
            self._free.remove(slot)
            return slot
        if len(self._slots) < self.max_slots:
            size = max(4096, 1 << (nbytes - 1).bit_length())  # a power of two: reusable
            try:
                slot = _Slot(SHM_DIR, f"{self._prefix}-{len(self._slots)}", size, len(self._slots))
            except OSError:  # shared memory full or unavailable: the message goes inline
                return None
            self._slots.append(slot)
            self._paths.append(slot.path)
            return slot
        if self._free:  # none large enough: replace the smallest free one
            old = min(self._free, key=lambda s: s.size)
            self._free.remove(old)
            old.close()
            size = max(4096, 1 << (nbytes - 1).bit_length())
            try:
                slot = _Slot(SHM_DIR, f"{old.name}r{old.generation}", size, old.index)
            except OSError:
                self._slots[old.index] = old
                old.generation = (old.generation + 1) & 0xFFFFFFFF
                return None
            self._slots[old.index] = slot
            self._paths.append(slot.path)
            return slot
        return None

    def wait_for_receiver(self, timeout_s: float) -> bool:
        """Wait until a receiver has said :meth:`Receiver.hello` (sending before a
        receiver is connected drops the message); False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(max(1, int(left * 1000))):
                return False
            if self.socket.recv() == _KIND_HELLO:
                return True

    def _collect_releases(self) -> None:
        if not self._slots:  # nothing lent out, nothing to come back
            return
        while True:
            try:
                frame = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frame) != 1 + _RELEASE.size or frame[:1] != _KIND_RELEASE:
                continue  # the receiver never sends anything else; ignore noise
            index, generation = _RELEASE.unpack_from(frame, 1)
            if index < len(self._slots):
                slot = self._slots[index]
                if slot.generation == generation and slot not in self._free:
                    self._free.append(slot)

    @property
    def slots_in_use(self) -> int:
        """Slots a receiver still holds (releases that have arrived are counted back)."""
        self._collect_releases()
        return len(self._slots) - len(self._free) - len(self._loaned)

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        for slot in self._slots:
            slot.close()
        self._slots.clear()
        self._free.clear()


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
        self._maps: dict[str, mmap.mmap] = {}
        self._closed = False

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds (or for a bad message)."""
        if timeout is not None and not self.socket.poll(int(timeout * 1000)):
            return None
        frames = [self.socket.recv(copy=False)]  # cheaper than recv_multipart for one frame
        while frames[-1].more:
            frames.append(self.socket.recv(copy=False))
        head = frames[0].buffer
        if len(frames) == 1 and bytes(head[: len(MAGIC) + 1]) == MAGIC + _KIND_NOTICE:
            try:
                message = self._from_notice(head)
            except (WireError, ValueError, OverflowError) as exc:
                self.decoder.dropped[getattr(exc, "reason", "notice")] += 1
                self.decoder.last_error = str(exc)
                return None
            self.decoder.received += 1
            return message
        return self.decoder.decode(frames)

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
        shared = self._map(name)
        if nbytes > len(shared):
            raise WireError("notice", f"{dtype} {tuple(shape)} is larger than slot {name}")
        # A ctypes view per message: numpy views of it keep it alive, and when the last
        # one is gone the finalizer hands the slot back to the sender.
        holder = (ctypes.c_char * max(nbytes, 1)).from_buffer(shared)
        array = np.frombuffer(holder, dtype=dtype, count=math.prod(shape)).reshape(shape)
        array.flags.writeable = False
        weakref.finalize(holder, self._release, index, generation)
        return Message(array, seq, created, sensed)

    def _map(self, name: str) -> mmap.mmap:
        shared = self._maps.get(name)
        if shared is None:
            try:  # ctypes views need a writable map; never follow a link
                fd = os.open(SHM_DIR / name, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
            except OSError as exc:
                raise WireError("notice", f"cannot open slot {name}: {exc.strerror}") from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                    raise WireError("notice", f"slot {name} is not our own regular file")
                if info.st_size == 0:
                    raise WireError("notice", f"slot {name} is empty")
                shared = mmap.mmap(fd, info.st_size)
            except OSError as exc:
                raise WireError("notice", f"cannot map slot {name}: {exc}") from None
            finally:
                os.close(fd)
            self._maps[name] = shared
        return shared

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
        for shared in self._maps.values():
            try:
                shared.close()
            except BufferError:  # arrays still held by the node; freed with them
                pass
        self._maps.clear()
