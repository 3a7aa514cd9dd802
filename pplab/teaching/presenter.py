"""What a presenter shows of one step: which box each box waited on, and the critical path.

What it teaches: a bubble is a box waiting. Every computation in a timeline starts when the
later of two things is done: the rank's previous computation, and the work it needs from
another stage (the activation of the previous stage for a forward, the gradient of the next
stage for a backward; ``pplab.schedules.actions.needs``). The one that finished last is the
box it *waited on*. Following "waited on" back from the box that ends the step gives the
**critical path**: the chain of computations (and the messages between them) that sets the
step's length; shortening anything off it changes nothing.

    python -c "from pplab.teaching.presenter import walk; from pplab.schedules import build; \
from pplab.sim.simulator import simulate; print(walk(simulate(build('1f1b', 4, 8))).critical)"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pplab.schedules.actions import COMPUTE_KINDS, Action, ActionKind, needs


@dataclass(frozen=True)
class Walk:
    """The compute boxes of a timeline (index = row of ``boxes``), each one's box waited on
    (-1: nothing, it started at the beginning), and the critical path's boxes in time order."""

    boxes: pd.DataFrame
    waited_on: tuple[int, ...]
    critical: tuple[int, ...]


def compute_boxes(events: pd.DataFrame) -> pd.DataFrame:
    """The computations of a timeline (no messages or waits), ordered by start, reindexed."""
    boxes = events[events["kind"].isin(COMPUTE_KINDS)]
    return boxes.sort_values(["start", "rank"], kind="stable").reset_index(drop=True)


def walk(events: pd.DataFrame) -> Walk:
    """Each compute box's binding predecessor, and the critical path of the timeline."""
    boxes = compute_boxes(events)
    num_stages = int(boxes["stage"].max()) + 1 if len(boxes) else 0
    finished: dict[tuple[int, ActionKind, int], int] = {}
    previous_on_rank: dict[int, int] = {}
    waited: list[int] = []
    for index, box in enumerate(boxes.itertuples(index=False)):
        candidates = []
        if box.rank in previous_on_rank:
            candidates.append(previous_on_rank[box.rank])
        action = Action(int(box.stage), ActionKind(box.kind), int(box.microbatch))
        for need in needs(action, num_stages):
            # A full backward also counts as the input gradient a stage before it needs.
            for fact in ((need, (need[0], ActionKind.FULL_BACKWARD, need[2]))
                         if need[1] == ActionKind.BACKWARD_INPUT else (need,)):
                if fact in finished:
                    candidates.append(finished[fact])
        waited.append(max(candidates, key=lambda i: (boxes.at[i, "end"], i))
                      if candidates else -1)
        finished[(int(box.stage), ActionKind(box.kind), int(box.microbatch))] = index
        previous_on_rank[box.rank] = index
    critical = []
    at = int(np.argmax(boxes["end"].to_numpy())) if len(boxes) else -1
    while at >= 0:
        critical.append(at)
        at = waited[at]
    return Walk(boxes, tuple(waited), tuple(reversed(critical)))


def frame_times(events: pd.DataFrame, frames: int) -> np.ndarray:
    """``frames`` evenly spaced moments from the step's start to its end (the last one is
    the end, where every box is whole)."""
    boxes = compute_boxes(events)
    start, end = float(boxes["start"].min()), float(boxes["end"].max())
    return np.linspace(start, end, max(2, frames))


def boxes_at(events: pd.DataFrame, moment: float) -> pd.DataFrame:
    """The compute boxes as they stand at ``moment``: those started, cut at ``moment``."""
    boxes = compute_boxes(events)
    shown = boxes[boxes["start"] < moment].copy()
    shown["end"] = shown["end"].clip(upper=moment)
    return shown
