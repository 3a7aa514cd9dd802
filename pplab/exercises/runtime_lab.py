"""The coding lab ``runtime-lab``: write the runtime under a schedule, graded by parity.

The learner fills in two functions of a copy of ``lessons/04a-write-your-own-runtime/
my_runtime.py``: ``blocking_step(stage, ctx)`` (``torch.distributed.send`` and ``recv``) and
``overlapped_step(stage, ctx)`` (``isend``, ``irecv`` posted ahead, ``wait``). Each runs one
training step of ``ctx.actions`` (this rank's part of a GPipe or 1F1B schedule) on one stage
of pplab's toy GPT: forwards, backwards, the messages between ranks and the optimizer step.

The grader starts one guarded process per rank (``pplab.exercises.guard``, ``RUNTIME_LAB``:
the learner's code gets torch but not pplab, no processes, no sockets of its own), joined in
a gloo process group, and runs the file on hidden cases (``runtime_reference.hidden_cases``):

* ``blocking-gpipe``: ``blocking_step`` on GPipe;
* ``overlapped-gpipe`` and ``overlapped-1f1b``: ``overlapped_step`` on GPipe and on 1F1B.

Each run must give one process's losses, gradients and weights after the step (float64),
in the schedule's order; what went wrong is named by ``runtime_judging`` (the first
divergence, a deadlock and who waits on what, a message to the wrong rank, an early
optimizer step). A file that copies pplab's executor is refused (``runtime_copies``).

    pplab exercise check runtime-lab --file my_runtime.py
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pplab.exercises.checking import Verdict
from pplab.exercises.coding_lab import CodingLab, LabResult, readable_lab_file
from pplab.exercises.core import register
from pplab.exercises.guard import RESULT_FILE, RUNTIME_LAB, Outcome, run_guarded
from pplab.exercises.runtime_cases import RuntimeCase, hidden_cases, request_for
from pplab.exercises.runtime_copies import copied_lines
from pplab.limits import MAX_LAB_PRINTED_CHARS, MAX_LAB_SHOWN_CHARS
from pplab.schedules import build

SKELETON = "my_runtime.py"
# part -> (the learner's function, the schedule family)
PARTS = {"blocking-gpipe": ("blocking_step", "gpipe"),
         "overlapped-gpipe": ("overlapped_step", "gpipe"),
         "overlapped-1f1b": ("overlapped_step", "1f1b")}
STARTUP_SECONDS = 120  # importing torch on every rank of a busy 2-core machine
DEADLOCK_SECONDS = 8  # a wait this long in a step of milliseconds is a deadlock
RUN_SECONDS = 30  # a rank still in one step after this long loops: it is stopped
RANK_MEMORY_BYTES = 8 * 2**30  # address space: torch maps far more than it uses
TASK = Path(__file__).with_name("runtime_task.py")  # run in the guard, never imported here


def schedule_actions(family: str, p: int, m: int) -> dict[int, list[tuple[str, int]]]:
    """Every rank's actions of the family, as (kind, microbatch) pairs."""
    schedule = build(family, p, m)
    return {rank: [(str(a.kind), a.microbatch) for a in actions]
            for rank, actions in schedule.actions.items()}


@dataclass
class RunRecord:
    """What one run of one case gave: every rank's record, or why there is none."""

    part: str
    case: RuntimeCase
    ranks: dict[int, dict]
    actions: dict[int, list]
    problem: str | None = None
    printed: str = ""  # what the learner's code printed, rank by rank


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank_failure(rank: int, outcome: Outcome) -> str | None:
    if outcome.refused:
        return outcome.refused
    if outcome.failed:
        return f"rank {rank}: {outcome.failed}"
    answer = outcome.answer or {}
    if answer.get("load_error"):
        return answer["load_error"]
    return None


def spawn(path: Path, case: RuntimeCase, parts: list[str], steps: int = 1) -> list[RunRecord]:
    """Run ``parts`` in order on one guarded process per rank; the records of those that
    ran (a rank stops at its first failure, which ends the spawn)."""
    runs, actions = [], {}
    for part in parts:
        function, family = PARTS[part]
        actions[part] = schedule_actions(family, case.p, case.m)
        runs.append({"name": part, "function": function, "steps": steps})
    common = request_for(case) | {
        "port": _free_port(), "startup_seconds": STARTUP_SECONDS,
        "deadlock_seconds": DEADLOCK_SECONDS, "run_seconds": RUN_SECONDS,
        "result_file": RESULT_FILE,
        "max_printed_chars": MAX_LAB_PRINTED_CHARS}
    timeout = STARTUP_SECONDS + (len(parts) * steps + 1) * (RUN_SECONDS + 5)

    def one_rank(rank: int) -> Outcome:
        request = common | {"rank": rank, "runs": [
            run | {"actions": actions[run["name"]][rank]} for run in runs]}
        return run_guarded(TASK, path, request, policy=RUNTIME_LAB,
                           timeout=timeout, memory_bytes=RANK_MEMORY_BYTES,
                           printed_chars=MAX_LAB_SHOWN_CHARS)

    with ThreadPoolExecutor(case.p) as pool:
        outcomes = list(pool.map(one_rank, range(case.p)))
    printed = "\n".join(f"rank {rank}: {text}" for rank, o in enumerate(outcomes)
                         if (text := str((o.answer or {}).get("printed") or o.printed).strip()))
    failures = [f for rank, o in enumerate(outcomes) if (f := _rank_failure(rank, o))]
    if failures:  # the file was refused, did not load, or a rank was stopped
        return [RunRecord(parts[0], case, {}, actions[parts[0]], failures[0], printed)]
    records = []
    for part in parts:
        ranks = {rank: run for rank, o in enumerate(outcomes) for run in o.answer["runs"]
                 if run["name"] == part}
        if len(ranks) < case.p:
            if not records:  # cannot happen unless a rank skipped the run: say so anyway
                missing = sorted(set(range(case.p)) - set(ranks))
                records.append(RunRecord(part, case, ranks, actions[part],
                                         f"ranks {missing} gave no record of the run", printed))
            break
        records.append(RunRecord(part, case, ranks, actions[part], printed=printed))
    return records


def grade(path: Path, cases: list[RuntimeCase], learner: str | None, source: str) -> LabResult:
    """Every part on every case, until a part fails (its later cases are not run)."""
    from pplab.exercises.runtime_judging import judge_run  # torch: only when grading
    from pplab.exercises.runtime_reference import reference

    result = LabResult(learner, source, total=len(PARTS), noun="runs right")
    copied = copied_lines(path.read_text(errors="replace"))
    if copied:
        result.refused = copied
        result.verdicts = [Verdict(part, False, f"{part}: not graded: the file was refused")
                           for part in PARTS]
        return result
    problems: dict[str, str] = {}
    passed = dict.fromkeys(PARTS, 0)  # cases each part passed
    for n, case in enumerate(cases):
        todo = [part for part in PARTS if part not in problems]
        while todo:
            records = spawn(path, case, todo)
            failed = set()  # functions that failed: not run on their next schedule
            for record in records:
                problem = record.problem or judge_run(case, reference(case), record.ranks,
                                                      record.actions)
                if not problem:
                    passed[record.part] += 1
                else:
                    said = f"case {n + 1} of {len(cases)} ({case.describe()}): {problem}"
                    result.printed = result.printed or record.printed
                    problems[record.part] = said
                    failed.add(PARTS[record.part][0])
                    if record.problem and record.problem.startswith("refused"):
                        result.refused = record.problem
                    if record.problem:  # refused, or the file does not load: nothing runs
                        problems.update({part: said for part in todo if part not in problems})
            ran = {record.part for record in records}
            todo = [part for part in todo if part not in ran and part not in problems
                    and PARTS[part][0] not in failed]
            if not records:
                break
    for part, (function, family) in PARTS.items():
        label = f"{function} on {'1F1B' if family == '1f1b' else 'GPipe'}"
        if passed[part] == len(cases):
            result.verdicts.append(Verdict(part, True, f"right: {label} gives one process's "
                                                       f"losses, gradients and weights in "
                                                       f"all {len(cases)} hidden cases"))
        else:
            said = problems.get(part) or (f"not run: {function} failed on the schedule "
                                          f"before; fix that first")
            result.verdicts.append(Verdict(part, False, f"{label}: {said}"))
    return result


def check_file(path: str | os.PathLike, learner: str | None = None, course: str | None = None,
               source: str | None = None, cases: list[RuntimeCase] | None = None) -> LabResult:
    """Grade a learner's runtime file; BadAnswer when it is no readable Python file."""
    path = readable_lab_file(path, f"lessons/04a-write-your-own-runtime/{SKELETON}")
    return grade(path.resolve(), cases or hidden_cases(learner, course), learner,
                 source or path.name)


class RuntimeLab(CodingLab):
    skeleton = SKELETON
    part_keys = tuple(PARTS)
    functions = ("blocking_step", "overlapped_step")

    def check_file(self, path, learner=None, course=None, source=None) -> LabResult:
        return check_file(path, learner, course, source)

    def show(self, learner: str | None = None, course: str | None = None) -> str:
        folder = f"lessons/{self.lesson}"
        drawn = hidden_cases(learner, course)[-1]
        return "\n".join([
            f"{self.title} (coding lab {self.id})", "",
            "Copy the skeleton and fill in its two functions:",
            f"    cp {folder}/{SKELETON} {SKELETON}",
            "    blocking_step(stage, ctx): send and recv, one step of ctx.actions",
            "    overlapped_step(stage, ctx): isend, irecv posted ahead, wait",
            "Hidden cases: p = 2 and m = 4, then one of your own"
            + (f" (p = {drawn.p}, m = {drawn.m})." if learner else "."),
            "Check it (one process per rank, parity with one process in float64):",
            f"    pplab exercise check {self.id} --file {SKELETON}"
            + (f" --learner {learner}" if learner else ""),
            "Your file runs apart, with torch but without pplab, processes or sockets of "
            "its own.",
            f"The lesson text: {folder}/README.md"])


LAB = register(RuntimeLab("runtime-lab", "Lesson 4a: write your own pipeline runtime",
                          "04a-write-your-own-runtime"))
