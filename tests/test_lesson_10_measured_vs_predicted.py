"""Lesson 10: a bundled run three ways, its step's time in five parts, and its exercise.

The breakdown of a bundled run's median step adds up to that step (measured) and to each
prediction's step; the widget draws the three timelines, the breakdown and a what-if under
AppTest and falls back with a caption on a bad link; the exercise takes the reference answers
(tests/solutions_measured_vs_predicted.py), refuses the usual mistakes that are more than 10%
off with the mistake named, and never prints the right value in a wrong answer's feedback.

    .venv/bin/python -m pytest -q tests/test_lesson_10_measured_vs_predicted.py
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from solutions_measured_vs_predicted import (
    critical_path,
    naive,
    right_answers,
    wrong_answers,
)
from streamlit.testing.v1 import AppTest

from pplab.calibration import calibration_for
from pplab.exercises import check, get_exercise, numbers
from pplab.exercises.measured_vs_predicted import (
    TOLERANCE,
    bundled_run,
    compare_run,
    lesson_runs,
)

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = get_exercise("measured-vs-predicted")
LEARNERS = [f"learner-{n}" for n in range(6)]
# A new learner's numbers calibrate bundled runs (seconds each): the fast lane checks
# learner-0 (whose numbers the other files' fast tests draw too), the whole suite all six.
EACH_LEARNER = [pytest.param(learner, marks=[pytest.mark.slow] if learner != LEARNERS[0] else [])
                for learner in LEARNERS]
PARTS = 5  # rows of the breakdown before the step time


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPLAB_LEARNER", raising=False)


# ---- the breakdown ----------------------------------------------------------------------------

@pytest.mark.slow  # compares every lesson run
def test_the_lesson_has_clean_and_shared_runs_and_no_asynchronous_one():
    shared = {name: compare_run(name).shared for name in lesson_runs()}
    assert {"1f1b-p2m8", "gpipe-p2m8", "1f1b-p4m8"} <= set(shared)
    assert not shared["1f1b-p2m8"] and shared["1f1b-p4m8"]
    assert "pipedream-p4m8" not in shared


@pytest.mark.parametrize("name", ["1f1b-p2m8",
                                  pytest.param("gpipe-p4m8", marks=pytest.mark.slow)])
def test_the_five_parts_add_up_to_each_step(name):
    table = compare_run(name).table
    for column in ("measured (ms)", "calibrated (ms)", "naive (ms)", "measured - naive (ms)"):
        parts, step = table[column].iloc[:PARTS].sum(), table[column].iloc[PARTS]
        assert math.isclose(parts, step, rel_tol=1e-9, abs_tol=1e-9), (name, column)
    assert (table.iloc[:PARTS][["measured (ms)", "calibrated (ms)", "naive (ms)"]] >= 0).all(
        axis=None)


def test_the_breakdown_is_of_the_measured_median_step():
    # five steady steps: their median is one of them, the step the breakdown cuts
    comparison = compare_run("1f1b-p2m8")
    median = 1e3 * calibration_for(bundled_run("1f1b-p2m8"), save=False).measured.step_time
    assert math.isclose(comparison.step_ms("measured (ms)"), median, rel_tol=1e-9)
    naive_parts = comparison.table.set_index("per rank")["naive (ms)"]
    assert naive_parts["contention"] == naive_parts["communication"] == 0


# ---- the widget -------------------------------------------------------------------------------

def _widget(tmp_path, config: dict | None) -> AppTest:
    script = tmp_path / "widget.py"
    given = "dict(w.DEFAULTS)" if config is None else repr(config)
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT / 'app')!r})\n"
                      f"from lesson_widgets import measured_vs_predicted as w\n"
                      f"shown = w.show({given})\n")
    app = AppTest.from_file(str(script), default_timeout=120).run()
    assert not app.exception, app.exception
    return app


def test_the_widget_draws_three_timelines_the_breakdown_and_a_what_if(tmp_path):
    app = _widget(tmp_path, None)
    labels = [m.label for m in app.metric]
    for label in ("Step time (naive prediction)", "Step time (calibrated replay)",
                  "Step time (measured)", "Step time (calibrated, predicted)"):
        assert label in labels, labels
    charts = app.get("plotly_chart")
    assert len(charts) == 3, "the three timelines, the breakdown bars, the what-if"
    assert len(app.dataframe) == 1 and not app.caption[0].value.startswith("run =")
    app.selectbox(key="l10_run").set_value("gpipe-p2m8").run()
    app.number_input(key="l10_m").set_value(4).run()
    assert not app.exception, app.exception
    assert "one core each" in app.caption[0].value


@pytest.mark.slow  # a page flow
def test_a_bad_link_falls_back_with_a_caption(tmp_path):
    app = _widget(tmp_path, {"run": "no-such-run", "schedule": "fast", "m": "lots"})
    said = " ".join(c.value for c in app.caption)
    assert "run = 'no-such-run'" in said and "schedule = 'fast'" in said and "m = 'lots'" in said
    assert app.selectbox(key="l10_run").value == "1f1b-p4m8"


# ---- the exercise -----------------------------------------------------------------------------

@pytest.mark.parametrize("learner", EACH_LEARNER)
def test_the_reference_answers_are_right(learner):
    verdicts = check(EXERCISE, learner, right_answers(numbers(EXERCISE.id, learner)))
    assert [v.right for v in verdicts] == [True] * 4, verdicts


def _truth(n: dict, key: str) -> float:
    """The calibrated model with the part's change: compute ``speed_a`` times faster, or the
    ranks sharing ``cores_wi`` cores (built here from the calibration, not by the judge)."""
    from dataclasses import replace

    from pplab.calibration.predict import predict
    from pplab.calibration.run_prediction import schedule_of
    from pplab.schedules import build

    run = bundled_run(n[f"run_{key}"])
    calibration = calibration_for(run, save=False)
    if key == "a":
        speed = n["speed_a"]
        faster = replace(calibration, compute={s: {k: c / speed for k, c in costs.items()}
                                               for s, costs in calibration.compute.items()})
        return 1e3 * predict(faster, schedule_of(run)).step_time
    heavier = replace(calibration, tail=n["tail_b"] * calibration.tail)
    schedule = build(schedule_of(run).name, calibration.pp_size, n["m_wi"])
    return 1e3 * predict(heavier, schedule, samples=1).step_time


@pytest.mark.parametrize("learner", EACH_LEARNER)
def test_the_naive_ideal_is_never_right_and_each_part_says_its_tolerance(learner):
    n = numbers(EXERCISE.id, learner)
    for key, m, speed in (("a", n["m_a"], n["speed_a"]), ("b", n["m_wi"], 1)):
        ideal = naive(n, key, m) / speed
        verdict = check(EXERCISE, learner, {key: f"{ideal:.1f}"})[0]
        tolerance = n[f"tol_{key}"] / 100
        assert 0.02 <= tolerance <= TOLERANCE
        assert f"within {n[f'tol_{key}']:g}%" in EXERCISE.part(key).question(
            EXERCISE.variant(learner))
        assert abs(ideal / _truth(n, key) - 1) > tolerance, (key, ideal, tolerance)
        assert not verdict.right and "naive ideal (m+p-1)(F+B)" in verdict.message, verdict
    # the tail as the run measured it is the usual slip of (b)
    same_tail = check(EXERCISE, learner, {"b": f"{critical_path(n, 'b', n['m_wi']):.1f}"})[0]
    assert not same_tail.right and "tail as the run measured it" in same_tail.message


@pytest.mark.parametrize("learners", [
    pytest.param(LEARNERS[:1], id="1-learner"),
    pytest.param(LEARNERS[1:], id="5-more-learners", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_the_usual_mistakes_are_named_and_never_hold_the_answer(learners):
    for learner in learners:
        n = numbers(EXERCISE.id, learner)
        right = right_answers(n)
        for key, answers in wrong_answers(n).items():
            for answer in answers:
                verdict = check(EXERCISE, learner, {key: answer})[0]
                if key != "c" and abs(float(answer) / _truth(n, key) - 1) <= n[f"tol_{key}"] / 100:
                    continue  # a rough model can land within the tolerance: then it is right
                assert not verdict.right and "\n" not in verdict.message, (key, answer)
                assert right[key] not in verdict.message.replace(answer, "")
                assert "disagrees with the simulator" not in verdict.message, (key, answer)
        for option, _ in EXERCISE.part("d").options:
            if option != right["d"]:
                verdict = check(EXERCISE, learner, {"d": option})[0]
                assert not verdict.right and right["d"] not in verdict.message
