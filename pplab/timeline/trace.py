"""The Event table exported: a Chrome trace (open it at ui.perfetto.dev) and plain CSV.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8 --trace /tmp/1f1b.json
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pplab.timeline.events import (
    BUSY_KINDS,
    COMM_EVENT_KINDS,
    COMPUTE_EVENT_KINDS,
    EVENT_COLUMNS,
    EventKind,
)

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
        return f"{row.kind} {row.rank}->{row.peer}" if row.kind == EventKind.SEND else \
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


def events_to_csv_text(events: pd.DataFrame) -> str:
    """The Event table as CSV text, columns in schema order."""
    return events[list(EVENT_COLUMNS)].to_csv(index=False)
