"""Several steps in one walk: a barrier keeps each step's fill, post-validation overlaps it away.

The zero-bubble paper's ZB-H2 reaches zero only when the optimizer's synchronisation is
bypassed (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 2.2 and Sec. 4); every closed form
says which regime it holds in, and the simulator holds each to it.

    pytest -q tests/test_overlapping_steps.py
"""

from __future__ import annotations

import itertools

import pytest
from command_helpers import run_pplab, strict_json

from pplab.formulas import pipeline as formulas
from pplab.formulas.closed_forms import CLOSED_FORMS, FLUSHED, OVERLAPPED, OVERLAPPED_FORMS
from pplab.schedules import build
from pplab.schedules.steps import repeat_steps, validation_points
from pplab.sim.cost_model import CostModel
from pplab.sim.optimizer_steps import allreduce_time
from pplab.sim.simulator import simulate
from pplab.timeline.steady_state import steady_state

EQUAL = CostModel.parse("f=1,i=1,w=1")


def _run(name, p, m, sync, cost=EQUAL, steps=4, chunks=1):
    schedule = repeat_steps(build(name, p, m, chunks), steps)
    events = simulate(schedule, cost, optimizer_sync=sync)
    return schedule, events, steady_state(events, range(p))


def test_zb_h2_reaches_zero_only_when_steps_overlap():
    _, _, post = _run("zb-h2", 4, 8, "post")
    _, _, barrier = _run("zb-h2", 4, 8, "barrier")
    assert post["steady_state"]["bubble_fraction"] < 0.03
    assert post["steady_state"]["bubble_fraction"] == pytest.approx(0.0, abs=1e-12)
    assert post["steady_state"]["step_time"] == pytest.approx(24)  # m (F + I + W)
    assert barrier["steady_state"]["bubble_fraction"] == pytest.approx(1 / 9)  # 11.11 %
    for result in (post, barrier):  # the first step has nothing to overlap with
        assert result["first_step"]["bubble_fraction"] == pytest.approx(1 / 9)


def test_the_cli_prints_both_regimes_for_the_issue_example(capsys):
    base = ["simulate", "--schedule", "zb-h2", "--pp", "4", "--microbatches", "8",
            "--cost", "f=1,i=1,w=1", "--steps", "4"]
    code, out, _ = run_pplab(capsys, *base, "--json", "--optimizer-sync", "post")
    post = strict_json(out)
    barrier = strict_json(run_pplab(capsys, *base, "--json")[1])  # --steps alone: a barrier
    assert code == 0
    assert post["steady_state"]["bubble_fraction"] < 0.03
    assert round(barrier["steady_state"]["bubble_fraction"], 4) == 0.1111
    assert post["closed_form"]["regime"] == OVERLAPPED
    assert barrier["closed_form"]["regime"] == FLUSHED
    assert post["closed_form"]["bubble_fraction"] == pytest.approx(0.0)
    text = run_pplab(capsys, *base, "--optimizer-sync", "post")[1]
    assert "steady state     24 cost units per step, bubble 0.00% per step" in text
    code, _, err = run_pplab(capsys, "simulate", "--schedule", "pipedream", "--pp", "2",
                             "--microbatches", "2", "--optimizer-sync", "post")
    assert code != 0 and "synchronous" in err


COSTS = [0.5, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("name,p,m", [("zb-h2", 3, 6),  # the fast lane's
                                      pytest.param("zb-h1", 3, 4, marks=pytest.mark.slow),
                                      pytest.param("zb-h2", 4, 8, marks=pytest.mark.slow),
                                      pytest.param("zb-h1", 4, 8, marks=pytest.mark.slow)])
def test_overlapped_zero_bubble_forms_match_the_simulator_at_any_costs(name, p, m):
    for f, i, w in itertools.product(COSTS, COSTS, COSTS):
        cost = CostModel(forward=f, backward_input=i, backward_weight=w, backward=i + w)
        schedule, _, result = _run(name, p, m, "post", cost, steps=3)
        closed = formulas.closed_form_for(schedule, cost, "post")
        assert result["steady_state"]["bubble_fraction"] == pytest.approx(closed.value), \
            (f, i, w)


@pytest.mark.parametrize("name,chunks", [("gpipe", 1), ("1f1b", 1), ("interleaved-1f1b", 2),
                                         ("looped-bfs", 2), ("naive", 1), ("zb-h1", 1),
                                         ("zb-h2", 1)])
def test_every_family_keeps_its_flushed_form_under_a_barrier_and_says_its_regime(name, chunks):
    for p, m in [(2, 4), (4, 8)]:
        schedule, _, result = _run(name, p, m, "barrier",
                                   CostModel.parse("f=1,b=2.5,i=1.5,w=1"), steps=3,
                                   chunks=chunks)
        closed = formulas.closed_form_for(schedule, CostModel.parse("f=1,b=2.5,i=1.5,w=1"))
        assert closed.form.regime == FLUSHED
        assert result["steady_state"]["bubble_fraction"] == pytest.approx(closed.value)
        if name in ("zb-h1", "zb-h2"):
            continue
        overlapped = formulas.closed_form_for(schedule, CostModel.parse("f=1,b=2.5,i=1.5,w=1"),
                                              "post")
        _, _, post = _run(name, p, m, "post", CostModel.parse("f=1,b=2.5,i=1.5,w=1"), steps=3,
                          chunks=chunks)
        assert overlapped.form.regime == OVERLAPPED
        assert post["steady_state"]["bubble_fraction"] == pytest.approx(overlapped.value)


def test_families_without_an_overlapped_form_say_so_and_pplabs_extensions_are_labelled():
    schedule = repeat_steps(build("zb-v", 4, 8, 2), 2)
    missing = formulas.closed_form_for(schedule, EQUAL, "post")
    assert missing.form is None and "post-validation" in missing.note
    for forms in (CLOSED_FORMS, OVERLAPPED_FORMS):
        for name, form in forms.items():
            assert form.regime, name
    assert "pplab" in OVERLAPPED_FORMS["zb-h2"].extension
    assert "(p-1)(T_F+T_B-2T_W)" in OVERLAPPED_FORMS["zb-h2"].source  # the paper's, Table 2


def test_validation_waits_for_the_state_passed_back_one_message_per_rank():
    cost = CostModel.parse("f=1,i=1,w=1,comm=0.5,val=0.25,opt=0.5")
    _, events, _ = _run("zb-h2", 4, 8, "post", cost, steps=2)
    validations = events[events["detail"] == "validate step 0"]
    assert sorted(validations["rank"]) == [0, 1, 2]  # the last rank holds the full state
    assert (validations["end"] - validations["start"]).tolist() == pytest.approx([0.25] * 3)
    last_update = events[(events["rank"] == 3) & (events["kind"] == "optim")
                         & (events["step"] == 0)]["start"].min()
    for _, row in validations.iterrows():  # (3 - r) messages of 0.5 after rank 3 has it
        assert row["start"] >= last_update + 0.5 * (3 - row["rank"]) - 1e-9
    # Rank 0 validated step 0 only after it began step 1: the steps overlapped.
    first_forward = events[(events["rank"] == 0) & (events["kind"] == "F")
                           & (events["step"] == 1)]["start"].min()
    assert first_forward < validations[validations["rank"] == 0]["start"].min()


def test_a_barrier_charges_its_all_reduce_between_steps():
    cost = CostModel.parse("f=1,i=1,w=1,comm=0.5")
    _, events, result = _run("zb-h2", 4, 8, "barrier", cost, steps=3)
    flushed = simulate(build("zb-h2", 4, 8), cost)
    makespan = float(flushed["end"].max())
    assert allreduce_time(4, cost) == pytest.approx(2 * 2 * 0.5)
    assert result["steady_state"]["step_time"] == pytest.approx(makespan + allreduce_time(4, cost))


def test_validation_points_are_the_forwards_before_the_first_backward_fed_in_time():
    assert validation_points(build("zb-h2", 4, 8)) == {0: 7, 1: 5, 2: 3, 3: 0}
    assert validation_points(build("1f1b", 4, 8)) == {0: 4, 1: 3, 2: 2, 3: 0}
    assert validation_points(build("gpipe", 3, 4)) == {0: 4, 1: 4, 2: 0}
    repeated = repeat_steps(build("1f1b", 2, 3), 3)
    assert repeated.num_steps == 3 and repeated.microbatches_per_step == 3
    assert [a.microbatch for a in repeated.actions[0]][-6:] == [6, 7, 6, 8, 7, 8]
    with pytest.raises(ValueError, match="asynchronous"):
        repeat_steps(build("pipedream", 2, 2), 2)


def test_simulate_refuses_more_steps_than_pplab_holds_in_one_line(capsys):
    code, _, err = run_pplab(capsys, "simulate", "--schedule", "1f1b", "--pp", "4",
                             "--microbatches", "8", "--steps", "1000000000000")
    assert code == 2 and err.count("\n") == 1 and "pplab handles at most" in err
