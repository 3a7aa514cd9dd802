"""The coding lab ``schedule-lab``: write GPipe, 1F1B and ZB-H1 yourself, graded on hidden cases.

The learner fills in three functions of a copy of ``lessons/04-write-your-own-schedule/
my_schedules.py``: ``gpipe(p, m)``, ``one_f_one_b(p, m, k)`` (at most k microbatches in
flight on a stage) and ``zb_h1(p, m, d)`` (a W at most d input gradients after its own I),
each returning every rank's actions in order (``{rank: ["0F0", "0F1", ...]}``). The file runs
in the guard's child process (``pplab.exercises.guard``: no pplab, no processes, no network;
never in this process), and each order is then checked here on the hidden cases drawn for
the learner (``pplab.exercises.lab_cases``), the way pplab checks its own:

* ``validate``: complete, no dependency broken, no deadlock, and which action is wrong,
  with the step x rank grid around it;
* the family's shape (GPipe runs every forward before its first backward; ZB-H1 splits each
  backward into I and W) and the case's limit k or d;
* the simulator: the step's makespan and the peak activations of every stage, against pplab's
  own schedule of that family, or where the limit is tighter than the family's own, against
  the tightest order for that limit.

A file that imports pplab, starts a process or opens a socket gets a refusal naming what it
did, and no points.

    pplab exercise check schedule-lab --file my_schedules.py
    pplab exercise check schedule-lab --file my_schedules.py --train
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pplab.exercises import lab_runner
from pplab.exercises.checking import Verdict
from pplab.exercises.coding_lab import CodingLab, LabResult, readable_lab_file
from pplab.exercises.core import register
from pplab.exercises.guard import SCHEDULE_LAB, Outcome, run_guarded
from pplab.exercises.judging import simulated
from pplab.exercises.lab_cases import Case, hidden_cases, rule_broken, ruled_target
from pplab.limits import (
    MAX_LAB_ACTIONS_PER_RANK,
    MAX_LAB_MEMORY_BYTES,
    MAX_LAB_PRINTED_CHARS,
    MAX_LAB_SHOWN_CHARS,
    MAX_LAB_WRITTEN_BYTES,
)
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
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

# part key (the schedule family) -> (function the learner writes, label, its arguments)
TARGETS = {"gpipe": ("gpipe", "GPipe", "p, m"), "1f1b": ("one_f_one_b", "1F1B", "p, m, k"),
           "zb-h1": ("zb_h1", "ZB-H1", "p, m, d")}
SKELETON = "my_schedules.py"
RUN_TIMEOUT_S = 30


def _orders(label: str, case: Case, cells: list[list[str]]) -> dict[int, list[Action]] | str:
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
    return orders


def _shape(part: str, label: str, schedule: Schedule) -> str | None:
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
    return None


def judge_order(part: str, case: Case, cells: list[list[str]]) -> str | None:
    """Why the learner's order for ``case`` misses the target, or None when it meets it."""
    label = TARGETS[part][1]
    orders = _orders(label, case, cells)
    if isinstance(orders, str):
        return orders
    schedule = Schedule(orders, tuple(range(case.p)), case.m, name=f"your {label}")
    try:
        validate(schedule)
    except ScheduleError as error:
        return str(error)
    except ValueError as error:
        return str(error).splitlines()[0]
    problem = _shape(part, label, schedule)
    if problem:
        return problem
    mine = metrics(simulate(schedule, case.cost), ranks=range(case.p))
    ruled = case.ruled(part)
    if ruled:
        problem = rule_broken(part, case, schedule, mine["peak_activations"])
        if problem:
            return problem
    target = ruled_target(part, case) if ruled else simulated(part, case.p, case.m, case.cost)
    what = f"the tightest {label} for this limit" if ruled else label
    for stage, held in sorted(mine["peak_activations"].items()):
        most = target["peak_activations"][stage]
        if held > most:
            return (f"stage {stage} holds {held} microbatches at once at its peak; {what} "
                    f"holds at most {most} there (predicted)")
    if mine["makespan"] > target["makespan"] + 1e-9:
        return (f"the step takes {mine['makespan']:g} cost units, a bubble of "
                f"{mine['bubble_fraction']:.2%}; {what} takes {target['makespan']:g}, "
                f"{target['bubble_fraction']:.2%} (predicted): a rank waits where it could "
                f"keep working")
    return None


def grade_outcome(outcome: Outcome, cases: list[Case], learner: str | None,
                  source: str) -> LabResult:
    """The grade of what the guarded child answered for ``cases``."""
    answer = outcome.answer or {}
    result = LabResult(learner, source, printed=str(answer.get("printed") or outcome.printed),
                       refused=outcome.refused, total=len(TARGETS))
    for part, (function, label, _) in TARGETS.items():
        problem = ("not graded: the file was refused" if outcome.refused else
                   outcome.failed or answer.get("load_error"))
        answers = answer.get("results", {}).get(function, [])
        for n, case in enumerate(cases):
            if problem:
                break
            given = answers[n] if n < len(answers) else {"error": "no answer came back"}
            problem = given.get("error") or judge_order(part, case, given.get("orders", []))
            if problem:
                problem = f"case {n + 1} of {len(cases)} ({case.describe(part)}): {problem}"
        if problem:
            result.verdicts.append(Verdict(part, False, f"{label}: {problem}"))
        else:
            result.orders[part] = [a["orders"] for a in answers]
            result.verdicts.append(Verdict(part, True, f"right: {label} is valid and on target "
                                                       f"(bubble, peak memory and your limits) "
                                                       f"in all {len(cases)} hidden cases"))
    return result


def run_lab_file(path: Path, calls: Mapping[str, list[list[int]]],
                 timeout: float = RUN_TIMEOUT_S) -> Outcome:
    """Call the file's functions (part -> the arguments of each call) in the guard."""
    request = {"functions": [{"name": TARGETS[part][0], "signature": TARGETS[part][2],
                              "cases": cases} for part, cases in calls.items()],
               "max_actions_per_rank": MAX_LAB_ACTIONS_PER_RANK,
               "max_printed_chars": MAX_LAB_PRINTED_CHARS}
    return run_guarded(Path(lab_runner.__file__), path, request, policy=SCHEDULE_LAB,
                       timeout=timeout, memory_bytes=MAX_LAB_MEMORY_BYTES,
                       written_bytes=MAX_LAB_WRITTEN_BYTES, printed_chars=MAX_LAB_SHOWN_CHARS)


def check_file(path: str | os.PathLike, learner: str | None = None,
               course: str | None = None, timeout: float = RUN_TIMEOUT_S,
               source: str | None = None) -> LabResult:
    """Grade a learner's schedule file; BadAnswer when it is no readable Python file."""
    path = readable_lab_file(path, f"lessons/04-write-your-own-schedule/{SKELETON}")
    cases = hidden_cases(learner, course)
    outcome = run_lab_file(path.resolve(), {part: [c.args(part) for c in cases]
                                            for part in TARGETS}, timeout)
    return grade_outcome(outcome, cases, learner, source or path.name)


class ScheduleLab(CodingLab):
    skeleton = SKELETON
    part_keys = tuple(TARGETS)
    functions = tuple(function for function, _, _ in TARGETS.values())

    def check_file(self, path, learner=None, course=None, source=None) -> LabResult:
        return check_file(path, learner, course, source=source)

    def show(self, learner: str | None = None, course: str | None = None) -> str:
        folder = f"lessons/{self.lesson}"
        drawn = hidden_cases(learner, course)[-1] if learner else None
        limits = (f"Your hidden cases include limits of your own, such as k = {drawn.k} and "
                  f"d = {drawn.d} at p = {drawn.p}." if drawn else
                  "Hidden cases drawn from your name set limits of your own.")
        return "\n".join([
            f"{self.title} (coding lab {self.id})", "",
            "Copy the skeleton and fill in its three functions:",
            f"    cp {folder}/{SKELETON} {SKELETON}",
            "    gpipe(p, m), one_f_one_b(p, m, k), zb_h1(p, m, d) -> {rank: [actions in order]}",
            "    k: at most k microbatches in flight on a stage (k >= p: plain 1F1B)",
            "    d: a W runs at most d input gradients after its own I (d >= p - 1: plain ZB-H1)",
            limits,
            "Check them (validity, your limits, bubble and peak memory against the targets):",
            f"    pplab exercise check {self.id} --file {SKELETON}"
            + (f" --learner {learner}" if learner else ""),
            "Your file runs apart, without pplab, processes or network: import pplab and it "
            "gets no points.",
            "Then train one on the real engine and export it for PyTorch (about 10 s):",
            f"    pplab exercise check {self.id} --file {SKELETON} --train",
            f"The lesson text: {folder}/README.md"])


LAB = register(ScheduleLab("schedule-lab", "Lesson 4: write your own schedule",
                         "04-write-your-own-schedule"))
