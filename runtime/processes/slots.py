"""Shared-memory slots between processes: sealed memfds, handed over a Unix socket.

A sender's large arrays live in slots (:class:`SlotPool`) that a receiver maps
(:class:`SlotInbox`); :mod:`edgeloop.runtime.processes.transport` sends only a
notice naming the slot over ZeroMQ. Why this and not files in /dev/shm (issue 14,
item 5): a process that reads a mapped page past the end of a file that another
process has shrunk dies of SIGBUS, and for a named file no check closes that
window. An fstat after mapping is stale the moment it returns; any process of the
same user can open the file and ftruncate it at any time; and Python cannot catch
a SIGBUS and go on, nor copy out of a mapping in a way that survives one (reading
with pread instead would cost a copy of every message, the thing shared memory is
for). A seal is kept by the kernel on the file itself: once sealed, no descriptor
and no /proc/PID/fd path lets any process shrink it, so neither the receiver's
mapping nor the sender's can ever lose a page. Memfds also vanish with their last
user, so a sender killed with SIGKILL leaves nothing behind.

A memfd has no name to open, so its descriptor goes to the receiver over a Unix
socket beside the ZeroMQ link (ZeroMQ cannot carry descriptors):

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
channel belongs to the process bound at its endpoint. The receiver listens rather
than the sender so that a slot's descriptor is already queued at the receiver when
its notice arrives, and neither side ever waits on the other. A notice names a
slot, and the receiver looks the name up among the slots its own sender handed
over; it never opens a path. A descriptor refused at the hand-over counts as
``dropped["slot"]`` in the receiver's decoder, a connection refused as
``dropped["channel"]``; neither maps anything.
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
from typing import TYPE_CHECKING

import numpy as np

from edgeloop.runtime.errors import WireError
from edgeloop.runtime.processes.security import (
    SLOT_SEALS,
    peer_uid,
    seal_slot,
    slot_file_problem,
)

if TYPE_CHECKING:
    from edgeloop.runtime.processes.wire import Decoder

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
_HANDOVER = struct.Struct("<IQ")  # slot index, size; then the name, beside the descriptor
_TOKEN_BYTES = 16
# On the channel (sender -> receiver): b"H" + token + prefix first, then b"S" + _HANDOVER + name
# with one descriptor for each slot.
_HELLO = b"H"
_SLOT = b"S"


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
        head = _SLOT + _HANDOVER.pack(self.index, self.size) + self.name.encode()
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


class SlotPool:
    """A sender's slots, and the receivers' channels it hands them over on."""

    def __init__(self) -> None:
        self.prefix = f"edgeloop-{os.getpid()}-{os.urandom(4).hex()}"
        self.slots: list[_Slot] = []
        self.free: list[_Slot] = []
        self.channels: dict[str, socket.socket] = {}  # a receiver's channel name -> connection
        self._replaced = 0

    def take(self, nbytes: int, max_slots: int) -> _Slot | None:
        """A free slot of at least ``nbytes``: reused, or made and handed over while
        under ``max_slots``; None: send inline."""
        fits = [s for s in self.free if s.size >= nbytes]
        if fits:
            slot = min(fits, key=lambda s: s.size)
            self.free.remove(slot)
            return slot
        size = max(4096, 1 << (nbytes - 1).bit_length())  # a power of two: reusable
        if len(self.slots) < max_slots:
            try:
                slot = _Slot(f"{self.prefix}-{len(self.slots)}", size, len(self.slots))
            except OSError:  # memory short: the message goes inline
                return None
            self.slots.append(slot)
            return self._hand_over(slot)
        if self.free:  # none large enough: replace the smallest free one
            old = min(self.free, key=lambda s: s.size)
            self.free.remove(old)
            old.close()
            self._replaced += 1
            try:
                slot = _Slot(f"{self.prefix}-{old.index}r{self._replaced}", size, old.index)
            except OSError:  # the index stays taken by the closed slot: one slot fewer
                self.slots[old.index] = old
                old.generation = (old.generation + 1) & 0xFFFFFFFF
                return None
            self.slots[old.index] = slot
            return self._hand_over(slot)
        return None

    def release(self, index: int, generation: int) -> None:
        """A receiver is done with slot ``index`` as of ``generation``: free it again."""
        if index < len(self.slots):
            slot = self.slots[index]
            if slot.generation == generation and slot not in self.free:
                self.free.append(slot)

    def _hand_over(self, slot: _Slot) -> _Slot | None:
        """Send a new slot's descriptor to every receiver's channel, before its first
        notice; None (the slot kept free) when no channel took it."""
        for name, channel in list(self.channels.items()):
            try:
                slot.hand_over(channel)
            except OSError:  # the receiver is gone, or not reading: it gets inline messages
                channel.close()
                del self.channels[name]
        if self.channels:
            return slot
        self.free.append(slot)
        return None

    def open_channel(self, offer: bytes) -> None:
        """Connect to the channel a receiver offered; hand it every slot so far."""
        token, name = offer[:_TOKEN_BYTES], offer[_TOKEN_BYTES:].decode("ascii", "replace")
        if len(token) != _TOKEN_BYTES or not _CHANNEL.fullmatch(name) or name in self.channels:
            return
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            channel.setblocking(False)  # never wait on a receiver: a full backlog is refused
            channel.connect("\0" + name)
            if peer_uid(channel) != os.geteuid():  # another user's socket: lend it nothing
                raise PermissionError(name)
            channel.send(_HELLO + token + self.prefix.encode(), socket.MSG_NOSIGNAL)
            for slot in self.slots:
                if slot.fd >= 0:
                    slot.hand_over(channel)
        except OSError:  # gone, refused or not ours: its large messages travel inline
            channel.close()
            return
        self.channels[name] = channel

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()
        for slot in self.slots:
            slot.close()
        self.slots.clear()
        self.free.clear()


class _Channel:
    """A sender's connection to a receiver: its slots' descriptors arrive here."""

    def __init__(self, connection: socket.socket) -> None:
        self.socket = connection
        self.prefix: str | None = None
        """The sender's slot-name prefix, once it has shown the receiver's token."""
        self.names: dict[int, str] = {}
        """Slot index -> the name of the slot mapped for it."""


class SlotInbox:
    """A receiver's listener, the senders' channels it accepted and the slots mapped
    from them; refusals are counted in ``decoder``.

    Args:
        decoder: The receiver's decoder, whose ``dropped`` and ``last_error`` take
            the refusals.
        listen: Whether to listen at all (False: every message travels inline).
    """

    def __init__(self, decoder: Decoder, *, listen: bool) -> None:
        self.decoder = decoder
        self._maps: dict[str, tuple[int, mmap.mmap]] = {}  # slot name -> (index, mapping)
        self._channels: list[_Channel] = []
        self._refused = ("", "")  # the last slot refused at the hand-over, and why
        self._token = os.urandom(_TOKEN_BYTES)
        self._listener = self._listen() if listen else None

    @staticmethod
    def _listen() -> socket.socket | None:
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

    def offer(self) -> bytes | None:
        """The token and channel name to send the sender (None: no channel)."""
        if self._listener is None:
            return None
        return self._token + self._listener.getsockname()[1:]  # the abstract name, no NUL

    def mapped(self, name: str) -> tuple[int, mmap.mmap]:
        """The index and mapping of the slot ``name`` that this edge's sender handed over.

        Raises:
            WireError: no such slot was handed over, or it was refused.
        """
        slot = self._maps.get(name)
        if slot is None:
            self._take_slots()
            slot = self._maps.get(name)
            if slot is None:  # a path is never opened: links and other edges' slots end here
                if self._refused[0] == name:
                    why = self._refused[1]
                    raise WireError("notice", f"slot {name} was refused at the hand-over: it {why}")
                raise WireError("notice", f"slot {name} was not handed over by this edge's sender")
        return slot

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
                    or data[:1] != _HELLO
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
            or data[:1] != _SLOT
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

    def close(self) -> None:
        for channel in list(self._channels):
            self._close_channel(channel)
        if self._listener is not None:
            self._listener.close()
        for name in list(self._maps):
            self._unmap(name)
