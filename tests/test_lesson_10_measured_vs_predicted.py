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
PARTS = 5  # rows of the breakdown before the step time


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPLAB_LEARNER", raising=False)


# ---- the breakdown ----------------------------------------------------------------------------

def test_the_lesson_has_clean_and_shared_runs_and_no_asynchronous_one():
    shared = {name: compare_run(name).shared for name in lesson_runs()}
    assert {"1f1b-p2m8", "gpipe-p2m8", "1f1b-p4m8"} <= set(shared)
    assert not shared["1f1b-p2m8"] and shared["1f1b-p4m8"]
    assert "pipedream-p4m8" not in shared


@pytest.mark.parametrize("name", ["1f1b-p2m8", "gpipe-p4m8"])
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


def test_a_bad_link_falls_back_with_a_caption(tmp_path):
    app = _widget(tmp_path, {"run": "no-such-run", "schedule": "fast", "m": "lots"})
    said = " ".join(c.value for c in app.caption)
    assert "run = 'no-such-run'" in said and "schedule = 'fast'" in said and "m = 'lots'" in said
    assert app.selectbox(key="l10_run").value == "1f1b-p4m8"


# ---- the exercise -----------------------------------------------------------------------------

@pytest.mark.parametrize("learner", LEARNERS)
def test_the_reference_answers_are_right(learner):
    verdicts = check(EXERCISE, learner, right_answers(numbers(EXERCISE.id, learner)))
    assert [v.right for v in verdicts] == [True] * 4, verdicts


def _truth(n: dict, key: str) -> float:
    if key == "a":
        return 1e3 * calibration_for(bundled_run(n["run_a"]), save=False).measured.step_time
    from pplab.calibration import what_if

    run = bundled_run(n["run_b"])
    return 1e3 * what_if(run, calibration_for(run, save=False), schedule=n["schedule_wi"],
                         microbatches=n["m_wi"]).step_time


@pytest.mark.parametrize("learner", LEARNERS)
def test_the_naive_answer_is_refused_where_it_is_more_than_ten_percent_off(learner):
    n = numbers(EXERCISE.id, learner)
    for key, m in (("a", n["m_a"]), ("b", n["m_wi"])):
        ideal = naive(n, key, m)
        verdict = check(EXERCISE, learner, {key: f"{ideal:.1f}"})[0]
        off = abs(ideal / _truth(n, key) - 1)
        assert verdict.right == (off <= TOLERANCE), (key, off, verdict)
        if not verdict.right:
            assert "naive ideal (m+p-1)(F+B)" in verdict.message
    # the 4-ranks-on-2-cores what-if is far from both the ideal and the one-core-per-rank path
    assert abs(naive(n, "b", n["m_wi"]) / _truth(n, "b") - 1) > TOLERANCE
    alone = check(EXERCISE, learner, {"b": f"{critical_path(n, 'b', n['m_wi']):.1f}"})[0]
    assert not alone.right and "core of its own" in alone.message


def test_the_usual_mistakes_are_named_and_never_hold_the_answer():
    for learner in LEARNERS:
        n = numbers(EXERCISE.id, learner)
        right = right_answers(n)
        for key, answers in wrong_answers(n).items():
            for answer in answers:
                verdict = check(EXERCISE, learner, {key: answer})[0]
                if key != "c" and abs(float(answer) / _truth(n, key) - 1) <= TOLERANCE:
                    continue  # a rough model can land within 10%: then it is right
                assert not verdict.right and "\n" not in verdict.message, (key, answer)
                assert right[key] not in verdict.message.replace(answer, "")
                assert "disagrees with the simulator" not in verdict.message, (key, answer)
        for option, _ in EXERCISE.part("d").options:
            if option != right["d"]:
                verdict = check(EXERCISE, learner, {"d": option})[0]
                assert not verdict.right and right["d"] not in verdict.message
