"""The one walk of a schedule and the one rule for who sends to whom (no torch here)."""

from __future__ import annotations

import pytest

from pplab.schedules import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    FORWARD,
    FULL_BACKWARD,
    Action,
    build,
    message_into,
    message_of,
)
from pplab.schedules.walk import Item, Walk
from pplab.sim.cost_model import CostModel
from pplab.sim.sharing import simulate_shared
from pplab.sim.simulator import simulate


def test_message_rule_forward_feeds_next_stage_gradient_feeds_previous():
    looped = (0, 1, 0, 1)  # four stages on two ranks
    forward = message_of(Action(1, FORWARD, 3), looped)
    assert (forward.sender, forward.receiver, forward.target, forward.what) == \
        (1, 0, 2, "activation")
    assert forward.fact == (1, FORWARD, 3)
    for kind in (FULL_BACKWARD, BACKWARD_INPUT):  # a full backward sends the I it holds
        gradient = message_of(Action(2, kind, 0), looped)
        assert (gradient.receiver, gradient.target, gradient.fact) == \
            (1, 1, (2, BACKWARD_INPUT, 0))
    assert message_of(Action(1, BACKWARD_WEIGHT, 0), looped) is None
    assert message_of(Action(3, FORWARD, 0), looped) is None  # past the last stage
    assert message_of(Action(0, BACKWARD_INPUT, 0), looped) is None  # before the first
    v_shape = (0, 1, 1, 0)
    assert message_of(Action(1, FORWARD, 0), v_shape) is None  # stage 2 is on rank 1 too
    assert message_into(Action(2, FORWARD, 0), v_shape) is None
    assert message_into(Action(1, BACKWARD_INPUT, 5), looped).fact == (2, BACKWARD_INPUT, 5)


def test_processor_sharing_two_ranks_on_one_core_each_take_twice_as_long():
    programs = {0: [Item(None, 2.0), Item(None, 1.0)], 1: [Item(None, 1.0)]}
    ends = {}
    Walk((0, 1), programs, rate=lambda busy: min(1.0, 1 / busy),
         on_finish=lambda rank, item, began, _, end: ends.setdefault(rank, []).append(
             (began, end))).run()
    # both run at half speed until rank 1 ends at 2; rank 0 then has 1 left, alone: ends at 3
    assert ends[1] == [(0.0, 2.0)]
    assert ends[0][0] == (0.0, 3.0) and ends[0][1] == (3.0, 4.0)


def test_shared_walk_is_exact_across_durations_a_fixed_step_would_blur():
    """Time goes from one completion to the next, so a tiny action beside a huge one ends
    when processor sharing says, not at the next tick of a clock."""
    programs = {0: [Item(None, 1e6)], 1: [Item(None, 1e-6)]}
    ends = {}
    Walk((0, 1), programs, rate=lambda busy: min(1.0, 1 / busy),
         on_finish=lambda rank, item, began, _, end: ends.setdefault(rank, end)).run()
    assert ends[1] == pytest.approx(2e-6, rel=1e-9)
    assert ends[0] == pytest.approx(1e6 + 1e-6, rel=1e-12)


def test_shared_cores_never_faster_than_own_cores_and_equal_with_enough():
    schedule = build("zb-h1", 4, 8)
    cost = CostModel(latency=0.1)
    own = simulate(schedule, cost)["end"].max()
    assert simulate_shared(schedule, cost, slots=4)["end"].max() == pytest.approx(own)
    assert simulate_shared(schedule, cost, slots=2)["end"].max() > own


def test_a_chooser_that_runs_an_action_before_its_input_arrives_is_refused():
    def eager(walk, rank):  # rank 1 takes its forward at once, before rank 0's activation
        if rank == 1 and not walk.usable_at((1, FORWARD, 0), 1):
            return Item(Action(1, FORWARD, 0), 1.0)
        return None

    with pytest.raises(ValueError, match="chooser picked 1F0 on rank 1 at 0 before its need"):
        Walk((0, 1), {0: eager, 1: eager}).run()


def test_walk_reports_stuck_ranks_with_the_position_they_stopped_at():
    schedule = build("1f1b", 2, 2)
    programs = {rank: [Item(entry) for entry in entries]
                for rank, entries in schedule.actions.items()}
    programs[0] = programs[0][1:]  # rank 0 never runs 0F0: rank 1 waits for it forever
    walk = Walk(schedule.stage_to_rank, programs).run()
    assert walk.stuck() == {0: 1, 1: 0}  # rank 0 runs 0F1, then waits at 0B0 for 1B0
    assert walk.usable_at((0, FORWARD, 1), 1) == 0.0  # what ran was delivered
