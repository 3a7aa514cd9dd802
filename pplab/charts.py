"""Plotly figures over the Event table: the pictures the lab, the notebooks and the lessons share.

Every function is pure: it takes events (or numbers derived from them) and returns a
``plotly.graph_objects.Figure``; nothing here knows about Streamlit, so a notebook draws exactly
what the app draws. The Gantt chart is where a learner *sees* the bubble: one row per rank,
one colour per kind of work, the idle time shaded.

A timeline of tens of thousands of events would freeze a browser if drawn bar by bar, so above
``AGGREGATE_ABOVE`` events each rank's row is cut into ``AGGREGATE_BINS`` time bins and each
bin drawn in the colour of the kind that kept the rank busiest there, striped with a second
kind that also took a good share (idle when the rank was mostly idle); neighbouring bins of
one look become one bar. The number of bars is then bounded by ranks x bins whatever the
number of events.

    python -c "from pplab import charts, simulator; from pplab.schedules import build; \
charts.gantt(simulator.simulate(build('1f1b', 4, 8), simulator.CostModel())).show()"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .timeline import BUSY_KINDS, COMM_EVENT_KINDS, COMPUTE_EVENT_KINDS, OPTIM_KIND, WAIT_KIND

COMPUTE_KINDS = COMPUTE_EVENT_KINDS
STRIP_KINDS = COMM_EVENT_KINDS  # drawn as a thin strip under the compute bar
ROW_KINDS = COMPUTE_KINDS + (OPTIM_KIND, WAIT_KIND)
ALL_KINDS = ROW_KINDS + STRIP_KINDS

KIND_COLOURS: dict[str, str] = {
    "F": "#4C78A8",
    "B": "#F58518",
    "I": "#E45756",
    "W": "#72B7B2",
    "optim": "#54A24B",
    "wait": "#EECA3B",
    "send": "#9D755D",
    "recv": "#B279A2",
    "allreduce": "#FF9DA6",
    "idle": "#EEEEEE",
}
KIND_NAMES: dict[str, str] = {
    "F": "F forward",
    "B": "B full backward",
    "I": "I backward (input grad)",
    "W": "W backward (weight grad)",
    "optim": "optimizer step",
    "wait": "wait",
    "send": "send",
    "recv": "recv",
    "allreduce": "all-reduce",
    "idle": "idle (bubble)",
}

AGGREGATE_ABOVE = 5_000
AGGREGATE_BINS = 800
MIXED_SHARE = 0.15  # a second kind covering this much of a bin is named with the first

# Row geometry on a numeric y axis (rank r sits at y = r, axis reversed so rank 0 is on top).
_ROW_BASE, _ROW_WIDTH = -0.40, 0.56
_STRIP_BASE, _STRIP_WIDTH = 0.18, 0.22


def time_scale(events: pd.DataFrame, unit: str | None = None) -> tuple[float, str]:
    """The factor from event times to displayed times, and the displayed unit's name.

    Simulated events are in the cost model's units unless ``unit`` says they are seconds (a
    cost model calibrated from a measured run); seconds are shown in ms below 10 s.
    """
    if unit is None:
        measured = len(events) and (events["source"] == "measured").any()
        unit = "s" if measured else "cost units"
    if unit != "s":
        return 1.0, unit
    span = float(events["end"].max() - events["start"].min()) if len(events) else 0.0
    return (1e3, "ms") if span < 10 else (1.0, "s")


def source_of(events: pd.DataFrame) -> str:
    """'measured', 'predicted' or 'mixed': every number the lab shows says which it is."""
    sources = set(events["source"].unique()) if len(events) else {"simulated"}
    if sources == {"measured"}:
        return "measured"
    if sources == {"simulated"}:
        return "predicted"
    return "mixed"


def idle_spans(events: pd.DataFrame) -> pd.DataFrame:
    """Gaps in each rank's compute and optimizer work between time 0 and the makespan.

    These are the bubbles: time a rank holds its slice of the model and does nothing with it.
    Communication and waiting count as idle here, since no useful arithmetic happens.
    """
    rows = []
    if events.empty:
        return pd.DataFrame(columns=["rank", "start", "end"])
    origin, makespan = float(events["start"].min()), float(events["end"].max())
    busy = events[events["kind"].isin(BUSY_KINDS)]
    for rank in sorted(events["rank"].unique()):
        spans = busy[busy["rank"] == rank].sort_values("start")
        cursor = origin
        for start, end in zip(spans["start"].to_numpy(), spans["end"].to_numpy(), strict=True):
            if start > cursor:
                rows.append((rank, cursor, start))
            cursor = max(cursor, end)
        if makespan > cursor:
            rows.append((rank, cursor, makespan))
    return pd.DataFrame(rows, columns=["rank", "start", "end"])


def _rank_labels(events: pd.DataFrame) -> dict[int, str]:
    labels = {}
    compute = events[events["kind"].isin(COMPUTE_KINDS)]
    for rank in sorted(events["rank"].unique()):
        # messages name the stage they feed, which may live on the peer: read compute only
        stages = sorted(s for s in compute.loc[compute["rank"] == rank, "stage"].unique() if s >= 0)
        held = ",".join(str(s) for s in stages)
        labels[int(rank)] = f"rank {rank}" + (f" · stage {held}" if held else "")
    return labels


def _exact_traces(events: pd.DataFrame, scale: float, unit: str, source: str) -> list[go.Bar]:
    traces = []
    idle = idle_spans(events)
    if len(idle):
        traces.append(_idle_trace(idle, scale, unit, source))
    for kind in ALL_KINDS:
        part = events[events["kind"] == kind]
        if part.empty:
            continue
        start = part["start"].to_numpy() * scale
        duration = (part["end"] - part["start"]).to_numpy() * scale
        strip = kind in STRIP_KINDS
        custom = np.column_stack([
            part["stage"].to_numpy(), part["microbatch"].to_numpy(), start, duration,
            part["step"].to_numpy(), part["peer"].to_numpy(), part["bytes"].to_numpy(),
            part["detail"].astype(str).to_numpy(),
        ])
        extra = (
            "<br>peer rank %{customdata[5]} · %{customdata[6]} bytes · %{customdata[7]}"
            if strip else ""
        )
        traces.append(go.Bar(
            name=KIND_NAMES[kind], legendgroup=kind, orientation="h",
            y=part["rank"].to_numpy(), x=duration, base=start,
            width=_STRIP_WIDTH if strip else _ROW_WIDTH,
            offset=_STRIP_BASE if strip else _ROW_BASE,
            marker={"color": KIND_COLOURS[kind], "line": {"width": 0.4, "color": "white"}},
            customdata=custom,
            hovertemplate=(
                f"<b>{kind}</b> ({source})<br>rank %{{y}} · stage %{{customdata[0]}} · "
                "microbatch %{customdata[1]} · step %{customdata[4]}<br>"
                f"start %{{customdata[2]:.4g}} {unit} · duration %{{customdata[3]:.4g}} {unit}"
                f"{extra}<extra></extra>"
            ),
        ))
    return traces


def _idle_trace(idle: pd.DataFrame, scale: float, unit: str, source: str) -> go.Bar:
    start = idle["start"].to_numpy() * scale
    duration = (idle["end"] - idle["start"]).to_numpy() * scale
    return go.Bar(
        name=KIND_NAMES["idle"], legendgroup="idle", orientation="h",
        y=idle["rank"].to_numpy(), x=duration, base=start, width=_ROW_WIDTH, offset=_ROW_BASE,
        marker={"color": KIND_COLOURS["idle"],
                "pattern": {"shape": "/", "fgcolor": "#BBBBBB", "size": 6}},
        customdata=np.column_stack([start, duration]),
        hovertemplate=(
            f"<b>idle</b> ({source})<br>rank %{{y}}<br>from %{{customdata[0]:.4g}} " + unit
            + " for %{customdata[1]:.4g} " + unit + "<extra></extra>"
        ),
    )


def _coverage(starts: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
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


def aggregate(events: pd.DataFrame, bins: int = AGGREGATE_BINS) -> pd.DataFrame:
    """Per rank, what filled each of ``bins`` time bins; neighbouring bins of one label merged.

    A bin's label is "idle" when the rank worked for less than half of it, else the kind that
    covered most of it, joined as "F+B" with the runner-up when that one covered at least
    ``MIXED_SHARE`` of the bin: a steady 1F1B state then reads as F and B mixed, not as B
    alone. Returns rows (rank, kind, start, end, shares) where ``shares`` says how much of
    the span each kind covered, e.g. "F 33%, B 67%".
    """
    origin, makespan = float(events["start"].min()), float(events["end"].max())
    edges = np.linspace(origin, makespan, bins + 1)
    width = edges[1] - edges[0] if makespan > origin else 1.0
    kinds = [k for k in ROW_KINDS if (events["kind"] == k).any()]
    rows = []
    for rank in sorted(events["rank"].unique()):
        mine = events[events["rank"] == rank]
        per_kind = np.zeros((max(len(kinds), 1), bins))
        for i, kind in enumerate(kinds):
            part = mine[mine["kind"] == kind]
            if len(part):
                covered = _coverage(part["start"].to_numpy(), part["end"].to_numpy(), edges)
                per_kind[i] = np.diff(covered) / width
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
        start = 0
        for i in range(1, bins + 1):
            if i == bins or labels[i] != labels[start]:
                mean = per_kind[:, start:i].mean(axis=1)
                shares = ", ".join(f"{kind} {100 * mean[k]:.0f}%" for k, kind in enumerate(kinds)
                                   if mean[k] >= 0.005) or "nothing"
                rows.append((int(rank), labels[start], edges[start], edges[i], shares))
                start = i
    return pd.DataFrame(rows, columns=["rank", "kind", "start", "end", "shares"])


def _aggregated_traces(events: pd.DataFrame, scale: float, unit: str, bins: int) -> list[go.Bar]:
    spans = aggregate(events, bins)
    source = source_of(events)
    traces = []
    for label in sorted(spans["kind"].unique(), key=lambda k: (k != "idle", "+" in k, k)):
        part = spans[spans["kind"] == label]
        start = part["start"].to_numpy() * scale
        duration = (part["end"] - part["start"]).to_numpy() * scale
        kinds = label.split("+")
        marker = {"color": KIND_COLOURS[kinds[0]]}
        if label == "idle":
            marker["pattern"] = {"shape": "/", "fgcolor": "#BBBBBB", "size": 6}
        elif len(kinds) == 2:
            marker["pattern"] = {"shape": "|", "fgcolor": KIND_COLOURS[kinds[1]], "size": 6,
                                 "solidity": 0.45, "fgopacity": 1.0}
        name = KIND_NAMES[label] if len(kinds) == 1 else f"{' and '.join(kinds)} mixed"
        traces.append(go.Bar(
            name=name, legendgroup=label, orientation="h",
            y=part["rank"].to_numpy(), x=duration, base=start,
            width=_ROW_WIDTH, offset=_ROW_BASE, marker=marker,
            customdata=np.column_stack([start, duration, part["shares"].to_numpy()]),
            hovertemplate=(
                f"<b>{name}</b> ({source}, aggregated)<br>rank %{{y}}<br>"
                f"from %{{customdata[0]:.4g}} {unit} for %{{customdata[1]:.4g}} {unit}"
                "<br>time covered: %{customdata[2]}"
                "<br>pick one step, or fewer microbatches, to see single events<extra></extra>"
            ),
        ))
    return traces


def gantt(
    events: pd.DataFrame,
    title: str | None = None,
    unit: str | None = None,
    aggregate_above: int = AGGREGATE_ABOVE,
    bins: int = AGGREGATE_BINS,
) -> go.Figure:
    """The timeline as a Gantt chart: one row per rank, one colour per kind, idle shaded.

    ``unit`` names what event times are in ("s" or "cost units"); by default it follows the
    events' source. Above ``aggregate_above`` events the rows are drawn aggregated (see the
    module docstring) so the browser stays responsive.
    """
    figure = go.Figure()
    _add_gantt(figure, events, unit, aggregate_above, bins, row=None)
    scale, shown_unit = time_scale(events, unit)
    source = source_of(events)
    heading = title or f"{source.capitalize()} timeline"
    if len(events) > aggregate_above:
        heading += f" (aggregated: {len(events):,} events)"
    ranks = int(events["rank"].nunique()) if len(events) else 1
    figure.update_layout(
        title=heading, barmode="overlay", height=140 + 44 * ranks,
        xaxis_title=f"time ({shown_unit}, {source})",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"l": 10, "r": 10, "t": 90, "b": 40},
    )
    return figure


def _add_gantt(figure, events, unit, aggregate_above, bins, row, shown=None,
               scaled=None) -> None:
    if events.empty:
        figure.add_annotation(text="no events", showarrow=False, row=row, col=1 if row else None)
        return
    scale, shown_unit = scaled or time_scale(events, unit)
    if len(events) > aggregate_above:
        traces = _aggregated_traces(events, scale, shown_unit, bins)
    else:
        traces = _exact_traces(events, scale, shown_unit, source_of(events))
    for trace in traces:
        if shown is not None:  # one legend entry per kind across stacked rows
            trace.showlegend = trace.legendgroup not in shown
            shown.add(trace.legendgroup)
        figure.add_trace(trace, row=row, col=1 if row else None)
    labels = _rank_labels(events)
    axis = {"tickmode": "array", "tickvals": list(labels), "ticktext": list(labels.values()),
            "autorange": "reversed", "zeroline": False}
    if row is None:
        figure.update_yaxes(**axis)
    else:
        figure.update_yaxes(**axis, row=row, col=1)


def gantt_stack(
    timelines: Sequence[tuple[str, pd.DataFrame]],
    units: Sequence[str | None] | None = None,
    title: str = "Timelines",
    aggregate_above: int = AGGREGATE_ABOVE,
    bins: int = AGGREGATE_BINS,
) -> go.Figure:
    """Several timelines stacked on one figure; the time axis is shared when the units agree.

    Used for Compare (two to four configurations) and for predicted-over-measured. Mixing
    cost units with seconds on one axis would mislead, so then each row gets its own axis.
    """
    if not timelines:
        raise ValueError("gantt_stack needs at least one timeline, got none")
    units = list(units) if units is not None else [None] * len(timelines)
    if len(units) != len(timelines):
        raise ValueError(f"gantt_stack got {len(timelines)} timelines but {len(units)} units")
    scales = [time_scale(ev, u) for (_, ev), u in zip(timelines, units, strict=True)]
    if {unit for _, unit in scales} == {"ms", "s"}:  # all seconds: one axis, in s
        scales = [(1.0, "s")] * len(scales)
    shown = [unit for _, unit in scales]
    shared = len(set(shown)) == 1
    heights = [max(1, int(ev["rank"].nunique())) if len(ev) else 1 for _, ev in timelines]
    figure = make_subplots(
        rows=len(timelines), cols=1, shared_xaxes=shared, vertical_spacing=0.08,
        row_heights=heights, subplot_titles=[
            f"{label} ({source_of(ev)}, {unit}"
            + (f"; aggregated: {len(ev):,} events)" if len(ev) > aggregate_above else ")")
            for (label, ev), unit in zip(timelines, shown, strict=True)
        ],
    )
    in_legend: set[str] = set()
    for row, ((_, events), unit) in enumerate(zip(timelines, units, strict=True), start=1):
        _add_gantt(figure, events, unit, aggregate_above, bins, row=row, shown=in_legend,
                   scaled=scales[row - 1])
        if not shared or row == len(timelines):
            figure.update_xaxes(title_text=f"time ({shown[row - 1]})", row=row, col=1)
    note = "" if shared else " (units differ: each row has its own time axis)"
    figure.update_layout(
        title=title + note, barmode="overlay", height=120 + 44 * sum(heights) + 60 * len(heights),
        legend={"orientation": "v", "yanchor": "top", "y": 1, "x": 1.01},
        margin={"l": 10, "r": 10, "t": 80, "b": 40},
    )
    return figure


def peak_activations(peaks: Mapping[int, int | float], source: str = "predicted") -> go.Figure:
    """Microbatches whose activations a stage holds at its worst moment, one bar per stage."""
    stages = sorted(int(s) for s in peaks)
    figure = go.Figure(go.Bar(
        x=[f"stage {s}" for s in stages], y=[peaks[s] for s in stages],
        marker_color=KIND_COLOURS["F"],
        hovertemplate="%{x}: %{y} microbatches of activations held<extra></extra>",
    ))
    figure.update_layout(
        title=f"Peak activations per stage ({source})", height=300,
        yaxis_title="microbatches held (count)", margin={"l": 10, "r": 10, "t": 50, "b": 30},
    )
    return figure


def rank_utilisation(per_rank: Mapping[int, Mapping[str, float]], unit: str,
                     source: str = "predicted") -> go.Figure:
    """Busy, communication and idle time of each rank as stacked bars."""
    ranks = sorted(int(r) for r in per_rank)
    figure = go.Figure()
    for part, colour in (("busy", KIND_COLOURS["F"]), ("comm", KIND_COLOURS["send"]),
                         ("idle", "#BBBBBB")):
        figure.add_trace(go.Bar(
            name=part, x=[f"rank {r}" for r in ranks],
            y=[float(per_rank[r].get(part, 0.0)) for r in ranks], marker_color=colour,
            hovertemplate=f"%{{x}} {part}: %{{y:.4g}} {unit}<extra></extra>",
        ))
    figure.update_layout(
        title=f"Time per rank ({source})", barmode="stack", height=300,
        yaxis_title=f"time ({unit})", margin={"l": 10, "r": 10, "t": 50, "b": 30},
    )
    return figure


def loss_curves(losses: Mapping[str, Sequence[float]], title: str = "Loss (measured)") -> go.Figure:
    """One line per run: training loss after each step."""
    figure = go.Figure()
    for label, values in losses.items():
        if len(values):
            figure.add_trace(go.Scatter(
                name=label, x=list(range(1, len(values) + 1)), y=list(values),
                mode="lines+markers" if len(values) <= 50 else "lines",
                hovertemplate=f"{label}<br>step %{{x}}: loss %{{y:.4f}}<extra></extra>",
            ))
    figure.update_layout(
        title=title, height=320, xaxis_title="step", yaxis_title="loss (cross-entropy, nats)",
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def memory_per_rank(memory: Mapping[str, Mapping[int, float]],
                    title: str = "Peak memory per rank (measured)", per: str = "rank") -> go.Figure:
    """Grouped bars: peak bytes of each rank (or ``per="stage"``) in MiB, one group per run."""
    figure = go.Figure()
    for label, per_rank in memory.items():
        keys = sorted(int(k) for k in per_rank)
        figure.add_trace(go.Bar(
            name=label, x=[f"{per} {k}" for k in keys],
            y=[float(per_rank[k]) / 2**20 for k in keys],
            hovertemplate=f"{label}<br>%{{x}}: %{{y:.2f}} MiB<extra></extra>",
        ))
    figure.update_layout(
        title=title, barmode="group", height=320, yaxis_title="peak memory (MiB)",
        margin={"l": 10, "r": 10, "t": 50, "b": 30},
    )
    return figure


def figure_points(figure: go.Figure) -> int:
    """How many bars or markers a figure asks the browser to draw."""
    return sum(len(trace.x) if trace.x is not None else 0 for trace in figure.data)
