"""edgeloop's built-in node types, registered through the ``edgeloop`` entry
point like any third-party plugin."""

from __future__ import annotations

from edgeloop.plugins.board_health import BoardHealth
from edgeloop.plugins.board_limits import BoardLimits
from edgeloop.plugins.camera import Camera
from edgeloop.plugins.can_bus import CanActuator, CanSensor
from edgeloop.plugins.control import PendulumSwingUp, PidController
from edgeloop.plugins.events import (
    DeltaEncoder,
    DvsSensor,
    LatencyEncoder,
    MovingEdge,
    RateEncoder,
)
from edgeloop.plugins.fusion import FusionNode
from edgeloop.plugins.grid_sensor import GridCamera, RoiSelection
from edgeloop.plugins.guard import CascadeGuard
from edgeloop.plugins.gym_plant import GymActuator, GymSensor
from edgeloop.plugins.injection import FaultInjector
from edgeloop.plugins.onnx_model import OnnxModel
from edgeloop.plugins.predictors import KalmanPredictor
from edgeloop.plugins.replay import ReplaySource
from edgeloop.plugins.ros2 import Ros2Publish, Ros2Subscribe
from edgeloop.plugins.safety import ActionClamp
from edgeloop.plugins.sensing_policies import EventTriggered, UrgencyRate
from edgeloop.plugins.serial_device import SerialActuator, SerialSensor
from edgeloop.plugins.sinks import LogSink
from edgeloop.plugins.sources import ConstantAction
from edgeloop.plugins.spiking import SpikingNode
from edgeloop.plugins.video_file import VideoFile
from edgeloop.plugins.vision import BlobTracker
from edgeloop.plugins.world import WorldNode
from edgeloop.plugins.zmq_bridge import ZmqSink, ZmqSource
from edgeloop.runtime.hookspecs import hookimpl
from edgeloop.runtime.node import Node


@hookimpl
def edgeloop_register_node_types() -> dict[str, type[Node]]:
    return {
        "gym.sensor": GymSensor,
        "gym.actuator": GymActuator,
        "pid": PidController,
        "pendulum.swing_up": PendulumSwingUp,
        "clamp": ActionClamp,
        "constant": ConstantAction,
        "log": LogSink,
        "onnx.model": OnnxModel,
        "replay": ReplaySource,
        "world": WorldNode,
        "predictor.kalman": KalmanPredictor,
        "sensing.urgency": UrgencyRate,
        "sensing.event": EventTriggered,
        "fusion": FusionNode,
        "guard": CascadeGuard,
        "inject": FaultInjector,
        "grid.camera": GridCamera,
        "sensing.roi": RoiSelection,
        "snn.torch": SpikingNode,
        "events.dvs": DvsSensor,
        "scene.edge": MovingEdge,
        "serial.sensor": SerialSensor,
        "serial.actuator": SerialActuator,
        "camera": Camera,
        "video.file": VideoFile,
        "can.sensor": CanSensor,
        "can.actuator": CanActuator,
        "track.blob": BlobTracker,
        "zmq.source": ZmqSource,
        "zmq.sink": ZmqSink,
        "ros2.subscribe": Ros2Subscribe,
        "ros2.publish": Ros2Publish,
        "encode.rate": RateEncoder,
        "encode.latency": LatencyEncoder,
        "encode.delta": DeltaEncoder,
        "board.health": BoardHealth,
        "board.limits": BoardLimits,
    }
