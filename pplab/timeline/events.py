"""The Event table: one row per thing a rank did, from either executor.

Every chart, metric, export, lesson and app page reads this table and does not care whether
the simulator predicted it or the engine measured it.

Columns (times in seconds from the start of the run, on a clock shared by all ranks):

    rank        int   the process that did it (its global rank)
    pp_rank     int   its coordinate in the ``pplab.topology.Topology``: pipeline position,
    tp_rank           tensor shard and data replica; a table built without them (the
    dp_rank           simulator's: every rank is a pipeline rank) gets pp_rank = rank, 0, 0
    stage       int   the model stage (-1 when the event is not about one stage)
    kind        str   an ``EventKind``: F, B, I, W (compute); send, recv, wait, allreduce
                      (communication); optim (optimizer step)
    microbatch  int   -1 when not about one microbatch
    step        int   training step the event belongs to
    start, end  float seconds (the simulator's cost units when source is "simulated")
    source      str   "simulated" or "measured"
    version     int   weight version a compute event used (-1 when unknown)
    peer        int   the other rank of a send/recv (-1 otherwise)
    bytes       int   bytes moved by a communication event (0 otherwise)
    detail      str   free text, e.g. which collective ("tp f", "dp grads")

Metrics over the table are in ``pplab.timeline.metrics``, the Chrome-trace and CSV exports
in ``pplab.timeline.trace``; run directories (the table saved as Parquet beside its
metadata) in ``pplab.runs.run_dirs``.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8 --trace /tmp/1f1b.json
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

import numpy as np
import pandas as pd

from pplab.schedules.actions import ActionKind


class EventKind(StrEnum):
    """What a row of the Event table records; the compute kinds are the schedule's own.

    A ``StrEnum`` (members equal and hash like their strings), so the table keeps a plain
    string column and ``events[events.kind == EventKind.SEND]`` reads a saved run as well as
    a fresh one. The first four members spell ``ActionKind``'s, ``EventKind.FORWARD ==
    ActionKind.FORWARD``: an enum with members cannot be extended, so they are repeated.
    """

    FORWARD = ActionKind.FORWARD.value
    FULL_BACKWARD = ActionKind.FULL_BACKWARD.value
    BACKWARD_INPUT = ActionKind.BACKWARD_INPUT.value
    BACKWARD_WEIGHT = ActionKind.BACKWARD_WEIGHT.value
    SEND = "send"
    RECV = "recv"
    WAIT = "wait"  # blocked on a receive or on the step's outstanding sends
    ALLREDUCE = "allreduce"  # tensor-parallel (detail "tp f"/"tp g") or data-parallel
    OPTIM = "optim"  # an optimizer step


COMPUTE_EVENT_KINDS = tuple(EventKind(kind.value) for kind in ActionKind)
COMM_EVENT_KINDS = (EventKind.SEND, EventKind.RECV, EventKind.ALLREDUCE)
BUSY_KINDS = COMPUTE_EVENT_KINDS + (EventKind.OPTIM,)
# pplab.engine.tensor_parallel records its collectives as "tp f" and "tp g" all-reduces; they
# run inside F and B, which the timeline draws (and ``busy`` counts) as computing.
TP_DETAIL_PREFIX = "tp "
SPLIT_KEYS = ("compute", "tp_allreduce", "optimizer")  # busy = their sum, per rank

EVENT_COLUMNS: dict[str, str] = {
    "rank": "int64",
    "pp_rank": "int64",
    "tp_rank": "int64",
    "dp_rank": "int64",
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
    "tp_rank": 0, "dp_rank": 0, "stage": -1, "microbatch": -1, "step": 0, "version": -1,
    "peer": -1, "bytes": 0, "detail": "",
}
COORDINATE_COLUMNS = ("pp_rank", "tp_rank", "dp_rank")  # pp_rank's default is the rank itself


def events_frame(rows: Iterable[Mapping[str, object]] = ()) -> pd.DataFrame:
    """Build an Event table from dict rows, filling defaults and fixing column types."""
    frame = pd.DataFrame(list(rows), columns=list(EVENT_COLUMNS))
    for column, default in EVENT_DEFAULTS.items():
        values = frame[column].astype(object)  # an all-missing column is float; "" must fit
        frame[column] = values.where(values.notna(), default)
    pp_rank = frame["pp_rank"].astype(object)
    frame["pp_rank"] = pp_rank.where(pp_rank.notna(), frame["rank"])
    missing = [c for c in ("rank", "kind", "start", "end", "source") if frame[c].isna().any()]
    if missing:
        raise ValueError(f"events are missing required values in columns {missing}")
    return frame.astype(EVENT_COLUMNS).reset_index(drop=True)


def events_from_columns(columns: Mapping[str, Sequence[object]]) -> pd.DataFrame:
    """Build an Event table from whole columns: the fast path for tens of thousands of rows.

    Each column is made in its type at once: a frame of Python lists converted afterwards
    took six times as long, and the lab's pages simulate a configuration per slider move."""
    length = len(columns["rank"])
    data = {}
    for column, dtype in EVENT_COLUMNS.items():
        if column in columns:
            values = columns[column]
        elif column == "pp_rank":
            values = columns["rank"]
        elif column in EVENT_DEFAULTS:
            values = [EVENT_DEFAULTS[column]] * length
        else:
            raise ValueError(f"events are missing the required column {column!r}")
        data[column] = (pd.array(values, dtype=dtype) if dtype == "string"
                        else np.asarray(values, dtype=dtype))
    return pd.DataFrame(data, copy=False)
