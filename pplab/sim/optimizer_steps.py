"""Where the optimizer steps fall when a synchronous schedule runs several steps in one walk.

What it teaches: one step of ZB-H2 at F = I = W leaves every rank idle (P-1) F, although no
rank has a gap between its own first forward and last W: the last rank starts (P-1) F late
and the first ends (P-1) F early, because the optimizer step waits for the slowest rank.
Global gradient-norm clipping and the NaN/Inf check need a state summed over every stage, and
a barrier (an all-reduce) collects it before anyone steps. The zero-bubble paper's
post-validation (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 4, Fig. 4) passes a partially
reduced state from rank 0 to rank P-1, steps each rank as soon as it has its share, and
sends the full state back "during the warm-up phase of the next iteration", where each rank
validates before its first backward (``pplab.schedules.steps.validation_points``). Then the
next step's forwards on a rank start right after its own last W, and the steps overlap.

Both are items of the one walk (``pplab.schedules.walk``): the state is a fact that travels
as a message of ``CostModel.state_message_time``; an optimizer step costs
``CostModel.optimizer`` and a validation ``CostModel.validation``. The barrier's all-reduce
is charged 2 ceil(log2 P) messages, a reduction up a tree and a broadcast down it.

    pplab simulate --schedule zb-h2 --pp 4 --microbatches 8 --cost f=1,i=1,w=1 --steps 4 \
        --optimizer-sync post
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import NamedTuple

from pplab.schedules.actions import Schedule
from pplab.schedules.steps import OPTIMIZER_SYNCS, validation_points
from pplab.schedules.walk import Item
from pplab.sim.cost_model import CostModel


class OptimNote(NamedTuple):
    """How to draw a piece of optimizer work: an ``optim`` event with ``detail`` for its work
    (none when it takes no time), after the wait for the state drawn as an ``allreduce``
    named ``waited`` ("" : a wait that is plain idle time, not drawn)."""

    stage: int
    step: int
    detail: str
    waited: str = ""


def allreduce_time(pp_size: int, cost: CostModel) -> float:
    """The barrier's all-reduce of the state: up a binary tree and down again."""
    return 2 * math.ceil(math.log2(pp_size)) * cost.state_message_time() if pp_size > 1 else 0.0


def first_step(schedule: Schedule) -> Schedule:
    """The first step of a several-step synchronous schedule, as a one-step schedule."""
    actions = {rank: [entry for entry in order
                      if schedule.step_of(entry.sub_actions[0].microbatch) == 0]
               for rank, order in schedule.actions.items()}
    return Schedule(actions, schedule.stage_to_rank, schedule.microbatches_per_step,
                    name=schedule.name, params=dict(schedule.params))


def place_optimizer_steps(schedule: Schedule, cost: CostModel, programs: dict[int, list[Item]],
                          optimizer_sync: str) -> dict[int, list[Item]]:
    """``programs`` (every rank's action items, steps one after the other) with the optimizer
    steps placed as ``optimizer_sync`` ("barrier" or "post") places them."""
    if optimizer_sync not in OPTIMIZER_SYNCS:
        raise ValueError(f"unknown optimizer sync {optimizer_sync!r}; choose one of "
                         f"{', '.join(OPTIMIZER_SYNCS)}")
    if schedule.is_async:
        raise ValueError(f"{schedule.name} is asynchronous: each stage steps on its own clock")
    ranks = sorted(programs)
    first, last = ranks[0], ranks[-1]
    points = validation_points(first_step(schedule)) if optimizer_sync == "post" else {}
    message = cost.state_message_time()
    out = {}
    for rank in ranks:
        stages = schedule.stages_of(rank)
        stage = stages[0] if len(stages) == 1 else -1
        by_step: dict[int, list[Item]] = defaultdict(list)
        for item in programs[rank]:
            by_step[schedule.step_of(item.entry.sub_actions[0].microbatch)].append(item)
        items: list[Item] = []
        for step in range(schedule.num_steps):
            work = by_step[step]
            if optimizer_sync == "post" and step > 0 and rank != last:
                at = points[rank]
                work = work[:at] + _validation(rank, step - 1, stage, first, message,
                                               cost) + work[at:]
            items += work
            if optimizer_sync == "barrier":
                items += _barrier(rank, step, stage, ranks, cost)
            else:
                items += _optimistic(rank, step, stage, first, last, message, cost)
        if optimizer_sync == "post" and rank != last:
            items += _validation(rank, schedule.num_steps - 1, stage, first, message, cost)
        out[rank] = items
    return out


def _barrier(rank: int, step: int, stage: int, ranks: list[int], cost: CostModel) -> list[Item]:
    """Join the all-reduce (collected on the first rank), wait for its result, then step."""
    wait = f"grad norm (barrier, step {step})"
    items = [Item(None, gives=((("joined", step, rank), ranks[0], 0.0),))]
    if rank == ranks[0]:
        spread = allreduce_time(len(ranks), cost)
        items.append(Item(None, note=OptimNote(stage, step, "", wait),
                          waits=tuple(("joined", step, r) for r in ranks),
                          gives=tuple((("reduced", step), r, spread) for r in ranks)))
    items.append(Item(None, cost.optimizer, note=OptimNote(stage, step, "update", wait),
                      waits=(("reduced", step),)))
    return items


def _optimistic(rank: int, step: int, stage: int, first: int, last: int, message: float,
                cost: CostModel) -> list[Item]:
    """Take the partial state from the rank before, pass it on (the last rank passes the full
    state back), and step at once."""
    waits = (("partial", step, rank - 1),) if rank != first else ()
    if rank != last:
        gives = ((("partial", step, rank), rank + 1, message),)
    else:
        gives = ((("global", step, rank), rank - 1, message),) if rank != first else ()
    detail = "update (state complete)" if rank == last else "optimistic update"
    return [Item(None, note=OptimNote(stage, step, "", f"grad norm partial (step {step})"),
                 waits=waits, gives=gives),
            Item(None, cost.optimizer, note=OptimNote(stage, step, detail))]


def _validation(rank: int, step: int, stage: int, first: int, message: float,
                cost: CostModel) -> list[Item]:
    """Take the full state from the rank after, pass it on towards rank 0, then validate."""
    gives = ((("global", step, rank), rank - 1, message),) if rank != first else ()
    return [Item(None, note=OptimNote(stage, step, "", f"grad norm global (step {step})"),
                 waits=(("global", step, rank + 1),), gives=gives),
            Item(None, cost.validation, note=OptimNote(stage, step, f"validate step {step}"))]
