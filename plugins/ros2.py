"""ROS 2 topics in and out of a loop over Zenoh: ``ros2.subscribe`` and ``ros2.publish``.

They speak rmw_zenoh's wire format (``plugins/ros2_wire.py``) with CDR payloads
(``plugins/ros2_messages.py``), so ROS 2 nodes running ``rmw_zenoh_cpp`` (Jazzy
and later) on the same robot see edgeloop as one more ROS node: its topics in
``ros2 topic list``, its messages in their callbacks. Nothing of ROS is installed
on the edgeloop side: ``pip install 'edgeloop[ros2]'`` (eclipse-zenoh, rosbags,
xxhash). ``docs/ros2.md`` says what was verified, and against what.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeloop.plugins import ros2_messages, ros2_wire
from edgeloop.plugins.ros2_wire import Participant, Qos
from edgeloop.runtime.errors import MissingDependencyError
from edgeloop.runtime.messages import payload_is_finite
from edgeloop.runtime.node import Actuator, NodeContext, Port, Sensor

_log = logging.getLogger("edgeloop.ros2")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOPIC = re.compile(r"/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
_PLAUSIBLE_S = 60.0  # a header stamp further from now is not this clock's: stamped on arrival


def _modules() -> None:
    try:
        import rosbags  # noqa: F401
        import xxhash  # noqa: F401
        import zenoh  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "eclipse-zenoh", "ros2", "ros2 nodes") from None


@dataclass(frozen=True)
class Ros2Config:
    topic: str
    """The ROS 2 topic, e.g. ``/cmd_vel`` (relative names are taken from the root)."""
    type: str
    """Its message type: one of ``plugins/ros2_messages.py``'s (``sensor_msgs/msg/Image``,
    ``sensor_msgs/msg/Imu``, ``sensor_msgs/msg/JointState``, ``geometry_msgs/msg/Twist``,
    ``std_msgs/msg/Float64MultiArray``, ``nav_msgs/msg/Odometry``, ``rosgraph_msgs/msg/Clock``)."""
    node_name: str = "edgeloop"
    """The ROS node this topic belongs to (``ros2 node list`` shows it in ``namespace``)."""
    namespace: str = "/"
    """The ROS namespace of that node."""
    domain_id: int | None = None
    """ROS_DOMAIN_ID; default the environment's, else 0."""
    connect: list[str] = field(default_factory=lambda: ["tcp/localhost:7447"])
    """Zenoh endpoints to connect to: the rmw_zenoh router (``ros2 run rmw_zenoh_cpp
    rmw_zenohd``) by default."""
    listen: list[str] = field(default_factory=list)
    """Zenoh endpoints to listen on (peer mode)."""
    mode: Literal["client", "peer"] = "client"
    """``client``: everything through the router (it relays for clients); ``peer``:
    direct links, as ROS nodes make among themselves."""
    reliability: Literal["reliable", "best_effort"] = "reliable"
    """As ROS QoS: ``best_effort`` matches sensor-data subscribers (Zenoh delivers to both)."""
    durability: Literal["volatile", "transient_local"] = "volatile"
    """``transient_local``: a publisher keeps its last ``depth`` messages for subscribers
    that join later (``/map``, ``/robot_description``); a subscription asks for them."""
    depth: int = 10
    """History depth (advertised in the liveliness token; a queue for ``ros2.subscribe``)."""
    frame_id: str = ""
    """``header.frame_id`` of published messages; default the node's id."""
    encoding: Literal["rgb8", "bgr8"] = "rgb8"
    """Channel order of published 3- and 4-channel images."""
    attachment: Literal["current", "keyed"] = "current"
    """The sample attachment published: ``current`` (rmw_zenoh 0.2.4 and later: Jazzy
    since April 2025, Kilted, Rolling) or ``keyed`` (Jazzy's 0.2.0 to 0.2.3).
    ``ros2.subscribe`` reads both."""
    clock: bool = False
    """``ros2.publish`` only: also publish ``/clock`` at each step, on the time base of the
    header stamps (the loop's own time in simulated time, so ROS nodes with
    ``use_sim_time`` follow a simulated loop; Unix time in real time)."""
    safe: Any = None
    """``ros2.publish`` only: the payload published as the safe command (e.g. a zero
    Twist ``[0, 0, 0, 0, 0, 0]``) when the loop stops or the node faults."""

    def __post_init__(self) -> None:
        if self.type not in ros2_messages.TYPES:
            known = ", ".join(ros2_messages.TYPES)
            raise ValueError(f"type {self.type!r} is not one edgeloop maps; one of {known}")
        # ROS 2 names: letters, digits and underscores, no part starting with a digit
        # (anything else would also break the Zenoh key: * $ # ? are its own).
        if not _TOPIC.fullmatch(self.topic):
            raise ValueError(f"topic {self.topic!r} is no ROS 2 topic name (e.g. /robot/cmd_vel)")
        if not _NAME.fullmatch(self.node_name):
            raise ValueError(f"node_name {self.node_name!r} is no ROS 2 node name (e.g. edgeloop)")
        if self.namespace != "/" and not _TOPIC.fullmatch(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is no ROS 2 namespace (e.g. /robot1)")
        if not 0 <= self.depth <= 100_000:
            raise ValueError("depth must be from 0 to 100,000 (0: rmw_zenoh's default, 42)")
        if self.domain_id is not None and not 0 <= self.domain_id <= 232:
            raise ValueError("domain_id must be from 0 to 232")
        if self.mode == "peer" and not (self.connect or self.listen):
            raise ValueError("a peer needs endpoints to connect to or listen on")


def _domain(cfg: Ros2Config) -> int:
    return cfg.domain_id if cfg.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))


class _Closers:
    """What a node opened, closed in reverse order by ``close`` (also after a setup
    that failed halfway: a Zenoh session or a token left open would keep a ghost
    publisher in the ROS graph)."""

    def __init__(self) -> None:
        self._closers: list[Callable[[], Any]] = []

    def add(self, closer: Callable[[], Any]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # the others still close
                _log.warning("closing a ROS 2 endpoint: %s: %s", type(exc).__name__, exc)


class _Endpoint:
    """What a publisher and a subscription share: the participant, the ROS node, the
    topic's key, type hash and liveliness token."""

    def __init__(
        self, ctx: NodeContext, cfg: Ros2Config, kind: Literal["MP", "MS"], opened: _Closers
    ) -> None:
        _modules()
        self.participant = Participant.join(_domain(cfg), cfg.mode, cfg.connect, cfg.listen)
        opened.add(self.participant.leave)
        domain = self.participant.domain_id
        self.type_hash = ros2_messages.type_hash(cfg.type)
        self.key = ros2_wire.data_key(domain, cfg.topic, cfg.type, self.type_hash)
        nid = self.participant.node(cfg.namespace, cfg.node_name)
        qos = Qos(cfg.reliability, cfg.durability, cfg.depth)
        self.token_key = ros2_wire.entity_token(
            domain,
            self.participant.zid,
            nid,
            self.participant.entity_id(),
            kind,
            cfg.namespace,
            cfg.node_name,
            cfg.topic,
            cfg.type,
            self.type_hash,
            qos,
        )
        token = self.participant.session.liveliness().declare_token(self.token_key)
        opened.add(token.undeclare)
        ctx.note("key", self.key)


class _Writer:
    """One publisher on the wire: its key, gid, sequence numbers and attachment format.

    A transient-local one keeps its last ``depth`` samples for late joiners, as
    rmw_zenoh's does: a Zenoh advanced publisher with a cache, publisher
    detection and (when reliable) sporadic heartbeats."""

    def __init__(self, endpoint: _Endpoint, cfg: Ros2Config, keyed: bool, opened: _Closers) -> None:
        import zenoh
        import zenoh.ext

        session, key = endpoint.participant.session, endpoint.key
        reliability = (
            zenoh.Reliability.BEST_EFFORT
            if cfg.reliability == "best_effort"
            else zenoh.Reliability.RELIABLE
        )
        if cfg.durability == "transient_local":
            self.publisher = zenoh.ext.declare_advanced_publisher(
                session,
                key,
                reliability=reliability,
                cache=zenoh.ext.CacheConfig(max_samples=cfg.depth or ros2_wire.DEFAULT_DEPTH),
                publisher_detection=True,
                sample_miss_detection=zenoh.ext.MissDetectionConfig(sporadic_heartbeat=0.5)
                if cfg.reliability == "reliable"
                else None,
            )
        else:
            self.publisher = session.declare_publisher(key, reliability=reliability)
        opened.add(self.publisher.undeclare)  # a cache would answer late joiners
        token = endpoint.token_key
        self.gid = ros2_wire.gid(token)
        self.sequence = 0
        self._attach = ros2_wire.keyed_attachment if keyed else ros2_wire.attachment

    def put(self, payload: bytes) -> None:
        self.sequence += 1
        self.publisher.put(
            payload, attachment=self._attach(self.sequence, time.time_ns(), self.gid)
        )


class _Opens:
    """Setup for the ROS 2 node types: ``_open`` acquires, and registers in
    ``self._opened`` what to close; a setup that fails halfway closes it at once."""

    def setup(self, ctx: NodeContext) -> None:
        self._opened = _Closers()
        try:
            self._open(ctx)
        except BaseException:
            self._opened.close()
            raise

    def _open(self, ctx: NodeContext) -> None:
        raise NotImplementedError


class Ros2Publish(_Opens, Actuator):
    """Publishes its input on a ROS 2 topic, as a ROS 2 node running rmw_zenoh would.

    Each message on ``msg`` becomes one message of the configured type (the payload
    mapping is ``plugins/ros2_messages.py``'s), ``header.stamp`` the time its data
    was sensed (Unix time in real time, the loop's time in simulated time) and
    ``header.frame_id`` the node's ``frame_id``; it goes out in CDR on the topic's
    key with the attachment rmw_zenoh requires, and a liveliness token announces
    the publisher (``ros2 topic info`` shows it). With ``clock: true`` it publishes
    ``/clock`` too. With ``safe`` set, that payload is published when the loop
    stops or the node faults. Counted in the notes: ``published``.

    Faults:
        a payload the type cannot take (a 3-vector for a Twist) is an ``exception``
        fault naming what it needs; a Zenoh session that cannot be opened (no
        router at ``connect`` in client mode, a port in use) fails setup, saying
        which, and the node's restart policy tries again.

    YAML::

        - id: cmd_vel
          type: ros2.publish
          inputs: {msg: controller/twist}
          config: {topic: /cmd_vel, type: geometry_msgs/msg/Twist, safe: [0, 0, 0, 0, 0, 0]}
    """

    inputs = (Port("msg", doc="the payload of the message to publish (see the type's mapping)"),)
    Config = Ros2Config

    def _open(self, ctx: NodeContext) -> None:
        cfg: Ros2Config = ctx.config
        self._endpoint = _Endpoint(ctx, cfg, "MP", self._opened)
        keyed = cfg.attachment == "keyed"
        self._writer = _Writer(self._endpoint, cfg, keyed, self._opened)
        self._frame_id = cfg.frame_id or ctx.node_id
        self._options = {"encoding": cfg.encoding} if cfg.type.endswith("/Image") else {}
        self._clock: tuple[_Endpoint, _Writer] | None = None
        if cfg.clock:
            clock_cfg = _clock_config(cfg)
            clock = _Endpoint(ctx, clock_cfg, "MP", self._opened)
            self._clock = (clock, _Writer(clock, clock_cfg, keyed, self._opened))
        self.published = 0
        ctx.note("published", "0")

    def _stamp_ns(self, sensed: float) -> int:
        """Loop time as ROS reads it: Unix time in real time, the loop's own in simulated."""
        offset = 0.0 if self.ctx.clock.simulated else time.time() - self.ctx.now()
        return round((sensed + offset) * 1e9)

    def _publish(self, payload: Any, sensed: float) -> None:
        cfg: Ros2Config = self.config
        data = ros2_messages.encode(
            cfg.type, payload, self._stamp_ns(sensed), self._frame_id, **self._options
        )
        self._writer.put(data)
        self.published += 1
        self.ctx.note("published", str(self.published))

    def step(self, inputs: dict[str, Any]) -> None:
        now = self.ctx.now()
        if self._clock is not None:  # on the same time base as the header stamps
            _, writer = self._clock
            clock = self._stamp_ns(now) / 1e9
            writer.put(ros2_messages.encode("rosgraph_msgs/msg/Clock", clock, 0, ""))
        if "msg" in inputs and inputs["msg"] is not None:
            message = self.ctx.message("msg")
            self._publish(inputs["msg"], message.sensed if message is not None else now)

    def safe(self, reason: str) -> bool:
        if self.config.safe is None:
            return False
        self._publish(self.config.safe, self.ctx.now())
        return True

    def close(self) -> None:
        self._opened.close()


def _clock_config(cfg: Ros2Config) -> Ros2Config:
    from dataclasses import replace

    return replace(
        cfg,
        topic="/clock",
        type="rosgraph_msgs/msg/Clock",
        reliability="best_effort",
        durability="volatile",
        depth=1,
        clock=False,
        safe=None,
    )


class Ros2Subscribe(_Opens, Sensor):
    """Messages of a ROS 2 topic, as a ROS 2 node running rmw_zenoh would receive them.

    Declares a Zenoh subscriber on the topic's key and a liveliness token for the
    subscription. A Zenoh thread decodes each sample (CDR, the type's mapping in
    ``plugins/ros2_messages.py``) and keeps the newest; without ``rate_hz`` the node
    steps on each message (its thread wakes the loop), with it, it publishes the
    newest per tick. The message's sensing time is its ``header.stamp`` where that
    is plausible on this clock (within a minute of now), else when it arrived.
    Counted in the notes: ``received``, ``replaced`` (newer came before the loop
    took it), ``dropped`` by reason (``undecodable``, ``non_finite``) and samples
    without rmw_zenoh's attachment (accepted, counted: ROS itself drops them). A
    publisher that falls silent makes the output stale: give receivers a ``stale_ms``.

    Faults:
        a Zenoh session that cannot be opened fails setup, as for ``ros2.publish``;
        nothing a publisher sends is a fault (it is dropped and counted).

    YAML::

        - id: joints
          type: ros2.subscribe
          config: {topic: /joint_states, type: sensor_msgs/msg/JointState}
    """

    outputs = (Port("msg", doc="the newest message's payload (see the type's mapping)"),)
    Config = Ros2Config
    wakes = True

    def _open(self, ctx: NodeContext) -> None:
        cfg: Ros2Config = ctx.config
        self._endpoint = _Endpoint(ctx, cfg, "MS", self._opened)
        self._lock = threading.Lock()
        self._latest: tuple[Any, int | None] | None = None
        self.received = self.replaced = self.unattached = 0
        self.dropped: dict[str, int] = {}
        self.last_error = ""
        session, key = self._endpoint.participant.session, self._endpoint.key
        if cfg.durability == "transient_local":  # late: ask publishers for their history
            import zenoh.ext

            history = zenoh.ext.HistoryConfig(
                detect_late_publishers=True, max_samples=cfg.depth or ros2_wire.DEFAULT_DEPTH
            )
            self._subscriber = zenoh.ext.declare_advanced_subscriber(
                session, key, self._on_sample, history=history, subscriber_detection=True
            )
        else:
            self._subscriber = session.declare_subscriber(key, self._on_sample)
        self._opened.add(self._subscriber.undeclare)
        self._notes()

    def _on_sample(self, sample: Any) -> None:
        """On Zenoh's thread: decode, keep the newest, wake the loop."""
        cfg: Ros2Config = self.config
        self.received += 1
        if sample.attachment is None:
            self.unattached += 1
        else:
            try:
                ros2_wire.read_attachment(sample.attachment.to_bytes())
            except ValueError as exc:
                self.unattached += 1
                self.last_error = str(exc)
        try:
            payload, stamp = ros2_messages.decode(cfg.type, sample.payload.to_bytes())
        except ValueError as exc:
            self._drop("undecodable", str(exc))
            return
        if not payload_is_finite(payload):  # inside a loop that is a fault: dropped
            self._drop("non_finite", "a message with NaN or infinity")
            return
        with self._lock:
            self.replaced += self._latest is not None
            self._latest = (payload, stamp)
        self.ctx.wake()

    def _drop(self, reason: str, why: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.last_error = why

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            latest, self._latest = self._latest, None
        self._notes()
        if latest is None:
            return None
        payload, stamp = latest
        now = self.ctx.now()
        if stamp is not None and not self.ctx.clock.simulated:
            sensed = stamp / 1e9 - (time.time() - now)
            if abs(sensed - now) <= _PLAUSIBLE_S:
                self.ctx.sensed_at(min(sensed, now))
        return {"msg": payload}

    def _notes(self) -> None:
        self.ctx.note("received", str(self.received))
        self.ctx.note("replaced", str(self.replaced))
        self.ctx.note("dropped", ", ".join(f"{k} {v}" for k, v in self.dropped.items()) or "0")
        if self.unattached:
            self.ctx.note("without_attachment", str(self.unattached))
        if self.last_error:
            self.ctx.note("last_error", self.last_error)

    def close(self) -> None:
        self._opened.close()
        self._notes()  # the final counts, samples that came after the last step too
