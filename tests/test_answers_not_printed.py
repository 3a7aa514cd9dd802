"""No numeric part is answered by a figure a pplab command prints for the learner's numbers.

For every exercise and many learners, the commands a learner would run on their own numbers
(``pplab simulate`` of the schedules a part is about, ``pplab plan`` of the given layout,
``pplab predict`` of the given runs, and ``pplab exercise show`` itself) are run, every figure
they print that is a quantity of the part's kind (microbatches, cost units, ms, GiB, bytes,
MiB, actions, updates, or a bare ratio) is fed to the checker as the answer, and the checker
must refuse each one: the answer takes a step of reasoning beyond what the tools print.

    .venv/bin/python -m pytest -q tests/test_answers_not_printed.py
"""

from __future__ import annotations

import re

import pytest
from command_helpers import run_pplab

from pplab.exercises import EXERCISES, check, get_exercise, numbers

LEARNERS = [f"learner-{n}" for n in range(50)]
# The fast lane takes the first learner (the commands of some exercises simulate interleaved
# schedules or predict bundled runs: a second or more a learner); the whole suite all 50.
HOW_MANY = [pytest.param(1, id="1-learner"),
            pytest.param(len(LEARNERS), id="50-learners", marks=pytest.mark.slow)]
# Words that follow a figure of each kind in pplab's output, by the kind of the part's answer.
KINDS = {
    "microbatches": ("microbatches", "microbatch"),  # a step's count, not a stage's peak
    "held": ("held",),
    "cost units": ("cost",),
    "ms": ("ms",),
    "GiB": ("GiB",),
    "bytes": ("bytes", "B"),
    "MiB": ("MiB",),
    "actions": ("actions",),
    "updates": ("updates", "update"),
    "ratio": ("", "x", "times"),
    "forwards": ("forwards", "forward"),
}
# Every numeric part, and the kind of quantity its answer is.
PARTS = {
    ("bubble", "a"): "microbatches", ("memory", "a"): "microbatches",
    ("zero-bubble", "a"): "microbatches", ("repair", "c"): "actions",
    ("stage-split", "a"): "cost units", ("interleaving", "a"): "ratio",
    ("staleness", "a"): "updates", ("staleness", "b"): "MiB", ("tp-dp", "a"): "bytes",
    ("tp-dp", "b"): "bytes", ("gpt3-3d", "a"): "GiB", ("measured-vs-predicted", "a"): "ms",
    ("measured-vs-predicted", "b"): "ms", ("overlapping-steps", "a"): "forwards",
}
_FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*(%|[A-Za-z]+)?")


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPLAB_COURSE", raising=False)


def test_every_numeric_part_is_covered():
    numeric = {(i, part.key) for i, e in EXERCISES.items() if e.kind == "questions"
               for part in e.parts if part.kind == "number"}
    assert numeric == set(PARTS)


def _simulate(schedule: str, p: int, m: int, cost: str = "", chunks: int = 1) -> list[str]:
    argv = ["simulate", "--schedule", schedule, "--pp", str(p), "--microbatches", str(m)]
    return argv + (["--cost", cost] if cost else []) + (["--chunks", str(chunks)]
                                                         if chunks > 1 else [])


def commands(exercise_id: str, n: dict) -> dict[str, list[list[str]]]:
    """What a learner would run for each numeric part, on that part's own numbers."""
    if exercise_id == "bubble":
        cost = f"f={n['t_f']:g},b={n['t_b']:g}"
        return {"a": [_simulate(n["schedule"], n["p"], m, cost) for m in (n["p"], 2 * n["p"])]}
    if exercise_id == "memory":
        return {"a": [_simulate(s, n["p"], m) for s in ("gpipe", "1f1b")
                      for m in (n["p"], 2 * n["p"])]}
    if exercise_id == "zero-bubble":
        cost = f"f={n['t_f']:g},i={n['t_i']:g},w={n['t_w']:g}"
        return {"a": [_simulate("zb-h1", n["p"], n["m"], cost), _simulate("1f1b", n["p"], n["m"])]}
    if exercise_id == "repair":
        return {"c": [_simulate(n["family"], n["p"], n["m"], "f=1,b=2,i=1,w=1")]}
    if exercise_id == "interleaving":
        return {"a": [_simulate("interleaved-1f1b", n["p"], n["m"], chunks=n["v"]),
                      _simulate("1f1b", n["p"], n["m"])]}
    if exercise_id == "staleness":
        return dict.fromkeys("ab", [_simulate("pipedream", n["p"], n["m"])])
    if exercise_id == "gpt3-3d":
        return {"a": [["plan", "--model", n["model"], "--nodes", str(n["nodes"]), "--memory-gib",
                       str(n["memory_gib"]), "--global-batch", str(n["batch"]), "--recompute",
                       n["recompute"], "--schedules", "1f1b", "--pp", str(n["a_pp"]), "--tp",
                       str(n["a_tp"]), "--microbatch-sizes", str(n["a_b"]), "--explain"]]}
    if exercise_id == "measured-vs-predicted":
        return {"a": [["predict", n["run_a"]]],
                "b": [["predict", n["run_b"]],
                      ["predict", n["run_b"], "--microbatches", str(n["m_wi"])]]}
    if exercise_id == "overlapping-steps":
        return {"a": [_simulate("zb-h2", n["p"], n["m"])]}
    # tp-dp and stage-split: no command takes their sizes or layer costs (``exercise show``
    # is still read)
    return {}


def figures(text: str, kind: str) -> set[str]:
    """The figures of ``text`` that are quantities of ``kind``: numbers with the right word
    after them (a stage's peak ``0:4`` counts as microbatches held)."""
    words = KINDS[kind]
    found = set()
    for line in text.splitlines():
        if re.match(r"\s*rank\s+\d+\s*\|", line):
            continue  # a Gantt row: stages, kinds and microbatch indices, no figures
        if line.startswith("peak activations"):
            if "held" not in words:
                continue
            found |= set(re.findall(r"\d+:(\d+)", line))
            continue
        for number, unit in _FIGURE.findall(line):
            if (unit or "") in words:
                found.add(number.replace(",", ""))
    return found


# measured-vs-predicted's commands predict bundled runs for a new learner (seconds): whole suite.
@pytest.mark.parametrize("how_many", HOW_MANY)
@pytest.mark.parametrize("exercise_id", [
    pytest.param(i, marks=[pytest.mark.slow] * (i == "measured-vs-predicted"))
    for i in sorted({i for i, _ in PARTS})])
def test_no_figure_a_command_prints_is_taken_for_the_answer(exercise_id, how_many, capsys):
    exercise = get_exercise(exercise_id)
    keys = [key for i, key in PARTS if i == exercise_id]
    tried = 0
    for learner in LEARNERS[:how_many]:
        n = numbers(exercise_id, learner)
        printed: dict[str, set[str]] = {key: set() for key in keys}
        show = ["exercise", "show", exercise_id, "--learner", learner]
        for key, argvs in commands(exercise_id, n).items():
            for argv in argvs:
                code, out, err = run_pplab(capsys, *argv)
                # a command repeating its own arguments (``8 microbatches per step``) does
                # not answer anything: those figures are the learner's input
                printed[key] |= figures(out + err, PARTS[exercise_id, key]) - set(argv)
        code, out, err = run_pplab(capsys, *show)
        for key in keys:
            printed[key] |= figures(out + err, PARTS[exercise_id, key])
        for key in keys:
            for figure in sorted(printed[key]):
                try:
                    (verdict,) = check(exercise, learner, {key: figure})
                except ValueError:
                    continue  # not a possible answer here (a fraction for a whole number)
                tried += 1
                assert not verdict.right, (f"{exercise_id} ({key}) for {learner}: {figure} "
                                           f"is printed by a command and judged right")
    # where the tools print quantities of the part's kind, some were tried
    assert tried or exercise_id in ("repair", "overlapping-steps", "stage-split", "staleness")


def test_figures_are_read_with_their_kind():
    text = ("zb-h1: 4 ranks, 4 stages, 8 microbatches per step, 1 step(s) (simulated)\n"
            "rank  0 |F0 F1 I0 W0 |\nmakespan         27 cost units (simulated)\n"
            "peak activations 0:4 1:3 (microbatches held, per stage)\n"
            "  step time  predicted    187.02 ms   measured    185.54 ms   error +0.8 %")
    assert figures(text, "microbatches") == {"8"}
    assert figures(text, "held") == {"4", "3"}
    assert figures(text, "cost units") == {"27"}
    assert figures(text, "ms") == {"187.02", "185.54"}
