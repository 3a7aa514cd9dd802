"""Lesson 6 (interleaved 1F1B): the widget, the exercise's judges, the per-rank memory and the
message counts against the simulator and the bundled runs, and the Playground's per-rank figure.

    .venv/bin/python -m pytest -q tests/test_lesson_06_interleaving.py
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from app_helpers import ROOT, metric, open_page
from lanes import fast_first
from solutions_interleaving import messages, rank_peak, right_answers
from streamlit.testing.v1 import AppTest

from pplab.calibration.per_rank import (
    measured_peak_bytes_per_rank,
    peak_activations_per_rank,
    point_to_point_messages,
    sends_per_step,
)
from pplab.exercises import get_exercise
from pplab.formulas import pipeline as formulas
from pplab.runs.resources import bundled_runs_dir
from pplab.runs.run_dirs import load_run
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

EXERCISE = get_exercise("interleaving")
GRID = [(p, p * k, v) for p in (2, 3, 4, 6) for k in (1, 2, 3) for v in (2, 3, 4)]


def _schedule(p: int, m: int, v: int):
    return build("1f1b", p, m) if v == 1 else build("interleaved-1f1b", p, m, v)


# ---- memory per rank ------------------------------------------------------------------------

@pytest.mark.parametrize("p, m, v", fast_first(4, GRID))
def test_per_rank_closed_form_matches_the_simulated_peak_of_every_rank(p, m, v):
    closed = formulas.peak_activations_per_rank("interleaved-1f1b", p, m, v)
    found = peak_activations_per_rank(simulate(build("interleaved-1f1b", p, m, v)))
    assert {r: float(x) for r, x in closed.items()} == pytest.approx(found, abs=1e-12)
    assert {r: float(rank_peak(p, m, v, r)) for r in range(p)} == pytest.approx(found)


def test_rank_0_holds_korthikantis_factor_not_the_per_stage_double():
    p, m, v = 4, 8, 2
    events = simulate(build("interleaved-1f1b", p, m, v))
    per_stage = metrics(events)["peak_activations"]
    assert per_stage[0] == 8  # the reading that looks like twice 1F1B's 4
    ratio = peak_activations_per_rank(events)[0] / 4
    assert ratio == pytest.approx(1 + (p - 1) / (p * v)) == pytest.approx(1.375)
    for p, m, v in GRID:
        if m > p:
            first = formulas.peak_activations_per_rank("interleaved-1f1b", p, m, v)[0]
            assert first == p * (1 + Fraction(p - 1, p * v)) and first / p < 1 + Fraction(1, v)


def test_one_chunk_per_rank_counts_as_before():
    for name in ("1f1b", "gpipe", "zb-h1"):
        events = simulate(build(name, 4, 8))
        assert peak_activations_per_rank(events) == pytest.approx(
            {r: float(n) for r, n in metrics(events)["peak_activations"].items()})
    assert formulas.peak_activations_per_rank("1f1b", 4, 2) == {0: 2, 1: 2, 2: 2, 3: 1}


@pytest.mark.parametrize("args", [("zb-v", 4, 8, 2), ("interleaved-1f1b", 4, 6, 2),
                                  ("interleaved-1f1b", 4, 8, 1), ("1f1b", 0, 8, 1)])
def test_per_rank_closed_form_refuses_what_it_does_not_cover(args):
    with pytest.raises(ValueError, match="per-rank closed form|at least 1 rank"):
        formulas.peak_activations_per_rank(*args)


def test_measured_runs_hold_about_what_the_count_says_and_send_what_the_schedule_says():
    runs = {name: load_run(bundled_runs_dir() / folder) for name, folder in (
        ("1f1b", "1f1b-p2m8"), ("interleaved", "interleaved-1f1b-p2v2m8"))}
    held = {name: measured_peak_bytes_per_rank(run.events, run.metadata)
            for name, run in runs.items()}
    counted = formulas.peak_activations_per_rank("interleaved-1f1b", 2, 8, 2)
    assert held["interleaved"][0] / held["1f1b"][0] == pytest.approx(float(counted[0] / 2),
                                                                        rel=0.01)
    # rank 1's last chunk holds the loss head: a little under the count of 1.5
    assert 1.4 < held["interleaved"][1] / held["1f1b"][1] <= float(counted[1])
    assert set(sends_per_step(runs["1f1b"].events).values()) == {
        point_to_point_messages(build("1f1b", 2, 8))} == {16}
    assert set(sends_per_step(runs["interleaved"].events).values()) == {
        point_to_point_messages(build("interleaved-1f1b", 2, 8, 2))} == {48}
    with pytest.raises(ValueError, match="not split by stage"):
        measured_peak_bytes_per_rank(runs["1f1b"].events,
                                     {"peak_memory_kind": "cuda max_memory_allocated per rank"})


# ---- messages -------------------------------------------------------------------------------

@pytest.mark.parametrize("p, m, v", fast_first(4, GRID + [(4, 8, 1), (2, 5, 1)]))
def test_message_count_of_the_schedule_is_the_simulated_sends_and_the_lessons_count(p, m, v):
    events = simulate(_schedule(p, m, v), CostModel(latency=0.01))
    assert sends_per_step(events) == {0: point_to_point_messages(_schedule(p, m, v))}
    assert point_to_point_messages(_schedule(p, m, v)) == messages(p, m, v)


@pytest.mark.slow
def test_latency_costs_only_the_crossings_while_a_message_is_shorter_than_a_chunks_work():
    p, m = 4, 8
    for v in (2, 4, 8):
        for latency in (0.05, 0.1, 0.2, 0.4):
            cost = CostModel(forward=1, backward=2, latency=latency)
            step = metrics(simulate(build("interleaved-1f1b", p, m, v), cost))["makespan"]
            fill_and_drain = m * 3 + (p - 1) * 3 / v + 2 * (p * v - 1) * latency
            if latency <= 1 / v:
                assert step == pytest.approx(fill_and_drain)
            else:  # the ranks also wait in the steady state
                assert step > fill_and_drain + 1e-9
    # the lesson's example: v = 2 beats 1F1B by almost 5, v = 8 gives some of it back
    slow = CostModel(forward=1, backward=2, latency=0.1)
    steps = {v: metrics(simulate(_schedule(4, 8, v), slow))["makespan"] for v in (1, 2, 8)}
    assert 4.5 < steps[1] - steps[2] < 5 and steps[2] < steps[8] < steps[1]


# ---- the exercise ---------------------------------------------------------------------------

def _judge(learner: str, key: str, answer):
    part = EXERCISE.part(key)
    return part.judge(EXERCISE.variant(learner), part.read(answer))


@pytest.mark.parametrize("learner", fast_first(1, ["ada", "bob", "chen", "dara"]))
def test_the_right_answers_are_accepted(learner):
    numbers = dict(EXERCISE.variant(learner).numbers)
    for key, answer in right_answers(numbers).items():
        assert _judge(learner, key, answer).right, (learner, key, answer)


def test_the_usual_memory_mistakes_are_named():
    n = dict(EXERCISE.variant("ada").numbers)
    p, m, v, r = n["p"], n["m"], n["v"], n["rank"]
    ratio = rank_peak(p, m, v, r) / rank_peak(p, m, 1, r)
    assert "chunk's microbatch as a whole one" in _judge("ada", "a", str(ratio * v)).message
    if r:
        factor = 1 + Fraction(p - 1, p * v)
        assert "first rank's factor" in _judge("ada", "a", str(factor)).message
    assert "keeps more in flight" in _judge("ada", "a", "1").message
    said = _judge("ada", "a", "1000")
    assert not said.right and said.hint == "1000 is too high"


def _learner_asked(form: str) -> str:
    """A learner whose part (b) asks the messages of ``form`` ("step" or "rank")."""
    return next(name for name in (f"learner-{n}" for n in range(40))
                if EXERCISE.variant(name)["form_b"] == form)


def test_the_usual_message_mistakes_are_named():
    step, rank = _learner_asked("step"), _learner_asked("rank")
    megatron = _judge(step, "b", "2*m*v*(p-1)")
    assert not megatron.right and "Megatron-LM" in megatron.message
    assert "one direction only" in _judge(step, "b", "m*(p*v-1)").message
    assert "1F1B's count" in _judge(step, "b", "2*m*(p-1)").message
    assert "disagrees" in _judge(step, "b", "p*m*v").message
    assert _judge(rank, "b", "m*(2*v-1)").right
    assert "one message less" in _judge(rank, "b", "2*m*v").message
    assert "sends and receives" in _judge(rank, "b", "2*m*(2*v-1)").message
    assert "your question asks for one in m, v" in _judge(rank, "b", "2*m*(p*v-1)").message


@pytest.mark.slow
def test_choosing_v_is_judged_by_simulating_every_v():
    for learner in ("ada", "bob", "chen", "dara", "eli", "fay"):
        n = dict(EXERCISE.variant(learner).numbers)
        cost = CostModel(forward=n["t_f"], backward=n["t_b"], latency=n["latency"])
        steps = {v: metrics(simulate(_schedule(n["p_c"], n["m_c"], v), cost))["makespan"]
                 for v in (1, 2, 4, 8)}
        best = min(steps, key=steps.get)
        assert sorted(steps.values())[1] >= steps[best] * 1.01  # one clear answer
        for v in steps:
            said = _judge(learner, "c", f"v{v}")
            assert said.right == (v == best)
            if v != best:
                assert f"{steps[v]:.4g} cost units" in said.hint
                if v == 8:
                    assert "latency" in said.message
                if v == 1:
                    assert "interleaving still shortens" in said.message


# ---- the widget and the Playground ------------------------------------------------------------

def _widget(tmp_path, config: dict) -> AppTest:
    script = tmp_path / "widget.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'app')!r})\n"
        "from lesson_widgets import interleaving as w\n"
        f"w.show({{**w.DEFAULTS, **{config!r}}})\n")
    app = AppTest.from_file(str(script), default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def _gantt(app: AppTest) -> dict:
    return json.loads(app.get("plotly_chart")[0].proto.spec)


def test_the_widget_draws_chunks_apart_and_honours_v(tmp_path):
    app = _widget(tmp_path, {})
    names = {trace["name"] for trace in _gantt(app)["data"]}
    assert {"F forward · chunk 0 (plain)", "F forward · chunk 1 (dotted)"} <= names
    dotted = [t for t in _gantt(app)["data"] if t["name"] == "F forward · chunk 1 (dotted)"]
    assert dotted[0]["marker"]["pattern"]["shape"] == "."
    assert metric(app, "Rank 0's peak activations") == "5.5"
    assert metric(app, "Bubble, idle") == "15.79%"
    assert metric(app, "Messages per step") == str(point_to_point_messages(
        build("interleaved-1f1b", 4, 8, 2)))

    app = _widget(tmp_path, {"v": "4", "p": "3", "m": "6"})
    assert "F forward · chunk 3 (gridded)" in {t["name"] for t in _gantt(app)["data"]}
    first = formulas.peak_activations_per_rank("interleaved-1f1b", 3, 6, 4)[0]
    assert metric(app, "Rank 0's peak activations") == f"{float(first):.4g}"


@pytest.mark.parametrize("config, said", fast_first(2, [
    ({"v": "1"}, "v = 1 is plain 1F1B"), ({"v": "x"}, "showing v = 2"),
    ({"v": "99"}, "showing v = 2"), ({"m": "7"}, "showing m = 8"),
    ({"latency": "-1"}, "showing latency = 0")]))
def test_a_bad_widget_value_falls_back_with_a_caption(tmp_path, config, said):
    app = _widget(tmp_path, config)
    assert any(said in caption.value for caption in app.caption)
    assert app.get("plotly_chart")


@pytest.mark.slow  # a page flow
def test_the_playground_reports_interleaved_memory_per_rank_and_zb_h1s_paper_form():
    app = open_page()
    app.selectbox(key="pg_schedule").set_value("interleaved-1f1b").run()
    peak = [m for m in app.metric if m.label.startswith("Peak activations")][0]
    # the unit in the tooltip: a laptop's quarter of the page cut it from the label mid-word
    assert peak.help.startswith("Per rank, in full-rank microbatches"), peak.help
    assert metric(app, "Peak activations (predicted)") == "5.5 microbatches"
    assert any("not the 8 of its fullest chunk" in c.value for c in app.caption)
    app.selectbox(key="pg_schedule").set_value("zb-h1").run()
    text = " ".join([m.value for m in app.markdown] + [c.value for c in app.caption])
    assert "Sec. 2.3, Table 2" in text and "pplab's own extension" in text
    app.number_input(key="pg_w").set_value(2.0).run()
    assert any("0 cost units of idle time per rank instead of 3" in c.value
               for c in app.caption)
