"""Lesson 9 (3D parallelism at GPT-3 scale): its text quotes the planner, its exercise is
judged by the planner, its widget runs.

* Every figure the README quotes for GPT-3 at 8 x 8 x 64 is recomputed here with the planner
  and looked up in the text, so a change to the planner that moves a number fails here.
* The exercise accepts the reference answers (tests/solutions_gpt3_3d.py, worked out from the
  lesson's closed forms), refuses an infeasible layout with the rule or the memory that fails
  and without a layout that works, and names the usual mistakes of parts (a) to (c).
* The widget renders under AppTest, honours a configuration and falls back on a bad value.

    .venv/bin/python -m pytest -q tests/test_lesson_09_gpt3_3d.py
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lanes import fast_first
from solutions_gpt3_3d import GIB, right_answers
from streamlit.testing.v1 import AppTest

from pplab.exercises import BadAnswer, check, get_exercise, grade, numbers
from pplab.exercises.gpt3_layouts import read_layout
from pplab.formulas import pipeline as formulas
from pplab.planner import PRESET_CLUSTERS, PRESET_MODELS, evaluate
from pplab.planner.specs import GB

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "lessons" / "09-3d-parallelism-at-gpt-3-scale" / "README.md").read_text()
GPT3, CLUSTER = PRESET_MODELS["gpt3-175b"], PRESET_CLUSTERS["dgx-a100-80gb"].with_nodes(512)
EXERCISE = get_exercise("gpt3-3d")
LEARNERS = ["ada", "bob", *(f"learner-{n}" for n in range(6))]


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPLAB_LEARNER", raising=False)
    monkeypatch.delenv("PPLAB_COURSE", raising=False)


def _layout(pp, tp, recompute="selective", sp=True, timed=True):
    return evaluate(GPT3, CLUSTER, 1536, pp=pp, tp=tp, dp=4096 // (pp * tp), microbatch_size=1,
                    schedule="1f1b", recompute=recompute, sequence_parallel=sp, timed=timed)


def _gib(candidate, digits=1):
    return f"{candidate.peak_memory / GIB:.{digits}f} GiB"


def quoted_figures() -> list[str]:
    """Each phrase of the README that quotes the planner, with the planner's number in it."""
    example, narrow = _layout(8, 8), _layout(16, 4)
    first, sent = example.memory[0], example.traffic
    intra, inter = CLUSTER.intra_bandwidth, CLUSTER.inter_bandwidth
    untimed = {(pp, r): _layout(pp, 8, r, timed=False) for pp in (1, 2, 4, 8, 16, 32)
               for r in ("selective", "full")}
    held = [u.memory[0].activations / GIB for (pp, r), u in untimed.items() if r == "selective"]
    bare = _layout(8, 8, "none", True, timed=False)
    depth = _layout(16, 8)
    return [
        f"{GPT3.parameters / 1e9:.1f}B parameters",
        f"rank 0 holds {first.parameters / 1e9:.2f}B parameters",
        f"**{first.weights / GIB:.2f} GiB** of weights, **{first.gradients / GIB:.2f} GiB** of "
        "gradients", f"**{first.optimizer / GIB:.2f} GiB** of optimizer states",
        f"**{first.activations / GIB:.2f} GiB** of activations, **{_gib(example)}** in all",
        f"alone) rank 0 needs {_gib(_layout(8, 8, 'selective', False, timed=False))}, with "
        f"neither {_gib(_layout(8, 8, 'none', False, timed=False))}",
        f"it needs {_gib(bare)}: that still fits",
        f"it leaves {round(80 - bare.peak_memory / GIB)} GiB",
        f"**{sent.tp_bytes / GB:.1f} GB** per GPU per step: {sent.tp_bytes / intra:.2f} s at "
        f"NVLink's {CLUSTER.intra_node_gbs:g} GB/s",
        f"but {sent.tp_bytes / inter:.2f} s over a GPU's {CLUSTER.inter_node_gbs:g} GB/s",
        f"the {example.time.step:.2f} s step",
        f"it fits ({_gib(narrow)})",
        "grows from {} to {} of the step".format(*(
            f"{c.layout.pp - 1}/{c.layout.num_microbatches + c.layout.pp - 1}"
            for c in (example, narrow))),
        f"predicts {narrow.time.step:.2f} s instead of\n{example.time.step:.2f} s",
        f"{untimed[1, 'selective'].memory[0].model_states / GIB:.1f} GiB at pp = 1",
        f"still needs\n{_gib(untimed[4, 'selective'])} ({_gib(untimed[4, 'full'])} even with "
        f"full recomputation), more than 80; at pp = 8 it needs {_gib(untimed[8, 'selective'])}",
        f"stay between {min(held):.1f} and {max(held):.1f} GiB at every depth",
        f"16 × 8 × 32 needs {_gib(depth)}",
        f"predicts {example.bubble_fraction:.1%} at 8 × 8 × 64 and {depth.bubble_fraction:.1%} "
        "at 16 × 8 × 32".replace("%", " %"),
        f"$m = {example.layout.num_microbatches}$ leaves $(p-1)/(m+p-1) = 7/31 = "
        f"{formulas.bubble_fraction('1f1b', 8, 24):.1%}".replace("%", "\\%"),
        f"**{example.bubble_fraction:.1%}**".replace("%", " %"),
        f"a step of {example.time.step:.2f} s, with {example.time.dp_allreduce:.2f} s",
        f"an MFU of {example.mfu:.1%}".replace("%", " %"),
        f"| {sent.tp_bytes / GB:.1f} | NVLink, inside the node | {sent.tp_bytes / intra:.2f} s |",
        f"| {sent.pp_bytes / GB:.2f} | InfiniBand, between nodes | {sent.pp_bytes / inter:.3f} s |",
        f"| {sent.dp_bytes / GB:.1f} | InfiniBand, between nodes | {sent.dp_bytes / inter:.2f} s |",
        f"the GPU's {first.gradients / GB:.2f} GB of bf16 gradients",
        f"$1536 / 64 = {example.layout.num_microbatches}$",
    ]


def test_every_figure_the_text_quotes_is_what_the_planner_computes():
    text = " ".join(README.split(" "))
    missing = [phrase for phrase in quoted_figures() if phrase not in text]
    assert not missing, "README.md quotes other numbers than the planner's:\n" + "\n".join(
        missing)


def test_tp_16_is_refused_as_the_text_says():
    with pytest.raises(ValueError, match="tp=16 crosses nodes"):
        _layout(4, 16)
    assert "*tp=16 crosses nodes*" in README


# ---- the exercise -------------------------------------------------------------------------

@pytest.mark.parametrize("learner", fast_first(2, LEARNERS))
def test_the_reference_answers_are_right(learner):
    answers = right_answers(numbers("gpt3-3d", learner))
    verdicts = check(EXERCISE, learner, answers)
    assert [v.right for v in verdicts] == [True] * 4, verdicts
    assert all(v.message.startswith("right") and "\n" not in v.message for v in verdicts)


@pytest.mark.slow
def test_every_learner_gets_a_cluster_where_some_layouts_fit_and_most_do_not():
    from pplab.exercises.gpt3_layouts import valid_layouts

    drawn = [numbers("gpt3-3d", f"learner-{n}") for n in range(30)]
    assert len({(d["model"], d["nodes"], d["memory_gib"], d["batch"]) for d in drawn}) >= 25
    for n in drawn:
        layouts = valid_layouts(n["model"], n["nodes"], n["memory_gib"], n["batch"],
                                n["recompute"])
        fitting = [x for x in layouts if x[4] <= n["memory_gib"]]
        assert 1 <= len(fitting) <= len(layouts) / 2
        given = [x for x in layouts if x[:4] == (n["a_pp"], n["a_tp"], n["a_dp"], n["a_b"])]
        assert given and given[0][4] > n["memory_gib"], "part (a) must not hand out a layout"


def _feedback(learner: str, part: str, answer) -> str:
    (verdict,) = check(EXERCISE, learner, {part: answer})
    assert not verdict.right and "\n" not in verdict.message, verdict
    return verdict.message


@pytest.mark.parametrize("learner", LEARNERS[:4])
def test_an_infeasible_layout_is_refused_with_the_reason_and_no_layout(learner):
    n = numbers("gpt3-3d", learner)
    good = right_answers(n)["d"]
    pp, tp, dp, b = read_layout(good)
    gpus = n["gpus"]
    from pplab.exercises.gpt3_layouts import valid_layouts

    too_big = next(x for x in valid_layouts(n["model"], n["nodes"], n["memory_gib"], n["batch"],
                                            n["recompute"]) if x[4] > n["memory_gib"])
    said = {
        "gpus": _feedback(learner, "d", f"pp={pp} tp={tp} dp={2 * dp} b={b}"),
        "node": _feedback(learner, "d", f"pp=1 tp=16 dp={gpus // 16} b=1"),
        "layers": _feedback(learner, "d", f"pp={gpus} tp=1 dp=1 b=1"),
        "batch": _feedback(learner, "d", f"pp={pp} tp={tp} dp={dp} b=3"),
        "memory": _feedback(learner, "d", "pp={} tp={} dp={} b={}".format(*too_big[:4])),
    }
    assert f"{2 * pp * tp * dp} GPUs, but you have {gpus}" in said["gpus"]
    assert "tp=16 crosses nodes" in said["node"]
    assert f"layers are not divisible by pp={gpus}" in said["layers"]
    assert "not divisible by microbatch size 3" in said["batch"]
    assert re.search(rf"does not fit: pipeline rank \d+ needs [\d.]+ GiB > {n['memory_gib']} GiB",
                     said["memory"])
    for message in said.values():
        assert good not in message and "deeper-pipeline" not in message


def test_layouts_are_read_in_every_form_a_learner_writes_and_refused_in_one_line():
    for answer in ("pp=16 tp=8 dp=4 b=1", "tp=8, pp=16, dp=4, b=1", "p=16 t=8 d=4 mb=1",
                   {"pp": 16, "tp": 8, "dp": 4, "b": 1}, (16, 8, 4, 1), "PP=16 TP=8 DP=4 B=1"):
        assert read_layout(answer) == (16, 8, 4, 1), answer
    for answer in ("pp=16 tp=8 dp=4", "16x8x4", "pp=0 tp=8 dp=4 b=1", "pp=16 tp=8 dp=4 b=1.5",
                   "pp=16 pp=8 tp=8 dp=4 b=1", "pp=16 tp=8 dp=4 b=1 v=2", (16, 8), "", True):
        with pytest.raises(BadAnswer) as refused:
            read_layout(answer)
        assert "\n" not in str(refused.value)


def test_the_usual_mistakes_of_each_part_are_named():
    from solutions_gpt3_3d import rank_memory

    learner = "ada"
    n = numbers("gpt3-3d", learner)
    truth = float(right_answers(n)["a"])
    assert "GB (10^9 bytes)" in _feedback(learner, "a", f"{truth * GIB / GB:.3f}")
    first = rank_memory(n, n["a_pp"], n["a_tp"], n["a_dp"], n["a_b"], 0) / GIB
    assert "pipeline rank 0's memory" in _feedback(learner, "a", f"{first:.3f}")
    for form in ("selective", "full"):
        asked = next(name for name in (f"learner-{k}" for k in range(40))
                     if numbers("gpt3-3d", name)["form_b"] == form)
        k, other = (16, 24) if form == "selective" else (24, 16)
        assert check(EXERCISE, asked, {"b": f"{k}*m*L*(t-1)*b*s*h/(p*t)"})[0].right
        for wrong_formula, words in ((f"{k // 2}*m*L*b*s*h/p", "payload once"),
                                     (f"{k}*m*L*(t-1)*b*s*h/t", "every layer of the model"),
                                     (f"{k}*L*(t-1)*b*s*h/(p*t)", "one microbatch"),
                                     (f"{k // 2}*m*L*(t-1)*b*s*h/(p*t)", "half the bytes"),
                                     (f"{other}*m*L*(t-1)*b*s*h/(p*t)", "recomputation")):
            assert words in _feedback(asked, "b", wrong_formula), (form, wrong_formula)
    assert "crosses nodes" in _feedback(learner, "c", "wider-tensor-parallel")
    assert "copies, it does not split" in _feedback(learner, "c", "more-replicas")
    assert "twice as big" in _feedback(learner, "c", "bigger-microbatch")


def test_the_notebook_grader_says_not_written_yet_for_the_skeleton():
    def skeleton(m, L, p, s, b, h, t):
        raise NotImplementedError

    said = str(grade("gpt3-3d", "ada", {"a": None, "b": skeleton, "c": None, "d": None}))
    assert "not written yet" in said and "well done" not in said


# ---- the widget ---------------------------------------------------------------------------

def _widget(tmp_path, config: dict | None = None) -> AppTest:
    script = tmp_path / "widget.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'app')!r})\n"
        "from lesson_widgets import gpt3_3d as w\n"
        f"shown = w.show(dict(w.DEFAULTS) | {config or {}!r})\n"
        "import streamlit as st\nst.session_state['shown'] = shown\n")
    app = AppTest.from_file(str(script), default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def _metric(app: AppTest, start: str) -> str:
    return next(m.value for m in app.metric if m.label.startswith(start))


def test_the_widget_shows_gpt3_at_8x8x64_then_another_layout_then_a_bad_value(tmp_path):
    app = _widget(tmp_path)
    assert _metric(app, "Memory per GPU") == _gib(_layout(8, 8))
    assert _metric(app, "Bubble") == f"{_layout(8, 8).bubble_fraction:.1%}"
    assert any("Feasible" in s.value for s in app.info)
    assert app.session_state["shown"] == {"model": "gpt3-175b", "memory": "80", "batch": "1536",
                                          "tp": "8", "pp": "8", "dp": "64", "b": "1",
                                          "recompute": "selective", "sp": "on"}
    assert len(app.get("plotly_chart")) == 1 and len(app.dataframe) == 1

    deeper = _widget(tmp_path, {"pp": "16", "dp": "32", "memory": "24"})
    assert _metric(deeper, "Memory per GPU") == _gib(_layout(16, 8))
    assert any("Does not fit" in e.value for e in deeper.error)
    assert deeper.session_state["shown"]["pp"] == "16"

    crossing = _widget(tmp_path, {"tp": "16", "dp": "32"})
    assert any("crosses nodes" in e.value for e in crossing.error)

    bad = _widget(tmp_path, {"pp": "lots", "recompute": "some", "memory": "nan"})
    captions = " ".join(c.value for c in bad.caption)
    assert "pp = 'lots'" in captions and "recompute = 'some'" in captions
    assert "memory = 'nan'" in captions
    assert _metric(bad, "Memory per GPU") == _gib(_layout(8, 8))
