"""Lesson 8: the bytes each parallelism moves, where the tensor-parallel all-reduces sit, the
widget, and exercise ``tp-dp``.

The bundled comparison is the measurement: its tensor-parallel run's all-reduces are nested
inside F and B, and the metrics must take them out of compute instead of hiding them in busy
time; the closed forms must equal its bytes; the widget and the Compare page must show both.

    .venv/bin/python -m pytest -q tests/test_lesson_08_tensor_data.py
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction

import pytest
from app_helpers import ROOT, open_page
from solutions_tp_dp import mistakes, right_answers, slow_link_seconds
from streamlit.testing.v1 import AppTest

from pplab.engine.compare_table import SPLIT_COLUMNS, fill_split_columns, format_table
from pplab.exercises import check, get_exercise, numbers
from pplab.exercises.attempts import AttemptBook
from pplab.formulas import parallel as pf
from pplab.runs.comparisons import load_comparison
from pplab.runs.resources import bundled_comparisons_dir
from pplab.runs.run_dirs import load_run
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import events_frame, metrics

BUNDLED = bundled_comparisons_dir() / "pp4-vs-tp4-cpu"
LEARNERS = [f"learner-{n}" for n in range(40)]


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture(scope="module")
def comparison():
    return load_comparison(BUNDLED)


def _run(comparison, configuration):
    row = next(r for r in comparison.rows if r["configuration"] == configuration)
    return row, load_run(BUNDLED / row["run"])


# ---- the metric: tp all-reduce time taken out of compute ---------------------------------

def test_tp_allreduces_inside_f_and_b_are_split_out_of_compute_in_the_bundled_tp_run(
        comparison):
    row, run = _run(comparison, "tp:tp=4")
    result = metrics(run.events, range(row["ranks"]))
    assert result["tp_allreduce_time"] > 0 and result["tp_allreduce_fraction"] > 0
    fb = run.events[run.events["kind"].isin(["F", "B"])]
    f_and_b = (fb["end"] - fb["start"]).groupby(fb["rank"]).sum()
    for rank, split in result["per_rank_compute"].items():
        assert split["tp_allreduce"] > 0
        assert split["compute"] + split["tp_allreduce"] == pytest.approx(f_and_b[rank])
        assert sum(split.values()) == pytest.approx(result["per_rank"][rank]["busy"])
    shares = [result[k] for k in ("bubble_fraction", "tp_allreduce_fraction",
                                  "compute_fraction", "optimizer_fraction")]
    assert sum(shares) == pytest.approx(1)
    # every tp all-reduce of this run is nested, so all of its all-reduce time is taken out
    reduce = run.events[run.events["kind"] == "allreduce"]
    assert result["tp_allreduce_time"] == pytest.approx(
        float((reduce["end"] - reduce["start"]).sum()) / row["ranks"])
    for step in result["per_step"]:
        assert step["tp_allreduce_fraction"] > 0 and 0 < step["compute_fraction"] < 1


def test_pipeline_and_data_parallel_runs_have_no_tp_allreduce_time(comparison):
    for configuration in ("1f1b:pp=4,m=8", "dp:dp=4"):
        row, run = _run(comparison, configuration)
        result = metrics(run.events, range(row["ranks"]))
        assert result["tp_allreduce_fraction"] == 0 == result["tp_allreduce_time"]
        assert result["compute_fraction"] > 0


def test_only_the_tp_allreduce_time_inside_compute_counts():
    base = {"source": "measured", "stage": 0}
    events = events_frame([
        dict(base, rank=0, kind="F", start=0.0, end=4.0),
        dict(base, rank=0, kind="allreduce", start=1.0, end=2.0, detail="tp g"),
        dict(base, rank=0, kind="allreduce", start=3.5, end=5.0, detail="tp g"),  # half out
        dict(base, rank=0, kind="allreduce", start=5.0, end=6.0, detail="dp grads"),
        dict(base, rank=0, kind="optim", start=6.0, end=7.0),
    ])
    result = metrics(events)
    assert result["per_rank_compute"][0] == pytest.approx(
        {"compute": 2.5, "tp_allreduce": 1.5, "optimizer": 1.0})
    assert result["per_rank"][0] == {"busy": 5.0, "comm": 2.0, "idle": 0.0}  # unchanged keys
    assert result["tp_allreduce_fraction"] == pytest.approx(1.5 / 7)
    assert result["compute_fraction"] == pytest.approx(2.5 / 7)


def test_the_compare_table_shows_the_split_even_for_a_comparison_saved_before_it(comparison):
    rows = fill_split_columns(comparison.path, comparison.rows)
    by_name = {row["configuration"]: row for row in rows}
    tp = by_name["tp:tp=4"]
    assert tp["tp_allreduce_s_per_step"] == pytest.approx(tp["allreduce_s_per_step"])
    assert tp["tp_allreduce_fraction"] > 0
    assert by_name["dp:dp=4"]["tp_allreduce_s_per_step"] == 0 < by_name["dp:dp=4"][
        "allreduce_s_per_step"]
    header = format_table(rows).splitlines()[0]
    assert "tp-AR ms" in header and "compute" in header
    older = [{k: v for k, v in row.items() if k not in SPLIT_COLUMNS} for row in comparison.rows]
    assert "tp-AR" not in format_table(older)  # a column no row has is left out
    assert fill_split_columns(comparison.path, [{"configuration": "x"}]) == [
        {"configuration": "x"}]


# ---- formula = measured ---------------------------------------------------------------------

def test_wire_per_step_at_the_bundled_sizes_equals_the_measured_bytes(comparison):
    costs = {c.parallelism: c for c in pf.wire_per_step(4, 4, 64, 8, 64, 128, 16, 4, 1e9, 0)}
    rows = {row["configuration"]: row for row in comparison.rows}
    # a ring sends 2(n-1)/n of each rank's payload; payload per rank = all ranks / 4
    assert costs["tensor"].bytes_per_rank == pf.ring_wire_bytes(
        rows["tp:tp=4"]["tp_bytes_per_step"] // 4, 4)
    assert costs["data"].bytes_per_rank == pf.ring_wire_bytes(
        rows["dp:dp=4"]["dp_bytes_per_step"] // 4, 4)
    _, run = _run(comparison, "gpipe:pp=4,m=8")
    sends = run.events[(run.events["kind"] == "send") & (run.events["step"] == 1)]
    assert costs["pipeline"].bytes_per_rank == int(sends.groupby("rank")["bytes"].sum().max())
    assert costs["tensor"].transfers == 4 * 4 * 8 and costs["data"].transfers == 1


def test_link_times_follow_the_alpha_beta_model_and_gpipe_waits_for_its_fill_and_drain():
    assert pf.send_seconds(1000, 1e6, 1e-3) == pytest.approx(2e-3)
    assert pf.ring_allreduce_seconds(4000, 4, 1e6, 1e-3) == pytest.approx(6 * (1e-3 + 1e-3))
    assert pf.ring_allreduce_seconds(4000, 1, 1e6, 1e-3) == 0
    with pytest.raises(ValueError, match="bandwidth above 0"):
        pf.send_seconds(1, 0, 0)
    with pytest.raises(ValueError, match="does not cut into microbatches"):
        pf.wire_per_step(4, 8, 10, 3, 64, 128, 16, 4, 1e9, 0)
    # what the widget calls the pipeline's critical path: 2 (S-1) messages under GPipe
    for stages, m, c in ((4, 8, 0.25), (3, 5, 0.5)):
        result = metrics(simulate(build("gpipe", stages, m), CostModel(1, 2, latency=c)))
        assert result["makespan"] == pytest.approx((m + stages - 1) * 3 + 2 * (stages - 1) * c)


# ---- the widget and the Compare page ---------------------------------------------------------

WIDGET = """
import sys
sys.path.insert(0, {app!r})
import streamlit as st
from lesson_widgets import tensor_data as w
config = dict(w.DEFAULTS)
config.update({extra!r})
st.session_state["shown"] = w.show(config)
"""


def table_with(app: AppTest, column: str):
    """The one dataframe on the page that has ``column``."""
    found = [d.value for d in app.dataframe if column in d.value.columns]
    assert len(found) == 1, [list(d.value.columns) for d in app.dataframe]
    return found[0]


def _widget(tmp_path, **extra) -> AppTest:
    script = tmp_path / f"widget_{len(list(tmp_path.glob('widget_*')))}.py"
    script.write_text(WIDGET.format(app=str(ROOT / "app"), extra=extra))
    app = AppTest.from_file(str(script), default_timeout=120).run()
    assert not app.exception, app.exception
    return app


def test_widget_shows_the_three_parallelisms_by_formula_beside_the_measured_comparison(
        tmp_path):
    app = _widget(tmp_path)
    table = table_with(app, "MiB sent per rank")
    assert list(table["parallelism"]) == ["pipeline", "tensor", "data"]
    tensor = table.set_index("parallelism").loc["tensor"]
    assert tensor["ms on the critical path"] == tensor["ms on the wire"] > 0
    measured = table_with(app, "bytes per step, all ranks (measured)")
    assert (measured["bytes per step, all ranks (measured)"]
            == measured["bytes per step, all ranks (formula)"]).all()
    assert measured.set_index("parallelism").loc["tensor"][
        "tp all-reduce inside F/B (% of ranks x step)"] > 0
    assert app.get("plotly_chart") and "GB/s" in app.metric[0].value
    assert app.session_state["shown"]["h"] == "4096"
    app.radio(key="l08_sizes").set_value("bundled").run()
    assert not app.exception
    table = table_with(app, "MiB sent per rank").set_index("parallelism")
    assert table.loc["tensor", "MiB sent per rank"] == 48  # 2 x 3/4 x 32 MiB
    app.number_input(key="l08_bandwidth").set_value(1.0).run()
    assert app.session_state["shown"]["bandwidth"] == "1"


def test_widget_falls_back_on_a_bad_value_and_explains_sizes_that_do_not_fit(tmp_path):
    app = _widget(tmp_path, bandwidth="fast", h="-3")
    captions = " ".join(c.value for c in app.caption)
    assert "bandwidth = 'fast'" in captions and "h = '-3'" in captions
    assert app.session_state["shown"]["bandwidth"] == "25"
    app = _widget(tmp_path, batch="10", microbatch="3")
    assert app.error and "do not fit" in app.error[0].value
    assert not app.get("plotly_chart") or len(app.get("plotly_chart")) == 0


@pytest.mark.slow  # a page flow
def test_compare_page_shows_tp_allreduce_apart_from_compute(tmp_path):
    app = open_page("compare")
    app.radio(key="cmp_mode").set_value("bundled comparison pp4-vs-tp4-cpu").run()
    assert not app.exception
    bundled = app.dataframe[0].value.set_index("configuration")  # the comparison's own table
    assert bundled.loc["tp:tp=4", "tp all-reduce (%)"] > 0
    assert bundled.loc["1f1b:pp=4,m=8", "tp all-reduce (%)"] == 0
    assert bundled.loc["tp:tp=4", "compute (%)"] > 0
    assert any("ranks x step time" in c.value for c in app.caption)
    labels = app.multiselect(key="cmp_bundled_pick").options
    tp_label = next(label for label in labels if label.startswith("tp=4 "))
    app.multiselect(key="cmp_bundled_pick").set_value([tp_label]).run()
    assert not app.exception and app.dataframe[0].value.equals(bundled.reset_index())


# ---- exercise tp-dp --------------------------------------------------------------------------

def test_reference_answers_are_right_and_the_slow_link_answer_depends_on_the_learner():
    exercise = get_exercise("tp-dp")
    chosen = Counter()
    for learner in LEARNERS:
        n = numbers("tp-dp", learner)
        answers = right_answers(n)
        verdicts = check(exercise, learner, answers)
        assert all(v.right for v in verdicts), (learner, [v.message for v in verdicts])
        chosen[answers["c"]] += 1
    assert chosen["pipeline"] and chosen["data"] and not chosen["tensor"]
    assert len({tuple(sorted(numbers("tp-dp", x).items())) for x in LEARNERS}) == len(LEARNERS)


def _mistakes(n: dict) -> dict[str, list]:
    listed = mistakes(n)
    return listed | {"d": listed["d"] + ["8*L*b*s*h*e*(t-1)/t + 1"]}


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", text.replace(",", "")))


def test_wrong_answers_name_the_slip_without_giving_the_answer(tmp_path):
    exercise = get_exercise("tp-dp")
    book = AttemptBook(tmp_path / "attempts.json")
    named = tried = 0
    for learner in LEARNERS[:6]:
        n = numbers("tp-dp", learner)
        right = right_answers(n)
        mistakes = _mistakes(n)
        for key in ("a", "b"):
            for answer in mistakes[key] + [Fraction(right[key]) + 1]:
                if answer == Fraction(right[key]):
                    continue  # a ring over 2 ranks sends its whole payload: no slip there
                tried += 1
                verdict = check(exercise, learner, {key: str(answer)}, book=book)[0]
                assert not verdict.right and "\n" not in verdict.message
                assert right[key] not in _tokens(verdict.message) - {str(answer)}
                named += "work it out" not in verdict.message
        for formula in mistakes["d"]:
            verdict = check(exercise, learner, {"d": formula}, book=book)[0]
            tried += 1
            assert not verdict.right and "8*L*m*b*s*h*e" not in verdict.message
            named += "disagrees" not in verdict.message
        for option in ("tensor", "pipeline", "data"):
            if option != right["c"]:
                verdict = check(exercise, learner, {"c": option}, book=book)[0]
                assert not verdict.right and right["c"] not in verdict.message
    # the listed slips are recognised, not just marked wrong (one made-up answer per part)
    assert named >= tried - 6 * 3


def test_the_slow_link_judge_times_the_layouts_as_the_lesson_does():
    from pplab.exercises.parallel_wire import _slow_link_times

    for learner in LEARNERS[:10]:
        n = numbers("tp-dp", learner)
        ours, lessons = _slow_link_times(n), slow_link_seconds(n)
        assert ours == pytest.approx(lessons)
        ordered = sorted(ours.values())
        assert ordered[1] >= 1.5 * ordered[0]  # one clear answer
