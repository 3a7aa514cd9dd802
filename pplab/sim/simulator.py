"""Predict a schedule's timeline: the one walk of a schedule over a cost model.

The simulator runs a ``Schedule`` the way the engine does: each rank works through its own
actions in order, sends are posted without waiting and receives block. Nothing else is
assumed, so every gap in the result (the bubble) comes out of the dependencies; idle time
is never placed by hand. Times are "cost units" (F = 1 by default), not seconds. The walk
itself (who waits on what) is ``pplab.schedules.walk``; this module prices it: durations
from the cost model, messages over links (latency, bandwidth, one message at a time per
directed link), optimizer steps, and draws the Event table. ``rate`` makes the same walk
share cores (``pplab.sim.sharing``).

An overlapped pair (``(0F7;7B3)OVERLAP_F_B``) runs as one unit of time on its rank, shorter
than its halves by ``CostModel.overlap``; it is recorded as its two halves, an F event and
then a B (or I) event, sharing the pair's time in proportion to their own durations, so the
Event table keeps its kinds and every chart and metric reads it unchanged.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8 --cost f=1,b=2
    python -m pplab simulate --schedule gpipe --pp 4 --microbatches 8 --json
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pandas as pd

from pplab.schedules.actions import (
    BACKWARD_WEIGHT,
    FULL_BACKWARD,
    Action,
    Message,
    OverlapPair,
    Schedule,
    weight_versions,
)
from pplab.schedules.walk import Item, Walk
from pplab.sim.cost_model import STATE_BYTES, CostModel, hold
from pplab.sim.optimizer_steps import OptimNote, place_optimizer_steps
from pplab.timeline import EventKind, events_from_columns

__all__ = ["CostModel", "simulate", "schedule_summary", "metadata", "SOURCE", "TIME_UNIT"]

SOURCE = "simulated"
TIME_UNIT = "cost units"


def simulate(schedule: Schedule, cost: CostModel | None = None,
             rate: Callable[[int], float] | None = None,
             lead: list[dict[str, float]] | None = None,
             spread: Callable[[], float] | None = None,
             optimizer_sync: str | None = None) -> pd.DataFrame:
    """Run ``schedule`` under ``cost`` and return its Event table (source "simulated").

    Each rank on a core of its own unless ``rate(n)`` says how fast each of n busy ranks
    progresses (``pplab.sim.sharing``). ``lead`` gives, per stage and kind, the part of an
    action that is overhead before its computation: the drawn event starts where the
    computation does. ``spread()``, when given, draws a factor for each action's
    computation. Raise ValueError if the schedule deadlocks or is incomplete
    (``pplab.schedules.validate`` explains such schedules in detail).

    ``optimizer_sync`` ("barrier" or "post") places a synchronous schedule's optimizer steps
    between its steps (``pplab.schedules.steps.repeat_steps`` makes several; see
    ``pplab.sim.optimizer_steps``); None steps each rank once, as it ends the schedule.
    """
    cost = cost if cost is not None else CostModel()
    drawing = _Drawing(schedule, cost)
    programs = work_items(schedule, cost, lead, spread, flush_optimizer=optimizer_sync is None)
    if optimizer_sync is not None:
        programs = place_optimizer_steps(schedule, cost, programs, optimizer_sync)
    walk = Walk(schedule.stage_to_rank, programs, rate,
                deliver=drawing.deliver, on_finish=drawing.finish).run()
    stuck = walk.stuck()
    if stuck:
        where = ", ".join(f"rank {r} at {walk.programs[r][p].entry}" for r, p in stuck.items())
        raise ValueError(f"the schedule cannot finish: {where} wait forever "
                         f"(run `pplab validate` on it for details)")
    return drawing.events()


def work_items(schedule: Schedule, cost: CostModel, lead: list[dict[str, float]] | None = None,
               spread: Callable[[], float] | None = None,
               flush_optimizer: bool = True) -> dict[int, list[Item]]:
    """Each rank's work in order, with optimizer steps where they fall due.

    An action's note holds the length each half is drawn with. Asynchronous schedules step
    a stage's optimizer after every ``update_every`` of its backwards; synchronous ones once
    per rank after the flush (unless ``flush_optimizer`` is False: ``place_optimizer_steps``
    places them). ``spread`` is drawn once per entry, rank by rank, in order. With
    ``cost.held_growth`` an entry's computation grows with what its rank holds as it starts.
    """
    durations = cost.stage_durations(schedule)
    out: dict[int, list[Item]] = {}
    for rank, actions in schedule.actions.items():
        items: list[Item] = []
        done: dict[int, int] = defaultdict(int)
        held: set = set()
        for entry in actions:
            factor = 1.0
            if cost.held_growth is not None:
                factor = cost.held_factor(entry.sub_actions[0].kind, len(held))
                for half in entry.sub_actions:
                    hold(held, half)
            if lead or spread is not None or isinstance(entry, OverlapPair) or factor != 1.0:
                items.append(_drawn(entry, durations, cost, lead, spread, factor))
            else:  # a plain action at its typical cost, the common case, made quickly
                alone = durations[entry.stage][entry.kind]
                items.append(Item(entry, alone, 0.0, (alone,)))
            for half in entry.sub_actions:
                if schedule.is_async and half.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
                    done[half.stage] += 1
                    updates, due = divmod(done[half.stage], schedule.update_every)
                    if due == 0 and cost.optimizer > 0:
                        items.append(Item(None, cost.optimizer, note=OptimNote(
                            half.stage, schedule.step_of(half.microbatch), f"update {updates}")))
        if not schedule.is_async and cost.optimizer > 0 and flush_optimizer:
            items.append(Item(None, cost.optimizer,
                              note=OptimNote(-1, schedule.num_steps - 1, "after the flush")))
        out[rank] = items
    return out


def _drawn(entry, durations: list[dict[str, float]], cost: CostModel,
           lead: list[dict[str, float]] | None, spread: Callable[[], float] | None,
           factor: float = 1.0) -> Item:
    """An entry's item: a pair shorter than its halves by ``cost.overlap``, its overhead
    ``lead`` first, its computation scaled by ``factor`` and a draw of ``spread``."""
    alone = [durations[h.stage][h.kind] for h in entry.sub_actions]
    total = cost.overlapped_time(*alone) if isinstance(entry, OverlapPair) else alone[0]
    scale = total / sum(alone) if sum(alone) > 0 else 0.0
    first = entry.sub_actions[0]
    head = min(lead[first.stage][first.kind], alone[0]) * scale if lead else 0.0
    halves = [d * scale for d in alone]
    if spread is not None or factor != 1.0:  # its computation, drawn around its typical cost
        factor *= spread() if spread is not None else 1.0
        halves = [head + (h - head) * factor if i == 0 else h * factor
                  for i, h in enumerate(halves)]
        total = sum(halves)
    return Item(entry, total, head, tuple(halves))


class Links:
    """Messages as the cost model charges them: latency plus bytes over bandwidth, times the
    link's factor. Messages on one directed link go out one after another (the bytes occupy
    it); their latencies overlap. Called as the walk's ``deliver``: when a message arrives."""

    def __init__(self, cost: CostModel, num_stages: int) -> None:
        self.factors = cost.link_factors(num_stages)
        self.message, self.transfer = cost.message_time(), cost.transfer_time()
        self.free: dict[tuple[int, int], float] = defaultdict(float)

    def send(self, rank: int, half: Action, message: Message,
             end: float) -> tuple[float, float] | None:
        """(start, arrival) of ``message`` sent at ``end``; None when it costs nothing."""
        factor = self.factors[min(half.stage, message.target)]
        if self.message * factor <= 0:
            return None
        link = (rank, message.receiver)
        start = max(end, self.free[link])
        self.free[link] = start + self.transfer * factor
        return start, start + self.message * factor

    def __call__(self, rank: int, half: Action, message: Message, end: float) -> float:
        timed = self.send(rank, half, message, end)
        return end if timed is None else timed[1]


class _Drawing:
    """The Event table of a walk, column by column, as the walk reports each item."""

    def __init__(self, schedule: Schedule, cost: CostModel) -> None:
        self.schedule = schedule
        self.versions = weight_versions(schedule)
        self.links = Links(cost, schedule.num_stages)
        self.message_bytes = int(cost.message_bytes)
        self.columns: dict[str, list] = defaultdict(list)
        self.free: dict[int, float] = defaultdict(float)  # when each rank's last item ended

    def emit(self, rank, stage, kind, mb, step, start, end, version=-1, peer=-1, nbytes=0,
             detail="") -> None:
        columns = self.columns  # one append per column: the walk's hottest path
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

    def finish(self, rank: int, item: Item, began: float, compute_began: float,
               end: float) -> None:
        """Draw an item: an optimizer step (and the wait for its state), or an action's
        halves sharing its computation."""
        free, self.free[rank] = self.free[rank], end
        if item.entry is None:
            note = item.note
            if note is None:
                return
            if note.waited and began > free:
                self.emit(rank, -1, EventKind.ALLREDUCE, -1, note.step, free, began,
                          nbytes=STATE_BYTES, detail=note.waited)
            if end > began and note.detail:
                self.emit(rank, note.stage, EventKind.OPTIM, -1, note.step, began, end,
                          detail=note.detail)
            return
        halves, drawn = item.entry.sub_actions, item.note
        start, span = compute_began, end - compute_began
        total = sum(drawn) - item.lead
        for index, half in enumerate(halves):
            share = drawn[index] - (item.lead if index == 0 else 0.0)
            half_end = end if index == len(halves) - 1 else \
                start + span * share / total if total > 0 else start
            partner = f"overlapped with {halves[1 - index]}" if len(halves) == 2 else ""
            self.emit(rank, half.stage, half.kind, half.microbatch,
                      self.schedule.step_of(half.microbatch), start, half_end,
                      version=self.versions.get((half.stage, half.microbatch), -1),
                      detail=partner)
            start = half_end

    def deliver(self, rank: int, half: Action, message: Message, end: float) -> float:
        timed = self.links.send(rank, half, message, end)
        if timed is None:
            return end
        start, arrival = timed
        self.emit(rank, half.stage, EventKind.SEND, half.microbatch, self.schedule.step_of(
            half.microbatch), start, arrival, peer=message.receiver, nbytes=self.message_bytes,
            detail=f"{message.what} {half.stage}->{message.target}")
        return arrival

    def events(self) -> pd.DataFrame:
        self.columns["source"] = [SOURCE] * len(self.columns["rank"])
        events = events_from_columns(self.columns)
        return events.sort_values(["start", "rank"], kind="stable").reset_index(drop=True)


def schedule_summary(schedule: Schedule) -> dict[str, object]:
    """Name and sizes the way every run's meta.json records them, simulated or measured."""
    return {
        "name": schedule.name,
        "pp_size": schedule.pp_size,
        "num_stages": schedule.num_stages,
        "num_chunks": schedule.num_chunks,
        "num_microbatches": schedule.num_microbatches,
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
