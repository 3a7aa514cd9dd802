"""The Event table: one row per thing a rank did, from either executor.

Every chart, metric, export, lesson and app page reads this table and does not care whether
the simulator predicted it or the engine measured it.

Columns (times in seconds from the start of the run, on a clock shared by all ranks):

    rank        int   the process that did it
    stage       int   the model stage (-1 when the event is not about one stage)
    kind        str   F, B, I, W (compute); send, recv, wait, allreduce (communication);
                      optim (optimizer step)
    microbatch  int   -1 when not about one microbatch
    step        int   training step the event belongs to
    start, end  float seconds (the simulator's cost units when source is "simulated")
    source      str   "simulated" or "measured"
    version     int   weight version a compute event used (-1 when unknown)
    peer        int   the other rank of a send/recv (-1 otherwise)
    bytes       int   bytes moved by a communication event (0 otherwise)
    detail      str   free text, e.g. which collective ("tp f", "dp grads")

Metrics, run directories (Parquet events plus JSON metadata, written atomically) and the
Chrome-trace export (open it at ui.perfetto.dev) live here too.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8 --trace /tmp/1f1b.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic_files import write_text_atomic
from .schedules.actions import COMPUTE_KINDS

COMPUTE_EVENT_KINDS = COMPUTE_KINDS  # the schedule's action kinds are the compute events
COMM_EVENT_KINDS = ("send", "recv", "allreduce")
WAIT_KIND = "wait"
OPTIM_KIND = "optim"
BUSY_KINDS = COMPUTE_EVENT_KINDS + (OPTIM_KIND,)
# pplab.engine.tensor_parallel records its collectives as "tp f" and "tp g" all-reduces; they
# run inside F and B, which the timeline draws (and ``busy`` counts) as computing.
TP_DETAIL_PREFIX = "tp "
SPLIT_KEYS = ("compute", "tp_allreduce", "optimizer")  # busy = their sum, per rank

EVENT_COLUMNS: dict[str, str] = {
    "rank": "int64",
    "stage": "int64",
    "kind": "string",
    "microbatch": "int64",
    "step": "int64",
    "start": "float64",
    "end": "float64",
    "source": "string",
    "version": "int64",
    "peer": "int64",
    "bytes": "int64",
    "detail": "string",
}
EVENT_DEFAULTS: dict[str, object] = {
    "stage": -1, "microbatch": -1, "step": 0, "version": -1, "peer": -1, "bytes": 0, "detail": "",
}


def events_frame(rows: Iterable[Mapping[str, object]] = ()) -> pd.DataFrame:
    """Build an Event table from dict rows, filling defaults and fixing column types."""
    frame = pd.DataFrame(list(rows), columns=list(EVENT_COLUMNS))
    for column, default in EVENT_DEFAULTS.items():
        values = frame[column].astype(object)  # an all-missing column is float; "" must fit
        frame[column] = values.where(values.notna(), default)
    missing = [c for c in ("rank", "kind", "start", "end", "source") if frame[c].isna().any()]
    if missing:
        raise ValueError(f"events are missing required values in columns {missing}")
    return frame.astype(EVENT_COLUMNS).reset_index(drop=True)


def events_from_columns(columns: Mapping[str, Sequence[object]]) -> pd.DataFrame:
    """Build an Event table from whole columns: the fast path for tens of thousands of rows."""
    length = len(columns["rank"])
    data = {}
    for column in EVENT_COLUMNS:
        if column in columns:
            data[column] = columns[column]
        elif column in EVENT_DEFAULTS:
            data[column] = [EVENT_DEFAULTS[column]] * length
        else:
            raise ValueError(f"events are missing the required column {column!r}")
    return pd.DataFrame(data).astype(EVENT_COLUMNS)


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
    forward = (kinds == "F") & (stages >= 0)
    release = np.isin(kinds, ("B", "W")) & (stages >= 0)
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
    tp_mask = kinds == "allreduce"
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


def __getattr__(name: str):
    # Run directories moved to pplab.run_dirs; old imports keep working while callers move.
    if name in ("Run", "RunError", "save_run", "load_run", "list_runs", "EVENTS_FILE",
                "META_FILE"):
        from . import run_dirs

        return getattr(run_dirs, name)
    raise AttributeError(f"module 'pplab.timeline' has no attribute {name!r}")


# A Chrome-trace thread must nest its slices, and messages overlap computation and each
# other, so each rank's events are spread over lanes: its compute on tid = rank, its
# messages (and any overlapping compute of a measured run) on tids from EXTRA_TRACK_BASE.
EXTRA_TRACK_BASE = 10_000


def _lanes(starts: np.ndarray, ends: np.ndarray) -> list[int]:
    """Greedy interval partitioning of slices sorted by start: the first lane that is free."""
    first_free: list[float] = []
    lanes = []
    for start, end in zip(starts, ends, strict=True):
        lane = next((k for k, free in enumerate(first_free) if free <= start), len(first_free))
        if lane == len(first_free):
            first_free.append(end)
        first_free[lane] = end
        lanes.append(lane)
    return lanes


def _label(row) -> str:
    if row.kind in COMPUTE_EVENT_KINDS:
        return f"{row.stage}{row.kind}{row.microbatch}"
    if row.kind in COMM_EVENT_KINDS and row.peer >= 0:
        return f"{row.kind} {row.rank}->{row.peer}" if row.kind == "send" else \
            f"{row.kind} {row.peer}->{row.rank}"
    return str(row.kind)


def chrome_trace(events: pd.DataFrame) -> dict[str, object]:
    """The events as Chrome-trace JSON that Perfetto and chrome://tracing open.

    One complete ("X") slice per event, in microseconds, on process 0 with one thread per
    rank for its compute; its messages go on threads named "rank r comm" (and "comm 2"...
    where messages overlap each other).
    Simulated cost units are drawn as if they were seconds (1 unit = 1e6 us).
    """
    sources = sorted(str(s) for s in events["source"].unique()) or ["empty"]
    origin = float(events["start"].min()) if len(events) else 0.0
    trace: list[dict[str, object]] = [
        {"ph": "M", "name": "process_name", "pid": 0, "tid": 0,
         "args": {"name": f"pplab ({', '.join(sources)})"}},
    ]
    ranks = sorted(int(r) for r in events["rank"].unique())
    ordered = events.sort_values(["rank", "start"], kind="stable")
    busy_first = ordered["kind"].isin(BUSY_KINDS).to_numpy()
    tids: dict[tuple[int, str, int], int] = {}
    slices = []
    for rank in ranks:
        mine = (ordered["rank"] == rank).to_numpy()
        for group, track in ((mine & busy_first, "compute"), (mine & ~busy_first, "comm")):
            rows = ordered[group]
            lanes = _lanes(rows["start"].to_numpy(), rows["end"].to_numpy())
            for row, lane in zip(rows.itertuples(index=False), lanes, strict=True):
                key = (rank, track, lane)
                if key not in tids:
                    tids[key] = rank if key[1:] == ("compute", 0) else EXTRA_TRACK_BASE + len(tids)
                slices.append((row, tids[key]))
    for (rank, track, lane), tid in sorted(tids.items()):
        name = f"rank {rank}" if (track, lane) == ("compute", 0) else f"rank {rank} {track}"
        name += f" {lane + 1}" if lane else ""
        order = rank * 1000 + (0 if track == "compute" else 500) + lane
        trace.append({"ph": "M", "name": "thread_name", "pid": 0, "tid": tid,
                      "args": {"name": name}})
        trace.append({"ph": "M", "name": "thread_sort_index", "pid": 0, "tid": tid,
                      "args": {"sort_index": order}})
    for row, tid in slices:
        busy = row.kind in BUSY_KINDS
        args = {"stage": int(row.stage), "microbatch": int(row.microbatch), "step": int(row.step),
                "version": int(row.version), "source": str(row.source)}
        if not busy:
            args.update(peer=int(row.peer), bytes=int(row.bytes))
        if row.detail:
            args["detail"] = str(row.detail)
        trace.append({
            "name": _label(row), "cat": str(row.kind), "ph": "X", "pid": 0, "tid": tid,
            "ts": (float(row.start) - origin) * 1e6,
            "dur": max(float(row.end) - float(row.start), 0.0) * 1e6,
            "args": args,
        })
    return {"traceEvents": trace, "displayTimeUnit": "ms"}


def write_chrome_trace(events: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``chrome_trace(events)`` to ``path`` atomically; open it at ui.perfetto.dev."""
    return write_text_atomic(path, json.dumps(chrome_trace(events)))


def events_to_csv_text(events: pd.DataFrame) -> str:
    """The Event table as CSV text, columns in schema order."""
    return events[list(EVENT_COLUMNS)].to_csv(index=False)
