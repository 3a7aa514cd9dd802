"""The coding lab grades schedule files it never imports, and its messages point at the bug.

The shipped skeleton fails with a message that names the first broken action; the reference
solution (tests/schedule_lab_solution.py, never in the lesson folder) passes every hidden case,
its own limits k and d included; the usual mistakes (a deadlock, a late forward, too many
warm-ups, a full backward in ZB-H1, a limit ignored) are each told apart; a file that loops,
floods its output or exits is stopped in a few lines. ``--train`` runs one schedule on the
real engine and exports it in PyTorch's CSV format. The guard's own refusals (a file that
copies pplab) are in tests/test_lab_guard.py.

    .venv/bin/python -m pytest -q tests/test_schedule_lab.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import schedule_lab_solution as solution
from command_helpers import run_pplab

from pplab.exercises import BadAnswer
from pplab.exercises.lab_cases import Case, hidden_cases
from pplab.exercises.lab_notebook import check_functions
from pplab.exercises.report import declared_learner
from pplab.exercises.schedule_lab import RUN_TIMEOUT_S, TARGETS, check_file, judge_order
from pplab.sim.cost_model import CostModel

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


def plain(p: int, m: int) -> Case:
    """A case whose limits are the families' own, at unit costs."""
    return Case(p, m, CostModel(), k=p, d=p - 1)


def test_the_skeleton_fails_naming_the_first_missing_action(tmp_path):
    shutil.copy(SKELETON, tmp_path / "my_schedules.py")
    result = check_file(tmp_path / "my_schedules.py")
    assert result.points == 0 and [v.part for v in result.verdicts] == list(TARGETS)
    assert result.refused is None, "the skeleton itself must pass the guard"
    for verdict in result.verdicts:
        first_line = verdict.message.splitlines()[0]
        assert "case 1 of 7" in first_line and "0B0" in first_line, first_line
        assert "Traceback" not in verdict.message
    assert "0F2" in result.verdicts[0].message, "the message shows the step x rank grid"


def test_the_skeleton_names_no_answer_and_imports_no_pplab():
    import ast

    text = SKELETON.read_text()
    tree = ast.parse(text)
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules == {"typing"}, "the skeleton gives its small types without pplab"
    assert "NotImplementedError" not in text or "TODO" in text
    for name, args in (("gpipe", (3, 4)), ("one_f_one_b", (3, 4, 3)), ("zb_h1", (3, 4, 2))):
        assert " ".join(SOLUTION_FUNCTIONS[name](*args)[1]) not in text


def test_the_reference_solution_passes_every_hidden_case_in_a_file_and_from_a_notebook():
    result = check_file(SOLUTION, "ada")
    assert result.all_right, str(result)
    assert check_functions(SOLUTION_FUNCTIONS, "ada").all_right
    assert declared_learner(SOLUTION) == "reference" and declared_learner(SKELETON) is None


def test_hidden_cases_are_drawn_for_each_learner_with_limits_of_their_own():
    assert hidden_cases("ada") == hidden_cases("ADA ")
    drawn = {tuple((c.p, c.m, c.k, c.d) for c in hidden_cases(f"learner-{n}"))
             for n in range(20)}
    assert len(drawn) >= 15
    ada = hidden_cases("ada")
    assert any(c.m < c.p for c in ada), "a case with fewer microbatches"
    assert [c.ruled("1f1b") for c in ada][-2:] == [True, True]
    assert [c.ruled("zb-h1") for c in ada][-2:] == [True, True]
    assert not any(c.ruled("1f1b") or c.ruled("zb-h1") for c in ada[:5])
    assert len({(c.k, c.d) for n in range(20) for c in hidden_cases(f"learner-{n}")[-2:]}) > 5


@pytest.mark.parametrize("part, orders, case, expected", [
    # the backward of stage 0 runs before stage 1 sent its gradient back; 1 waits for 0F1
    ("1f1b", {0: ["0F0", "0B0", "0F1", "0B1"], 1: ["1F0", "1F1", "1B0", "1B1"]}, plain(2, 2),
     "deadlock: rank 0 at 0B0 waits for 1I0"),
    ("1f1b", {0: ["0B0", "0F0", "0F1", "0B1"], 1: ["1F0", "1B0", "1F1", "1B1"]}, plain(2, 2),
     "dependency broken: 0B0 on rank 0 needs 0F0"),
    ("gpipe", {0: ["0F0", "0B0", "0F1", "0B1"], 1: ["1F0", "1B0", "1F1", "1B1"]}, plain(2, 2),
     "0F1 on rank 0 runs after a backward"),
    ("zb-h1", solution.one_f_one_b(2, 2, 2), plain(2, 2), "0B0 on rank 0 is a full backward"),
    ("1f1b", solution.zb_h1(2, 2, 1), plain(2, 2), "is half a backward"),
    ("1f1b", solution.gpipe(4, 6), plain(4, 6), "stage 0 holds 6 microbatches at once"),
    ("gpipe", {0: ["0F0", "0F1", "0B0", "0B1"]}, plain(2, 2),
     "it returned 1 ranks; p = 2 needs 2"),
    ("gpipe", {0: ["0F0", "0X1"], 1: []}, plain(2, 2),
     "rank 0, action 2: cannot read action '0X1'"),
    # pplab's own 1F1B and ZB-H1 ignore the learner's limits
    ("1f1b", solution.one_f_one_b(4, 6, 4), Case(4, 6, CostModel(), k=2, d=3),
     "stage 0 holds 4 microbatches in flight at its peak; this case allows at most k = 2"),
    ("zb-h1", solution.zb_h1(4, 6, 3), Case(4, 6, CostModel(), k=4, d=1),
     "runs 2 input gradients after its own I; this case allows at most d = 1"),
])
def test_each_mistake_is_named(part, orders, case, expected):
    rows = [orders[r] for r in sorted(orders)]
    problem = judge_order(part, case, rows)
    assert problem is not None and expected in problem, problem


def test_orders_within_the_limits_are_on_target():
    for p, m, k, d in ((4, 6, 2, 1), (5, 9, 1, 0), (3, 3, 2, 0), (6, 8, 3, 2)):
        case = Case(p, m, CostModel(forward=1.5, backward=2.5, backward_input=1,
                                    backward_weight=1.5), k, d)
        for part, orders in (("1f1b", solution.one_f_one_b(p, m, k)),
                             ("zb-h1", solution.zb_h1(p, m, d))):
            assert judge_order(part, case, [orders[r] for r in range(p)]) is None, part


def test_a_slow_schedule_is_refused_with_both_bubbles():
    case = hidden_cases("ada")[4]
    # Valid and frugal, but each microbatch crosses the whole pipeline before the next starts.
    naive = [[f"{r}{kind}{mb}" for mb in range(case.m) for kind in "FB"] for r in range(case.p)]
    problem = judge_order("1f1b", case, naive)
    assert problem and problem.startswith("the step takes") and problem.count("%") == 2, problem


@pytest.mark.parametrize("body, expected", [
    pytest.param("def gpipe(p, m):\n    while True:\n        pass\n", "ran longer than 1 s",
                 marks=pytest.mark.slow),  # runs its second out
    ("import sys\nsys.exit(3)\n", "SystemExit"),
    ("def gpipe(p, m):\n    print('x' * 10_000_000)\n    return {}\n", "returned ranks []"),
    ("def gpipe(p, m:\n", "SyntaxError"),
    ("def gpipe(p, m):\n    return 7\n", "returned int"),
    ("def gpipe(p, m):\n    return [[]] * p\n", "incomplete"),
])
def test_a_misbehaving_file_is_stopped_in_a_few_lines(tmp_path, body, expected):
    # Only the endless loop meets the short timeout; the others get the grader's own, so a
    # slow start of the child on a busy machine is not read as a loop.
    timeout = 1 if "while True" in body else RUN_TIMEOUT_S
    result = check_file(learner_file(tmp_path, body), timeout=timeout)
    gpipe = result.verdicts[0].message
    assert not result.verdicts[0].right and expected in gpipe, gpipe
    assert len(str(result)) < 8000, "the output is bounded"


def test_learner_code_may_use_the_skeletons_own_types(tmp_path):
    types = SKELETON.read_text()
    types = types[types.index("from typing import NamedTuple"):types.index("def gpipe(")]
    body = with_function("gpipe", types + '''
def gpipe(p, m):
    schedule = empty_schedule(p)
    for r in range(p):
        schedule[r] += [Action(r, F, j) for j in range(m)] + [Action(r, B, j) for j in range(m)]
    return schedule
''')
    result = check_file(learner_file(tmp_path, body))
    assert result.all_right, str(result)


def test_check_command_for_the_lab(tmp_path, capsys):
    shutil.copy(SKELETON, tmp_path / "my_schedules.py")
    code, out, _ = run_pplab(capsys, "exercise", "check", "schedule-lab",
                             "--file", str(tmp_path / "my_schedules.py"))
    assert code == 1 and "0 of 3 schedules on target" in out
    code, out, _ = run_pplab(capsys, "exercise", "check", "schedule-lab", "--file", str(SOLUTION))
    assert code == 0 and "3 of 3 schedules on target" in out
    code, out, _ = run_pplab(capsys, "exercise", "show", "schedule-lab", "--learner", "ada")
    case = hidden_cases("ada")[-1]
    assert code == 0 and f"k = {case.k} and d = {case.d}" in out
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
    assert rows == [solution.zb_h1(2, 4, 1)[0], solution.zb_h1(2, 4, 1)[1]]
    run = load_run(out / csv_file.stem)
    assert run.metadata["source"] == "measured" and len(run.metadata["loss"]) == 3
    assert "trained 3 steps" in printed and str(csv_file) in printed
