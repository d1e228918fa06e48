"""edgeloop: sensing-to-action loops on edge boards.

Users and plugins import from here (and ``edgeloop.testing``) only.
"""

from edgeloop.runtime.clocks import Clock, RealClock, SimClock
from edgeloop.runtime.errors import (
    BundleError,
    EdgeloopError,
    GraphError,
    GraphProblem,
    MissingDependencyError,
    NodeConfigError,
    NodeSetupError,
    PluginError,
    ProfileError,
    UnknownNodeTypeError,
)
from edgeloop.runtime.executor import Executor
from edgeloop.runtime.graph import ContractSpec, FaultPolicy, InputSpec, LoopGraph, NodeSpec
from edgeloop.runtime.graph_yaml import load_graph
from edgeloop.runtime.hookspecs import hookimpl
from edgeloop.runtime.messages import Message
from edgeloop.runtime.metrics import RunReport
from edgeloop.runtime.node import (
    Actuator,
    Controller,
    Model,
    Monitor,
    Node,
    NodeContext,
    Port,
    Sensor,
    node,
)
from edgeloop.runtime.plugins import PluginRegistry
from edgeloop.runtime.profiles import HardwareProfile, load_profile
from edgeloop.runtime.sensing import SensingSpec, SensingState, sensing_command
from edgeloop.runtime.validation import validate_graph

__version__ = "0.3.0"

__all__ = [
    "Actuator",
    "BundleError",
    "Clock",
    "ContractSpec",
    "Controller",
    "EdgeloopError",
    "Executor",
    "FaultPolicy",
    "GraphError",
    "GraphProblem",
    "HardwareProfile",
    "InputSpec",
    "LoopGraph",
    "Message",
    "MissingDependencyError",
    "Model",
    "Monitor",
    "Node",
    "NodeConfigError",
    "NodeContext",
    "NodeSetupError",
    "NodeSpec",
    "PluginError",
    "PluginRegistry",
    "Port",
    "ProfileError",
    "RealClock",
    "RunReport",
    "SensingSpec",
    "SensingState",
    "Sensor",
    "SimClock",
    "UnknownNodeTypeError",
    "__version__",
    "hookimpl",
    "load_graph",
    "load_profile",
    "node",
    "run",
    "sensing_command",
    "validate_graph",
]


def run(
    graph: "LoopGraph | str",
    *,
    duration_s: float | None = None,
    simulated: bool = False,
    seed: int = 0,
    registry: "PluginRegistry | None" = None,
) -> "RunReport":
    """Load (if given a path) and run a loop graph; return the run report."""
    if isinstance(graph, str):
        graph = load_graph(graph)
    executor = Executor(graph, registry=registry, simulated=simulated, seed=seed)
    return executor.run(duration_s)
