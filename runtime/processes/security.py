"""Who a process trusts: peers on other machines (ZeroMQ CURVE keys, loopback by
default) and, on one machine, the shared memory another process hands it.

Each side has a key pair made by ``edgeloop keys NAME`` (``NAME.key`` is public,
``NAME.key_secret`` stays on its machine). The binding side of an edge is the
CURVE server: it accepts only clients whose public keys lie in its ``allowed``
folder, checked by a ZAP authenticator thread. A peer without an allowed key
gets no connection and no data. Binding tcp to anything but loopback without
CURVE is refused: a loop's sockets would be open to the network.

On one machine a receiver maps only memory it can trust not to vanish under it
(issue 14, item 5): a slot is an anonymous memfd that the sender sealed against
shrinking and growing (:func:`seal_slot`), handed over a Unix socket whose peer
is a process of the same user (:func:`peer_uid`), and checked by
:func:`slot_file_problem` before it is mapped. A file that can shrink is never
mapped: reading a page past a shrunk file's end kills the reader with SIGBUS,
and no check made before the read can rule that out for a file that is not
sealed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from edgeloop.runtime.errors import TransportError, UsageError

try:
    import fcntl

    SLOT_SEALS: int | None = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
except (ImportError, AttributeError):  # not Linux: no seals, so no shared memory
    SLOT_SEALS = None
"""The seals every shared-memory slot carries: no one can shrink or grow it, nor
change its seals; None where the platform has no file seals."""

_UCRED = struct.Struct("3i")  # pid, uid, gid


def generate_keys(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Make ``folder/NAME.key`` (public) and ``folder/NAME.key_secret`` (secret, mode 600).

    Raises:
        EdgeloopError: the files exist already (keys are never overwritten).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UsageError(f"bad key name {name!r}", fix="use letters, digits, '.', '_' and '-'")
    folder = Path(folder)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise UsageError(f"{public} or {secret} exists already", fix="choose another name")
    old = os.umask(0o077)  # the secret is never readable by others, not even briefly
    try:
        folder.mkdir(parents=True, exist_ok=True)
        zmq.auth.create_certificates(str(folder), name)
    except OSError as exc:
        raise TransportError(
            f"cannot write keys into {folder}: {exc.strerror}", fix="a writable folder (-o DIR)"
        ) from None
    finally:
        os.umask(old)
    public.chmod(0o644)
    return public, secret


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public_key, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise TransportError(
            f"cannot read the key {path}: {exc}", fix="make one with edgeloop keys NAME"
        ) from None
    if secret and secret_key is None:
        raise TransportError(f"{path} holds no secret key", fix="give the NAME.key_secret file")
    return public_key, secret_key


@dataclass(frozen=True)
class CurveServer:
    """The binding side: its own secret key file and the folder of allowed clients' public keys."""

    secret_key: Path
    allowed: Path

    def apply(self, socket: zmq.Socket) -> ThreadAuthenticator:
        public, secret = _load(Path(self.secret_key), secret=True)
        if not Path(self.allowed).is_dir():
            raise TransportError(
                f"the allowed-keys folder {self.allowed} does not exist",
                fix="copy the public keys (NAME.key) of the peers to accept into it",
            )
        auth = ThreadAuthenticator(socket.context)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.allowed))
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True
        return auth


@dataclass(frozen=True)
class CurveClient:
    """The connecting side: its own secret key file and the server's public key file."""

    secret_key: Path
    server_key: Path

    def apply(self, socket: zmq.Socket) -> None:
        public, secret = _load(Path(self.secret_key), secret=True)
        server, _ = _load(Path(self.server_key), secret=False)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_serverkey = server


def check_bind(endpoint: str, encrypted: bool) -> None:
    """Refuse to bind tcp beyond loopback without CURVE.

    Raises:
        EdgeloopError: e.g. ``tcp://0.0.0.0:5555`` or ``tcp://*:5555`` unencrypted.
    """
    if not endpoint.startswith("tcp://") or encrypted:
        return
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface or a host name
        loopback = False
    if not loopback:
        raise TransportError(
            f"binding {endpoint} without CURVE would open the loop to the network",
            fix="bind tcp://127.0.0.1:PORT, or give keys made with edgeloop keys",
        )


def seal_slot(fd: int) -> None:
    """Seal the memfd ``fd`` with :data:`SLOT_SEALS` (its size is then fixed for good).

    Raises:
        OSError: not a memfd made with ``MFD_ALLOW_SEALING``, or no seals here.
    """
    if SLOT_SEALS is None:
        raise OSError("file seals are not available on this platform")
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SLOT_SEALS)


def peer_uid(connection: socket.socket) -> int:
    """The user id of the process at the other end of a connected Unix socket,
    as the kernel recorded it (SO_PEERCRED), not as the peer claims it."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return _UCRED.unpack(credentials)[1]


def slot_file_problem(fd: int, size: int) -> str | None:
    """Why the file behind ``fd`` must not be mapped as a shared-memory slot of
    ``size`` bytes, or None when it is safe to map.

    Safe means: a regular file of our own user with no name in any file system
    (a memfd: nothing can open it by path, so no link or rename can swap it),
    holding exactly ``size`` bytes, and sealed against shrinking and growing, so
    no process, whatever descriptor or /proc path it holds, can take pages away
    from a mapping of it.
    """
    try:
        info = os.fstat(fd)
    except OSError as exc:
        return f"cannot be examined: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != os.geteuid():
        return f"belongs to user {info.st_uid}, not to this process's user {os.geteuid()}"
    if info.st_nlink != 0:
        return f"has {info.st_nlink} name(s) in a file system; a slot is an anonymous memfd"
    if info.st_size != size:
        return f"holds {info.st_size} bytes, not the {size} announced"
    if SLOT_SEALS is None:
        return "cannot be sealed on this platform"
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        return "cannot be sealed (not a memfd)"
    if seals & SLOT_SEALS != SLOT_SEALS:
        return "is not sealed against shrinking and growing: another process could shrink it"
    return None
