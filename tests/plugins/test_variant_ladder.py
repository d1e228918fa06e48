"""The switching decision of ``onnx.model``, fed made-up step times and clock."""

from __future__ import annotations

from edgeloop.plugins.variant_ladder import HOLD_MAX_S, VariantLadder

MS = 1e-3


def feed(ladder: VariantLadder, seconds: float, steps: int, now: float, dt: float = 0.01):
    """Steps of ``seconds`` each, ``dt`` apart from ``now``; applies every move and
    returns the moves, with the clock after them."""
    moves = []
    for _ in range(steps):
        move = ladder.observe(seconds, now)
        if move is not None:
            ladder.moved(move[0], now)
            moves.append((round(now, 2), move[0]))
        now += dt
    return moves, now


def test_two_late_steps_of_a_hundred_fall_at_once_one_is_let_pass():
    ladder = VariantLadder(rungs=3, budget_s=5 * MS, window=100, hold_s=2.0)
    moves, now = feed(ladder, 1 * MS, 150, 0.0)
    assert moves == [] and ladder.calm_p99[0] == 1 * MS
    assert ladder.observe(9 * MS, now) is None  # one outlier in a hundred passes
    moves, now = feed(ladder, 1 * MS, 10, now)
    level, why = ladder.observe(9 * MS, now)  # the second: p99 is now over, window or not
    assert level == 1 and why == "p99 9.00 ms over 5 ms"


def test_it_climbs_back_once_the_slower_variant_is_predicted_within_the_budget():
    ladder = VariantLadder(rungs=2, budget_s=5 * MS, window=10, hold_s=1.0)
    feed(ladder, 3 * MS, 20, 0.0)  # the model's calm p99: 3 ms
    moves, now = feed(ladder, 8 * MS, 2, 0.2)
    assert moves == [(0.21, 1)]
    moves, now = feed(ladder, 0.5 * MS, 30, now)  # the fallback's calm p99: 0.5 ms
    # The load added 0.5 ms to the fallback: 3.5 ms predicted, under 80 % of 5 ms.
    moves, now = feed(ladder, 1.0 * MS, 200, now)
    assert [level for _, level in moves] == [0]
    assert moves[0][0] - 0.21 >= 1.0  # not before hold_s
    # Had the load added 1.5 ms, the model (4.5 ms predicted) would have stayed away.
    ladder = VariantLadder(rungs=2, budget_s=5 * MS, window=10, hold_s=1.0)
    feed(ladder, 3 * MS, 20, 0.0)
    feed(ladder, 8 * MS, 2, 0.2)
    moves, now = feed(ladder, 0.5 * MS, 30, 0.3)
    moves, now = feed(ladder, 2.0 * MS, 500, now)
    assert moves == []


def test_a_rung_never_run_here_comes_back_only_under_half_the_budget():
    ladder = VariantLadder(rungs=2, budget_s=4 * MS, window=10, hold_s=0.0)
    ladder.moved(1, 0.0)  # commanded down before the model ever ran
    moves, now = feed(ladder, 2.5 * MS, 50, 0.0)
    assert moves == []
    moves, now = feed(ladder, 1.5 * MS, 10, now)
    assert [level for _, level in moves] == [0]


def test_a_load_that_slows_only_the_slower_variant_is_probed_less_and_less_often():
    # Steps longer than the scheduler's slice are preempted by a neighbour, short
    # ones are not: the fallback looks calm, so each climb back fails. The hold
    # doubles with each quick fall, up to a minute.
    ladder = VariantLadder(rungs=2, budget_s=5 * MS, window=100, hold_s=2.0)
    now = feed(ladder, 3 * MS, 200, 0.0)[1]
    climbs, falls, now_at, late = [], [], now, 0
    while now_at < now + 600:
        slow = 9 * MS if ladder.level == 0 else 0.3 * MS
        late += ladder.level == 0
        move = ladder.observe(slow, now_at)
        if move is not None:
            ladder.moved(move[0], now_at)
            (climbs if move[0] == 0 else falls).append(now_at)
        now_at += 0.02
    gaps = [b - a for a, b in zip(falls, climbs, strict=False)]
    assert len(falls) == len(climbs) + 1 or len(falls) == len(climbs)
    assert gaps[:6] == sorted(gaps[:6]) and gaps[5] >= 32  # 2, 4, 8, 16, 32, ...
    assert max(gaps) <= HOLD_MAX_S + 2.0 and len(climbs) <= 16  # in ten minutes
    assert late == 2 * len(falls)  # each fall (the first too) after two late steps
    assert ladder.hold_s == HOLD_MAX_S
