"""The public surface: what users and plugins may import, pinned."""

import edgeloop
import edgeloop.testing


def test_the_front_door_exports_exactly_the_public_names():
    assert sorted(edgeloop.__all__) == [
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
    for name in edgeloop.__all__:
        assert hasattr(edgeloop, name), name


def test_the_testing_module_exports_its_fakes_and_check_node():
    assert sorted(edgeloop.testing.__all__) == [
        "AuditSink",
        "CounterSensor",
        "FaultyNode",
        "RecordingSink",
        "ScriptedNode",
        "check_node",
        "start_node",
    ]


def test_every_user_error_is_an_edgeloop_error():
    for name in (
        "GraphError",
        "PluginError",
        "UnknownNodeTypeError",
        "NodeConfigError",
        "NodeSetupError",
        "MissingDependencyError",
    ):
        assert issubclass(getattr(edgeloop, name), edgeloop.EdgeloopError)


def test_run_loads_a_graph_path_and_runs_it(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: tiny\nnodes:\n  - id: safe\n    type: constant\n    rate_hz: 10\n")
    report = edgeloop.run(str(path), duration_s=1.0, simulated=True)
    assert report.node("safe").calls == 10
