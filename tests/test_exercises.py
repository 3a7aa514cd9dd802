"""The exercise framework measures understanding: own numbers, no leaked answers, few hints.

Each learner gets numbers of their own, stable for them and unlike their neighbours'; the
reference answers (tests/exercise_solutions.py, from the lessons' closed forms) are judged
right for many learners; no wrong answer, among the usual mistakes and near misses, gets
feedback that holds the right value, with a hint or without; numeric hints run out; an answer
that cannot be read is refused in one line before any try counts; ``pplab exercise`` exits
0, 1 and 2 as it says; ``report`` grades a folder of mixed submissions.

    .venv/bin/python -m pytest -q tests/test_exercises.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from command_helpers import run_pplab
from exercise_solutions import right_answers

from pplab.exercises import (
    EXERCISES,
    NUMERIC_HINTS,
    AttemptBook,
    BadAnswer,
    check,
    get_exercise,
    grade,
    numbers,
)
from pplab.exercises.report import csv_table, grade_folder, json_table

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [i for i, e in EXERCISES.items() if e.kind == "questions"]
LEARNERS = [f"learner-{n}" for n in range(60)]
# Checking many learners simulates thousands of steps: the fast lane takes the first of them
# (learner-0, whose measured-vs-predicted numbers the other files' fast tests draw too: a new
# learner of that exercise costs seconds), the whole suite all 60.
HOW_MANY = [pytest.param(1, id="1-learner"),
            pytest.param(len(LEARNERS), id="60-learners", marks=pytest.mark.slow)]
# measured-vs-predicted calibrates bundled runs for each new learner (seconds each): its
# checks over several learners, its spellings and its other process are the whole suite's.
COSTLY = "measured-vs-predicted"


def unless_costly(exercise_id: str):
    """``exercise_id`` as a parameter, marked slow where it is the costly exercise."""
    return pytest.param(exercise_id, marks=[pytest.mark.slow] if exercise_id == COSTLY else [])


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """Hint counts go to a fresh folder, never to the user's ~/.pplab."""
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPLAB_LEARNER", raising=False)
    monkeypatch.delenv("PPLAB_COURSE", raising=False)


def test_every_lesson_exercise_has_parts_of_several_kinds():
    assert QUESTIONS[:3] == ["bubble", "memory", "zero-bubble"] and len(QUESTIONS) >= 9
    kinds = {part.kind for i in QUESTIONS for part in get_exercise(i).parts}
    assert {"number", "choice", "schedule", "formula"} <= kinds
    for exercise_id in QUESTIONS:
        parts = get_exercise(exercise_id).parts
        assert len(parts) >= 3 and len({part.kind for part in parts}) >= 2, exercise_id


@pytest.mark.parametrize("exercise_id", [unless_costly(i) for i in QUESTIONS])
def test_numbers_are_stable_for_one_learner_whatever_the_spelling(exercise_id):
    assert numbers(exercise_id, "Ada Lovelace") == numbers(exercise_id, "  ada   LOVELACE ")
    assert numbers(exercise_id, "ada") == numbers(exercise_id, "ada")
    assert numbers(exercise_id, "ada", course="fall") != numbers(exercise_id, "ada", course="")


@pytest.mark.parametrize("exercises", [
    pytest.param([i for i in QUESTIONS if i != COSTLY], id="all-but-" + COSTLY),
    pytest.param([COSTLY], id=COSTLY, marks=pytest.mark.slow)])
def test_numbers_are_the_same_in_another_process(exercises):
    code = ("from pplab.exercises import numbers; import json; "
            f"print(json.dumps([numbers(i, 'ada') for i in {exercises!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert done.returncode == 0, done.stderr
    # through JSON on both sides: a tuple of costs comes back as a list
    assert json.loads(done.stdout) == json.loads(json.dumps([numbers(i, "ada")
                                                             for i in exercises]))


# Eight learners in the fast lane: enough to see the numbers move; all 60 in the whole suite.
DIFFERING = [pytest.param(8, id="8-learners"),
             pytest.param(len(LEARNERS), id="60-learners", marks=pytest.mark.slow)]


@pytest.mark.parametrize("how_many", DIFFERING)
@pytest.mark.parametrize("exercise_id", [unless_costly(i) for i in QUESTIONS])
def test_numbers_differ_across_learners(exercise_id, how_many):
    drawn = [tuple(sorted(numbers(exercise_id, learner).items()))
             for learner in LEARNERS[:how_many]]
    assert len(set(drawn)) >= how_many - 2, "learners share their numbers too often"
    for part_numbers in ("p", "m", "t_f", "target_percent", "stage"):
        values = {dict(d).get(part_numbers) for d in drawn}
        assert len(values) != 1 or values == {None}, f"{part_numbers} is the same for everyone"


# gpt3-3d's check plans GPT-3 layouts (seconds a learner): in the fast lane,
# tests/test_lesson_09_gpt3_3d.py checks its reference answers.
@pytest.mark.parametrize("how_many", HOW_MANY)
@pytest.mark.parametrize("exercise_id", [
    pytest.param(i, marks=[pytest.mark.slow] * (i == "gpt3-3d")) for i in QUESTIONS])
def test_the_reference_answers_are_right_for_many_learners(exercise_id, how_many):
    exercise = get_exercise(exercise_id)
    for learner in LEARNERS[:how_many]:
        answers = right_answers(exercise_id, numbers(exercise_id, learner))
        verdicts = check(exercise, learner, answers)
        assert [v.right for v in verdicts] == [True] * len(exercise.parts), (learner, verdicts)
        assert all(v.message.startswith("right") and "\n" not in v.message for v in verdicts)


# ---- no wrong-answer feedback holds the right value -------------------------------------

class EveryTryGetsAHint(AttemptBook):
    """A book that never runs out, so every wrong answer's hint is shown and searched too."""

    def try_answer(self, *args, **kwargs) -> int:
        return 1


def _number_tokens(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?(?:/\d+)?", text))


def _same_value(token: str, value: Fraction) -> bool:
    return Fraction(token) == value and token in (str(value), f"{float(value):g}")


def _wrong_numbers(truth: Fraction, mistakes: list) -> list[Fraction]:
    near = [truth + d for d in (-2, -1, 1, 2, Fraction(1, 2))] + [truth * 2, truth / 2]
    return [x for x in [*mistakes, *near, Fraction(0), Fraction(1)] if x != truth and x >= 0]


def _solutions_of(exercise_id: str):
    """The solutions module of a lesson from 5 on, or None for lessons 1-3."""
    from exercise_solutions import _lesson_solutions

    try:
        return _lesson_solutions(exercise_id)
    except KeyError:
        return None


def _mistakes(exercise_id: str, n: dict) -> dict[str, list]:
    """The usual wrong answers of each part, worked out from the lessons (not the checker)."""
    if exercise_id == "bubble":
        t = Fraction(n["target_percent"], 100)
        return {"a": [-(-(n["p"] - 1) // t), (n["p"] - 1) * (1 - t) // t],
                "c": {"m": ["ceil((p-1)/b)", "(p-1)*(1-b)/b", "floor((p-1)*(1-b)/b)",
                            "ceil((p-1)*(1-b)/b)+1", "ceil(p*(1-b)/b)", "p/b"],
                      "p": ["floor(b*m)+1", "1+b*m/(1-b)", "ceil(1+b*m/(1-b))",
                            "floor(b*m/(1-b))", "m*b"]}[n["form_c"]]}
    if exercise_id == "memory":
        p, s, f = n["p"], n["stage"], Fraction(n["factor"])
        return {"a": [-(-f * (p - 1 - s) // 1), -(-f * p // 1), f * (p - s) // 1,
                      -(-f * (p - s + 1) // 1)],
                "c": {"ratio": ["m/(p-i)", "m/(p-1-i)", "m/min(p-1-i,m)", "min(p-i,m)/m",
                                "m/min(p,m)", "min(p-i,m)"],
                      "saved": ["m-(p-i)", "m-min(p-1-i,m)", "min(p-i,m)-m", "m-min(p,m)",
                                "0", "min(p-i,m)"]}[n["form_c"]]}
    if exercise_id != "zero-bubble":  # lessons 4 on: their solutions module lists them
        module = _solutions_of(exercise_id)
        return module.mistakes(n) if hasattr(module, "mistakes") else {}
    p, t_f, t_i, t_w = n["p"], n["t_f"], n["t_i"], n["t_w"]
    b, work = Fraction(n["target_percent"], 100), Fraction(t_f + t_i + t_w)
    fewest = [max(p, -(-Fraction(idle).limit_denominator() * (1 - b) / (b * work) // 1))
              for idle in ((p - 1) * (t_f + t_i - t_w), (p - 1) * (t_f + t_i + t_w))]
    return {"a": fewest,
            "c": {"saving": ["(p-1)*t_w", "(p-1)*max(t_f+t_i-t_w,t_f,t_i)", "m*t_w",
                             "(p-1)*(t_f+t_i+t_w)-(p-1)*(t_f+t_i-t_w)"],
                  "ratio": ["(t_f+t_i-t_w)/(t_f+t_i+t_w)", "max(t_f,t_i)/(t_f+t_i+t_w)",
                            "(t_f+t_i+t_w)/max(t_f+t_i-t_w,t_f,t_i)", "1"]}[n["form_c"]]}


def _wrong_orders(right: str) -> list[str]:
    actions = right.split()
    forwards = [a for a in actions if "F" in a]
    backwards = [a for a in actions if "F" not in a]
    swapped = actions[:]
    first_b = next(i for i, a in enumerate(swapped) if "B" in a or "I" in a)
    swapped[first_b - 1], swapped[first_b] = swapped[first_b], swapped[first_b - 1]
    return [" ".join(forwards + backwards), " ".join(actions[:-1]), " ".join(swapped),
            " ".join(actions[1:] + actions[:1]), " ".join(actions + actions[-1:])]


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text).casefold()


@pytest.mark.parametrize("how_many", HOW_MANY)
@pytest.mark.parametrize("exercise_id", QUESTIONS)
def test_no_wrong_answer_feedback_holds_the_right_value(exercise_id, how_many):
    exercise = get_exercise(exercise_id)
    book = EveryTryGetsAHint()
    checked = 0
    for learner in LEARNERS[:how_many]:
        n = numbers(exercise_id, learner)
        variant = exercise.variant(learner)
        right = right_answers(exercise_id, n)
        mistakes = _mistakes(exercise_id, n)
        # Parts judged within a tolerance (a prediction within 10 %) would take the generic
        # near misses as right: those lessons list their wrong answers themselves.
        listed = getattr(_solutions_of(exercise_id), "wrong_answers", lambda n: None)(n)
        for part in exercise.parts:
            question = exercise.intro.format(**n) + " " + part.question(variant)
            truth = right[part.key]
            if part.kind == "number":
                value = Fraction(truth)
            if part.kind == "choice":
                wrongs = [name for name, _ in part.options if name != truth]
            elif listed is not None:  # the lesson's own list of surely-wrong answers
                wrongs = [str(answer) for answer in listed.get(part.key, [])]
            elif part.kind == "number":
                wrongs = [str(x) for x in _wrong_numbers(value, mistakes[part.key])]
            elif part.kind == "choice":
                wrongs = [name for name, _ in part.options if name != truth]
            elif part.kind == "schedule":
                wrongs = _wrong_orders(truth)
            else:
                wrongs = mistakes[part.key]
            for answer in wrongs:
                try:
                    verdict = check(exercise, learner, {part.key: answer}, book=book)[0]
                except BadAnswer:
                    continue
                if part.kind == "schedule" and verdict.right:
                    continue  # a mutation that happens to be another good order
                if listed is not None and part.kind == "number" and verdict.right:
                    continue  # a usual mistake that lands inside the part's tolerance here
                assert not verdict.right, (learner, part.key, answer)
                message = verdict.message
                assert message and "\n" not in message, (answer, message)
                checked += 1
                if part.kind == "number":
                    known = _number_tokens(question) | _number_tokens(answer)
                    leaked = [t for t in _number_tokens(message) - known
                              if _same_value(t, value)]
                    assert not leaked, (learner, part.key, answer, message)
                elif part.kind == "choice":
                    assert truth not in message, (learner, answer, message)
                else:
                    assert _squeeze(truth) not in _squeeze(message), (learner, answer, message)
    assert checked > how_many * len(exercise.parts) * 3


# ---- hints, tries and unreadable answers -------------------------------------------------

def test_numeric_hints_run_out_and_the_same_answer_is_one_try(tmp_path):
    book = AttemptBook(tmp_path / "attempts.json")
    exercise = get_exercise("bubble")
    mine = numbers("bubble", "ada")
    smallest = int(right_answers("bubble", mine)["a"])
    other_normalisation = -(-(mine["p"] - 1) * 100 // mine["target_percent"])
    tries = [str(m) for m in range(smallest + 1, smallest + 7) if m != other_normalisation][:5]
    said = [check(exercise, "ada", {"a": t}, book=book)[0].message for t in tries]
    for n, message in enumerate(said[:NUMERIC_HINTS], start=1):
        assert f"hint {n} of {NUMERIC_HINTS}" in message
    assert all("no numeric hints left" in m and "%" not in m for m in said[NUMERIC_HINTS:])
    again = check(exercise, "ada", {"a": tries[-1]}, book=book)[0].message
    assert again == said[-1]
    state = json.loads((tmp_path / "attempts.json").read_text())
    assert state["learners"]["ada"]["bubble"]["a"]["tries"] == len(tries)
    assert book.last_answers("ada") == {"bubble": {"a": tries[-1]}}
    assert book.hints_left("bob", "bubble", "a") == NUMERIC_HINTS


@pytest.mark.parametrize("unreadable", [{"a": "lots"}, {"a": "2.5"}, {"a": "0"},
                                        {"b": "maybe"}, {"c": "__import__('os')"},
                                        {"c": "p.__class__"}, {"c": "lambda: 1"},
                                           {"c": "p ^ 2"}, {"c": "(p-1"}, {"c": "q/m"}, {"d": "1"}])
def test_unreadable_answers_are_refused_before_any_try(unreadable, tmp_path):
    book = AttemptBook(tmp_path / "attempts.json")
    readable = {"a": "12"} if "a" not in unreadable else {"b": "no-difference"}
    with pytest.raises(BadAnswer) as refused:
        check(get_exercise("bubble"), "ada", readable | unreadable, book=book)
    assert str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "attempts.json").exists(), "a try was recorded"
    with pytest.raises(BadAnswer, match="give an answer"):
        check(get_exercise("bubble"), "ada", {}, book=book)


def test_a_formula_cannot_compute_forever_or_reach_python():
    exercise = get_exercise("bubble")
    for formula in ("9**9**9", "p**1000", "max(p, b)/0", "(p-1)/(b-b)", "ceil(1e300*1e300)",
                    "ceil(10**8*10**8*b)", "(-p)**0.5"):
        try:
            verdict = check(exercise, "ada", {"c": formula})[0]
        except BadAnswer as refused:
            assert "\n" not in str(refused), formula
            continue
        assert not verdict.right and "\n" not in verdict.message, formula


def test_notebook_grader_explains_instead_of_raising():
    def not_yet(p, b):
        raise NotImplementedError("write it")

    def broken(p, b):
        return [p][int(b * 100)]

    report = grade("bubble", "ada", {"a": "many", "b": None, "c": not_yet})
    text = str(report)
    assert "cannot read it" in text and "not answered yet" in text
    assert "not written yet" in text and report.points == 0
    assert "raised IndexError" in str(grade("bubble", "ada", {"c": broken}))
    assert "set LEARNER first" in str(grade("bubble", "", {}))
    assert "still 'your-name'" in str(grade("bubble", "your-name", {}))


# ---- the command line ----------------------------------------------------------------------

def test_pplab_lists_the_exercise_command():
    from pplab.cli import main as cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert "exercise" in commands, ("add exercise_command.add_parser to pplab/cli/main.py's "
                                    "build_parser (see the report of issue 10)")


def test_exercise_command_exit_codes(capsys):
    code, out, _ = run_pplab(capsys, "exercise", "list")
    assert code == 0 and all(i in out for i in EXERCISES)
    code, out, _ = run_pplab(capsys, "exercise", "show", "memory", "--learner", "ada")
    assert code == 0 and f"p = {numbers('memory', 'ada')['p']} stages" in out
    right = right_answers("bubble", numbers("bubble", "ada"))
    code, out, _ = run_pplab(capsys, "exercise", "check", "bubble", "--learner", "ada", right["a"],
                             right["b"], right["c"])
    assert code == 0 and out.count("right:") == 3
    code, out, _ = run_pplab(capsys, "exercise", "check", "bubble", f"a={int(right['a']) + 3}",
                             "--learner", "ada")
    assert code == 1 and "still to answer: b, c" in out
    for argv in (["check", "bubble", "--learner", "ada", "junk"],
                 ["check", "bubble", "1", "2", "3", "4", "--learner", "ada"],
                 ["check", "bubble", "12"], ["show", "bubble"], ["check", "nope", "1"],
                 ["check", "bubble", "--learner", "ada", "--file", "x.py"]):
        code, out, err = run_pplab(capsys, "exercise", *argv)
        assert code == 2 and not out and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err


def test_submit_hands_in_the_latest_answers_and_the_tries_each_took(capsys, tmp_path):
    code, _, err = run_pplab(capsys, "exercise", "submit", "--learner", "ada")
    assert code == 2 and "no answers" in err
    run_pplab(capsys, "exercise", "check", "memory", "--learner", "Ada", "a=3", "c=p-i")
    out_file = tmp_path / "ada.json"
    code, out, _ = run_pplab(capsys, "exercise", "submit", "--learner", "ada",
                             "--out", str(out_file))
    assert code == 0 and "memory (a, c)" in out
    run_pplab(capsys, "exercise", "check", "memory", "--learner", "ada", "a=4")
    run_pplab(capsys, "exercise", "check", "memory", "--learner", "ada", "a=4")  # the same: 1
    code, out, _ = run_pplab(capsys, "exercise", "submit", "--learner", "ada",
                             "--out", str(out_file))
    assert json.loads(out_file.read_text()) == {"learner": "ada", "answers": {
        "memory": {"a": "4", "c": "p-i"}}, "tries": {"memory": {"a": 2, "c": 1}}}


# ---- the instructor's report ---------------------------------------------------------------

@pytest.mark.slow  # grades two schedule files in child processes
def test_report_grades_a_folder_of_mixed_submissions(tmp_path, capsys):
    folder = tmp_path / "submissions"
    folder.mkdir()
    ids = ["bubble", "memory", "schedule-lab"]
    ada = {i: right_answers(i, numbers(i, "Ada")) for i in ids[:2]}
    (folder / "ada.json").write_text(json.dumps({"learner": "Ada", "answers": ada}))
    bob_right = right_answers("bubble", numbers("bubble", "bob"))
    bob = {"bubble": [bob_right["a"], "faster-backward", "(p-1)/m"], "memory": {"a": "lots"}}
    (folder / "bob.json").write_text(json.dumps({"learner": "bob", "answers": bob}))
    # Ada's answers handed in under another name are graded against that name's numbers.
    (folder / "copycat.json").write_text(json.dumps({"answers": ada}))
    (folder / "carol.json").write_text("{not json")
    solution = (ROOT / "tests" / "schedule_lab_solution.py").read_text()
    (folder / "lab-ada.py").write_text(solution.replace('"reference"', '"Ada"'))
    shutil.copy(ROOT / "lessons" / "04-write-your-own-schedule" / "my_schedules.py",
                folder / "bob.py")
    (folder / "notes.txt").write_text("not a submission")

    rows, graded, skipped = grade_folder(folder, ids)
    by_name = {row.learner: row for row in rows}
    assert graded == ids and set(by_name) == {"ada", "bob", "copycat", "carol"}
    assert by_name["ada"].scores == {"bubble": (3, 3), "memory": (3, 3), "schedule-lab": (3, 3)}
    assert by_name["bob"].scores == {"bubble": (1, 3), "memory": (0, 3), "schedule-lab": (0, 3)}
    assert by_name["copycat"].total < by_name["ada"].total
    assert by_name["carol"].total == 0 and "cannot be read" in by_name["carol"].notes[0]
    assert skipped == ["notes.txt: not a .json answers file nor a .py schedule file"]
    assert csv_table(rows, ids).splitlines()[:2] == [
        "learner,bubble,memory,schedule-lab,total,out_of,tries,notes", "ada,3,3,3,9,9,,"]
    table = json.loads(json_table(rows, ids, skipped))
    bob_parts = table["learners"][1]["scores"]["bubble"]["parts"]
    assert [p["right"] for p in bob_parts] == [True, False, False]
    assert "cancels" in bob_parts[1]["message"] and "hint" not in bob_parts[1]["message"]

    code, out, _ = run_pplab(capsys, "exercise", "report", str(folder), "--exercises", "bubble")
    assert code == 0 and out.splitlines()[0] == "learner,bubble,total,out_of,tries,notes"
    code, out, _ = run_pplab(capsys, "exercise", "report", str(folder), "--exercises", "bubble",
                             "--out", str(tmp_path / "grades.json"))
    assert code == 0 and json.loads((tmp_path / "grades.json").read_text())["learners"]
    code, _, err = run_pplab(capsys, "exercise", "report", str(tmp_path / "missing"))
    assert code == 2 and err.count("\n") == 1


def test_the_report_shows_the_tries_handed_in_and_a_course_can_cap_them(tmp_path, capsys):
    """Tries go from the checker to submit to the report's tries column; --max-tries takes
    the point of a part right after more tries; --attempts reads a lab server's record."""
    right = right_answers("bubble", numbers("bubble", "ada"))
    wrong_m = str(int(right["a"]) + 5)
    for answer in (wrong_m, str(int(right["a"]) + 6), right["a"]):
        run_pplab(capsys, "exercise", "check", "bubble", "--learner", "ada", f"a={answer}")
    run_pplab(capsys, "exercise", "check", "bubble", "--learner", "ada", f"b={right['b']}")
    folder = tmp_path / "submissions"
    folder.mkdir()
    code, _, _ = run_pplab(capsys, "exercise", "submit", "--learner", "ada", "--out",
                           str(folder / "ada.json"))
    assert code == 0
    assert json.loads((folder / "ada.json").read_text())["tries"] == {"bubble": {"a": 3, "b": 1}}
    code, out, _ = run_pplab(capsys, "exercise", "report", str(folder), "--exercises", "bubble")
    assert code == 0 and out.splitlines()[:2] == ["learner,bubble,total,out_of,tries,notes",
                                                  "ada,2,2,3,4,"]
    code, out, _ = run_pplab(capsys, "exercise", "report", str(folder), "--exercises", "bubble",
                             "--max-tries", "2", "--out", str(tmp_path / "capped.json"))
    parts = json.loads((tmp_path / "capped.json").read_text())["learners"][0]["scores"]
    a, b = parts["bubble"]["parts"][:2]
    assert not a["right"] and "after 3 tries, over this course's cap of 2" in a["message"]
    assert b["right"] and a["tries"] == 3 and b["tries"] == 1
    # the server's record, not the file handed in, where the instructor says so
    server = tmp_path / "server-attempts.json"
    from pplab.exercises import AttemptBook

    book = AttemptBook(server)
    book.try_answer("ada", "bubble", "a", right["a"], True, False)
    code, out, _ = run_pplab(capsys, "exercise", "report", str(folder), "--exercises", "bubble",
                             "--attempts", str(server))
    assert code == 0 and out.splitlines()[1] == "ada,2,2,3,1,"
    code, _, err = run_pplab(capsys, "exercise", "report", str(folder), "--max-tries", "0")
    assert code == 2 and "--max-tries" in err


def test_a_course_cap_stops_judging_new_answers_past_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PPLAB_MAX_TRIES", "2")
    book = AttemptBook(tmp_path / "attempts.json")
    exercise = get_exercise("bubble")
    right = right_answers("bubble", numbers("bubble", "ada"))["a"]
    said = [check(exercise, "ada", {"a": str(int(right) + k)}, book=book)[0]
            for k in (7, 8, 9)]
    assert not said[1].message.startswith("not judged")
    assert said[2].message.startswith("not judged: this course allows 2 tries")
    assert check(exercise, "ada", {"a": str(int(right) + 8)}, book=book)[0].message == \
        said[1].message, "the last answer again is not a new try"
    assert not check(exercise, "ada", {"a": right}, book=book)[0].right
