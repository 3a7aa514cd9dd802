"""Ranks that share cores: the simulator's walk on one clock where n busy ranks split C cores.

What it teaches: with more busy ranks than cores (4 ranks on a 2-core laptop, or two ranks on
one GPU) no rank runs at its own speed. Processor sharing is the simplest honest model:
while n ranks compute, each advances at min(1, C / n) of its speed, so an action's length
depends on what the others are doing at the time, and the measured timeline shows ranks
"waiting" that were really queueing for a core. ``simulate_shared`` runs a schedule that
way; with at least as many cores as ranks it gives exactly ``pplab.sim.simulator.simulate``'s
timeline (tests/test_calibrate.py checks). ``SharedClock`` runs the model backwards: from a
measured timeline, what each action would have taken alone.

    python -c "from pplab.sim.sharing import simulate_shared; \
from pplab.schedules import build; from pplab.sim.cost_model import CostModel; \
print(simulate_shared(build('1f1b', 4, 8), CostModel(), slots=2).end.max())"
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
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

SOURCE = "simulated"
_EPSILON = 1e-12


class SharedClock:
    """The measured busy intervals of all ranks, read as processor sharing on ``slots`` cores.

    ``alone(start, end)`` is how long an interval of busy time would have lasted on a core of
    its own: the work done in it, the integral of the rate min(1, slots / n) at which it ran,
    n counting the busy intervals (this one included) at each instant.
    """

    def __init__(self, busy: list[tuple[int, float, float]], slots: float) -> None:
        self.slots = slots
        marks = sorted({t for _, start, end in busy for t in (start, end)})
        self._times = np.array(marks or [0.0])
        change = np.zeros(len(self._times))
        index = {t: i for i, t in enumerate(marks)}
        for _, start, end in busy:
            change[index[start]] += 1
            change[index[end]] -= 1
        counts = np.cumsum(change)[:-1]
        rate = np.minimum(1.0, slots / np.maximum(counts, 1.0))
        self._work = np.concatenate([[0.0], np.cumsum(np.diff(self._times) * rate)])

    def alone(self, start: float, end: float) -> float:
        if end <= start:
            return 0.0
        return float(np.interp(end, self._times, self._work)
                     - np.interp(start, self._times, self._work))


class _Item:
    """One entry of a rank's order (an action, an overlapped pair, or an optimizer step)."""

    __slots__ = ("entry", "work", "lead", "halves", "step", "optim_stage", "detail")

    def __init__(self, entry, work: float, lead: float, halves: list[float], step: int,
                 optim_stage: int | None = None, detail: str = "") -> None:
        self.entry, self.work, self.lead, self.halves = entry, work, lead, halves
        self.step, self.optim_stage, self.detail = step, optim_stage, detail


def _items(schedule: Schedule, cost: CostModel, lead: list[dict[str, float]] | None,
           spread: Callable[[], float] | None) -> dict[int, list[_Item]]:
    """Each rank's work in order, optimizer steps placed where the simulator places them."""
    durations = cost.stage_durations(schedule)
    out: dict[int, list[_Item]] = {}
    for rank, actions in schedule.actions.items():
        items, done = [], defaultdict(int)
        for entry in actions:
            alone = [durations[h.stage][h.kind] for h in entry.sub_actions]
            total = cost.overlapped_time(*alone) if isinstance(entry, OverlapPair) else alone[0]
            scale = total / sum(alone) if sum(alone) > 0 else 0.0
            first = entry.sub_actions[0]
            head = min(lead[first.stage][first.kind], alone[0]) * scale if lead else 0.0
            halves = [d * scale for d in alone]
            if spread is not None:  # this action's computation, drawn around its typical cost
                factor = spread()
                halves = [head + (h - head) * factor if i == 0 else h * factor
                          for i, h in enumerate(halves)]
                total = sum(halves)
            items.append(_Item(entry, total, head, halves, schedule.step_of(first.microbatch)))
            for half in entry.sub_actions:
                if schedule.is_async and half.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
                    done[half.stage] += 1
                    updates, due = divmod(done[half.stage], schedule.update_every)
                    if due == 0 and cost.optimizer > 0:
                        items.append(_Item(None, cost.optimizer, 0.0, [], items[-1].step,
                                           half.stage, f"update {updates}"))
        if not schedule.is_async and cost.optimizer > 0:
            items.append(_Item(None, cost.optimizer, 0.0, [], schedule.num_steps - 1, -1,
                               "after the flush"))
        out[rank] = items
    return out


def simulate_shared(schedule: Schedule, cost: CostModel, slots: float, replicas: int = 1,
                    lead: list[dict[str, float]] | None = None,
                    spread: Callable[[], float] | None = None) -> pd.DataFrame:
    """The simulator's timeline when the ranks share ``slots`` cores (or GPUs).

    ``replicas`` is how many processes hold each pipeline position (tp x dp): they are busy
    together, so n running positions load n x replicas processes on the slots. ``lead``
    gives, per stage and kind, the part of an action that is overhead before its
    computation: the drawn event then starts where the computation does. ``spread()``,
    when given, draws a factor for each action's computation: one sample of a step whose
    actions vary as measured ones do.
    """
    num_stages = schedule.num_stages
    link_factors = cost.link_factors(num_stages)
    versions = weight_versions(schedule)
    items = _items(schedule, cost, lead, spread)
    columns: dict[str, list] = defaultdict(list)

    def emit(rank, stage, kind, mb, step, start, end, version=-1, peer=-1, nbytes=0, detail=""):
        for name, value in (("rank", rank), ("stage", stage), ("kind", kind),
                            ("microbatch", mb), ("step", step), ("start", start), ("end", end),
                            ("version", version), ("peer", peer), ("bytes", nbytes),
                            ("detail", detail)):
            columns[name].append(value)

    ready: dict[tuple, float] = {}
    arrival: dict[tuple, float] = {}
    link_free: dict[tuple[int, int], float] = defaultdict(float)
    position = dict.fromkeys(schedule.actions, 0)
    remaining: dict[int, float] = {}
    began: dict[int, float] = {}
    compute_began: dict[int, float] = {}
    now = 0.0

    def available(fact, rank) -> float | None:
        if schedule.stage_to_rank[fact[0]] == rank:
            return ready.get(fact)
        return arrival.get((fact, rank))

    def send(half, rank, end) -> None:
        if half.kind == FORWARD:
            target, fact, what = half.stage + 1, (half.stage, FORWARD, half.microbatch), \
                "activation"
        elif half.kind in (FULL_BACKWARD, BACKWARD_INPUT):
            target, fact, what = half.stage - 1, (half.stage, BACKWARD_INPUT, half.microbatch), \
                "gradient"
        else:
            return
        if not 0 <= target < num_stages or schedule.stage_to_rank[target] == rank:
            return
        peer = schedule.stage_to_rank[target]
        factor = link_factors[min(half.stage, target)]
        message, transfer = cost.message_time() * factor, cost.transfer_time() * factor
        if message <= 0:
            arrival[(fact, peer)] = end
            return
        start = max(end, link_free[(rank, peer)])
        link_free[(rank, peer)] = start + transfer
        arrival[(fact, peer)] = start + message
        emit(rank, half.stage, "send", half.microbatch, schedule.step_of(half.microbatch),
             start, start + message, peer=peer, nbytes=int(cost.message_bytes),
             detail=f"{what} {half.stage}->{target}")

    def finish(rank: int, item: _Item) -> None:
        if item.entry is None:
            emit(rank, item.optim_stage, "optim", -1, item.step, began[rank], now,
                 detail=item.detail)
            return
        halves = item.entry.sub_actions
        start = compute_began.get(rank, began[rank])
        span = now - start
        total = sum(item.halves) - (item.lead if item.halves else 0.0)
        for index, half in enumerate(halves):
            share = item.halves[index] - (item.lead if index == 0 else 0.0)
            end = now if index == len(halves) - 1 else start + span * share / total \
                if total > 0 else start
            partner = f"overlapped with {halves[1 - index]}" if len(halves) == 2 else ""
            emit(rank, half.stage, half.kind, half.microbatch, schedule.step_of(half.microbatch),
                 start, end, version=versions.get((half.stage, half.microbatch), -1),
                 detail=partner)
            start = end
        for fact in finishes(item.entry):
            ready[fact] = now
        for half in halves:
            send(half, rank, now)

    while True:
        wakes = []
        for rank, items_of in items.items():
            if rank in remaining or position[rank] >= len(items_of):
                continue
            item = items_of[position[rank]]
            missing, latest = False, now
            for need in needs(item.entry, num_stages) if item.entry is not None else ():
                when = available(need, rank)
                if when is None:
                    missing = True
                    break
                latest = max(latest, when)
            if missing:
                continue
            if latest > now + _EPSILON:
                wakes.append(latest)
                continue
            remaining[rank], began[rank] = item.work, now
            compute_began.pop(rank, None)
            if item.lead <= 0:
                compute_began[rank] = now
        if not remaining and not wakes:
            break
        rate = min(1.0, slots / (len(remaining) * replicas)) if remaining else 1.0
        step = min([left / rate for left in remaining.values()] + [w - now for w in wakes])
        for rank, left in list(remaining.items()):
            item = items[rank][position[rank]]
            threshold = item.work - item.lead
            after = left - step * rate
            if rank not in compute_began and after <= threshold + _EPSILON:
                compute_began[rank] = now + (left - threshold) / rate
            remaining[rank] = after
        now += step
        for rank in [r for r, left in remaining.items() if left <= _EPSILON * max(1.0, now)]:
            del remaining[rank]
            finish(rank, items[rank][position[rank]])
            position[rank] += 1

    stuck = [r for r, p in position.items() if p < len(items[r])]
    if stuck:
        where = ", ".join(f"rank {r} at {items[r][position[r]].entry}" for r in stuck)
        raise ValueError(f"the schedule cannot finish: {where} wait forever")
    columns["source"] = [SOURCE] * len(columns["rank"])
    events = events_from_columns(columns)
    return events.sort_values(["start", "rank"], kind="stable").reset_index(drop=True)
