"""edgeloop.testing.check_node: the node contract it promises plugin authors."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest

import edgeloop
from edgeloop import Port
from edgeloop.testing import check_node


class Good(edgeloop.Controller):
    """Doubles its input."""

    inputs = (Port("obs", dtype="float64", shape=(2,), doc="what it doubles"),)
    outputs = (Port("action", dtype="float64", shape=(2,), doc="twice the observation"),)

    def step(self, inputs):
        return {"action": inputs["obs"] * 2}


def test_a_node_that_keeps_the_contract_passes_with_its_outputs():
    outputs = check_node(Good, inputs=[{"obs": np.array([1.0, 2.0])}])
    assert outputs[0]["action"].tolist() == [2.0, 4.0]
    assert len(check_node(Good, steps=3)) == 3


def test_a_non_finite_float_output_fails_the_check():
    class Nan(Good):
        """Returns NaN."""

        def step(self, inputs):
            return {"action": np.array([np.nan, 0.0])}

    with pytest.raises(AssertionError, match="output 'action' is not finite"):
        check_node(Nan)


@pytest.mark.parametrize(
    ("given", "got"),
    [
        (np.array([1, 2], np.int32), "int32 (2,)"),
        (np.zeros(3), "float64 (3,)"),
        ("fast", "str"),
    ],
)
def test_an_output_its_port_does_not_declare_fails_the_check(given, got):
    with pytest.raises(
        AssertionError, match=re.escape(f"'action': expected float64 (2,), got {got}")
    ):
        check_node(Good, inputs=[{"obs": given}])


def test_an_undeclared_output_fails_the_check():
    class Stray(Good):
        """Returns a port it never declared."""

        def step(self, inputs):
            return {"torque": np.zeros(2)}

    with pytest.raises(AssertionError, match="undeclared output 'torque'"):
        check_node(Stray)


def test_a_node_type_without_a_docstring_fails_the_check():
    class Bare(Good):
        pass

    with pytest.raises(AssertionError, match="has no docstring of its own"):
        check_node(Bare)


def test_a_config_that_is_not_a_frozen_dataclass_fails_the_check():
    class Mutable(Good):
        """Has a mutable Config."""

        @dataclass
        class Config:
            gain: float = 1.0
            """Unused."""

    with pytest.raises(AssertionError, match="must be a frozen dataclass"):
        check_node(Mutable)


def test_repeated_port_names_fail_the_check():
    class Twice(Good):
        """Declares one output twice."""

        outputs = (Port("action"), Port("action"))

    with pytest.raises(AssertionError, match="repeats a port name"):
        check_node(Twice)


def test_an_undocumented_port_or_config_field_fails_the_check():
    class Quiet(Good):
        """Documents neither its new port nor its config."""

        outputs = (Port("action", dtype="float64", shape=(2,)),)

        @dataclass(frozen=True)
        class Config:
            gain: float = 1.0

    with pytest.raises(AssertionError, match="documents no output 'action', no config 'gain'"):
        check_node(Quiet)


def test_the_faulty_nodes_config_doc_names_every_fault_it_can_do():
    from edgeloop.runtime.node_docs import config_fields
    from edgeloop.testing import CLOSE_FAULTS, SETUP_FAULTS, STEP_FAULTS, FaultyNode

    (fault,) = [f for f in config_fields(FaultyNode.Config) if f.name == "fault"]
    assert [
        n for n in STEP_FAULTS + SETUP_FAULTS + CLOSE_FAULTS if f"``{n}``" not in fault.doc
    ] == []
