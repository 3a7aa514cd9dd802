"""Check that a schedule can run: complete, consistent and free of deadlock.

A schedule is checked the way the engine will run it: sends are posted without waiting
(``isend``) and receives block, so a rank can only stall waiting for data. Three kinds of
mistake are told apart, and the message names the first broken action and shows the
step x rank grid around it:

* incomplete: a forward or backward missing, run twice, or mixed (B and also I/W);
* broken dependency: an action ordered on its own rank before something it needs from
  that same rank (a backward before its forward, W before I);
* deadlock: every rank that still has work waits for data that another waiting rank has
  not produced yet.

    pplab validate my_schedule.csv
"""

from __future__ import annotations

from collections import Counter

from .actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    COMPUTE_KINDS,
    FORWARD,
    FULL_BACKWARD,
    Action,
    Schedule,
    finishes,
    needs,
)

GRID_ROWS_AROUND = 4


class ScheduleError(ValueError):
    """A schedule that cannot run; ``rank`` and ``position`` locate the first broken action."""

    def __init__(self, message: str, schedule: Schedule, rank: int | None = None,
                 position: int | None = None, marked: dict[int, int] | None = None):
        self.reason = message
        self.rank = rank
        self.position = position
        marks = dict(marked or {})
        if rank is not None and position is not None:
            marks[rank] = position
        super().__init__(f"{message}\n{step_grid(schedule, marks)}")


def step_grid(schedule: Schedule, marks: dict[int, int] | None = None) -> str:
    """The step x rank grid (a row per position in the rank's order), ``*`` on marked cells.

    Long schedules show only the rows around the marks so the message stays readable.
    """
    marks = marks or {}
    ranks = list(schedule.actions)
    depth = max((len(a) for a in schedule.actions.values()), default=0)
    if marks:
        low = max(0, min(marks.values()) - GRID_ROWS_AROUND)
        high = min(depth, max(marks.values()) + GRID_ROWS_AROUND + 1)
    else:
        low, high = 0, min(depth, 2 * GRID_ROWS_AROUND + 1)
    width = max([len(str(a)) + 1 for _, a in schedule.all_actions()]
                + [len(f"rank {r}") for r in ranks])
    lines = ["step " + " ".join(f"rank {r}".rjust(width) for r in ranks)]
    if low > 0:
        lines.append("  ...")
    for step in range(low, high):
        cells = []
        for rank in ranks:
            actions = schedule.actions[rank]
            text = str(actions[step]) if step < len(actions) else ""
            if marks.get(rank) == step:
                text += "*"
            cells.append(text.rjust(width))
        lines.append(f"{step:>4} " + " ".join(cells))
    if high < depth:
        lines.append("  ...")
    return "\n".join(lines)


def _check_placement(schedule: Schedule) -> None:
    num_stages = schedule.num_stages
    for rank, actions in schedule.actions.items():
        for position, action in enumerate(actions):
            if action.kind not in COMPUTE_KINDS:
                raise ScheduleError(
                    f"{action} has unknown kind {action.kind!r}", schedule, rank, position)
            if not 0 <= action.stage < num_stages:
                raise ScheduleError(
                    f"{action} on rank {rank} names stage {action.stage}, but the schedule has "
                    f"stages 0..{num_stages - 1}", schedule, rank, position)
            if not 0 <= action.microbatch < schedule.num_microbatches:
                raise ScheduleError(
                    f"{action} on rank {rank} names microbatch {action.microbatch}, but the "
                    f"schedule has microbatches 0..{schedule.num_microbatches - 1}",
                    schedule, rank, position)
            home = schedule.stage_to_rank[action.stage]
            if home != rank:
                raise ScheduleError(
                    f"{action} runs on rank {rank}, but stage {action.stage} lives on rank {home}",
                    schedule, rank, position)


def _check_complete(schedule: Schedule) -> None:
    counts = Counter((a.stage, a.kind, a.microbatch) for _, a in schedule.all_actions())
    where = {}
    for rank, actions in schedule.actions.items():
        for position, action in enumerate(actions):
            where.setdefault((action.stage, action.kind, action.microbatch), (rank, position))
    for key, count in counts.items():
        if count > 1:
            rank, position = where[key]
            raise ScheduleError(f"{Action(*key)} appears {count} times; it must run exactly once",
                                schedule, rank, position)
    for stage in range(schedule.num_stages):
        home = schedule.stage_to_rank[stage]
        for mb in range(schedule.num_microbatches):
            full = counts[(stage, FULL_BACKWARD, mb)]
            split = (counts[(stage, BACKWARD_INPUT, mb)], counts[(stage, BACKWARD_WEIGHT, mb)])
            missing = None
            if not counts[(stage, FORWARD, mb)]:
                missing = f"the forward {Action(stage, FORWARD, mb)} is missing"
            elif full and any(split):
                key = (stage, BACKWARD_INPUT if split[0] else BACKWARD_WEIGHT, mb)
                rank, position = where[key]
                raise ScheduleError(
                    f"{Action(*key)} splits a backward that {Action(stage, FULL_BACKWARD, mb)} "
                    f"already runs in full", schedule, rank, position)
            elif not full and split == (0, 0):
                missing = (f"the backward of stage {stage} microbatch {mb} is missing "
                           f"(need {Action(stage, FULL_BACKWARD, mb)}, or I and W)")
            elif not full and split[0] != split[1]:
                absent = BACKWARD_WEIGHT if split[0] else BACKWARD_INPUT
                missing = f"{Action(stage, absent, mb)} is missing: I and W come in pairs"
            if missing:
                raise ScheduleError(f"incomplete: {missing} (stage {stage} lives on rank {home})",
                                    schedule)


def _check_order_and_deadlock(schedule: Schedule) -> None:
    num_stages = schedule.num_stages
    # Local dependencies: something this rank itself must run earlier.
    for rank, actions in schedule.actions.items():
        done: set[tuple[int, str, int]] = set()
        for position, action in enumerate(actions):
            for need in needs(action, num_stages):
                if schedule.stage_to_rank[need[0]] == rank and need not in done:
                    raise ScheduleError(
                        f"dependency broken: {action} on rank {rank} needs {Action(*need)}, "
                        f"which rank {rank} runs later", schedule, rank, position)
            done.update(finishes(action))
    # Cross-rank progress: run every rank as far as its receives allow until all finish.
    done = set()
    heads = {rank: 0 for rank in schedule.actions}
    progress = True
    while progress:
        progress = False
        for rank, actions in schedule.actions.items():
            position = heads[rank]
            while position < len(actions) and all(
                    n in done for n in needs(actions[position], num_stages)):
                done.update(finishes(actions[position]))
                position += 1
            if position != heads[rank]:
                heads[rank] = position
                progress = True
    stuck = {r: p for r, p in heads.items() if p < len(schedule.actions[r])}
    if stuck:
        waits = []
        for rank, position in stuck.items():
            action = schedule.actions[rank][position]
            missing = [Action(*n) for n in needs(action, num_stages) if n not in done]
            senders = ", ".join(f"{m} (rank {schedule.stage_to_rank[m.stage]})" for m in missing)
            waits.append(f"rank {rank} at {action} waits for {senders}")
        first = min(stuck, key=lambda r: (stuck[r], r))
        raise ScheduleError("deadlock: " + "; ".join(waits), schedule, first, stuck[first], stuck)


def validate(schedule: Schedule) -> Schedule:
    """Return the schedule if it can run; raise ScheduleError naming the first problem."""
    if len(schedule.stage_to_rank) == 0:
        raise ValueError("the schedule places no stages")
    if sorted(schedule.actions) != list(range(schedule.pp_size)):
        raise ValueError(
            f"ranks must be numbered 0..{schedule.pp_size - 1}, got {sorted(schedule.actions)}")
    for stage, rank in enumerate(schedule.stage_to_rank):
        if rank not in schedule.actions:
            raise ValueError(f"stage {stage} is placed on rank {rank}, which has no action list")
    _check_placement(schedule)
    _check_complete(schedule)
    _check_order_and_deadlock(schedule)
    return schedule
