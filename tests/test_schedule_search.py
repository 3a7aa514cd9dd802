"""The memory-bounded schedule search: always valid, within its cap, never worse than 1F1B."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pplab.limits import MAX_SEARCH_ACTIONS
from pplab.schedules import build, validate
from pplab.sim.search import (
    SEARCHED,
    memory_capped_1f1b,
    search_schedule,
)
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline import metrics


def _measure(schedule, cost):
    return metrics(simulate(schedule, cost), ranks=range(schedule.pp_size))


_TIMES = st.sampled_from((0.25, 0.5, 1.0, 2.0, 3.0))


@st.composite
def _requests(draw):
    p = draw(st.integers(1, 5))
    m = draw(st.integers(1, 10))
    cap = draw(st.integers(1, 2 * p + 1))
    f, i, w = draw(_TIMES), draw(_TIMES), draw(_TIMES)
    # B is usually I + W; sometimes not, which is where splitting can win or lose.
    b = draw(st.sampled_from((i + w, f, 2 * (i + w))))
    latency = draw(st.sampled_from((0.0, 0.0, 0.3)))
    cost = CostModel(forward=f, backward=b, backward_input=i, backward_weight=w,
                     latency=latency)
    return p, m, cap, cost


@pytest.mark.slow  # searches schedules for several seconds
@settings(max_examples=40, deadline=None)
@given(_requests())
def test_search_is_valid_within_the_cap_and_never_worse_than_capped_1f1b(request):
    p, m, cap, cost = request
    found = search_schedule(p, m, cost, cap)
    validate(found)
    assert found.name == SEARCHED and found.params["max_in_flight"] == cap
    assert (found.pp_size, found.num_stages, found.num_microbatches) == (p, p, m)
    ours, baseline = _measure(found, cost), _measure(memory_capped_1f1b(p, m, cap), cost)
    assert max(ours["peak_activations"].values()) <= cap
    assert ours["bubble_fraction"] <= baseline["bubble_fraction"] + 1e-9
    assert ours["makespan"] <= baseline["makespan"] + 1e-9


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 14))
def test_capped_1f1b_holds_the_cap_and_is_1f1b_from_a_cap_of_p(p, m, cap):
    schedule = validate(memory_capped_1f1b(p, m, cap))
    peaks = _measure(schedule, CostModel())["peak_activations"]
    assert max(peaks.values()) <= cap
    if cap >= p:
        assert schedule.actions == build("1f1b", p, m).actions


@pytest.mark.slow
def test_search_reaches_the_hand_made_zero_bubble_schedules_when_memory_allows():
    cost = CostModel(forward=1, backward=2, backward_input=1, backward_weight=1)
    for p, m in ((4, 8), (6, 12)):
        for family, cap in (("1f1b", p), ("zb-h1", p), ("zb-h2", 2 * p - 1)):
            found = _measure(search_schedule(p, m, cost, cap), cost)
            assert found["bubble_fraction"] <= _measure(build(family, p, m), cost)[
                "bubble_fraction"] + 1e-9, (p, m, family)


def test_search_beats_1f1b_under_a_tight_cap():
    # Two microbatches in flight for four ranks: 1F1B has to cut its warm-up, the split
    # backward lets weight gradients fill what the cut leaves idle.
    cost = CostModel(forward=1, backward=2, backward_input=1, backward_weight=1)
    found = search_schedule(4, 8, cost, max_in_flight=2)
    assert _measure(found, cost)["bubble_fraction"] < _measure(
        memory_capped_1f1b(4, 8, 2), cost)["bubble_fraction"] - 0.1
    assert found.params["found_by"].startswith("greedy I+W")


def test_search_defaults_to_1f1bs_memory_and_is_deterministic():
    first = search_schedule(4, 8)
    assert first.params["max_in_flight"] == 4
    assert search_schedule(4, 8).actions == first.actions


@pytest.mark.parametrize("args, message", [
    ((4, 8, None, 0), "max_in_flight must be a whole number >= 1, got 0"),
    ((0, 8, None, 2), "pipeline depth must be a whole number >= 1, got 0"),
    ((4, 2.5, None, 2), "microbatches must be a whole number >= 1, got 2.5"),
    ((100, 1000, None, 2), f"the search takes at most {MAX_SEARCH_ACTIONS:,}"),
])
def test_bad_requests_are_one_clear_line(args, message):
    with pytest.raises(ValueError, match=message):
        search_schedule(*args)
