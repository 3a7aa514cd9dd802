"""Predict a schedule's timeline: discrete events over a cost model.

The simulator runs a ``Schedule`` the way the engine does: each rank works through its own
actions in order, sends are posted without waiting and receives block. Nothing else is
assumed, so every gap in the result (the bubble) comes out of the dependencies; idle time
is never placed by hand. Times are "cost units" (F = 1 by default), not seconds.

An overlapped pair (``(0F7;7B3)OVERLAP_F_B``) runs as one unit of time on its rank, shorter
than its halves by ``CostModel.overlap``; it is recorded as its two halves, an F event and
then a B (or I) event, sharing the pair's time in proportion to their own durations, so the
Event table keeps its kinds and every chart and metric reads it unchanged.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8 --cost f=1,b=2
    python -m pplab simulate --schedule gpipe --pp 4 --microbatches 8 --json
"""

from __future__ import annotations

from collections import defaultdict, deque

import pandas as pd

from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    FORWARD,
    FULL_BACKWARD,
    OverlapPair,
    Schedule,
    finishes,
    needs,
    weight_versions,
)
from pplab.sim.cost_model import CostModel
from pplab.timeline import events_from_columns

__all__ = ["CostModel", "simulate", "schedule_summary", "metadata", "SOURCE", "TIME_UNIT"]

SOURCE = "simulated"
TIME_UNIT = "cost units"


def simulate(schedule: Schedule, cost: CostModel | None = None) -> pd.DataFrame:
    """Run ``schedule`` under ``cost`` and return its Event table (source "simulated").

    Event-driven and linear in the number of actions: each rank runs until its next
    action needs data not yet produced, then parks on that one missing fact; producing
    the fact wakes it. Raise ValueError if the schedule deadlocks or is incomplete
    (``pplab.schedules.validate`` explains such schedules in detail).
    """
    cost = cost if cost is not None else CostModel()
    num_stages = schedule.num_stages
    durations = cost.stage_durations(schedule)
    stage_to_rank = schedule.stage_to_rank
    versions = weight_versions(schedule)
    link_factors = cost.link_factors(num_stages)
    message_bytes = int(cost.message_bytes)

    columns: dict[str, list] = defaultdict(list)

    def emit(rank, stage, kind, mb, step, start, end, version=-1, peer=-1, nbytes=0, detail=""):
        columns["rank"].append(rank)
        columns["stage"].append(stage)
        columns["kind"].append(kind)
        columns["microbatch"].append(mb)
        columns["step"].append(step)
        columns["start"].append(start)
        columns["end"].append(end)
        columns["version"].append(version)
        columns["peer"].append(peer)
        columns["bytes"].append(nbytes)
        columns["detail"].append(detail)

    # ready[fact] = time the fact is usable on the rank holding the fact's stage;
    # arrival[(fact, rank)] = time a message carrying it lands on another rank.
    ready: dict[tuple[int, str, int], float] = {}
    arrival: dict[tuple[tuple[int, str, int], int], float] = {}
    link_free: dict[tuple[int, int], float] = defaultdict(float)
    waiting: dict[tuple[int, str, int], list[int]] = defaultdict(list)
    clock = {rank: 0.0 for rank in schedule.actions}
    heads = {rank: 0 for rank in schedule.actions}
    backwards_done: dict[int, int] = defaultdict(int)
    runnable = deque(schedule.actions)

    def available(fact, rank) -> float | None:
        """When ``fact`` can be used on ``rank``, or None if not produced yet."""
        if stage_to_rank[fact[0]] == rank:
            return ready.get(fact)
        return arrival.get((fact, rank))

    def send(action, rank, end) -> None:
        # A forward feeds the next stage; an input gradient (B or I) feeds the previous one.
        if action.kind == FORWARD:
            target = action.stage + 1
            fact = (action.stage, FORWARD, action.microbatch)
            what = "activation"
        elif action.kind in (FULL_BACKWARD, BACKWARD_INPUT):
            target = action.stage - 1
            fact = (action.stage, BACKWARD_INPUT, action.microbatch)
            what = "gradient"
        else:
            return
        if not 0 <= target < num_stages:
            return
        peer = stage_to_rank[target]
        if peer == rank:
            return
        factor = link_factors[min(action.stage, target)]
        message = cost.message_time() * factor
        transfer = cost.transfer_time() * factor
        if message <= 0:
            arrival[(fact, peer)] = end
            return
        # Messages on one directed link go out one after another; latency overlaps.
        start = max(end, link_free[(rank, peer)])
        link_free[(rank, peer)] = start + transfer
        arrival[(fact, peer)] = start + message
        emit(rank, action.stage, "send", action.microbatch, schedule.step_of(action.microbatch),
             start, start + message, peer=peer, nbytes=message_bytes,
             detail=f"{what} {action.stage}->{target}")

    def run_times(action) -> tuple[float, list[float]]:
        """How long ``action`` keeps its rank, and the length each half is drawn with."""
        alone = [durations[half.stage][half.kind] for half in action.sub_actions]
        if not isinstance(action, OverlapPair):
            return alone[0], alone
        total = cost.overlapped_time(*alone)
        scale = total / sum(alone) if sum(alone) > 0 else 0.0
        return total, [duration * scale for duration in alone]

    def update_if_due(rank, action) -> None:
        # Asynchronous schedules step a stage's optimizer after every update_every backwards.
        backwards_done[action.stage] += 1
        done = backwards_done[action.stage]
        if done % schedule.update_every == 0 and cost.optimizer > 0:
            emit(rank, action.stage, "optim", -1, schedule.step_of(action.microbatch),
                 clock[rank], clock[rank] + cost.optimizer,
                 detail=f"update {done // schedule.update_every}")
            clock[rank] += cost.optimizer

    def wake(fact) -> None:
        for rank in waiting.pop(fact, ()):
            runnable.append(rank)

    while runnable:
        rank = runnable.popleft()
        actions = schedule.actions[rank]
        position = heads[rank]
        while position < len(actions):
            action = actions[position]
            start = clock[rank]
            blocked = None
            for need in needs(action, num_stages):
                when = available(need, rank)
                if when is None:
                    blocked = need
                    break
                start = max(start, when)
            if blocked is not None:
                waiting[blocked].append(rank)
                break
            total, drawn = run_times(action)
            end = start + total
            halves = action.sub_actions
            half_start = start
            for index, half in enumerate(halves):
                half_end = end if index == len(halves) - 1 else half_start + drawn[index]
                partner = f"overlapped with {halves[1 - index]}" if len(halves) == 2 else ""
                emit(rank, half.stage, half.kind, half.microbatch,
                     schedule.step_of(half.microbatch), half_start, half_end,
                     version=versions.get((half.stage, half.microbatch), -1), detail=partner)
                half_start = half_end
            clock[rank] = end
            for fact in finishes(action):
                ready[fact] = end
                wake(fact)
            for half in halves:
                send(half, rank, end)
                if schedule.is_async and half.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
                    update_if_due(rank, half)
            position += 1
        heads[rank] = position

    stuck = [r for r, p in heads.items() if p < len(schedule.actions[r])]
    if stuck:
        where = ", ".join(f"rank {r} at {schedule.actions[r][heads[r]]}" for r in stuck)
        raise ValueError(f"the schedule cannot finish: {where} wait forever "
                         f"(run `pplab validate` on it for details)")
    if not schedule.is_async and cost.optimizer > 0:
        for rank in schedule.actions:
            emit(rank, -1, "optim", -1, schedule.num_steps - 1, clock[rank],
                 clock[rank] + cost.optimizer, detail="after the flush")
    columns["source"] = [SOURCE] * len(columns["rank"])
    events = events_from_columns(columns)
    return events.sort_values(["start", "rank"], kind="stable").reset_index(drop=True)


def schedule_summary(schedule: Schedule) -> dict[str, object]:
    """Name and sizes the way every run's meta.json records them, simulated or measured."""
    return {
        "name": schedule.name,
        "pp_size": schedule.pp_size,
        "num_stages": schedule.num_stages,
        "num_chunks": schedule.num_chunks,
        "num_microbatches": schedule.microbatches_per_step,
        "num_steps": schedule.num_steps,
        "is_async": schedule.is_async,
        "update_every": schedule.update_every,
    }


def metadata(schedule: Schedule, cost: CostModel) -> dict[str, object]:
    """Run metadata for a simulated run, with the keys the engine writes where they fit."""
    from datetime import UTC, datetime

    from pplab import __version__
    from pplab.schedules import schedule_to_csv_text

    return {
        "source": SOURCE,
        "schedule": {**schedule_summary(schedule), "csv": schedule_to_csv_text(schedule)},
        "config": {"cost": cost.to_dict()},
        "time_unit": TIME_UNIT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "pplab_version": __version__,
        "hardware": "simulated",
    }
