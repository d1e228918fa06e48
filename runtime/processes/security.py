"""Encryption and authentication between machines: ZeroMQ CURVE keys, and loopback
by default.

Each side has a key pair made by ``edgeloop keys NAME`` (``NAME.key`` is public,
``NAME.key_secret`` stays on its machine). The binding side of an edge is the
CURVE server: it accepts only clients whose public keys lie in its ``allowed``
folder, checked by a ZAP authenticator thread. A peer without an allowed key
gets no connection and no data. Binding tcp to anything but loopback without
CURVE is refused: a loop's sockets would be open to the network.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from edgeloop.runtime.errors import TransportError, UsageError


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
