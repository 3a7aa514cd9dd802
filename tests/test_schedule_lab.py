"""The coding lab grades schedule files it never imports, and its messages point at the bug.

The shipped skeleton fails with a message that names the first broken action; the reference
solution (tests/schedule_lab_solution.py, never in the lesson folder) passes every hidden case;
the usual mistakes (a deadlock, a late forward, too many warm-ups, a full backward in ZB-H1)
are each told apart; a file that loops, floods its output, exits or reaches for pplab's own
builders is stopped or refused in a few lines. ``--train`` runs one schedule on the real
engine and exports it in PyTorch's CSV format.

    .venv/bin/python -m pytest -q tests/test_schedule_lab.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import schedule_lab_solution as solution
from command_helpers import run_pplab

from pplab.exercises import BadAnswer
from pplab.exercises.report import declared_learner
from pplab.exercises.schedule_lab import (
    RUN_TIMEOUT_S,
    TARGETS,
    check_file,
    check_functions,
    hidden_cases,
    judge_order,
)

ROOT = Path(__file__).resolve().parents[1]
SKELETON = ROOT / "lessons" / "04-write-your-own-schedule" / "my_schedules.py"
SOLUTION = ROOT / "tests" / "schedule_lab_solution.py"
SOLUTION_FUNCTIONS = {"gpipe": solution.gpipe, "one_f_one_b": solution.one_f_one_b,
                      "zb_h1": solution.zb_h1}


def learner_file(tmp_path: Path, body: str, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def with_function(name: str, body: str) -> str:
    """The reference solution with one function replaced by ``body``."""
    text = SOLUTION.read_text()
    start = text.index(f"def {name}(")
    end = text.find("\ndef ", start + 1)
    return text[:start] + body.strip() + "\n\n" + (text[end:] if end != -1 else "")


def test_the_skeleton_fails_naming_the_first_missing_action(tmp_path):
    shutil.copy(SKELETON, tmp_path / "my_schedules.py")
    result = check_file(tmp_path / "my_schedules.py")
    assert result.points == 0 and [v.part for v in result.verdicts] == list(TARGETS)
    for verdict in result.verdicts:
        first_line = verdict.message.splitlines()[0]
        assert "case 1 of 7" in first_line and "0B0" in first_line, first_line
        assert "Traceback" not in verdict.message
    assert "0F2" in result.verdicts[0].message, "the message shows the step x rank grid"


def test_the_skeleton_names_no_answer():
    text = SKELETON.read_text()
    assert "NotImplementedError" not in text or "TODO" in text
    for function in SOLUTION_FUNCTIONS.values():  # no reference order written into it
        assert " ".join(function(3, 4)[1]) not in text


def test_the_reference_solution_passes_every_hidden_case():
    result = check_file(SOLUTION, "ada")
    assert result.all_right, str(result)
    assert check_functions(SOLUTION_FUNCTIONS, "ada").all_right
    assert declared_learner(SOLUTION) == "reference" and declared_learner(SKELETON) is None


def test_hidden_cases_are_drawn_for_each_learner():
    assert hidden_cases("ada") == hidden_cases("ADA ")
    drawn = {tuple((c.p, c.m) for c in hidden_cases(f"learner-{n}")) for n in range(20)}
    assert len(drawn) >= 15
    assert any(c.m < c.p for c in hidden_cases("ada")), "a case with fewer microbatches"


CASE = hidden_cases("ada")[4]


@pytest.mark.parametrize("part, orders, expected", [
    # the backward of stage 0 runs before stage 1 sent its gradient back; 1 waits for 0F1
    ("1f1b", {0: ["0F0", "0B0", "0F1", "0B1"], 1: ["1F0", "1F1", "1B0", "1B1"]},
     "deadlock: rank 0 at 0B0 waits for 1I0"),
    ("1f1b", {0: ["0B0", "0F0", "0F1", "0B1"], 1: ["1F0", "1B0", "1F1", "1B1"]},
     "dependency broken: 0B0 on rank 0 needs 0F0"),
    ("gpipe", {0: ["0F0", "0B0", "0F1", "0B1"], 1: ["1F0", "1B0", "1F1", "1B1"]},
     "0F1 on rank 0 runs after a backward"),
    ("zb-h1", solution.one_f_one_b(2, 2), "0B0 on rank 0 is a full backward"),
    ("1f1b", solution.zb_h1(2, 2), "is half a backward"),
    ("1f1b", solution.gpipe(4, 6), "stage 0 holds 6 microbatches at once"),
    ("gpipe", {0: ["0F0", "0F1", "0B0", "0B1"]}, "it returned 1 ranks; p = 2 needs 2"),
    ("gpipe", {0: ["0F0", "0X1"], 1: []}, "rank 0, action 2: cannot read action '0X1'"),
])
def test_each_mistake_is_named(part, orders, expected):
    from pplab.exercises.schedule_lab import Case
    from pplab.sim.cost_model import CostModel

    rows = [orders[r] for r in sorted(orders)]
    p = 4 if len(rows) == 4 else 2
    m = 6 if p == 4 else 2
    problem = judge_order(part, Case(p, m, CostModel()), rows)
    assert problem is not None and expected in problem, problem


def test_a_slow_schedule_is_refused_with_both_bubbles():
    from pplab.exercises.schedule_lab import Case

    # Valid and frugal, but each microbatch crosses the whole pipeline before the next starts.
    naive = [[f"{r}{kind}{mb}" for mb in range(CASE.m) for kind in "FB"] for r in range(CASE.p)]
    problem = judge_order("1f1b", Case(CASE.p, CASE.m, CASE.cost), naive)
    assert problem and problem.startswith("the step takes") and problem.count("%") == 2, problem


@pytest.mark.parametrize("body, expected", [
    ("def gpipe(p, m):\n    while True:\n        pass\n", "ran longer than 1 s"),
    ("import sys\nsys.exit(3)\n", "SystemExit"),
    ("def gpipe(p, m):\n    print('x' * 10_000_000)\n    return {}\n", "returned ranks []"),
    ("def gpipe(p, m:\n", "SyntaxError"),
    ("from pplab.schedules import build\n", "builders are off in the lab"),
    ("from pplab.schedules.simple import gpipe\n", "builders are off in the lab"),
    ("def gpipe(p, m):\n    return 7\n", "returned int"),
])
def test_a_misbehaving_file_is_stopped_in_a_few_lines(tmp_path, body, expected):
    # Only the endless loop meets the short timeout; the others get the grader's own, so a
    # slow start of the child on a busy machine is not read as a loop.
    timeout = 1 if "while True" in body else RUN_TIMEOUT_S
    result = check_file(learner_file(tmp_path, body), timeout=timeout)
    gpipe = result.verdicts[0].message
    assert not result.verdicts[0].right and expected in gpipe, gpipe
    assert len(str(result)) < 8000, "the output is bounded"


def test_learner_code_may_use_the_action_language(tmp_path):
    body = with_function("gpipe", '''
def gpipe(p, m):
    from pplab.schedules import Action
    return {r: [Action(r, "F", j) for j in range(m)] + [Action(r, "B", j) for j in range(m)]
            for r in range(p)}
''')
    assert check_file(learner_file(tmp_path, body)).all_right


def test_check_command_for_the_lab(tmp_path, capsys):
    shutil.copy(SKELETON, tmp_path / "my_schedules.py")
    code, out, _ = run_pplab(capsys, "exercise", "check", "schedule-lab",
                             "--file", str(tmp_path / "my_schedules.py"))
    assert code == 1 and "0 of 3 schedules on target" in out
    code, out, _ = run_pplab(capsys, "exercise", "check", "schedule-lab", "--file", str(SOLUTION))
    assert code == 0 and "3 of 3 schedules on target" in out
    for argv in (["check", "schedule-lab"], ["check", "schedule-lab", "12"],
                 ["check", "schedule-lab", "--file", str(tmp_path / "missing.py")]):
        code, _, err = run_pplab(capsys, "exercise", *argv)
        assert code == 2 and err.count("\n") == 1
    with pytest.raises(BadAnswer):
        check_file(tmp_path)


@pytest.mark.multiprocess  # trains two ranks of the toy GPT for three steps
def test_train_runs_the_schedule_on_the_engine_and_exports_it_for_pytorch(tmp_path, capsys):
    from torch.distributed.pipelining.schedules import _Action

    from pplab.runs.run_dirs import load_run

    out = tmp_path / "runs"
    code, printed, _ = run_pplab(capsys, "exercise", "check", "schedule-lab",
                                 "--file", str(SOLUTION), "--train", "--out", str(out))
    assert code == 0, printed
    (csv_file,) = out.glob("*-schedule-lab-zb-h1-p2m4.csv")
    rows = [line.split(",") for line in csv_file.read_text().splitlines()]
    assert [str(_Action.from_str(cell)) for cell in rows[0]] == rows[0]
    assert rows == [solution.zb_h1(2, 4)[0], solution.zb_h1(2, 4)[1]]
    run = load_run(out / csv_file.stem)
    assert run.metadata["source"] == "measured" and len(run.metadata["loss"]) == 3
    assert "trained 3 steps" in printed and str(csv_file) in printed
