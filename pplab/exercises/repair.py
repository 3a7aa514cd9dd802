"""Exercise ``repair`` (lesson 4): a schedule that does not run, and the order that mends it.

Each learner gets a schedule of their own that one rank's order breaks: GPipe, 1F1B or ZB-H1
at their p and m, with rank r's first backward moved ahead of forwards the next rank is still
waiting for (a deadlock), a backward moved ahead of its own forward, or a backward left out.
Three parts: (a) why it cannot run, among plausible reasons (``pplab.schedules.validate``
decides); (b) rank r's order repaired, judged by validate and the simulator against the
family's own peak memory and step; (c) how many actions the broken schedule runs, all ranks
together, before it can go no further (a walk that takes no time: what can run, runs).
No pplab command prints (c): ``pplab validate`` names the first broken action, and the
simulator refuses a schedule that cannot run.

    pplab exercise show repair --learner ada
    pplab exercise check repair --learner ada a=deadlock
"""

from __future__ import annotations

import random

from pplab.exercises.core import (
    BadAnswer,
    Exercise,
    LearnerCodeError,
    Variant,
    call_learner,
    register,
    right,
    wrong,
)
from pplab.exercises.judging import simulated
from pplab.exercises.parts import ChoicePart, NumberPart, SchedulePart, read_actions
from pplab.schedules import (
    BACKWARD_INPUT,
    FORWARD,
    FULL_BACKWARD,
    Action,
    Schedule,
    ScheduleError,
    build,
    finishes,
    needs,
    validate,
)
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

LABELS = {"gpipe": "GPipe", "1f1b": "1F1B", "zb-h1": "ZB-H1"}
BREAKS = ("deadlock", "own-order", "missing")
COST = CostModel(forward=1, backward=2, backward_input=1, backward_weight=1)
REASONS = {"deadlock": "two or more ranks each wait for data another of them has not sent "
                       "(a cycle of waits)",
           "own-order": "an action on one rank comes before an action of that same rank it "
                        "needs",
           "missing": "an action is missing from the schedule",
           "memory": "a stage holds more microbatches at once than its memory allows"}


def _backward_kind(family: str) -> str:
    return BACKWARD_INPUT if family == "zb-h1" else FULL_BACKWARD


def _broken(n: dict) -> list[list[Action]]:
    """Every rank's order of the family, with the learner's rank broken as drawn."""
    orders = [list(row) for row in build(n["family"], n["p"], n["m"]).actions.values()]
    row, kind = orders[n["rank"]], _backward_kind(n["family"])
    if n["break"] == "deadlock":  # its first backward right after q forwards
        first = next(a for a in row if a.kind == kind)
        row.remove(first)
        after = [i for i, a in enumerate(row) if a.kind == FORWARD][n["q"] - 1]
        row.insert(after + 1, first)
    elif n["break"] == "own-order":  # a backward right before its own forward
        backward = Action(n["rank"], kind, n["j"])
        row.remove(backward)
        row.insert(row.index(Action(n["rank"], FORWARD, n["j"])), backward)
    else:
        row.remove(Action(n["rank"], kind, n["j"]))
    return orders


def needed_forwards(family: str, p: int, m: int, rank: int) -> int:
    """The fewest forwards ``rank`` must run before its first backward, the other ranks as
    the family orders them, for the step to run at all (found by validate)."""
    orders = build(family, p, m).actions
    kind = _backward_kind(family)
    for k in range(1, m + 1):
        row = [Action(rank, FORWARD, j) for j in range(k)]
        for j in range(m):
            row.append(Action(rank, kind, j))
            if kind == BACKWARD_INPUT:
                row.append(Action(rank, "W", j))
            if k + j < m:
                row.append(Action(rank, FORWARD, k + j))
        try:
            validate(Schedule(dict(orders) | {rank: tuple(row)}, tuple(range(p)), m))
        except ValueError:
            continue
        return k
    return m


def _draw(rng: random.Random) -> dict:
    family = rng.choice(tuple(LABELS))
    p = rng.randint(3, 5)
    m = rng.randint(p, p + 3)
    kind = rng.choice(BREAKS)
    rank = rng.randint(0, p - 2)
    need = needed_forwards(family, p, m, rank)
    if kind == "deadlock" and need < 2:  # no earlier place for its first backward here
        rank = 0
        need = needed_forwards(family, p, m, rank)
    n = dict(family=family, label=LABELS[family], p=p, m=m, rank=rank, **{"break": kind},
             q=rng.randint(1, need - 1) if need > 1 else 1, j=rng.randint(0, m - 1))
    rows = _broken(n)
    n["schedule_text"] = "\n".join(f"    rank {r}: {' '.join(map(str, row))}"
                                   for r, row in enumerate(rows))
    return n


def _schedule(n, rows) -> Schedule:
    return Schedule({r: tuple(row) for r, row in enumerate(rows)}, tuple(range(n["p"])), n["m"],
                    name="broken")


def why_broken(n) -> str:
    """What validate says is wrong with the learner's broken schedule, as an option name."""
    try:
        validate(_schedule(n, _broken(n)))
    except ScheduleError as error:
        text = str(error).casefold()
        return ("deadlock" if text.startswith("deadlock") else
                "own-order" if text.startswith("dependency") else "missing")
    raise AssertionError("the broken schedule runs")  # _broken always breaks it


def judge_why(v: Variant, choice: str) -> object:
    truth = why_broken(v.numbers)
    if choice == truth:
        return right(f"right: {REASONS[truth]} (pplab validate says so too)")
    if choice == "memory":
        return wrong("memory never stops a schedule from running in pplab's executors: it "
                     "makes a stage hold more, and the step goes on")
    return wrong("follow rank {rank}'s order one action at a time: what does each action "
                 "wait for, and who sends it?".format(**v.numbers))


def runs_before_stuck(n) -> int:
    """Actions of the broken schedule that run before nothing more can: each rank runs its
    next action as soon as what it needs is done (no time taken, so the count is the same
    whatever the costs)."""
    rows = _broken(n)
    done: set = set()
    position = [0] * len(rows)
    count = 0
    moved = True
    while moved:
        moved = False
        for r, row in enumerate(rows):
            while position[r] < len(row) and all(
                    need in done for need in needs(row[position[r]], n["p"])):
                done.update(finishes(row[position[r]]))
                position[r] += 1
                count += 1
                moved = True
    return count


def judge_count(v: Variant, answer) -> object:
    truth, given = runs_before_stuck(v.numbers), int(answer)
    total = sum(len(row) for row in _broken(v.numbers))
    if given == truth:
        return right(f"right: {truth} of the {total} actions run, then every rank left waits "
                     f"(walked with no time taken: what can run, runs)")
    if given == total:
        return wrong("the schedule does not run to the end: some rank waits forever")
    if given == truth + 1:
        return wrong("count the actions that finish: the one a rank is stuck at never runs")
    return wrong("walk the ranks side by side: run every action whose inputs are there, until "
                 "none is", hint=f"{given} is too {'many' if given > truth else 'few'}")


def _family_target(n) -> dict:
    return simulated(n["family"], n["p"], n["m"], COST)


def judge_repair(v: Variant, answer) -> object:
    n = v.numbers
    rank = n["rank"]
    try:
        actions = (read_actions(call_learner(answer, rank, n["p"], n["m"])) if callable(answer)
                   else answer)
    except (LearnerCodeError, BadAnswer) as error:
        return wrong(str(error))
    foreign = next((a for a in actions if a.stage != rank), None)
    if foreign is not None:
        return wrong(f"{foreign} belongs to stage {foreign.stage}; rank {rank} holds stage "
                     f"{rank} only")
    rows = _broken(n)
    rows[rank] = list(actions)
    try:
        schedule = validate(_schedule(n, rows))
    except ValueError as error:
        return wrong(f"it still cannot run: {str(error).splitlines()[0]}")
    family_kinds = sorted(a.kind for a in build(n["family"], n["p"], n["m"]).actions[rank])
    if sorted(a.kind for a in actions) != family_kinds:
        return wrong(f"it runs, but not as {n['label']}: keep the kinds of backward it uses")
    mine = metrics(simulate(schedule, COST), ranks=range(n["p"]))
    target = _family_target(n)
    held, most = mine["peak_activations"][rank], target["peak_activations"][rank]
    if held > most:
        return wrong(f"it runs, but stage {rank} holds more microbatches at once than under "
                     f"{n['label']}", hint=f"{held} against {most}")
    if mine["makespan"] > target["makespan"] + 1e-9:
        return wrong(f"it runs, but the step is longer than under {n['label']}: a rank waits "
                     f"where it could work", hint=f"{mine['makespan']:g} cost units against "
                                                  f"{target['makespan']:g}")
    return right(f"right: the schedule runs, stage {rank} holds at most {held} microbatches and "
                 f"the step takes {mine['makespan']:g} cost units, as under {n['label']} "
                 f"(predicted)")


EXERCISE = register(Exercise(
    id="repair", title="Lesson 4: repair a schedule that does not run",
    lesson="04-write-your-own-schedule",
    intro="This {label} schedule of p = {p} stages (stage r on rank r) and m = {m} "
          "microbatches does not run; only rank {rank}'s order is wrong. Costs: F = 1, B = 2 "
          "(I = W = 1) cost units.",
    figure="{schedule_text}",
    draw=_draw,
    parts=(
        ChoicePart("a", "Why can it not run?", judge_why,
                   options=tuple((name, text) for name, text in REASONS.items())),
        SchedulePart("b", "Write rank {rank}'s order repaired: the schedule must run, and hold "
                          "no more microbatches at once nor take longer than {label} does.",
                     judge_repair),
        NumberPart("c", "As it is, how many actions (all ranks together) run before the "
                        "schedule can go no further?", judge_count, whole=True,
                   unit="actions", low=0, high=10**4),
    ),
))
