"""Lesson 5 works: the split search is exact, the widget honours a typed split, the exercise
judges right and wrong answers, and the bundled run's memory falls stage by stage as 1F1B's
closed form says.

    .venv/bin/python -m pytest -q tests/test_lesson_05_stage_split.py
"""

from __future__ import annotations

import itertools
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest
from solutions_stage_split import mistakes, right_answers

from pplab.engine.request import split_layers
from pplab.exercises import check, get_exercise, numbers
from pplab.runs.resources import bundled_runs_dir
from pplab.runs.run_dirs import load_run
from pplab.teaching.stage_memory import fit_activation_bytes, formula_bytes, measured_memory
from pplab.teaching.stage_split import (
    LESSON_RUN,
    LayerCosts,
    all_splits,
    best_split,
    bundled_costs,
    count_splits,
    fastest_with_bottleneck,
    lower_bound,
    min_bottleneck,
    read_split,
    step_time,
)

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = get_exercise("stage-split")
LEARNERS = [f"learner-{n}" for n in range(6)]


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPLAB_LEARNER", raising=False)


# Costs chosen by hand, one per shape: plain layers, a heavy embedding and head, extras on
# both sides, negative fitted extras. Random ones beside them in the whole suite.
HAND_PICKED_COSTS = [LayerCosts(1, 2), LayerCosts(1, 2, 0, 0, 2, 4), LayerCosts(1, 2, 1, 1, 0, 0),
                     LayerCosts(0.5, 1.5, -0.2, 0.3, 1.5, -0.5)]
# The fast lane simulates every split for one hand-picked cost (the one with negative fitted
# extras); the whole suite for each of them and for random ones.
COSTS = [pytest.param("one-hand-picked", id="one-hand-picked-cost"),
         pytest.param("hand-picked", id="hand-picked-costs", marks=pytest.mark.slow),
         pytest.param("random", id="random-costs", marks=pytest.mark.slow)]


def _small_cases(which: str = "hand-picked"):
    """Costs (with negative fitted extras too), sizes and schedules small enough to simulate
    every split."""
    rng = random.Random(5)
    hand_picked = {"one-hand-picked": HAND_PICKED_COSTS[-1:], "hand-picked": HAND_PICKED_COSTS}
    costs = list(hand_picked[which]) if which in hand_picked else [
        LayerCosts(rng.choice((0.5, 1, 2)), rng.choice((1, 2, 3)), rng.choice((0, 0.5, 1)),
                   rng.choice((0, 1, 2)), rng.choice((0, 1, 3)), rng.choice((0, 2, 4)))
        for _ in range(4)]
    for cost, (layers, p), m, schedule in itertools.product(
            costs, ((3, 1), (4, 2), (6, 3), (7, 4)), (1, 3, 8), ("1f1b", "gpipe")):
        yield cost, layers, p, m, schedule


@pytest.mark.parametrize("which", COSTS)
def test_best_split_is_the_shortest_step_of_every_split_simulated(which):
    for cost, layers, p, m, schedule in _small_cases(which):
        every = {s: step_time(cost, s, m, schedule) for s in all_splits(layers, p)}
        assert len(every) == count_splits(layers, p)
        shortest = min(every.values())
        found = best_split(cost, layers, p, m, schedule)
        assert found.step_time == pytest.approx(shortest, rel=1e-9), (cost, layers, p, m)
        assert every[found.split] == pytest.approx(shortest, rel=1e-9)
        assert found.simulated <= found.splits
        for split, time in every.items():  # the bound the search prunes with never overshoots
            assert lower_bound(cost.stage_times(split), m) <= time * (1 + 1e-9), split


@pytest.mark.parametrize("which", COSTS)
def test_balancing_and_the_claim_checker_agree_with_brute_force(which):
    for cost, layers, p, m, schedule in _small_cases(which):
        if schedule != "1f1b" or m != 8:
            continue
        slowest = {s: max(cost.stage_times(s)) for s in all_splits(layers, p)}
        assert min_bottleneck(cost, layers, p) == pytest.approx(min(slowest.values()))
        for claim in sorted(set(slowest.values()))[:3]:
            times = [step_time(cost, s, m) for s, t in slowest.items() if t == claim]
            split, time = fastest_with_bottleneck(cost, layers, p, m, claim)
            assert time == pytest.approx(min(times)) and slowest[split] == claim
        assert fastest_with_bottleneck(cost, layers, p, m, min(slowest.values()) - 0.1) is None


def test_a_typed_split_is_read_as_train_reads_it_and_a_bad_one_is_refused():
    assert read_split("3,3,2", 8, 3) == (3, 3, 2)
    assert read_split(" 3, 3,2 ", 8, 3) == (3, 3, 2)
    assert read_split("", 8, 3) == split_layers(8, 3)
    for bad, words in (("3,3", "2 parts for 3"), ("3,3,3", "sums to 9"), ("4,4,0", "at least 1"),
                       ("a,b,c", "layer counts")):
        with pytest.raises(ValueError, match=words):
            read_split(bad, 8, 3)
    with pytest.raises(ValueError, match="search takes up to"):
        best_split(LayerCosts(1, 2), 40, 12, 8)


def test_the_calibrated_costs_come_from_the_bundled_run():
    costs, calibration = bundled_costs()
    assert calibration.layer_split == (2, 2, 2, 2) and costs.unit == "s"
    assert costs.layer_f > 0 and costs.layer_b > costs.layer_f
    assert costs.stage_times((2, 2, 2, 2))[1] == pytest.approx(2 * (costs.layer_f
                                                                    + costs.layer_b))
    heavier = costs.with_head(2)
    assert heavier.in_layers()[1] == pytest.approx(costs.in_layers()[1] + 2)


# ---- memory -------------------------------------------------------------------------------

def test_measured_memory_per_stage_falls_as_the_1f1b_formula_says():
    memory = measured_memory(load_run(bundled_runs_dir() / LESSON_RUN))
    p, m = memory.pp_size, memory.num_microbatches
    assert memory.schedule == "1f1b" and memory.layer_split == (2,) * p
    assert memory.formula_held == tuple(min(p - i, m) for i in range(p))
    assert memory.held == memory.formula_held, "the measured events held other counts"
    peaks = memory.peak_bytes
    assert all(a > b for a, b in zip(peaks, peaks[1:], strict=False)), peaks
    for i in range(1, p):  # same layers: the ratio is the formula's, but for the head's extra
        formula = min(p, m) / min(p - i, m)
        assert peaks[0] / peaks[i] == pytest.approx(formula, rel=0.1), (i, peaks)
    gpipe = measured_memory(load_run(bundled_runs_dir() / "gpipe-p4m8"))
    assert gpipe.held == (m,) * p
    assert formula_bytes(memory, gpipe) == pytest.approx(peaks, rel=0.01)
    fitted = fit_activation_bytes(memory)
    assert fitted.peaks(memory.layer_split, m) == pytest.approx(peaks, rel=0.01)


# ---- the exercise -------------------------------------------------------------------------

def test_the_reference_answers_are_right_for_several_learners():
    for learner in LEARNERS:
        n = numbers("stage-split", learner)
        verdicts = check(EXERCISE, learner, right_answers(n))
        assert [v.right for v in verdicts] == [True, True, True], (learner, verdicts)
        assert all(v.message.startswith("right") and "\n" not in v.message for v in verdicts)


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?(?:/\d+)?", text))


@pytest.mark.slow
def test_usual_mistakes_are_refused_named_and_never_given_the_answer():
    named = {"equal": 0, "head": 0}
    for learner in LEARNERS:
        n = numbers("stage-split", learner)
        right = right_answers(n)
        truth = Fraction(right["a"])
        question = EXERCISE.intro + " " + " ".join(part.question(EXERCISE.variant(learner))
                                                   for part in EXERCISE.parts)
        for part, wrongs in mistakes(n).items():
            for answer in map(str, wrongs):
                if part == "a" and Fraction(answer) == truth:
                    continue
                verdict = check(EXERCISE, learner, {part: answer})[0]
                assert not verdict.right, (learner, part, answer)
                assert "\n" not in verdict.message
                if part == "a":
                    leaked = [t for t in _tokens(verdict.message) - _tokens(question)
                              - _tokens(answer) if Fraction(t) == truth]
                    assert not leaked, verdict.message
                    named["equal"] += "as equal as they go" in verdict.message
                    named["head"] += "head" in verdict.message
                else:
                    assert re.sub(r"\s", "", right["c"]) not in re.sub(r"\s", "",
                                                                       verdict.message)
        for option in ("stage-0", "stage-1", "last-stage", "all-equal"):
            if option != right["b"]:
                verdict = check(EXERCISE, learner, {"b": option})[0]
                assert not verdict.right and right["b"] not in verdict.message
    assert named["equal"] >= len(LEARNERS) - 1 and named["head"] >= len(LEARNERS)


def test_answers_near_the_right_one_are_wrong():
    n = numbers("stage-split", "ada")
    truth = Fraction(right_answers(n)["a"])
    for near in (truth - 3, truth - Fraction(1, 2), truth + Fraction(1, 2), truth + 3):
        assert not check(EXERCISE, "ada", {"a": str(near)})[0].right, near


# ---- the widget ---------------------------------------------------------------------------

WIDGET = """
import sys
sys.path.insert(0, {app!r})
import streamlit as st
from lesson_widgets import stage_split as w
st.session_state["shown"] = w.show(dict(w.DEFAULTS) | {config!r})
"""


def _widget(tmp_path, config: dict | None = None):
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "widget.py"
    script.write_text(WIDGET.format(app=str(ROOT / "app"), config=config or {}))
    return AppTest.from_file(str(script), default_timeout=120).run()


def test_widget_renders_honours_a_typed_split_and_falls_back_on_a_bad_one(tmp_path):
    app = _widget(tmp_path)
    assert not app.exception, app.exception
    assert {m.label for m in app.metric} >= {"Your step (predicted)", "Bubble (predicted)",
                                             "Best split (shortest step)"}
    assert len(app.get("plotly_chart")) >= 3
    assert app.session_state["shown"] == {"layers": "8", "p": "4", "microbatches": "8",
                                          "split": "", "head": "0", "schedule": "1f1b"}
    costs = bundled_costs()[0]
    app.text_input(key="l05_split").input("3,2,2,1").run()
    assert not app.exception
    step = step_time(costs, (3, 2, 2, 1), 8)
    assert app.metric[0].value == f"{step * 1e3:.1f} ms"
    assert app.session_state["shown"]["split"] == "3,2,2,1"
    app.text_input(key="l05_split").input("3,3,2").run()
    assert not app.exception
    said = " ".join(c.value for c in app.caption)
    assert "'3,3,2' cannot be used" in said and "3 parts for 4" in said
    assert app.metric[0].value == f"{step_time(costs, (2, 2, 2, 2), 8) * 1e3:.1f} ms"


def test_widget_reads_bad_configuration_values_as_their_defaults(tmp_path):
    app = _widget(tmp_path, {"layers": "lots", "head": "-1", "schedule": "zz", "p": "99"})
    assert not app.exception, app.exception
    said = " ".join(c.value for c in app.caption)
    for name in ("layers 'lots'", "head '-1'", "schedule 'zz'", "p '99'"):
        assert name in said, said
    assert app.session_state["shown"]["layers"] == "8"


def test_an_old_link_that_named_the_depth_stages_still_sets_p(tmp_path):
    app = _widget(tmp_path, {"stages": "2"})
    assert not app.exception, app.exception
    assert app.slider(key="l05_p").value == 2
    assert app.session_state["shown"]["p"] == "2" and "stages" not in app.session_state["shown"]
