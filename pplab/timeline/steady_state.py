"""The bubble of a run of several steps: the first step apart, then the steady state.

What it teaches: when the steps of a run overlap (post-validation lets a rank start the next
step before the last rank has finished this one), a step's own span says little: it still
reaches from rank 0's first forward to rank P-1's last W. What counts is how often a step
completes. Step k completes when its last computation (F, B, I or W) ends; the steady state
is the time from the first step's completion to the last's, per step, and its bubble is
the rank-time of one such period that no rank spends computing or stepping the optimizer:

    bubble = 1 - (busy rank-time per step) / (ranks x steady-state step time)

The first step is reported apart: nothing came before it to overlap with, so it keeps its
fill (it is what ``metrics`` gives for a single step). Asynchronous schedules have no flush
at all and are measured over the whole run by ``metrics``.

    pplab simulate --schedule zb-h2 --pp 4 --microbatches 8 --cost f=1,i=1,w=1 --steps 4 \
        --optimizer-sync post
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pplab.timeline.analysis import metrics
from pplab.timeline.events import COMPUTE_EVENT_KINDS


def step_ends(events: pd.DataFrame) -> list[float]:
    """When each step's last computation ends, in step order."""
    return _step_ends(events, _computing(events))


def _computing(events: pd.DataFrame) -> np.ndarray:
    """A mask of the computation events (numpy: the lab's pages ask this per slider move)."""
    return np.isin(events["kind"].to_numpy(dtype=object), COMPUTE_EVENT_KINDS)


def _step_ends(events: pd.DataFrame, computing: np.ndarray) -> list[float]:
    steps, ends = events["step"].to_numpy()[computing], events["end"].to_numpy()[computing]
    return [float(ends[steps == step].max()) for step in np.unique(steps)]


def _busy(events: pd.DataFrame, ranks: list[int]) -> float:
    return sum(part["busy"] for part in metrics(events, ranks)["per_rank"].values())


def steady_state(events: pd.DataFrame, ranks: Iterable[int]) -> dict[str, object]:
    """The first step's time and bubble, and the steady state's (None with one step).

    Times are in the events' unit. ``first_step``: from the run's start to the first step's
    completion, its computation's share of it (``bubble_fraction`` the rest).
    ``steady_state``: ``step_time`` from the first step's completion to the last's, per
    step; ``bubble_fraction`` as in the module docstring, busy counting the optimizer.
    """
    ranks = sorted({int(r) for r in ranks})
    computing = _computing(events)
    ends = _step_ends(events, computing)
    if not ends:
        raise ValueError("the event table has no computation: nothing ran")
    step = events["step"].to_numpy()
    steps = sorted(int(s) for s in np.unique(step))
    start = float(events["start"].min())
    compute = events[computing & (step == steps[0])]
    first_time = ends[0] - start
    first_bubble = 1 - _busy(compute, ranks) / (len(ranks) * first_time) if first_time > 0 \
        else 0.0
    result: dict[str, object] = {
        "steps": len(ends),
        "first_step": {"time": first_time, "bubble_fraction": first_bubble},
        "steady_state": None,
    }
    if len(ends) > 1:
        period = (ends[-1] - ends[0]) / (len(ends) - 1)
        later = events[step != steps[0]]
        per_step = _busy(later, ranks) / (len(ends) - 1)
        bubble = 1 - per_step / (len(ranks) * period) if period > 0 else 0.0
        result["steady_state"] = {"step_time": period, "bubble_fraction": bubble}
    return result
