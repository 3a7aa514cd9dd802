"""What a Gantt's rows hold: each row's stages and chunks, its idle gaps and its tick label.

A row is a value of one column of the Event table: the global rank, or with
``rows="pp_rank"`` the pipeline position. These are read off numpy arrays taken once per
timeline (``Columns``): a timeline is cut by row, kind and chunk a dozen times while it is
drawn, and pandas' boolean indexing of its string columns cost more than the drawing itself.

    python -c "from pplab import charts, simulator; from pplab.schedules import build; \
print(charts.idle_spans(simulator.simulate(build('gpipe', 2, 2))))"
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pplab.timeline import BUSY_KINDS, COMPUTE_EVENT_KINDS

RowNames = Mapping[int, str]
ROW_WORDS = {"rank": "rank", "pp_rank": "pp"}  # a row's default name, by the column it is


class Columns:
    """The columns a Gantt reads, as numpy arrays taken once per timeline (see above)."""

    def __init__(self, events: pd.DataFrame, rows: str = "rank") -> None:
        self.rows = rows
        self.row = events[rows].to_numpy()
        self.kind = events["kind"].to_numpy(dtype=object)
        self.stage = events["stage"].to_numpy()
        self.start = events["start"].to_numpy(dtype=float)
        self.end = events["end"].to_numpy(dtype=float)
        self.events = events

    def of_kinds(self, kinds) -> np.ndarray:
        """A mask of the events whose kind is one of ``kinds``."""
        wanted = frozenset(kinds)
        return np.fromiter((kind in wanted for kind in self.kind), bool, len(self.kind))

    def column(self, name: str, mask: np.ndarray) -> np.ndarray:
        """Column ``name`` of the events under ``mask`` (the rarely read ones, taken late)."""
        return self.events[name].to_numpy()[mask]

    @functools.cached_property
    def detail_text(self) -> np.ndarray:
        """Each event's detail as text (a missing one written as pandas writes it)."""
        return self.events["detail"].astype(str).to_numpy()


def idle_spans(events: pd.DataFrame, rows: str = "rank") -> pd.DataFrame:
    """Gaps in each row's compute and optimizer work between time 0 and the makespan.

    These are the bubbles: time a rank holds its slice of the model and does nothing with it.
    Communication and waiting count as idle here, since no useful arithmetic happens. A row
    is a value of column ``rows`` (the rank, or the pipeline position ``pp_rank``).
    """
    if events.empty:
        return pd.DataFrame(columns=[rows, "start", "end"])
    return pd.DataFrame(idle_gaps(Columns(events, rows)), columns=[rows, "start", "end"])


def idle_gaps(table: Columns) -> list[tuple]:
    """(row, start, end) of each gap, as ``idle_spans`` (non-empty events)."""
    origin, makespan = float(table.start.min()), float(table.end.max())
    busy = table.of_kinds(BUSY_KINDS)
    gaps = []
    for row in np.unique(table.row):
        mine = busy & (table.row == row)
        order = np.argsort(table.start[mine], kind="stable")
        starts, ends = table.start[mine][order], table.end[mine][order]
        # where each span finds the row: after every earlier span's end, never before origin
        reached = np.maximum.accumulate(np.concatenate([[origin], ends]))
        gaps += [(row, float(a), float(b))
                 for a, b in zip(reached[:-1][starts > reached[:-1]],
                                 starts[starts > reached[:-1]], strict=True)]
        if makespan > reached[-1]:
            gaps.append((row, float(reached[-1]), makespan))
    return gaps


def stages_by_row(events: pd.DataFrame, rows: str = "rank") -> dict[int, list[int]]:
    """The model stages each row computes, in increasing order: chunk c is the c-th of them."""
    return stages_of_table(Columns(events, rows))


def stages_of_table(table: Columns) -> dict[int, list[int]]:
    # messages name the stage they feed, which may live on the peer: read compute only
    compute = table.of_kinds(COMPUTE_EVENT_KINDS) & (table.stage >= 0)
    held: dict[int, list[int]] = {}
    for row, stage in np.unique(np.stack([table.row[compute], table.stage[compute]]), axis=1).T:
        held.setdefault(int(row), []).append(int(stage))
    return held


def chunk_of(events: pd.DataFrame, rows: str = "rank") -> np.ndarray:
    """Each event's chunk on its row: the position of its stage among the row's stages."""
    table = Columns(events, rows)
    return chunks_of_table(table, stages_of_table(table))


def chunks_of_table(table: Columns, held: dict[int, list[int]]) -> np.ndarray:
    position = {(row, stage): c for row, stages in held.items()
                for c, stage in enumerate(stages)}
    return np.array([position.get((int(r), int(s)), 0) for r, s in
                     zip(table.row, table.stage, strict=True)], dtype=int)


def row_name(row: int, rows: str) -> str:
    """``rank 2``, or ``pp 1`` for a row that is a pipeline position."""
    return f"{ROW_WORDS.get(rows, rows)} {row}"


def row_labels(events: pd.DataFrame, row_names: RowNames | None = None,
               rows: str = "rank") -> dict[int, str]:
    """Tick labels: ``rank 2 · stage 2,6`` (or the caller's name for the row instead of rank)."""
    table = Columns(events, rows)
    return labels_of_table(table, stages_of_table(table), row_names)


def labels_of_table(table: Columns, held: dict[int, list[int]],
                    row_names: RowNames | None) -> dict[int, str]:
    labels = {}
    for row in sorted(int(r) for r in np.unique(table.row)):
        name = (row_names or {}).get(row, row_name(row, table.rows))
        stages = ",".join(str(s) for s in held.get(row, []))
        labels[row] = name + (f" · stage {stages}" if stages else "")
    return labels


def several_chunks(events: pd.DataFrame, rows: str = "rank") -> bool:
    """Whether a row of ``events`` computes more than one stage (an interleaved schedule)."""
    chunks = chunk_of(events, rows)
    return bool(len(chunks)) and int(chunks.max()) > 0
