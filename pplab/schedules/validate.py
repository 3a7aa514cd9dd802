"""Check that a schedule can run: complete, consistent and free of deadlock.

A schedule is checked the way the engine will run it: sends are posted without waiting
(``isend``) and receives block, so a rank can only stall waiting for data. Three kinds of
mistake are told apart, and the message names the first broken action and shows the
step x rank grid around it:

* incomplete: a forward or backward missing, run twice, or mixed (B and also I/W);
* broken dependency: an action ordered on its own rank before something it needs from
  that same rank (a backward before its forward, W before I), or an overlapped pair whose
  two halves need each other, so cannot run at the same time;
* deadlock: every rank that still has work waits for data that another waiting rank has
  not produced yet. The simulator's own walk finds it (``pplab.schedules.walk``, taking no
  time): the ranks left parked are the deadlock, each with the facts it waits for.

    pplab validate my_schedule.csv
"""

from __future__ import annotations

from collections import Counter

from pplab import limits
from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    COMPUTE_KINDS,
    FORWARD,
    FULL_BACKWARD,
    Action,
    OverlapPair,
    Schedule,
    finishes,
    needs,
)
from pplab.schedules.walk import Walk, plain_program

GRID_ROWS_AROUND = 4
GRID_MAX_RANKS = 12  # a message about a 4,000-rank schedule shows the ranks that matter


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
    ranks = _ranks_to_show(list(schedule.actions), marks)
    depth = max((len(schedule.actions[r]) for r in ranks), default=0)
    if marks:
        low = max(0, min(marks.values()) - GRID_ROWS_AROUND)
        high = min(depth, max(marks.values()) + GRID_ROWS_AROUND + 1)
    else:
        low, high = 0, min(depth, 2 * GRID_ROWS_AROUND + 1)
    width = max([len(str(a)) + 1 for r in ranks for a in schedule.actions[r][low:high]]
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
    if len(ranks) < len(schedule.actions):
        lines.append(f"  (showing {len(ranks)} of {len(schedule.actions)} ranks)")
    return "\n".join(lines)


def _ranks_to_show(ranks: list[int], marks: dict[int, int]) -> list[int]:
    """All ranks of a small schedule; else the marked ones and their neighbours, in order."""
    if len(ranks) <= GRID_MAX_RANKS:
        return ranks
    chosen: set[int] = set()
    for rank in sorted(marks, key=lambda r: (marks[r], r)):
        chosen.update(r for r in (rank - 1, rank, rank + 1) if r in marks or 0 <= r < len(ranks))
        if len(chosen) >= GRID_MAX_RANKS:
            break
    if not chosen:
        chosen = set(ranks[:GRID_MAX_RANKS])
    return sorted(chosen)[:GRID_MAX_RANKS]


def _check_pair(schedule: Schedule, pair: OverlapPair, rank: int, position: int) -> None:
    """A pair is a forward and a backward that can run together: neither needs the other."""
    if pair.forward.kind != FORWARD or pair.backward.kind not in (FULL_BACKWARD,
                                                                   BACKWARD_INPUT):
        raise ScheduleError(f"{pair} must pair a forward with a backward (B or I)",
                            schedule, rank, position)
    for first, second in ((pair.forward, pair.backward), (pair.backward, pair.forward)):
        if set(needs(first, schedule.num_stages)) & set(finishes(second)):
            raise ScheduleError(
                f"dependency broken: in {pair} {first} needs {second}, so the two cannot "
                f"run at the same time", schedule, rank, position)


def _check_placement(schedule: Schedule) -> None:
    for rank, entries in schedule.actions.items():
        for position, entry in enumerate(entries):
            if not isinstance(entry, Action | OverlapPair) or not all(
                    isinstance(half, Action) for half in entry.sub_actions):
                raise ScheduleError(f"{entry!r} on rank {rank} is not an action",
                                    schedule, rank, position)
            for action in entry.sub_actions:
                _check_placed(schedule, action, rank, position)
            if isinstance(entry, OverlapPair):
                _check_pair(schedule, entry, rank, position)


def _check_placed(schedule: Schedule, action: Action, rank: int, position: int) -> None:
    num_stages = schedule.num_stages
    if action.kind not in COMPUTE_KINDS:
        raise ScheduleError(f"{action} has unknown kind {action.kind!r}", schedule, rank, position)
    if not 0 <= action.stage < num_stages:
        raise ScheduleError(
            f"{action} on rank {rank} names stage {action.stage}, but the schedule has "
            f"stages 0..{num_stages - 1}", schedule, rank, position)
    if not 0 <= action.microbatch < schedule.total_microbatches:
        raise ScheduleError(
            f"{action} on rank {rank} names microbatch {action.microbatch}, but the "
            f"schedule has microbatches 0..{schedule.total_microbatches - 1}",
            schedule, rank, position)
    home = schedule.stage_to_rank[action.stage]
    if home != rank:
        raise ScheduleError(
            f"{action} runs on rank {rank}, but stage {action.stage} lives on rank {home}",
            schedule, rank, position)


def _check_complete(schedule: Schedule) -> None:
    counts = Counter((a.stage, a.kind, a.microbatch) for _, a in schedule.all_actions())
    where = {}
    for rank, entries in schedule.actions.items():
        for position, entry in enumerate(entries):
            for action in entry.sub_actions:
                where.setdefault((action.stage, action.kind, action.microbatch), (rank, position))
    for key, count in counts.items():
        if count > 1:
            rank, position = where[key]
            raise ScheduleError(f"{Action(*key)} appears {count} times; it must run exactly once",
                                schedule, rank, position)
    # Linear in the actions: a stage missing some forward is found by counting, and only
    # that stage's microbatches are then walked to name the first one missing.
    forwards_per_stage = Counter(stage for stage, kind, _ in counts if kind == FORWARD)
    for stage in range(schedule.num_stages):
        if forwards_per_stage[stage] < schedule.total_microbatches:
            mb = next(mb for mb in range(schedule.total_microbatches)
                      if not counts[(stage, FORWARD, mb)])
            raise ScheduleError(
                f"incomplete: the forward {Action(stage, FORWARD, mb)} is missing "
                f"(stage {stage} lives on rank {schedule.stage_to_rank[stage]})", schedule)
    for stage, _, mb in sorted(k for k in counts if k[1] == FORWARD):
        home = schedule.stage_to_rank[stage]
        full = counts[(stage, FULL_BACKWARD, mb)]
        split = (counts[(stage, BACKWARD_INPUT, mb)], counts[(stage, BACKWARD_WEIGHT, mb)])
        missing = None
        if full and any(split):
            key = (stage, BACKWARD_INPUT if split[0] else BACKWARD_WEIGHT, mb)
            rank, position = where[key]
            raise ScheduleError(
                f"{Action(*key)} splits a backward that {Action(stage, FULL_BACKWARD, mb)} "
                f"already runs in full", schedule, rank, position)
        if not full and split == (0, 0):
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
    # Cross-rank progress: the one walk of a schedule, taking no time; a rank that must wait
    # parks on the one fact it lacks, so the whole check is linear in the actions.
    walk = Walk(schedule.stage_to_rank, plain_program(schedule)).run()
    stuck = walk.stuck()
    if stuck:
        waits = []
        for rank, position in stuck.items():
            action = schedule.actions[rank][position]
            missing = [Action(*n) for n in needs(action, num_stages)
                       if walk.usable_at(n, rank) is None]
            senders = ", ".join(f"{m} (rank {schedule.stage_to_rank[m.stage]})" for m in missing)
            waits.append(f"rank {rank} at {action} waits for {senders}")
        first = min(stuck, key=lambda r: (stuck[r], r))
        raise ScheduleError("deadlock: " + "; ".join(waits), schedule, first, stuck[first], stuck)


def validate(schedule: Schedule) -> Schedule:
    """Return the schedule if it can run; raise ScheduleError naming the first problem."""
    if len(schedule.stage_to_rank) == 0:
        raise ValueError("the schedule places no stages")
    limits.check_count("pipeline depth", schedule.pp_size, limits.MAX_PP_SIZE)
    limits.check_count("model stages", schedule.num_stages, limits.MAX_STAGES)
    limits.check_count("microbatches", schedule.total_microbatches, limits.MAX_MICROBATCHES)
    limits.check_count("actions", sum(len(a) for a in schedule.actions.values()),
                       limits.MAX_ACTIONS)
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
