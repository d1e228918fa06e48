"""What a ROS 2 node running rmw_zenoh expects on the wire, without ROS installed.

Follows ros2/rmw_zenoh's ``docs/design.md`` and the code that implements it
(``liveliness_utils.cpp``, ``attachment_helpers.cpp``, ``qos.cpp``; read at the
commits ``docs/ros2.md`` names), for Jazzy (rmw_zenoh 0.2.4 and later), Kilted
and Rolling:

- data key: ``<domain>/<topic without its outer slashes>/<pkg>::msg::dds_::<Name>_/<RIHS01 hash>``;
- every sample carries a 33-byte attachment: int64 sequence number (from 1),
  int64 source timestamp (Unix ns), the length 16 as one byte, the 16-byte
  publisher gid; a ROS subscription drops a sample without it;
- liveliness tokens ``@ros2_lv/<domain>/<zid>/<nid>/<eid>/<NN|MP|MS>/<enclave>/
  <namespace>/<node>[/<topic>/<type>/<hash>/<qos>]``, every ``/`` inside a part
  written ``%``, the QoS as rmw_zenoh writes it (fields equal to its defaults left empty);
- the publisher gid: XXH3-128 of the publisher's token, low half first;
- payloads: CDR with its 4-byte encapsulation header (``plugins/ros2_messages.py``).
"""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

ADMIN_SPACE = "@ros2_lv"
GID_SIZE = 16
DEFAULT_DEPTH = 42  # rmw_zenoh's default history depth; also what depth 0 means
_RELIABILITY = {"reliable": 1, "best_effort": 2}
_DURABILITY = {"transient_local": 1, "volatile": 2}
_KEYED_PREFIX = b"\x0fsequence_number"  # the attachment of rmw_zenoh before 0.2.4


def dds_type_name(ros_type: str) -> str:
    """``sensor_msgs/msg/Image`` as rmw_zenoh names it: ``sensor_msgs::msg::dds_::Image_``."""
    package, kind, name = ros_type.split("/")
    return f"{package}::{kind}::dds_::{name}_"


def data_key(domain_id: int, topic: str, ros_type: str, type_hash: str) -> str:
    """The key expression a topic's samples are put on (inner slashes kept)."""
    name = topic.removeprefix("/").removesuffix("/")
    return f"{domain_id}/{name}/{dds_type_name(ros_type)}/{type_hash}"


def mangle(name: str) -> str:
    """A name as one part of a liveliness token: every ``/`` written ``%``."""
    return name.replace("/", "%")


@dataclass(frozen=True)
class Qos:
    """A topic's quality of service, as much of it as an edgeloop node sets."""

    reliability: Literal["reliable", "best_effort"] = "reliable"
    durability: Literal["volatile", "transient_local"] = "volatile"
    depth: int = 10

    def keyexpr(self) -> str:
        """The QoS part of a token: ``rel:dur:hist,depth:deadline:lifespan:liveliness``,
        each field empty where it equals rmw_zenoh's default (reliable, volatile,
        keep-last 42, infinite durations, automatic liveliness)."""
        reliability = _RELIABILITY[self.reliability]
        durability = _DURABILITY[self.durability]
        depth = self.depth or DEFAULT_DEPTH
        return (
            f"{reliability if reliability != 1 else ''}:"
            f"{durability if durability != 2 else ''}:"
            f",{depth if depth != DEFAULT_DEPTH else ''}:,:,:,,"
        )


def node_token(domain_id: int, zid: str, nid: int, namespace: str, node: str) -> str:
    """The liveliness token of a ROS node (``NN``; the enclave is ``/``)."""
    parts = (ADMIN_SPACE, str(domain_id), zid, str(nid), str(nid), "NN", "%")
    return "/".join((*parts, mangle(namespace), mangle(node)))


def entity_token(
    domain_id: int,
    zid: str,
    nid: int,
    eid: int,
    kind: Literal["MP", "MS"],
    namespace: str,
    node: str,
    topic: str,
    ros_type: str,
    type_hash: str,
    qos: Qos,
) -> str:
    """The liveliness token of a publisher (``MP``) or a subscription (``MS``)."""
    parts = (ADMIN_SPACE, str(domain_id), zid, str(nid), str(eid), kind, "%")
    names = (mangle(namespace), mangle(node), mangle(_qualified(topic)))
    typing = (mangle(dds_type_name(ros_type)), mangle(type_hash), qos.keyexpr())
    return "/".join((*parts, *names, *typing))


def _qualified(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def gid(token: str) -> bytes:
    """A publisher's gid: XXH3-128 of its token, low 64 bits first (as rmw_zenoh)."""
    import xxhash

    return xxhash.xxh3_128_intdigest(token.encode()).to_bytes(GID_SIZE, "little")


def attachment(sequence: int, timestamp_ns: int, publisher_gid: bytes) -> bytes:
    """The 33 bytes rmw_zenoh (0.2.4 and later) reads from every sample."""
    return struct.pack("<qqB", sequence, timestamp_ns, GID_SIZE) + publisher_gid


def keyed_attachment(sequence: int, timestamp_ns: int, publisher_gid: bytes) -> bytes:
    """The attachment of rmw_zenoh 0.2.0-0.2.3 (Jazzy before April 2025): keyed fields."""

    def text(s: str) -> bytes:
        return bytes((len(s),)) + s.encode()

    return b"".join(
        (
            text("sequence_number"),
            struct.pack("<q", sequence),
            text("source_timestamp"),
            struct.pack("<q", timestamp_ns),
            text("source_gid"),
            bytes((GID_SIZE,)),
            publisher_gid,
        )
    )


def read_attachment(data: bytes) -> tuple[int, int, bytes]:
    """``(sequence, timestamp ns, gid)`` of an attachment in either format.

    Raises:
        ValueError: not an rmw_zenoh attachment.
    """
    if data.startswith(_KEYED_PREFIX):
        return _read_keyed(data)
    if len(data) != 17 + GID_SIZE or data[16] != GID_SIZE:
        raise ValueError(f"an attachment of {len(data)} bytes, not the 33 rmw_zenoh writes")
    sequence, timestamp = struct.unpack_from("<qq", data)
    return sequence, timestamp, bytes(data[17:])


def _read_keyed(data: bytes) -> tuple[int, int, bytes]:
    found, at = {}, 0
    try:
        for name in ("sequence_number", "source_timestamp", "source_gid"):
            size = data[at]
            if data[at + 1 : at + 1 + size] != name.encode():
                raise ValueError(f"a keyed attachment without {name} in its place")
            at += 1 + size
            size = 8 if name != "source_gid" else data[at]
            at += name == "source_gid"
            found[name] = bytes(data[at : at + size])
            at += size
    except IndexError:
        raise ValueError("a keyed attachment cut short") from None
    if at != len(data) or len(found["source_gid"]) != GID_SIZE:
        raise ValueError(f"a keyed attachment of {len(data)} bytes, not {at}")
    (sequence,) = struct.unpack("<q", found["sequence_number"])
    (timestamp,) = struct.unpack("<q", found["source_timestamp"])
    return sequence, timestamp, found["source_gid"]


def session_config(mode: str, connect: list[str], listen: list[str]) -> Any:
    """A Zenoh session configured as a ROS 2 process's (timestamps on, no multicast
    scouting: the router at ``connect`` introduces everyone)."""
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", json.dumps(mode))
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("timestamping/enabled", "true")
    if connect:
        config.insert_json5("connect/endpoints", json.dumps(connect))
    if listen:
        config.insert_json5("listen/endpoints", json.dumps(listen))
    return config


class Participant:
    """One Zenoh session shared by the ROS 2 nodes of one process that connect the
    same way, with rmw_zenoh's entity numbering (one counter for nodes and their
    publishers and subscriptions) and one ``NN`` token per ROS node name."""

    _shared: ClassVar[dict[tuple[Any, ...], Participant]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()  # the registry's, and the ids

    def __init__(self, key: tuple[Any, ...], session: Any, domain_id: int) -> None:
        self.key = key
        self.session = session
        self.domain_id = domain_id
        self.zid = str(session.info.zid())
        self._next_id = 0
        self._nodes: dict[tuple[str, str], tuple[int, Any]] = {}
        self._users = 0

    @classmethod
    def join(cls, domain_id: int, mode: str, connect: list[str], listen: list[str]) -> Participant:
        """The shared participant for these settings (opened on first use).

        Raises:
            ConnectionError: Zenoh could not open the session (a bad endpoint, a
                port in use); the message says which.
        """
        import zenoh

        key = (domain_id, mode, tuple(connect), tuple(listen))
        with cls._lock:
            found = cls._shared.get(key)
            if found is None:
                try:
                    session = zenoh.open(session_config(mode, connect, listen))
                except Exception as exc:  # zenoh raises its own ZError
                    where = ", ".join(connect + listen)
                    hint = " (is the router up? ros2 run rmw_zenoh_cpp rmw_zenohd)"
                    raise ConnectionError(
                        f"Zenoh could not open a {mode} session on {where}: "
                        f"{str(exc).split(' at ')[0]}" + (hint if mode == "client" else "")
                    ) from None
                found = cls._shared[key] = cls(key, session, domain_id)
            found._users += 1
        return found

    def entity_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id - 1

    def node(self, namespace: str, name: str) -> int:
        """The node id of ROS node ``namespace/name``, its token declared on first use."""
        with self._lock:
            found = self._nodes.get((namespace, name))
            if found is None:
                nid = self._next_id
                self._next_id += 1
                token = node_token(self.domain_id, self.zid, nid, namespace, name)
                found = (nid, self.session.liveliness().declare_token(token))
                self._nodes[namespace, name] = found
        return found[0]

    def leave(self) -> None:
        """One user fewer; the last one closes the session (its tokens vanish with it)."""
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            self._shared.pop(self.key, None)
        for _, token in self._nodes.values():
            token.undeclare()
        self.session.close()
