"""Closed forms: known values from the papers, their limits, and the zb-h1 cost regimes."""

from __future__ import annotations

import itertools

import pytest
from lanes import fast_first

from pplab.formulas import parallel as pf
from pplab.formulas import pipeline as formulas
from pplab.formulas.zero_bubble import zb_h1_paper_bubble_time
from pplab.schedules import build
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline import metrics


def test_textbook_values():
    assert formulas.bubble_fraction("gpipe", 4, 8) == pytest.approx(3 / 11)
    assert formulas.bubble_fraction("1f1b", 8, 1) == pytest.approx(7 / 8)
    assert formulas.bubble_fraction("interleaved-1f1b", 4, 8, 2) == pytest.approx(3 / 19)
    assert formulas.bubble_fraction("naive", 4, 8) == pytest.approx(3 / 4)
    assert formulas.bubble_fraction("pipedream", 4, 8, num_steps=3) == pytest.approx(3 / 27)
    # Unit F, I, W: the ZB paper's (p-1)(T_F+T_I-T_W) = p-1 over 3m + p-1.
    unit = CostModel(backward_input=1, backward_weight=1)
    assert formulas.bubble_fraction("zb-h1", 4, 8, cost=unit) == pytest.approx(3 / 27)


def test_ratio_to_ideal_is_the_papers_normalisation():
    assert formulas.bubble_ratio_to_ideal("1f1b", 4, 8) == pytest.approx(3 / 8)
    assert formulas.bubble_ratio_to_ideal("interleaved-1f1b", 4, 8, 2) == pytest.approx(3 / 16)


def test_zb_h1_table2_form_holds_while_w_is_the_smallest():
    cost = CostModel(forward=2, backward_input=1.5, backward_weight=1)
    assert formulas.zb_h1_bubble_time(5, cost) == pytest.approx(4 * (2 + 1.5 - 1))
    assert zb_h1_paper_bubble_time(5, cost) == formulas.zb_h1_bubble_time(5, cost)


@pytest.mark.parametrize("f, i, w", fast_first(3, itertools.product((0.5, 1, 2), (0.5, 1, 2),
                                                                   (0.5, 1, 2))))
def test_zb_h1_bubble_time_matches_simulator_in_every_regime(f, i, w):
    cost = CostModel(forward=f, backward_input=i, backward_weight=w)
    for p, m in ((2, 2), (4, 4), (4, 9), (6, 13)):
        makespan = metrics(simulate(build("zb-h1", p, m), cost))["makespan"]
        assert makespan - m * (f + i + w) == pytest.approx(formulas.zb_h1_bubble_time(p, cost))


def test_zb_h1_paper_form_alone_is_wrong_when_w_exceeds_f():
    # T_W > T_F: Table 2's (p-1)(T_F+T_I-T_W) would predict less bubble than there is.
    cost = CostModel(forward=1, backward_input=1, backward_weight=2)
    makespan = metrics(simulate(build("zb-h1", 4, 8), cost))["makespan"]
    assert makespan - 8 * 4 == pytest.approx(3 * 1)  # (p-1) T_I
    assert zb_h1_paper_bubble_time(4, cost) == 3 * (1 + 1 - 2) < makespan - 8 * 4


def test_peaks():
    assert formulas.peak_activations("gpipe", 3, 5) == {0: 5, 1: 5, 2: 5}
    assert formulas.peak_activations("1f1b", 4, 2) == {0: 2, 1: 2, 2: 2, 3: 1}
    assert formulas.peak_activations("zb-h1", 4, 8) == {0: 4, 1: 4, 2: 4, 3: 4}
    assert formulas.peak_activations("interleaved-1f1b", 4, 8, 2) == {
        0: 8, 1: 8, 2: 7, 3: 5, 4: 4, 5: 4, 6: 3, 7: 1}


def test_bytes():
    assert pf.activation_bytes(2, 16, 64) == 2 * 16 * 64 * 4
    assert pf.activation_bytes(1, 8, 8, bytes_per_element=2) == 128
    assert pf.pipeline_send_bytes(4, 8, 1, 1, 25) == 2 * 3 * 8 * 100
    assert pf.pipeline_send_bytes(4 * 2, 8, 1, 1, 25) == 2 * 7 * 8 * 100
    assert pf.pipeline_send_bytes(1, 8, 1, 1, 25) == 0


def test_bytes_match_simulated_sends():
    cost = CostModel(latency=0.01, message_bytes=1000)
    events = simulate(build("interleaved-1f1b", 4, 8, 2), cost)
    sent = int(events.loc[events["kind"] == "send", "bytes"].sum())
    assert sent == pf.pipeline_send_bytes(4 * 2, 8, 1, 1, 250)


@pytest.mark.parametrize("call, message", [
    (lambda: formulas.bubble_fraction("1f1b", 0, 8), "at least 1 rank, got 0"),
    (lambda: formulas.bubble_fraction("gpipe", 4, 0), "at least 1 microbatch, got 0"),
    (lambda: formulas.bubble_fraction("nope", 4, 8), "no closed form for schedule 'nope'"),
    (lambda: formulas.bubble_fraction("interleaved-1f1b", 4, 6, 2), "got 6"),
    (lambda: formulas.bubble_fraction("1f1b", 4, 8, 2), "got num_chunks 2"),
    (lambda: formulas.bubble_fraction("zb-h1", 4, 3), "3 microbatches for 4 stages"),
    (lambda: formulas.bubble_fraction("1f1b", 4, 8, cost=CostModel(latency=1)),
     "free communication"),
    (lambda: formulas.bubble_fraction("1f1b", 2, 8, cost=CostModel(stage_scale=(1, 2))),
     "equal stages"),
    (lambda: pf.activation_bytes(0, 8, 8), "microbatch_size must be >= 1, got 0"),
    (lambda: pf.pipeline_send_bytes(2, 0, 1, 1, 1), "0 microbatches"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
