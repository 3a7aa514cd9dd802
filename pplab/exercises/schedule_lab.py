"""The coding lab ``schedule-lab``: write GPipe, 1F1B and ZB-H1 yourself, graded on hidden cases.

The learner fills in three functions of a copy of ``lessons/04-write-your-own-schedule/
my_schedules.py``: ``gpipe(p, m)``, ``one_f_one_b(p, m)`` and ``zb_h1(p, m)``, each returning
every rank's actions in order (``{rank: ["0F0", "0F1", ...]}``). The grader runs the file in
a child process (``lab_runner``, with a time limit; never in this process), then checks each
order on hidden (p, m, cost) cases drawn for the learner, the way pplab checks its own:

* ``validate``: complete, no dependency broken, no deadlock, and which action is wrong,
  with the step x rank grid around it;
* the family's shape (GPipe runs every forward before its first backward; ZB-H1 splits each
  backward into I and W);
* the simulator: the bubble (the step's makespan) and the peak activations of every stage,
  against pplab's own schedule of that family on the same case.

    pplab exercise check schedule-lab --file my_schedules.py
    pplab exercise check schedule-lab --file my_schedules.py --train
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pplab.exercises import lab_runner
from pplab.exercises.checking import PLACEHOLDER_LEARNER, Verdict
from pplab.exercises.core import BadAnswer, course_key, learner_key, register, variant_seed
from pplab.exercises.judging import simulated
from pplab.limits import MAX_LAB_FILE_BYTES, MAX_LAB_SHOWN_CHARS
from pplab.schedules import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    FORWARD,
    FULL_BACKWARD,
    Action,
    Schedule,
    ScheduleError,
    parse_action,
    validate,
)
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

# part key (the schedule family) -> (function the learner writes, label)
TARGETS = {"gpipe": ("gpipe", "GPipe"), "1f1b": ("one_f_one_b", "1F1B"),
           "zb-h1": ("zb_h1", "ZB-H1")}
SKELETON = "my_schedules.py"
RUN_TIMEOUT_S = 30
_FIXED_CASES = ((2, 3), (3, 3), (4, 2), (1, 2))  # small first, then m < p, then one stage


@dataclass(frozen=True)
class Case:
    """One hidden case: a pipeline depth, microbatches, and the costs it is simulated with."""

    p: int
    m: int
    cost: CostModel

    def describe(self) -> str:
        c = self.cost
        return (f"p = {self.p}, m = {self.m}, F = {c.forward:g}, B = {c.backward:g} "
                f"(I = {c.backward_input:g} + W = {c.backward_weight:g})")


def hidden_cases(learner: str | None = None, course: str | None = None) -> list[Case]:
    """Four fixed small cases, then three drawn for the learner (or for anyone)."""
    rng = random.Random(variant_seed("schedule-lab", learner or "anyone", course_key(course)))
    sizes = list(_FIXED_CASES)
    for _ in range(3):
        p = rng.randint(2, 8)
        sizes.append((p, rng.randint(p, 3 * p)))
    cases = []
    for p, m in sizes:
        f, i, w = rng.choice((1, 1.5, 2)), rng.choice((0.5, 1, 1.5, 2)), rng.choice((0.5, 1, 2))
        cases.append(Case(p, m, CostModel(forward=f, backward=i + w, backward_input=i,
                                          backward_weight=w)))
    return cases


def judge_order(part: str, case: Case, cells: list[list[str]]) -> str | None:
    """Why the learner's order for ``case`` misses the target, or None when it meets it."""
    label = TARGETS[part][1]
    if len(cells) != case.p:
        return f"it returned {len(cells)} ranks; p = {case.p} needs {case.p}"
    orders: dict[int, list[Action]] = {}
    for rank, row in enumerate(cells):
        orders[rank] = []
        for n, cell in enumerate(row):
            try:
                action = parse_action(cell)
            except ValueError as error:
                return f"rank {rank}, action {n + 1}: {error}"
            if not isinstance(action, Action):
                return f"rank {rank}, action {n + 1}: {label} has no overlapped pairs"
            orders[rank].append(action)
    schedule = Schedule(orders, tuple(range(case.p)), case.m, name=f"your {label}")
    try:
        validate(schedule)
    except ScheduleError as error:
        return str(error)
    except ValueError as error:
        return str(error).splitlines()[0]
    split = part == "zb-h1"
    for rank, action in schedule.all_actions():
        if split and action.kind == FULL_BACKWARD:
            return (f"{action} on rank {rank} is a full backward; {label} splits each backward "
                    f"into I (input gradient) and W (weight gradient)")
        if not split and action.kind in (BACKWARD_INPUT, BACKWARD_WEIGHT):
            return f"{action} on rank {rank} is half a backward; {label} runs full backwards (B)"
    if part == "gpipe":
        for rank, actions in schedule.actions.items():
            kinds = [a.kind for a in actions]
            late = next((a for n, a in enumerate(actions) if a.kind == FORWARD
                         and FULL_BACKWARD in kinds[:n]), None)
            if late is not None:
                return (f"{late} on rank {rank} runs after a backward; GPipe runs every "
                        f"forward of the step before its first backward")
    return _against_target(part, label, case, schedule)


def _against_target(part: str, label: str, case: Case, schedule: Schedule) -> str | None:
    mine = metrics(simulate(schedule, case.cost), ranks=range(case.p))
    target = simulated(part, case.p, case.m, case.cost)
    for stage, held in sorted(mine["peak_activations"].items()):
        most = target["peak_activations"][stage]
        if held > most:
            return (f"stage {stage} holds {held} microbatches at once at its peak; {label} "
                    f"holds at most {most} there (predicted)")
    if mine["makespan"] > target["makespan"] + 1e-9:
        return (f"the step takes {mine['makespan']:g} cost units, a bubble of "
                f"{mine['bubble_fraction']:.2%}; {label} takes {target['makespan']:g}, "
                f"{target['bubble_fraction']:.2%} (predicted): a rank waits where {label} "
                f"keeps working")
    return None


@dataclass
class LabResult:
    """The grade of one file (or of a notebook's functions): a verdict per schedule."""

    learner: str | None
    source: str
    verdicts: list[Verdict] = field(default_factory=list)
    printed: str = ""
    orders: dict[str, list] = field(default_factory=dict)  # part -> cells of each case

    @property
    def points(self) -> int:
        return sum(v.right for v in self.verdicts)

    @property
    def all_right(self) -> bool:
        return self.points == len(TARGETS)

    def __str__(self) -> str:
        lines = [f"{self.source}, hidden cases for {self.learner or 'anyone'}:"]
        lines += [v.line() for v in self.verdicts]
        if self.printed and not self.all_right:
            lines.append("your code printed:\n" + self.printed[:MAX_LAB_SHOWN_CHARS])
        lines.append(f"{self.points} of {len(TARGETS)} schedules on target"
                     + (": well done" if self.all_right else ""))
        return "\n".join(lines)

    __repr__ = __str__  # the last expression of a notebook cell shows as this text


def _grade(outcome: Mapping, cases: list[Case], learner: str | None, source: str) -> LabResult:
    result = LabResult(learner, source, printed=str(outcome.get("printed", "")))
    for part, (function, label) in TARGETS.items():
        problem = outcome.get("load_error")
        answers = outcome.get("results", {}).get(function, [])
        for n, case in enumerate(cases):
            if problem:
                break
            answer = answers[n] if n < len(answers) else {"error": "no answer came back"}
            problem = answer.get("error") or judge_order(part, case, answer["orders"])
            if problem:
                problem = f"case {n + 1} of {len(cases)} ({case.describe()}): {problem}"
        if problem:
            result.verdicts.append(Verdict(part, False, f"{label}: {problem}"))
        else:
            result.orders[part] = [a["orders"] for a in answers]
            result.verdicts.append(Verdict(part, True, f"right: {label} is valid and on target "
                                                       f"(bubble and peak memory) in all "
                                                       f"{len(cases)} hidden cases"))
    return result


def run_learner_file(path: Path, functions: list[str], sizes: list[tuple[int, int]],
                     timeout: float = RUN_TIMEOUT_S) -> dict:
    """Call the file's functions on ``sizes`` in a child process; its answer as a dict."""
    request = json.dumps({"functions": functions, "cases": sizes, "seconds": timeout})
    with tempfile.TemporaryDirectory(prefix="pplab-lab-") as folder:
        out, log = Path(folder) / "result.json", Path(folder) / "output.txt"
        with open(log, "wb") as output:
            child = subprocess.Popen(
                [sys.executable, lab_runner.__file__, str(path), str(out)],
                stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                cwd=path.parent, start_new_session=True)
            try:
                child.communicate(request.encode(), timeout=timeout)
            except subprocess.TimeoutExpired:
                return {"load_error": f"it ran longer than {timeout:g} s and was stopped (an "
                                      f"endless loop?)"}
            finally:
                _stop_group(child)
        printed = log.read_bytes()[:MAX_LAB_SHOWN_CHARS].decode(errors="replace")
        try:
            return json.loads(out.read_text())
        except (OSError, ValueError):
            return {"load_error": f"the grader's child process stopped (exit status "
                                  f"{child.returncode}) before it answered", "printed": printed}


def _stop_group(child: subprocess.Popen) -> None:
    """End the child and anything it started (its own session), and reap it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def check_file(path: str | os.PathLike, learner: str | None = None,
               course: str | None = None, timeout: float = RUN_TIMEOUT_S) -> LabResult:
    """Grade a learner's schedule file; BadAnswer when it is no readable Python file."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise BadAnswer(f"{path} is not a Python file; copy "
                        f"lessons/04-write-your-own-schedule/{SKELETON} and pass your copy")
    if path.stat().st_size > MAX_LAB_FILE_BYTES:
        raise BadAnswer(f"{path} is over {MAX_LAB_FILE_BYTES // 1024} KiB; a schedule file is "
                        f"small")
    cases = hidden_cases(learner, course)
    functions = [function for function, _ in TARGETS.values()]
    outcome = run_learner_file(path.resolve(), functions, [(c.p, c.m) for c in cases], timeout)
    return _grade(outcome, cases, learner, path.name)


def check_functions(functions: Mapping[str, Callable], learner: str | None = None,
                    course: str | None = None) -> LabResult:
    """Grade functions defined in a notebook (the learner's own kernel runs them)."""
    if learner is not None and learner_key(learner) == PLACEHOLDER_LEARNER:
        learner = None
    cases = hidden_cases(learner, course)
    results: dict[str, list] = {}
    for name, _ in TARGETS.values():
        function = functions.get(name)
        results[name] = []
        for case in cases:
            if function is None:
                results[name].append({"error": f"no function {name}(p, m) is defined"})
                continue
            try:
                results[name].append({"orders": lab_runner.order_cells(
                    function(case.p, case.m), case.p)})
            except NotImplementedError:
                results[name].append({"error": f"{name} is not written yet: replace its "
                                               f"`raise NotImplementedError` with your code"})
            except Exception as error:  # the learner's code: say what, never a traceback
                results[name].append({"error": f"{name}({case.p}, {case.m}) raised "
                                               f"{type(error).__name__}: {str(error)[:300]}"})
    return _grade({"results": results}, cases, learner, "your functions")


def preview(function: Callable, p: int, m: int, cost: CostModel | None = None):
    """A notebook's look at one of its functions: the Gantt chart of its order at (p, m), or,
    when the order cannot run, the reason printed (validate's message), never a traceback."""
    try:
        cells = lab_runner.order_cells(function(p, m), p)
    except NotImplementedError:
        print(f"{getattr(function, '__name__', 'it')} is not written yet")
        return None
    except Exception as error:  # the learner's code: say what, never a traceback
        print(f"{getattr(function, '__name__', 'it')}({p}, {m}) raised "
              f"{type(error).__name__}: {error}")
        return None
    try:
        orders = {rank: [parse_action(cell) for cell in row] for rank, row in enumerate(cells)}
        schedule = validate(Schedule(orders, tuple(range(p)), m, name="yours"))
    except ValueError as error:
        print(f"your order at p = {p}, m = {m} cannot run: {error}")
        return None
    from pplab.charts import gantt

    name = getattr(function, "__name__", "yours")
    return gantt(simulate(schedule, cost or CostModel()), title=f"your {name}, p={p} m={m} "
                                                             f"(predicted)")


@dataclass(frozen=True)
class CodingLab:
    """An exercise answered by a file of code rather than by typed answers."""

    id: str
    title: str
    lesson: str
    kind = "coding lab"

    @property
    def part_keys(self) -> tuple[str, ...]:
        return tuple(TARGETS)

    def show(self, learner: str | None = None, course: str | None = None) -> str:
        folder = f"lessons/{self.lesson}"
        return "\n".join([
            f"{self.title} (coding lab {self.id})", "",
            "Copy the skeleton and fill in its three functions:",
            f"    cp {folder}/{SKELETON} {SKELETON}",
            "    gpipe(p, m), one_f_one_b(p, m), zb_h1(p, m) -> {rank: [actions in order]}",
            "Check them (hidden cases: validity, bubble and peak memory against pplab's own):",
            f"    pplab exercise check {self.id} --file {SKELETON}"
            + (f" --learner {learner}" if learner else ""),
            "Then train one on the real engine and export it for PyTorch (about 10 s):",
            f"    pplab exercise check {self.id} --file {SKELETON} --train",
            f"The lesson text: {folder}/README.md"])


LAB = register(CodingLab("schedule-lab", "Lesson 4: write your own schedule",
                         "04-write-your-own-schedule"))
