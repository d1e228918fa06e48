"""ROS 2 messages as edgeloop payloads and back, in CDR (``rosbags`` serializes).

The mapping, the same both ways (a payload published reads back equal):

=================================  ==========================================================
ROS 2 type                         edgeloop payload
=================================  ==========================================================
``sensor_msgs/msg/Image``          an array: ``H x W x 3`` uint8 (``rgb8``, or ``bgr8`` when
                                   the node says so), ``H x W x 4`` (``rgba8``/``bgra8``),
                                   ``H x W x 1`` uint8 (``8UC1``), ``H x W`` uint8 (``mono8``),
                                   uint16 (``mono16``), float32 (``32FC1``)
``sensor_msgs/msg/Imu``            ``{orientation (4: x y z w), angular_velocity (3),
                                   linear_acceleration (3), *_covariance (9 each)}``
``sensor_msgs/msg/JointState``     ``{name: [str], position, velocity, effort}`` (float64)
``geometry_msgs/msg/Twist``        a float64 array ``[vx, vy, vz, wx, wy, wz]`` (a mapping
                                   ``{linear (3), angular (3)}`` is taken too)
``std_msgs/msg/Float64MultiArray`` a float64 array of any shape (the layout keeps it)
``nav_msgs/msg/Odometry``          ``{position (3), orientation (4: x y z w), linear (3),
                                   angular (3), pose_covariance (36), twist_covariance (36),
                                   child_frame_id: str}``
``rosgraph_msgs/msg/Clock``        seconds (float)
=================================  ==========================================================

Arrays come back float64 (uint8 and friends for images); keys left out when
publishing are filled with ROS's defaults (identity orientation, zero covariance).
``header.stamp`` and ``header.frame_id`` are the node's to fill (its loop time of
sensing; its ``frame_id``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

TYPES = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/Imu",
    "sensor_msgs/msg/JointState",
    "geometry_msgs/msg/Twist",
    "std_msgs/msg/Float64MultiArray",
    "nav_msgs/msg/Odometry",
    "rosgraph_msgs/msg/Clock",
)
_IMAGE_ENCODINGS = {  # (dtype, channels) -> encoding; 0 channels: a 2-D array
    ("|u1", 3): "rgb8",
    ("|u1", 4): "rgba8",
    ("|u1", 1): "8UC1",
    ("|u1", 0): "mono8",
    ("<u2", 0): "mono16",
    ("<f4", 0): "32FC1",
}
_IMAGE_ARRAYS = {  # encoding -> (dtype, channels), as received
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "8UC3": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "8UC4": ("u1", 4),
    "8UC1": ("u1", 1),
    "mono8": ("u1", 0),
    "mono16": ("u2", 0),
    "16UC1": ("u2", 0),
    "32FC1": ("f4", 0),
}


@functools.cache
def typestore() -> Any:
    """The ROS 2 Jazzy message definitions (``rosbags``; the same for Kilted)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


@functools.cache
def type_hash(ros_type: str) -> str:
    """The REP 2011 type hash (``RIHS01_...``) ROS 2 computes for ``ros_type``."""
    return typestore().hash_rihs01(ros_type)


def encode(ros_type: str, payload: Any, stamp_ns: int, frame_id: str, **options: Any) -> bytes:
    """A payload as the CDR bytes of a ``ros_type`` message (header header included).

    Raises:
        ValueError, TypeError: the payload does not fit the type (the message says how).
    """
    store = typestore()
    message = _TO_ROS[ros_type](
        store.types, payload, _header(store.types, stamp_ns, frame_id), **options
    )
    return bytes(store.serialize_cdr(message, ros_type))


def decode(ros_type: str, data: bytes) -> tuple[Any, int | None]:
    """``(payload, header stamp ns or None)`` of a CDR message.

    Raises:
        ValueError: the bytes are not a ``ros_type`` message.
    """
    try:
        message = typestore().deserialize_cdr(data, ros_type)
    except Exception as exc:  # rosbags raises struct errors, IndexError, its own
        raise ValueError(f"not a {ros_type} message: {type(exc).__name__}: {exc}") from None
    header = getattr(message, "header", None)
    stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec if header else None
    return _FROM_ROS[ros_type](message), stamp


def _time(types: Any, ns: int) -> Any:
    sec, nanosec = divmod(ns, 1_000_000_000)
    return types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def _header(types: Any, stamp_ns: int, frame_id: str) -> Any:
    return types["std_msgs/msg/Header"](stamp=_time(types, stamp_ns), frame_id=frame_id)


def _vector(values: Any, size: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size != size:
        raise ValueError(f"{name} needs {size} numbers, got {array.size}")
    return array


def _fields(payload: Any, type_name: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise TypeError(
            f"a {type_name} is published from a mapping, not a {type(payload).__name__}"
        )
    return payload


# -- sensor_msgs/msg/Image --------------------------------------------------------------------


def _image_to(types: Any, payload: Any, header: Any, encoding: str | None = None) -> Any:
    image = np.ascontiguousarray(payload)
    if image.dtype.byteorder == ">":  # ROS allows big-endian data; little is what all read
        image = image.astype(image.dtype.newbyteorder("<"))
    channels = image.shape[2] if image.ndim == 3 else 0
    found = _IMAGE_ENCODINGS.get((image.dtype.str, channels)) if image.ndim in (2, 3) else None
    if found is None:
        raise ValueError(
            f"a {image.dtype} array of shape {image.shape} is no image "
            "(H x W x 3 or 4 uint8, H x W x 1 uint8, or H x W uint8, uint16 or float32)"
        )
    if encoding in ("bgr8", "bgra8"):
        found = {3: "bgr8", 4: "bgra8"}.get(channels, found)
    height, width = image.shape[:2]
    return types["sensor_msgs/msg/Image"](
        header=header,
        height=height,
        width=width,
        encoding=found,
        is_bigendian=0,
        step=width * image.itemsize * max(channels, 1),
        data=image.reshape(-1).view(np.uint8),
    )


def _image_from(message: Any) -> np.ndarray:
    if message.encoding not in _IMAGE_ARRAYS:
        raise ValueError(f"an image in encoding {message.encoding!r}, which edgeloop does not read")
    kind, channels = _IMAGE_ARRAYS[message.encoding]
    dtype = np.dtype((">" if message.is_bigendian else "<") + kind)
    row = message.width * dtype.itemsize * max(channels, 1)
    rows = np.asarray(message.data, np.uint8)[: message.step * message.height]
    pixels = rows.reshape(message.height, message.step)[:, :row].copy().view(dtype)
    shape = (
        (message.height, message.width, channels) if channels else (message.height, message.width)
    )
    return pixels.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


# -- sensor_msgs/msg/Imu ----------------------------------------------------------------------

_IMU = {  # payload key -> (ROS field, size, default)
    "orientation": ("orientation", 4, (0.0, 0.0, 0.0, 1.0)),
    "angular_velocity": ("angular_velocity", 3, (0.0,) * 3),
    "linear_acceleration": ("linear_acceleration", 3, (0.0,) * 3),
    "orientation_covariance": ("orientation_covariance", 9, (0.0,) * 9),
    "angular_velocity_covariance": ("angular_velocity_covariance", 9, (0.0,) * 9),
    "linear_acceleration_covariance": ("linear_acceleration_covariance", 9, (0.0,) * 9),
}


def _imu_to(types: Any, payload: Any, header: Any) -> Any:
    fields = _fields(payload, "sensor_msgs/msg/Imu")
    _no_strangers(fields, _IMU, "sensor_msgs/msg/Imu")
    values = {k: _vector(fields.get(k, d), n, k) for k, (_, n, d) in _IMU.items()}
    return types["sensor_msgs/msg/Imu"](
        header=header,
        orientation=_quaternion(types, values["orientation"]),
        orientation_covariance=values["orientation_covariance"],
        angular_velocity=_vector3(types, values["angular_velocity"]),
        angular_velocity_covariance=values["angular_velocity_covariance"],
        linear_acceleration=_vector3(types, values["linear_acceleration"]),
        linear_acceleration_covariance=values["linear_acceleration_covariance"],
    )


def _imu_from(message: Any) -> dict[str, np.ndarray]:
    return {
        "orientation": _xyzw(message.orientation),
        "angular_velocity": _xyz(message.angular_velocity),
        "linear_acceleration": _xyz(message.linear_acceleration),
        "orientation_covariance": np.asarray(message.orientation_covariance, np.float64),
        "angular_velocity_covariance": np.asarray(message.angular_velocity_covariance, np.float64),
        "linear_acceleration_covariance": np.asarray(
            message.linear_acceleration_covariance, np.float64
        ),
    }


def _no_strangers(fields: Mapping[str, Any], known: Mapping[str, Any], type_name: str) -> None:
    strangers = sorted(set(fields) - set(known))
    if strangers:
        raise ValueError(f"a {type_name} has no {', '.join(strangers)} (it has {', '.join(known)})")


def _vector3(types: Any, v: np.ndarray) -> Any:
    return types["geometry_msgs/msg/Vector3"](x=v[0], y=v[1], z=v[2])


def _quaternion(types: Any, q: np.ndarray) -> Any:
    return types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])


def _xyz(v: Any) -> np.ndarray:
    return np.array([v.x, v.y, v.z], np.float64)


def _xyzw(q: Any) -> np.ndarray:
    return np.array([q.x, q.y, q.z, q.w], np.float64)


# -- sensor_msgs/msg/JointState ---------------------------------------------------------------


def _joints_to(types: Any, payload: Any, header: Any) -> Any:
    fields = _fields(payload, "sensor_msgs/msg/JointState")
    known = ("name", "position", "velocity", "effort")
    _no_strangers(fields, dict.fromkeys(known), "sensor_msgs/msg/JointState")
    names = [str(n) for n in fields.get("name", [])]
    arrays = {k: np.asarray(fields.get(k, []), np.float64).reshape(-1) for k in known[1:]}
    return types["sensor_msgs/msg/JointState"](header=header, name=names, **arrays)


def _joints_from(message: Any) -> dict[str, Any]:
    return {
        "name": list(message.name),
        "position": np.asarray(message.position, np.float64),
        "velocity": np.asarray(message.velocity, np.float64),
        "effort": np.asarray(message.effort, np.float64),
    }


# -- geometry_msgs/msg/Twist ------------------------------------------------------------------


def _twist_to(types: Any, payload: Any, header: Any) -> Any:
    if isinstance(payload, Mapping):
        _no_strangers(payload, dict.fromkeys(("linear", "angular")), "geometry_msgs/msg/Twist")
        payload = np.concatenate(
            [
                _vector(payload.get("linear", (0,) * 3), 3, "linear"),
                _vector(payload.get("angular", (0,) * 3), 3, "angular"),
            ]
        )
    v = _vector(payload, 6, "a Twist ([vx, vy, vz, wx, wy, wz])")
    return types["geometry_msgs/msg/Twist"](
        linear=_vector3(types, v[:3]), angular=_vector3(types, v[3:])
    )


def _twist_from(message: Any) -> np.ndarray:
    return np.concatenate([_xyz(message.linear), _xyz(message.angular)])


# -- std_msgs/msg/Float64MultiArray -----------------------------------------------------------


def _multi_to(types: Any, payload: Any, header: Any) -> Any:
    array = np.asarray(payload, np.float64)
    strides = [int(np.prod(array.shape[k:])) for k in range(array.ndim)]
    dims = [
        types["std_msgs/msg/MultiArrayDimension"](label=f"dim{k}", size=size, stride=stride)
        for k, (size, stride) in enumerate(zip(array.shape, strides, strict=True))
    ]
    layout = types["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0)
    return types["std_msgs/msg/Float64MultiArray"](layout=layout, data=array.reshape(-1))


def _multi_from(message: Any) -> np.ndarray:
    data = np.asarray(message.data, np.float64)[message.layout.data_offset :]
    shape = tuple(d.size for d in message.layout.dim)
    if shape and int(np.prod(shape)) == data.size:
        return data.reshape(shape)
    return data


# -- nav_msgs/msg/Odometry --------------------------------------------------------------------

_ODOMETRY = {
    "position": (3, (0.0,) * 3),
    "orientation": (4, (0.0, 0.0, 0.0, 1.0)),
    "linear": (3, (0.0,) * 3),
    "angular": (3, (0.0,) * 3),
    "pose_covariance": (36, (0.0,) * 36),
    "twist_covariance": (36, (0.0,) * 36),
    "child_frame_id": (0, ""),
}


def _odometry_to(types: Any, payload: Any, header: Any) -> Any:
    fields = _fields(payload, "nav_msgs/msg/Odometry")
    _no_strangers(fields, _ODOMETRY, "nav_msgs/msg/Odometry")
    v = {k: _vector(fields.get(k, d), n, k) for k, (n, d) in _ODOMETRY.items() if n}
    point = types["geometry_msgs/msg/Point"](
        x=v["position"][0], y=v["position"][1], z=v["position"][2]
    )
    pose = types["geometry_msgs/msg/Pose"](
        position=point, orientation=_quaternion(types, v["orientation"])
    )
    twist = types["geometry_msgs/msg/Twist"](
        linear=_vector3(types, v["linear"]), angular=_vector3(types, v["angular"])
    )
    return types["nav_msgs/msg/Odometry"](
        header=header,
        child_frame_id=str(fields.get("child_frame_id", "")),
        pose=types["geometry_msgs/msg/PoseWithCovariance"](
            pose=pose, covariance=v["pose_covariance"]
        ),
        twist=types["geometry_msgs/msg/TwistWithCovariance"](
            twist=twist, covariance=v["twist_covariance"]
        ),
    )


def _odometry_from(message: Any) -> dict[str, Any]:
    pose, twist = message.pose.pose, message.twist.twist
    return {
        "position": _xyz(pose.position),
        "orientation": _xyzw(pose.orientation),
        "linear": _xyz(twist.linear),
        "angular": _xyz(twist.angular),
        "pose_covariance": np.asarray(message.pose.covariance, np.float64),
        "twist_covariance": np.asarray(message.twist.covariance, np.float64),
        "child_frame_id": message.child_frame_id,
    }


# -- rosgraph_msgs/msg/Clock ------------------------------------------------------------------


def _clock_to(types: Any, payload: Any, header: Any) -> Any:
    seconds = float(payload)
    return types["rosgraph_msgs/msg/Clock"](clock=_time(types, round(seconds * 1e9)))


def _clock_from(message: Any) -> float:
    return message.clock.sec + message.clock.nanosec / 1e9


_TO_ROS: dict[str, Callable[..., Any]] = {
    "sensor_msgs/msg/Image": _image_to,
    "sensor_msgs/msg/Imu": _imu_to,
    "sensor_msgs/msg/JointState": _joints_to,
    "geometry_msgs/msg/Twist": _twist_to,
    "std_msgs/msg/Float64MultiArray": _multi_to,
    "nav_msgs/msg/Odometry": _odometry_to,
    "rosgraph_msgs/msg/Clock": _clock_to,
}
_FROM_ROS: dict[str, Callable[[Any], Any]] = {
    "sensor_msgs/msg/Image": _image_from,
    "sensor_msgs/msg/Imu": _imu_from,
    "sensor_msgs/msg/JointState": _joints_from,
    "geometry_msgs/msg/Twist": _twist_from,
    "std_msgs/msg/Float64MultiArray": _multi_from,
    "nav_msgs/msg/Odometry": _odometry_from,
    "rosgraph_msgs/msg/Clock": _clock_from,
}
