"""The runtime lab: a learner's pipeline runtime run on real processes, graded by parity.

Each grade starts one guarded process per rank in a gloo group, so these tests are in the
multiprocess lane and each grades a whole file (several runs per spawn).

    .venv/bin/python -m pytest -q tests/test_runtime_lab.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from solutions_runtime import (
    DEADLOCK,
    EARLY_STEP,
    ENDLESS,
    NO_INPUT_GRAD,
    SHIFTED,
    SOLUTION,
    WRONG_RANK,
    with_fault,
)

from pplab.engine.model import build_reference_model
from pplab.exercises import get_exercise
from pplab.exercises.report import lab_of_file
from pplab.exercises.runtime_cases import RuntimeCase, hidden_cases
from pplab.exercises.runtime_copies import copied_lines
from pplab.exercises.runtime_lab import check_file
from pplab.exercises.runtime_reference import reference

ROOT = Path(__file__).resolve().parents[1]
SKELETON = ROOT / "lessons" / "04a-write-your-own-runtime" / "my_runtime.py"
SMALL = [RuntimeCase(2, 4, 3)]


def _file(tmp_path: Path, text: str, name: str = "my_runtime.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_reference_is_one_process_and_the_cut_model_agrees_with_it():
    case = RuntimeCase(3, 3, 5)
    ref = reference(case)
    model = build_reference_model(case.config, torch.float64)
    assert set(ref.grads) == {name for name, _ in model.named_parameters()}
    assert len(ref.losses) == 3 and sorted(ref.outputs) == [(s, j) for s in range(3)
                                                            for j in range(3)]
    # the gradient each stage is given is the one the next stage's input received
    assert sorted(ref.grad_outputs) == [(s, j) for s in range(2) for j in range(3)]
    assert ref.which("outputs", 1, ref.outputs[(1, 2)].reshape(-1).tolist()) == 2
    assert ref.which("outputs", 1, (ref.outputs[(1, 2)] + 1e-6).reshape(-1).tolist()) is None
    drawn = hidden_cases("ada")
    assert drawn[0].p == 2 and drawn[0].m == 4 and drawn[-1].p in (3, 4)
    assert hidden_cases("ada") == drawn and hidden_cases("grace") != drawn


def test_a_copy_of_pplabs_executor_is_refused_without_running_it():
    pasted = (ROOT / "pplab" / "engine" / "executor.py").read_text()
    assert copied_lines(pasted) and "pplab's own executor" in copied_lines(pasted)
    assert copied_lines(SOLUTION) is None
    assert copied_lines(SKELETON.read_text()) is None


def test_a_lab_file_is_told_from_its_functions(tmp_path):
    assert lab_of_file(_file(tmp_path, SOLUTION, "ada.py")) == "runtime-lab"
    schedules = ROOT / "lessons" / "04-write-your-own-schedule" / "my_schedules.py"
    assert lab_of_file(schedules) == "schedule-lab"
    shown = get_exercise("runtime-lab").show("ada")
    assert "my_runtime.py" in shown and "pplab exercise check runtime-lab" in shown


@pytest.mark.multiprocess
def test_the_skeleton_names_its_first_missing_piece_and_the_reference_passes(tmp_path):
    shipped = check_file(_file(tmp_path, SKELETON.read_text()), "ada", cases=SMALL)
    said = {v.part: v.message for v in shipped.verdicts}
    assert shipped.points == 0 and not shipped.all_right
    assert "blocking_step is not written yet: the forward of one microbatch" in \
        said["blocking-gpipe"], said
    assert "overlapped_step is not written yet" in said["overlapped-gpipe"], said
    assert "not run" in said["overlapped-1f1b"], said

    graded = check_file(_file(tmp_path, SOLUTION), "ada")  # the hidden cases: p = 2, then 3 or 4
    assert graded.all_right, str(graded)
    assert "well done" in str(graded) and "2 hidden cases" in str(graded)


@pytest.mark.multiprocess
def test_each_fault_is_named(tmp_path):
    wrong = check_file(_file(tmp_path, with_fault(WRONG_RANK)), "ada", cases=SMALL)
    said = {v.part: (v.right, v.message) for v in wrong.verdicts}
    assert not said["blocking-gpipe"][0]
    assert "rank 1 sent to rank 2 (send)" in said["blocking-gpipe"][1], said
    assert said["overlapped-gpipe"][0] and said["overlapped-1f1b"][0], said

    talkative = with_fault(EARLY_STEP).replace(
        "def blocking_step(stage, ctx):\n",
        "def blocking_step(stage, ctx):\n    print('on', ctx.rank)\n")
    early = check_file(_file(tmp_path, talkative), "ada", cases=SMALL)
    message = early.verdicts[0].message
    assert "stepped the optimizer after 1 of its 4 backwards" in message, message
    assert "your code printed:\nrank 0: on 0\nrank 1: on 1\n" in str(early), str(early)

    shifted = check_file(_file(tmp_path, with_fault(SHIFTED)), "ada", cases=SMALL)
    message = shifted.verdicts[0].message
    assert "rank 0 ran the forward of microbatch 1 where the schedule says F0" in message, message

    endless = check_file(_file(tmp_path, with_fault(ENDLESS)), "ada", cases=SMALL)
    message = endless.verdicts[0].message
    assert "rank 1: blocking_step ran longer than 30 s" in message, message
    assert "ranks 0 then failed waiting on it" in message, message

    no_grad = check_file(_file(tmp_path, with_fault(NO_INPUT_GRAD)), "ada", cases=SMALL)
    message = no_grad.verdicts[0].message
    assert "rank 1: TypeError: send of NoneType" in message and "requires_grad_" in message, \
        message

    # The lesson's claim: the blocking runtime on 1F1B at p = 2, m = 4 deadlocks, both ranks
    # in send, and the grader says so.
    stuck = check_file(_file(tmp_path, with_fault(DEADLOCK)), "ada", cases=SMALL)
    said = {v.part: (v.right, v.message) for v in stuck.verdicts}
    assert said["blocking-gpipe"][0] and said["overlapped-gpipe"][0], said
    message = said["overlapped-1f1b"][1]
    assert "deadlock" in message, message
    assert "rank 0 waits in send to rank 1 (the activation of microbatch 1, after F1)" in message
    assert "rank 1 waits in send to rank 0 (the gradient of microbatch 0, after B0)" in message


@pytest.mark.multiprocess
def test_the_guard_keeps_pplab_and_sockets_out_of_the_runtime(tmp_path):
    for text, refused in (("import pplab\n" + SOLUTION, "import of pplab"),
                          ("import socket\nsocket.socket()\n" + SOLUTION, "socket")):
        result = check_file(_file(tmp_path, text), "ada", cases=SMALL)
        assert result.refused and refused in result.refused, str(result)
        assert result.points == 0


@pytest.mark.multiprocess
def test_the_learners_timeline_is_drawn_beside_the_engines(tmp_path):
    from pplab.exercises.runtime_timeline import compare, learner_timeline

    path = _file(tmp_path, SOLUTION)
    events, problem = learner_timeline(path, "overlapped-1f1b")
    assert problem is None
    assert set(events["rank"]) == {0, 1}
    kinds = set(events["kind"])
    assert {"F", "B", "send", "recv", "wait", "optim"} <= kinds, kinds
    # rank 1 runs the schedule's 1F1B order, microbatches named from the schedule
    rank1 = events[(events["rank"] == 1) & events["kind"].isin(["F", "B"])].sort_values("start")
    assert [f"{k}{m}" for k, m in zip(rank1["kind"], rank1["microbatch"], strict=True)] == \
        ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3"]
    figure, lines = compare(path, "blocking-gpipe")
    assert figure is not None and len(lines) == 3 and lines[2].startswith("ratio (yours / engine)")
    broken, said = compare(_file(tmp_path, SKELETON.read_text()), "blocking-gpipe")
    assert broken is None and "not written yet" in said[0]


def test_the_widgets_blocking_rule_names_the_deadlock_real_ranks_meet():
    """pplab.teaching.blocking plays a blocking runtime's calls by gloo's rule (a send meets
    its receive or waits): GPipe ends at every size, 1F1B deadlocks from m = 2 on, and at
    p = 2, m = 4 each rank waits in the call test_each_fault_is_named sees real ranks wait in."""
    from pplab.schedules import build
    from pplab.teaching.blocking import blocking_messages, blocking_run

    for p in range(2, 6):
        for m in (1, 2, 3, 8):
            assert blocking_run(build("gpipe", p, m)) is None
            assert (blocking_run(build("1f1b", p, m)) is None) == (m == 1)
    stuck = {rank: str(call) for rank, call in blocking_run(build("1f1b", 2, 4)).items()}
    assert stuck == {0: "send to rank 1 (the activation of microbatch 1, after F1)",
                     1: "send to rank 0 (the gradient of microbatch 0, after B0)"}
    calls = blocking_messages(build("gpipe", 3, 2), 1)
    assert [str(c).split(" (")[0] for c in calls] == [
        "recv from rank 0", "send to rank 2", "recv from rank 0", "send to rank 2",
        "recv from rank 2", "send to rank 0", "recv from rank 2", "send to rank 0"]
