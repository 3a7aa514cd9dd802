"""The families beyond 1F1B: ZB-H2, ZB-V, DualPipe-V, looped BFS, interleaved zero bubble.

Each builds valid schedules for any sizes it accepts, places its stages as its paper says,
and simulates to its closed form where the lab has one. No torch here: PyTorch's own orders
of these families are checked in tests/test_schedules.py.
"""

from __future__ import annotations

import itertools

import pytest
from command_helpers import run_pplab
from hypothesis import given
from hypothesis import strategies as st
from lanes import fast_first

from pplab.formulas import pipeline as formulas
from pplab.schedules import (
    SCHEDULES,
    OverlapPair,
    build,
    depth_from_flags,
    schedule_from_csv_text,
    schedule_to_csv_text,
    validate,
)
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline import metrics

NEW = ("zb-h2", "zb-v", "dualpipe-v", "looped-bfs", "interleaved-zb")
COSTS = [CostModel(forward=f, backward=i + w, backward_input=i, backward_weight=w)
         for f, i, w in itertools.product((0.5, 1, 2), repeat=3)]


def _valid_microbatches(name: str, p: int) -> st.SearchStrategy[int]:
    if name == "dualpipe-v":
        return st.integers(2 * p, 2 * p + 10)
    if name == "interleaved-zb":
        return st.integers(1, 24).filter(lambda m: m % max(1, m // p) == 0)
    return st.integers(1, 24)


@st.composite
def _new_family_and_numbers(draw):
    name = draw(st.sampled_from(NEW))
    family = SCHEDULES[name]
    p = draw(st.integers(1, 8))
    v = draw(st.integers(family.min_chunks, family.max_chunks or 4))
    return name, p, draw(_valid_microbatches(name, p)), v


@given(_new_family_and_numbers())  # examples: the lane's profile (tests/conftest.py)
def test_new_families_build_valid_schedules_that_simulate(case):
    name, p, m, v = case
    schedule = validate(build(name, p, m, v))
    assert (schedule.pp_size, schedule.num_stages, schedule.num_microbatches) == (p, p * v, m)
    assert schedule_from_csv_text(schedule_to_csv_text(schedule)).actions == schedule.actions
    events = simulate(schedule, CostModel(overlap=0.5))
    assert len(events) == sum(1 for _ in schedule.all_actions())
    assert 0 <= metrics(events, ranks=range(p))["bubble_fraction"] < 1


@pytest.mark.parametrize("name", ["zb-v", "dualpipe-v"])
def test_v_shaped_families_put_stages_r_and_2p_minus_1_minus_r_on_rank_r(name):
    schedule = build(name, 4, 8)
    assert schedule.stage_to_rank == (0, 1, 2, 3, 3, 2, 1, 0)
    for rank in range(4):
        assert schedule.stages_of(rank) == [rank, 7 - rank]
    assert SCHEDULES[name].chunks_rule == "2"
    assert depth_from_flags(name, None, 8, None) == 4  # --stages counts P x V, V = 2
    with pytest.raises(ValueError, match=f"{name} places exactly 2 chunks per rank; got "
                                         f"--chunks 3"):
        build(name, 4, 8, 3)


def test_looped_families_put_stage_s_on_rank_s_mod_p():
    for name in ("looped-bfs", "interleaved-zb"):
        assert build(name, 3, 6, 3).stage_to_rank == (0, 1, 2) * 3
        assert SCHEDULES[name].chunks_rule == ">= 2"


def test_dualpipe_v_overlaps_its_steady_state():
    schedule = build("dualpipe-v", 4, 12)
    for rank, actions in schedule.actions.items():
        pairs = [a for a in actions if isinstance(a, OverlapPair)]
        assert pairs, rank
        for pair in pairs:  # a forward of one chunk with a backward of the other
            assert {pair.forward.stage, pair.backward.stage} == {rank, 7 - rank}
            assert pair.forward.microbatch != pair.backward.microbatch or \
                pair.forward.stage != pair.backward.stage


@pytest.mark.parametrize("call, message", [
    (lambda: build("dualpipe-v", 4, 7), "at least as many microbatches as its 8 stages"),
    (lambda: build("interleaved-zb", 4, 9), "9 microbatches in 2 rounds"),
    (lambda: build("zb-h2", 4, 8, 2), "zb-h2 places 1 chunk per rank"),
    (lambda: formulas.bubble_fraction("zb-v", 4, 8, 2, CostModel(backward_weight=0.5)),
     "holds where the paper's zero bubble does, at F = I = W"),
    (lambda: formulas.bubble_fraction("zb-h2", 4, 6), "needs at least 2p-1 microbatches"),
    (lambda: formulas.bubble_fraction("zb-v", 4, 8, 3), "needs exactly 2 chunks"),
    (lambda: formulas.bubble_fraction("looped-bfs", 4, 3, 2), "3 microbatches for 4 ranks"),
])
def test_sizes_a_family_cannot_take_are_one_clear_line(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cli_simulates_a_v_shaped_family_from_pp_and_from_stages(capsys):
    code, by_depth, _ = run_pplab(capsys, "simulate", "--schedule", "zb-v", "--pp", "4",
                                  "--microbatches", "8")
    assert code == 0 and "zb-v: 4 ranks, 8 stages, 8 microbatches" in by_depth
    assert run_pplab(capsys, "simulate", "--schedule", "zb-v", "--stages", "8",
                     "--microbatches", "8")[:2] == (0, by_depth)


# --- closed forms, against the simulator --------------------------------------------------


def _span_bubble(events) -> float:
    """The most any rank idles between its own first and last action (Table 2's sense)."""
    spans = events.groupby("rank").agg(start=("start", "min"), end=("end", "max"))
    busy = (events["end"] - events["start"]).groupby(events["rank"]).sum()
    return float((spans["end"] - spans["start"] - busy).max())


# One cost per branch of the form's max (T_F, T_I - T_F, T_F + T_I - 2T_W), on both sides of
# the paper's condition, runs in the fast lane; the whole grid of 27 in the whole suite.
ZB_H2_FAST_LANE = {(1, 1, 1), (0.5, 2, 1), (1, 2, 0.5), (2, 0.5, 2)}


@pytest.mark.parametrize("cost", [
    pytest.param(c, id=f"f{c.forward}i{c.backward_input}w{c.backward_weight}",
                 marks=() if (c.forward, c.backward_input, c.backward_weight)
                 in ZB_H2_FAST_LANE else pytest.mark.slow) for c in COSTS])
def test_zb_h2_matches_its_closed_form_in_every_cost_regime(cost):
    f, i, w = cost.forward, cost.backward_input, cost.backward_weight
    for p in (1, 2, 3, 5, 8):
        for m in (2 * p - 1, 2 * p + 2, 3 * p + 1):
            events = simulate(build("zb-h2", p, m), cost)
            got = metrics(events, ranks=range(p))
            assert got["bubble_fraction"] == pytest.approx(
                formulas.bubble_fraction("zb-h2", p, m, cost=cost), abs=1e-12), (p, m)
            assert got["makespan"] - m * (f + i + w) == pytest.approx(
                formulas.zb_h2_bubble_time(p, cost))
            # The paper's (p-1)(T_F+T_B-2T_W) is each rank's own idle time, where it holds.
            if w <= f and 2 * w <= f + i:
                assert _span_bubble(events) == pytest.approx((p - 1) * (f + i - 2 * w))


def test_zb_h2_is_zero_bubble_inside_each_rank_at_equal_costs_and_holds_2p_minus_1():
    cost = CostModel(forward=1, backward_input=1, backward_weight=1)
    events = simulate(build("zb-h2", 4, 10), cost)
    assert _span_bubble(events) == pytest.approx(0.0)
    # The flushed step keeps only the last rank's wait for its first forward.
    assert metrics(events)["makespan"] == pytest.approx(10 * 3 + 3 * 1)
    zb_h1 = metrics(simulate(build("zb-h1", 4, 10), cost))["peak_activations"]
    assert metrics(events)["peak_activations"] == {s: 7 for s in range(4)}
    assert zb_h1 == {s: 4 for s in range(4)}


@pytest.mark.slow
def test_zb_v_matches_its_closed_form_where_the_paper_gives_zero_bubble():
    for unit in (0.5, 1, 2):
        cost = CostModel(forward=unit, backward_input=unit, backward_weight=unit)
        for p in range(1, 8):
            for m in (2 * p - 1, 2 * p, 3 * p + 2):
                events = simulate(build("zb-v", p, m), cost)
                assert metrics(events)["bubble_fraction"] == pytest.approx(
                    formulas.bubble_fraction("zb-v", p, m, 2, cost), abs=1e-12), (p, m)
                assert _span_bubble(events) == pytest.approx(0.0)


@pytest.mark.parametrize("cost", fast_first(1, [CostModel(), CostModel(forward=1, backward=3),
                                                 CostModel(forward=2, backward=1)]),
                         ids=["1:2", "1:3", "2:1"])
def test_looped_bfs_matches_interleaved_1f1bs_form_from_m_equal_p(cost):
    for p in range(1, 8):
        for v in (2, 3):
            for m in (p, p + 1, 2 * p + 3):
                events = simulate(build("looped-bfs", p, m, v), cost)
                assert metrics(events)["bubble_fraction"] == pytest.approx(
                    formulas.bubble_fraction("looped-bfs", p, m, v, cost)), (p, v, m)


@pytest.mark.slow
def test_new_peak_activations_match_closed_forms():
    for name, v in (("zb-h2", 1), ("zb-v", 2), ("looped-bfs", 2), ("looped-bfs", 3)):
        for p in range(1, 7):
            for m in range(1, 2 * p + 4):
                peaks = metrics(simulate(build(name, p, m, v)))["peak_activations"]
                assert peaks == formulas.peak_activations(name, p, m, v), (name, p, m)


def test_closed_form_lookup_knows_the_new_forms():
    zb_v = formulas.closed_form_for(build("zb-v", 4, 8), CostModel(backward_input=1,
                                                                   backward_weight=1))
    assert zb_v.value == pytest.approx(3 / 51) and zb_v.form.text.startswith("(p-1)/(6m+p-1)")
    uneven = formulas.closed_form_for(build("zb-v", 4, 8), CostModel(backward_weight=0.5))
    assert uneven.value is None and "F = I = W" in uneven.note
    assert formulas.closed_form_for(build("dualpipe-v", 4, 8)).form is None
