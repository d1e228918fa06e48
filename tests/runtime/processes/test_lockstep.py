"""Whose turn is next in lockstep (runtime/processes/lockstep.py): what one executor
would do next, chosen by the group whose turn ends."""

from __future__ import annotations

from edgeloop.runtime.processes.lockstep import (
    DURATION_REACHED,
    NOTHING_LEFT,
    batches_by_group,
    next_turn,
)
from edgeloop.runtime.processes.placement import Link

END = 1_000_000_000


def test_messages_not_yet_taken_come_first_in_the_order_they_were_sent():
    dues = {"plant": [20_000_000, 0, 0], "control": [10_000_000, 1, 0]}
    pending = [("control", [[0]]), ("plant", [[1, 2]])]
    group, turn = next_turn(5_000_000, dues, pending, END)
    assert group == "control" and turn.take == [[0]] and turn.time == 5_000_000
    assert turn.pending == [("plant", [[1, 2]])] and turn.dues == dues


def test_then_the_earliest_timer_and_between_equal_times_the_node_first_in_the_graph():
    dues = {"a": [20_000_000, 3, 0], "b": [20_000_000, 1, 1], "c": None}
    group, turn = next_turn(10_000_000, dues, [], END)
    assert group == "b" and turn.take is None and turn.time == 20_000_000
    assert next_turn(0, {"a": [END, 0, 0]}, [], END) == DURATION_REACHED
    assert next_turn(0, {"a": None}, [], END) == NOTHING_LEFT


def test_what_a_turn_sent_is_cut_into_one_batch_per_remote_step_and_group():
    links = {
        0: Link(0, "sensor", "obs", "plant", "control"),
        1: Link(1, "sensor", "image", "plant", "control"),
        2: Link(2, "sensor", "obs", "plant", "logger"),
        3: Link(3, "motor", "state", "plant", "control"),
    }
    sent = [(0, 0.02), (1, 0.02), (2, 0.02), (3, 0.02), (0, 0.04)]
    assert batches_by_group(sent, links) == [
        ("control", [[0, 1], [3], [0]]),  # sensor's two outputs of one step together
        ("logger", [[2]]),
    ]
