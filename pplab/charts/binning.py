"""Drawing a timeline too big for a browser: each rank's row cut into time bins.

A timeline of tens of thousands of events would freeze a browser if drawn bar by bar, so
above ``AGGREGATE_ABOVE`` events each rank's row is cut into ``AGGREGATE_BINS`` time bins and
each bin drawn in the colour of the kind that kept the rank busiest there, striped with a
second kind that also took a good share (idle when the rank was mostly idle); neighbouring
bins of one look become one bar. The number of bars is then bounded by ranks x bins whatever
the number of events.

    python -c "from pplab import charts, simulator; from pplab.schedules import build; \
print(charts.aggregate(simulator.simulate(build('1f1b', 8, 1250)), 50).head())"
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pplab.charts.style import (
    IDLE_PATTERN,
    KIND_COLOURS,
    KIND_NAMES,
    ROW_BASE,
    ROW_KINDS,
    ROW_WIDTH,
    hover_data,
    source_of,
)

AGGREGATE_ABOVE = 5_000
AGGREGATE_BINS = 800
MIXED_SHARE = 0.15  # a second kind covering this much of a bin is named with the first


def coverage(starts: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Total time covered by the spans before each edge, in O((n + bins) log n).

    sum_i clip(t - start_i, 0, dur_i) = sum_{start_i < t}(t - start_i) - sum_{end_i < t}(t - end_i),
    which needs only sorted starts, sorted ends and their prefix sums; overlaps are fine.
    """
    total = np.zeros_like(edges)
    for points, sign in ((np.sort(starts), 1.0), (np.sort(ends), -1.0)):
        prefix = np.concatenate([[0.0], np.cumsum(points)])
        count = np.searchsorted(points, edges, side="left")
        total += sign * (count * edges - prefix[count])
    return total


def aggregate(events: pd.DataFrame, bins: int = AGGREGATE_BINS, rows: str = "rank"
              ) -> pd.DataFrame:
    """Per row (each value of column ``rows``: a rank, or a pipeline position with
    ``rows="pp_rank"``), what filled each of ``bins`` time bins; neighbouring bins of one label
    merged.

    A bin's label is "idle" when the rank worked for less than half of it, else the kind that
    covered most of it, joined as "F+B" with the runner-up when that one covered at least
    ``MIXED_SHARE`` of the bin: a steady 1F1B state then reads as F and B mixed, not as B
    alone. Returns rows (row, kind, start, end, shares), the first column named ``rows``,
    where ``shares`` says how much of the span each kind covered, e.g. "F 33%, B 67%".
    """
    origin, makespan = float(events["start"].min()), float(events["end"].max())
    edges = np.linspace(origin, makespan, bins + 1)
    width = edges[1] - edges[0] if makespan > origin else 1.0
    kinds = [k for k in ROW_KINDS if (events["kind"] == k).any()]
    spans = []
    for row in sorted(events[rows].unique()):
        mine = events[events[rows] == row]
        per_kind = np.zeros((max(len(kinds), 1), bins))
        for i, kind in enumerate(kinds):
            part = mine[mine["kind"] == kind]
            if len(part):
                covered = coverage(part["start"].to_numpy(), part["end"].to_numpy(), edges)
                per_kind[i] = np.diff(covered) / width
        labels = _bin_labels(per_kind, kinds, bins)
        start = 0
        for i in range(1, bins + 1):
            if i == bins or labels[i] != labels[start]:
                mean = per_kind[:, start:i].mean(axis=1)
                shares = ", ".join(f"{kind} {100 * mean[k]:.0f}%" for k, kind in enumerate(kinds)
                                   if mean[k] >= 0.005) or "nothing"
                spans.append((int(row), labels[start], edges[start], edges[i], shares))
                start = i
    return pd.DataFrame(spans, columns=[rows, "kind", "start", "end", "shares"])


def _bin_labels(per_kind: np.ndarray, kinds: list[str], bins: int) -> list[str]:
    order = np.argsort(-per_kind, axis=0, kind="stable")
    labels = []
    for column in range(bins):
        if not kinds or per_kind[:, column].sum() < 0.5:
            labels.append("idle")
            continue
        first, second = order[0, column], order[1, column] if len(kinds) > 1 else None
        pair = second is not None and per_kind[second, column] >= MIXED_SHARE
        chosen = sorted((first, second)) if pair else [first]
        labels.append("+".join(kinds[k] for k in chosen))
    return labels


def aggregated_traces(events: pd.DataFrame, scale: float, unit: str, bins: int,
                      rows: str = "rank") -> list[dict]:
    """One bar trace (a plain dict) per bin label ("F", "F+B", "idle"...), hover saying what
    it covers."""
    spans = aggregate(events, bins, rows)
    source = source_of(events)
    traces = []
    for label in sorted(spans["kind"].unique(), key=lambda k: (k != "idle", "+" in k, k)):
        part = spans[spans["kind"] == label]
        start = part["start"].to_numpy() * scale
        duration = (part["end"] - part["start"]).to_numpy() * scale
        kinds = label.split("+")
        marker = {"color": KIND_COLOURS[kinds[0]]}
        if label == "idle":
            marker["pattern"] = IDLE_PATTERN
        elif len(kinds) == 2:
            marker["pattern"] = {"shape": "|", "fgcolor": KIND_COLOURS[kinds[1]], "size": 6,
                                 "bgcolor": KIND_COLOURS[kinds[0]], "solidity": 0.45,
                                 "fgopacity": 1.0}
        name = KIND_NAMES[label] if len(kinds) == 1 else f"{' and '.join(kinds)} mixed"
        traces.append(dict(
            type="bar", name=name, legendgroup=label, orientation="h",
            y=part[rows].to_numpy(), x=duration, base=start,
            width=ROW_WIDTH, offset=ROW_BASE, marker=marker,
            customdata=hover_data(start, duration, part["shares"]),
            hovertemplate=(
                f"<b>{name}</b> ({source}, aggregated)<br>row %{{y}}<br>"
                f"from %{{customdata[0]:.4g}} {unit} for %{{customdata[1]:.4g}} {unit}"
                "<br>time covered: %{customdata[2]}"
                "<br>pick one step, or fewer microbatches, to see single events<extra></extra>"
            ),
        ))
    return traces
