"""What the lessons, the README and the exercises' feedback say is what pplab's tools print.

Each claim is checked against the tool it describes, run here, so a better model or a changed
planner fails this file until the text follows:

* lesson 10's replay errors of every bundled run, and the cores C its ranks ran as if on, are
  read off ``pplab predict`` and compared with the figures the lesson quotes, within their
  rounding; ``predict`` labels its breakdown's step apart from the median of the steps;
* gpt3-3d's feedback on a feasible layout gives the bubble ``pplab plan`` prints for it;
* lesson 9 says which activations tensor parallelism leaves whole as Korthikanti et al.
  count them, and where GPT-3's 2048 tokens are stated;
* lesson 3 quotes the zero-bubble paper only with words found in it;
* the README credits dualpipe-v as ``pplab schedules`` does: DualPipe's "cut-in-half" V.

    .venv/bin/python -m pytest -q tests/test_lesson_claims.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from command_helpers import run_pplab

from pplab.exercises import check, get_exercise, numbers
from pplab.exercises.run_comparison import lesson_runs

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"


def _text(lesson: str) -> str:
    return " ".join((LESSONS / lesson / "README.md").read_text().split())


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))


@pytest.mark.slow  # replays the bundled runs
def test_lesson_10_quotes_the_replay_errors_pplab_predict_prints(capsys):
    text = _text("10-measured-vs-predicted")
    quoted = {run: float(error) for error, run in
              re.findall(r"([+-]\d+\.\d) % \(([\w-]+)\)", text)}
    assert set(quoted) == set(lesson_runs()), "every bundled run with a step is quoted"
    for run, error in quoted.items():
        code, out, _ = run_pplab(capsys, "predict", run, "--json")
        assert code == 0, out
        printed = round(100 * json.loads(out)["error"], 1)
        assert abs(printed - error) <= 0.051, (f"lesson 10 quotes {error:+.1f} % for {run}; "
                                               f"pplab predict prints {printed:+.1f} %")
    assert "within a few percent" not in text


@pytest.mark.slow  # calibrates the shared bundled runs
def test_lesson_10_quotes_the_cores_the_shared_runs_ran_as_if_on(capsys):
    text = _text("10-measured-vs-predicted")
    (quoted,) = re.findall(r"\$C\$ about (\d+\.\d) on these runs", text)
    shared = []
    for run in lesson_runs():
        code, out, _ = run_pplab(capsys, "predict", run)
        found = re.search(r"processor sharing \((\d+(?:\.\d+)?) effective\)", out)
        if found:
            shared.append(float(found.group(1)))
    assert shared, "the 4-rank runs share 2 cores"
    assert all(abs(c - float(quoted)) <= 0.1 for c in shared), (quoted, shared)


@pytest.mark.slow
def test_predict_says_its_breakdown_is_one_step_not_the_median(capsys):
    code, out, _ = run_pplab(capsys, "predict", "gpipe-p4m8")
    assert code == 0
    assert "median of steps" in out
    assert re.search(r"where the time goes in step \d+, the measured step at the median", out)


def test_the_gpt3_3d_feedback_gives_the_bubble_pplab_plan_prints(capsys):
    from solutions_gpt3_3d import right_answers

    for learner in ("ada", "bob"):
        n = numbers("gpt3-3d", learner)
        layout = right_answers(n)["d"]
        (verdict,) = check(get_exercise("gpt3-3d"), learner, {"d": layout})
        assert verdict.right, verdict
        said = re.search(r"leaves a bubble of (\d+\.\d)%", verdict.message)
        pp, tp, dp, b = (int(x) for x in re.findall(r"=(\d+)", layout))
        code, out, _ = run_pplab(
            capsys, "plan", "--model", n["model"], "--nodes", str(n["nodes"]), "--memory-gib",
            str(n["memory_gib"]), "--global-batch", str(n["batch"]), "--recompute",
            n["recompute"], "--schedules", "1f1b", "--pp", str(pp), "--tp", str(tp),
            "--microbatch-sizes", str(b), "--json")
        assert code == 0, out
        rows = [row for row in json.loads(out)["ranked"]
                if row["layout"]["pp"] == pp and row["layout"]["tp"] == tp
                and row["layout"]["dp"] == dp]
        assert rows, out[:500]
        assert said and abs(float(said.group(1)) - 100 * rows[0]["bubble_fraction"]) < 0.051, \
            (verdict.message, rows[0]["bubble_fraction"])


def test_lesson_9_counts_the_activations_tensor_parallelism_leaves_whole():
    text = _text("09-3d-parallelism-at-gpt-3-scale")
    assert "are the layer norms and dropouts;" not in text
    sentence = text[text.index("The $10\\,sbh$ that plain tensor parallelism leaves whole"):]
    sentence = sentence[:sentence.index("(their Sec. 4.2.2)")]
    # 4 + 2 + 4 = 10: norms' inputs, dropout masks, the inputs of the two first products
    counts = [int(k) for k in re.findall(r"\$(\d)sbh\$", sentence)]
    assert counts == [4, 2, 4] and sum(counts) == 10, sentence
    assert "QKV product" in sentence and "MLP's first product" in sentence
    assert "Sec. 4.1" in sentence and "Sec. 4.2.1" in sentence
    # the planner counts the same 10 sbh per layer under plain tensor parallelism
    from pplab.planner import PRESET_CLUSTERS, PRESET_MODELS, evaluate

    model = PRESET_MODELS["gpt3-175b"]
    cluster = PRESET_CLUSTERS["dgx-a100-80gb"].with_nodes(64)
    kept = {t: evaluate(model, cluster, 512, pp=8, tp=t, dp=64 // t, microbatch_size=1,
                        schedule="1f1b", recompute="selective", sequence_parallel=False,
                        timed=False).memory[1].activations for t in (2, 8)}
    sbh = model.seq_len * model.hidden
    per_layer_microbatch = {t: kept[t] / (7 * model.layers // 8) for t in kept}
    # (10 + 24/t) sbh bytes per layer and microbatch: the difference over t fixes the 10
    whole = per_layer_microbatch[2] - 24 / 2 * sbh
    assert abs(whole / sbh - 10) < 1e-6, whole / sbh


def test_lesson_9_says_where_gpt3s_context_length_is_given():
    text = _text("09-3d-parallelism-at-gpt-3-scale")
    assert "$s = 2048$ tokens, which the text of their Sec. 2.1 gives" in text
    assert "Table 2.1). Megatron-LM" not in text


# Words of Qi et al., Zero Bubble Pipeline Parallelism (arXiv:2401.10241), as found in its
# abstract; a quotation in lesson 3 must be one of them.
ZERO_BUBBLE_ABSTRACT = (
    "split the backward computation into two parts, one that computes gradient for the input "
    "and another that computes for the parameters",
    "the first to successfully achieve zero pipeline bubbles under synchronous training "
    "semantics",
)


def test_lesson_3_quotes_the_zero_bubble_paper_only_with_its_own_words():
    text = _text("03-zero-bubble")
    quotes = re.findall(r'"([^"`]{12,})"', text)
    assert quotes, "lesson 3 quotes the paper once"
    for quote in quotes:
        assert any(quote in found for found in ZERO_BUBBLE_ABSTRACT), quote
    assert "without the assumption of" not in text


def test_the_readme_credits_dualpipe_v_as_pplab_schedules_does(capsys):
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| `dualpipe-v`"))
    code, out, _ = run_pplab(capsys, "schedules")
    assert code == 0
    listed = out[out.index("dualpipe-v"):].split("\n", 2)[1]
    for words in ('"cut-in-half"', "github.com/deepseek-ai/DualPipe", "Sea AI Lab"):
        assert words in row and words in listed, (words, row, listed)
    assert row.split("|")[3].strip().startswith("DualPipeV, the"), "credited to DualPipeV first"


def test_lesson_4a_quotes_torch_distributed_in_its_own_words():
    """Every quotation the runtime lesson gives torch's send, recv, isend and irecv is in the
    docstring of that function of the torch installed here (its reference documentation)."""
    import torch.distributed as dist

    text = " ".join((ROOT / "lessons" / "04a-write-your-own-runtime" / "README.md")
                    .read_text().split())
    quoted = {"send": ["Send a tensor synchronously"], "recv": ["Receives a tensor synchronously"],
              "isend": ["Send a tensor asynchronously", "Modifying ``tensor`` before the request "
                        "completes causes undefined behavior"],
              "irecv": ["Receives a tensor asynchronously"]}
    for name, phrases in quoted.items():
        doc = " ".join(getattr(dist, name).__doc__.split())
        for phrase in phrases:
            assert f'"{phrase}"' in text, phrase
            assert phrase in doc, (name, phrase)
    assert len(re.findall(r'"[A-Z][^"]+"', text)) == 5  # no other quotation to check


def test_lesson_4a_says_the_graders_own_numbers():
    from pplab.exercises.runtime_cases import FIXED_CASES, hidden_cases
    from pplab.exercises.runtime_lab import DEADLOCK_SECONDS

    folder = ROOT / "lessons" / "04a-write-your-own-runtime"
    text = " ".join((folder / "README.md").read_text().split())
    skeleton = " ".join((folder / "my_runtime.py").read_text().split())
    assert f"should last {DEADLOCK_SECONDS} s" in text
    assert f"lasts {DEADLOCK_SECONDS} s is reported as a deadlock" in skeleton
    (p, m), = FIXED_CASES
    assert f"p = {p} with m = {m}" in text and f"p = {p} and m = {m}" in text
    drawn = {hidden_cases(f"learner-{n}")[-1].p for n in range(40)}
    assert drawn == {3, 4} and "(p = 3 or 4)" in text
