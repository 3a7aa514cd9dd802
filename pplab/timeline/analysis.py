"""Metrics over an Event table: makespan, bubble, busy time split by what it was, peaks held.

The bubble is idle rank-time / (ranks x makespan) over one training step (DESIGN.md);
``metrics`` also gives it per step for multi-step runs.

    python -c "from pplab.schedules import build; from pplab.sim.simulator import simulate; \
from pplab.timeline import metrics; print(metrics(simulate(build('1f1b', 4, 8))))"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from pplab.timeline.events import (
    BUSY_KINDS,
    COMM_EVENT_KINDS,
    COMPUTE_EVENT_KINDS,
    SPLIT_KEYS,
    TP_DETAIL_PREFIX,
    EventKind,
)


def _union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    """Total length covered by the intervals (overlaps counted once)."""
    if len(starts) == 0:
        return 0.0
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    opens = np.concatenate([[True], starts[1:] > reach[:-1]])
    first = np.flatnonzero(opens)
    return float((np.maximum.reduceat(ends, first) - starts[first]).sum())


def peak_activations(events: pd.DataFrame) -> dict[int, int]:
    """Most microbatches held at once per stage: F started, its B (or W) not yet ended.

    A split backward keeps the activation until W ends, because W reads what I left behind.
    At equal times a release counts before an acquire (a rank that ends one backward and
    starts the next forward never holds both), unless the release belongs to an action that
    itself starts at that instant (zero-cost actions): then the table's order decides.
    """
    return {stage: int(round(peak)) for stage, peak in peak_held(events, "stage").items()}


def peak_held(events: pd.DataFrame, group_by: str,
              weights: Mapping[int, float] | None = None) -> dict[int, float]:
    """The most held at once in each ``group_by`` group ("stage" or "rank"): every microbatch
    held on a stage, from its F's start to its B's (or W's) end, counts that stage's weight
    (default 1), with the tie rule of ``peak_activations``."""
    kinds = events["kind"].to_numpy()
    stages = events["stage"].to_numpy()
    groups = events[group_by].to_numpy()
    starts = events["start"].to_numpy()
    position = np.arange(len(events))
    forward = (kinds == EventKind.FORWARD) & (stages >= 0)
    release = np.isin(kinds, (EventKind.FULL_BACKWARD, EventKind.BACKWARD_WEIGHT)) & (stages >= 0)
    times = np.concatenate([events["end"].to_numpy()[release], starts[forward]])
    row_start = np.concatenate([starts[release], starts[forward]])
    row = np.concatenate([position[release], position[forward]])
    deltas = np.concatenate([-np.ones(release.sum()), np.ones(forward.sum())])
    if weights is not None:
        held = np.concatenate([stages[release], stages[forward]])
        deltas = deltas * np.array([float(weights.get(int(s), 0.0)) for s in held])
    where = np.concatenate([groups[release], groups[forward]])
    order = np.lexsort((row, row_start, times, where))
    where, deltas = where[order], deltas[order]
    peaks: dict[int, float] = {}
    for group in np.unique(where):
        running = np.cumsum(deltas[where == group])
        peaks[int(group)] = float(max(running.max(initial=0.0), 0.0))
    return peaks


def _rank_parts(events: pd.DataFrame, ranks: Iterable[int]) -> dict[int, dict[str, float]]:
    """Per rank: busy and exposed comm, and busy split into compute, the tensor-parallel
    all-reduces nested inside it, and the optimizer; one pass over the table."""
    kinds = events["kind"].to_numpy()
    busy_mask = np.isin(kinds, BUSY_KINDS)
    compute_mask = np.isin(kinds, COMPUTE_EVENT_KINDS)
    either_mask = busy_mask | np.isin(kinds, COMM_EVENT_KINDS)
    tp_mask = kinds == EventKind.ALLREDUCE
    if tp_mask.any():  # read the detail text only of the few all-reduce rows
        details = events["detail"].to_numpy()[tp_mask]
        tp_mask[tp_mask] = [str(d).startswith(TP_DETAIL_PREFIX) for d in details]
    rank_of = events["rank"].to_numpy()
    starts, ends = events["start"].to_numpy(), events["end"].to_numpy()
    order = np.argsort(rank_of, kind="stable")
    sorted_ranks = rank_of[order]

    def length(rows: np.ndarray) -> float:
        return _union_length(starts[rows], ends[rows])

    out = {}
    for rank in ranks:
        lo, hi = np.searchsorted(sorted_ranks, [rank, rank + 1])
        mine = order[lo:hi]  # a rank with no events (idle all step) gets an empty slice
        busy = length(mine[busy_mask[mine]])
        # Communication that no computation hides: |busy or comm| - |busy|.
        comm = length(mine[either_mask[mine]]) - busy
        compute_rows, tp_rows = mine[compute_mask[mine]], mine[tp_mask[mine]]
        compute = length(compute_rows) if len(compute_rows) < busy_mask[mine].sum() else busy
        # |compute and tp| = |compute| + |tp| - |compute or tp|: the all-reduce time that a
        # rank spends inside its own F and B, blocked, while the timeline shows it computing.
        nested = (compute + length(tp_rows) - length(np.concatenate([compute_rows, tp_rows]))
                  if len(tp_rows) else 0.0)
        out[int(rank)] = {"busy": busy, "comm": comm, "compute": compute - nested,
                          "tp_allreduce": nested, "optimizer": busy - compute}
    return out


def _span_metrics(events: pd.DataFrame, ranks: list[int]) -> tuple[float, float, dict, dict,
                                                                  dict]:
    makespan = float(events["end"].max() - events["start"].min()) if len(events) else 0.0
    parts = _rank_parts(events, ranks)
    per_rank = {
        rank: {"busy": p["busy"], "comm": p["comm"],
               "idle": max(makespan - p["busy"] - p["comm"], 0.0)}
        for rank, p in parts.items()
    }
    split = {rank: {k: p[k] for k in SPLIT_KEYS} for rank, p in parts.items()}
    capacity = len(ranks) * makespan
    total_busy = sum(p["busy"] for p in parts.values())
    bubble = 1.0 - total_busy / capacity if makespan > 0 and ranks else 0.0
    shares = {f"{key}_fraction": (sum(p[key] for p in split.values()) / capacity
                                  if makespan > 0 and ranks else 0.0) for key in SPLIT_KEYS}
    return makespan, bubble, per_rank, split, shares


def metrics(events: pd.DataFrame, ranks: Iterable[int] | None = None) -> dict[str, object]:
    """Makespan, busy/comm/idle per rank, bubble fraction and peak in-flight microbatches.

    ``bubble_fraction = 1 - sum(busy) / (ranks x makespan)``: the share of rank-time spent
    not computing. Communication that no computation hides therefore counts as bubble,
    which is what a learner sees on a timeline. ``busy`` is the union of F, B, I, W and
    optimizer intervals; ``comm`` the time in send/recv/allreduce that overlaps no busy
    interval; ``idle`` what is left of the makespan. With several training steps,
    ``per_step`` gives the makespan and bubble of each step's events alone.

    Busy time is split further, because a tensor-parallel rank blocks in its all-reduces
    *inside* F and B (Megatron's f and g) and would otherwise look fully busy:
    ``per_rank_compute[rank]`` holds ``compute`` (F, B, I, W minus the tp all-reduces nested
    in them), ``tp_allreduce`` (that nested time) and ``optimizer`` (the rest of busy), which
    add up to ``busy``. ``compute_fraction``, ``tp_allreduce_fraction`` and
    ``optimizer_fraction`` are their sums over ``ranks x makespan``, the bubble's
    normalisation, so the four fractions add up to 1; ``tp_allreduce_time`` is the nested
    time per rank (mean over ranks, in the events' time unit). Each ``per_step`` entry holds
    the three fractions of its step too.

    ``ranks`` are the processes of the run (``range(schedule.pp_size)`` for a simulation,
    ``range(world_size)`` for a measured run). Pass them: a rank that did nothing has no
    events, yet its idle time is bubble. Without them, the ranks seen in the table count.
    """
    if len(events) == 0:
        raise ValueError("the event table is empty: nothing ran")
    seen = {int(r) for r in events["rank"].unique()}
    if ranks is None:
        ranks = sorted(seen)
    else:
        ranks = sorted({int(r) for r in ranks})
        strangers = sorted(seen - set(ranks))
        if strangers:
            raise ValueError(f"events name ranks {strangers[:5]} outside the run's "
                             f"{len(ranks)} ranks")
    makespan, bubble, per_rank, split, shares = _span_metrics(events, ranks)
    sources = sorted(str(s) for s in events["source"].unique())
    steps = sorted(int(s) for s in events["step"].unique())
    result: dict[str, object] = {
        "makespan": makespan,
        "bubble_fraction": bubble,
        "per_rank": per_rank,
        "peak_activations": peak_activations(events),
        "per_rank_compute": split,
        **shares,
        "tp_allreduce_time": sum(p["tp_allreduce"] for p in split.values()) / len(ranks),
        "num_ranks": len(ranks),
        "source": sources[0] if len(sources) == 1 else "mixed",
        "steps": len(steps),
    }
    if len(steps) > 1:
        per_step = []
        for step in steps:
            span, step_bubble, *_, step_shares = _span_metrics(events[events["step"] == step],
                                                              ranks)
            per_step.append({"step": step, "makespan": span, "bubble_fraction": step_bubble,
                             **step_shares})
        result["per_step"] = per_step
    return result
