"""The plugin contract: hook names and arguments are checked when a plugin loads,
and an implementation takes the arguments it wants by name."""

from __future__ import annotations

import inspect

import pytest

import edgeloop
from edgeloop.runtime import hookspecs
from edgeloop.testing import CounterSensor, RecordingSink


class Typo:
    @edgeloop.hookimpl
    def edgeloop_loop_stoped(self, report):  # "stoped": a typo
        pass


class Misnamed:
    @edgeloop.hookimpl
    def edgeloop_whatever(self):
        pass


class ExtraArgument:
    @edgeloop.hookimpl
    def edgeloop_loop_started(self, graph, clock):  # the spec has no `clock`
        pass


def test_a_hook_with_a_typo_in_its_name_is_refused_with_the_close_match():
    with pytest.raises(edgeloop.PluginError) as caught:
        edgeloop.PluginRegistry(entry_points=False, plugins={"typo": Typo()})
    error = caught.value
    assert "implements 'edgeloop_loop_stoped', which is no edgeloop hook" in error.message
    assert error.fix == "rename it edgeloop_loop_stopped"
    assert error.plugin == "typo"


def test_a_hook_name_near_nothing_lists_every_hook():
    with pytest.raises(edgeloop.PluginError) as caught:
        edgeloop.PluginRegistry(entry_points=False, plugins={"m": Misnamed()})
    assert "edgeloop_group_crashed" in caught.value.fix


def test_an_argument_the_spec_lacks_is_refused():
    with pytest.raises(edgeloop.PluginError, match="clock") as caught:
        edgeloop.PluginRegistry(entry_points=False, plugins={"extra": ExtraArgument()})
    assert "hook spec" in caught.value.fix


def test_a_refused_plugin_leaves_the_registry_as_it_was():
    registry = edgeloop.PluginRegistry(entry_points=False)
    with pytest.raises(edgeloop.PluginError):
        registry.add_plugin(Typo(), "typo")
    assert registry.manager.get_plugin("typo") is None


def test_an_implementation_takes_a_subset_of_the_arguments_in_any_order():
    seen = []

    class Listener:
        @edgeloop.hookimpl
        def edgeloop_loop_started(self, seed, graph):
            seen.append(("started", graph.name, seed))

        @edgeloop.hookimpl
        def edgeloop_loop_stopped(self, report):
            seen.append(("stopped", report.stop_reason))

    graph = edgeloop.LoopGraph(name="heard")
    graph.add_node("source", CounterSensor, rate_hz=10)
    graph.add_node("sink", RecordingSink, inputs={"value": "source/value"})
    registry = edgeloop.PluginRegistry(plugins={"listener": Listener()})
    edgeloop.Executor(graph, registry=registry, simulated=True, seed=7).run(0.5)
    assert seen == [("started", "heard", 7), ("stopped", "duration reached")]


@pytest.mark.parametrize(
    "name", sorted(n for n in dir(hookspecs) if n.startswith("edgeloop_")), ids=str
)
def test_every_hook_spec_documents_itself_and_its_version(name):
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert ".. versionadded::" in doc, f"{name} has no version note"
    arguments = inspect.signature(spec).parameters
    for argument in arguments:
        assert f"{argument}:" in doc, f"{name} does not document its argument {argument}"
