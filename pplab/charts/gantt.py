"""The Gantt chart: one row per rank (or pipeline position), one colour per kind, idle shaded.

This is where a learner *sees* the bubble. Each compute event is a bar coloured by its kind;
messages are a thin strip under the row; the gaps are drawn as hatched idle time. When a
rank holds several model chunks (interleaved schedules), each chunk wears its own pattern
and has its own legend entry ("F forward · chunk 1 (dotted)"). Steps are shown counted
from 1, as the step slider and the loss chart count them. Rows are global ranks, or, with
``rows="pp_rank"``, pipeline positions: one replica of a tensor- or data-parallel run drawn
under the prediction of its pipeline.

    python -c "from pplab import charts, simulator; from pplab.schedules import build; \
charts.gantt(simulator.simulate(build('interleaved-1f1b', 2, 4, 2))).show()"

``box_text`` writes into each compute box its microbatch, the weight version it ran with, or
both (``3·v1``): how a learner reads staleness off an asynchronous schedule.

    python -c "from pplab import charts, simulator; from pplab.schedules import build; \
charts.gantt(simulator.simulate(build('pipedream-2bw', 2, 2)), box_text='both').show()"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pplab.charts.binning import AGGREGATE_ABOVE, AGGREGATE_BINS, aggregated_traces
from pplab.charts.rows import (
    Columns,
    RowNames,
    chunks_of_table,
    idle_gaps,
    labels_of_table,
    row_name,
    several_chunks,
    stages_of_table,
)
from pplab.charts.style import (
    ALL_KINDS,
    IDLE_PATTERN,
    KIND_COLOURS,
    KIND_NAMES,
    ROW_BASE,
    ROW_WIDTH,
    STRIP_BASE,
    STRIP_KINDS,
    STRIP_WIDTH,
    TITLE_LINE_PX,
    chunk_name,
    chunk_pattern,
    fit_legend,
    hover_data,
    shared_time_scale,
    source_of,
    time_scale,
    title_lines,
)
from pplab.timeline import COMPUTE_EVENT_KINDS

BOX_TEXTS = ("microbatch", "version", "both")  # what ``box_text`` may write in a box


def box_labels(part: pd.DataFrame, box_text: str | None) -> list[str] | None:
    """The text of each box of ``part`` (compute events), or None to write none."""
    if box_text is None:
        return None
    return _box_texts(part["microbatch"].to_numpy(), part["version"].to_numpy(), box_text)


def _box_texts(microbatches: np.ndarray, versions: np.ndarray, box_text: str) -> list[str]:
    if box_text not in BOX_TEXTS:
        raise ValueError(f"box_text is one of {', '.join(BOX_TEXTS)} or None, not {box_text!r}")
    # a version of -1 is unknown (an event written without one): say nothing rather than lie
    texts = {"microbatch": lambda mb, v: f"{mb}",
             "version": lambda mb, v: f"v{v}" if v >= 0 else "",
             "both": lambda mb, v: f"{mb}·v{v}" if v >= 0 else f"{mb}"}[box_text]
    return [texts(int(mb), int(v)) for mb, v in zip(microbatches, versions, strict=True)]


def _exact_traces(table: Columns, held: dict[int, list[int]], scale: float, unit: str,
                  names: dict[int, str], box_text: str | None = None,
                  split_chunks: bool | None = None) -> list[dict]:
    """The bars of one timeline, as plain trace dicts (plotly checks them once, in the
    figure). ``split_chunks`` names every compute bar's chunk (True), none (False) or, by
    default, only where a row holds several chunks; a stack splits all its timelines alike,
    so its legend never lists "F forward" beside "F forward · chunk 0"."""
    source = source_of(table.events)
    idle = idle_gaps(table)
    traces = [_idle_trace(idle, scale, unit, source, names)] if idle else []
    chunks = chunks_of_table(table, held)
    split = (split_chunks if split_chunks is not None
             else bool(len(chunks)) and int(chunks.max()) > 0)
    for kind in ALL_KINDS:
        strip = kind in STRIP_KINDS
        of_kind = table.kind == kind
        in_chunks = split and not strip and kind in COMPUTE_EVENT_KINDS
        for chunk in sorted(set(chunks[of_kind])) if in_chunks else [None]:
            mask = of_kind if chunk is None else of_kind & (chunks == chunk)
            if mask.any():
                traces.append(_kind_trace(table, mask, kind, chunk, scale, unit, source, names,
                                          box_text if kind in COMPUTE_EVENT_KINDS else None))
    return traces


def _kind_trace(table: Columns, mask: np.ndarray, kind: str, chunk: int | None, scale: float,
                unit: str, source: str, names: dict[int, str],
                box_text: str | None = None) -> dict:
    strip = kind in STRIP_KINDS
    start = table.start[mask] * scale
    duration = (table.end[mask] - table.start[mask]) * scale
    microbatch = table.column("microbatch", mask)
    custom = hover_data(
        table.stage[mask], microbatch, start, duration, table.column("step", mask) + 1,
        table.column("peer", mask), table.column("bytes", mask),
        table.detail_text[mask],
        [names[int(r)] for r in table.row[mask]])
    extra = ("<br>peer rank %{customdata[5]} · %{customdata[6]} bytes · %{customdata[7]}"
             if strip else "")
    name, group = KIND_NAMES[kind], kind
    marker = {"color": KIND_COLOURS[kind], "line": {"width": 0.4, "color": "white"}}
    if chunk is not None:
        name, group = f"{name} · {chunk_name(chunk)}", f"{kind} chunk {chunk}"
        if chunk_pattern(chunk, KIND_COLOURS[kind]):
            marker["pattern"] = chunk_pattern(chunk, KIND_COLOURS[kind])
    text = None if box_text is None else _box_texts(microbatch, table.column("version", mask),
                                                    box_text)
    written = {} if text is None else {
        "text": text, "textposition": "inside", "insidetextanchor": "middle",
        "textangle": 0, "textfont": {"color": "white", "size": 10}, "cliponaxis": True}
    return dict(
        **written, type="bar",
        name=name, legendgroup=group, orientation="h",
        y=table.row[mask], x=duration, base=start,
        width=STRIP_WIDTH if strip else ROW_WIDTH, offset=STRIP_BASE if strip else ROW_BASE,
        marker=marker, customdata=custom,
        hovertemplate=(
            f"<b>{kind}</b> ({source})<br>%{{customdata[8]}} · stage %{{customdata[0]}} · "
            "microbatch %{customdata[1]} · step %{customdata[4]}<br>"
            f"start %{{customdata[2]:.4g}} {unit} · duration %{{customdata[3]:.4g}} {unit}"
            f"{extra}<extra></extra>"
        ),
    )


def _idle_trace(idle: list[tuple], scale: float, unit: str, source: str,
                names: dict[int, str]) -> dict:
    rows, starts, ends = (np.array(column) for column in zip(*idle, strict=True))
    start = starts * scale
    duration = (ends - starts) * scale
    return dict(
        type="bar", name=KIND_NAMES["idle"], legendgroup="idle", orientation="h",
        y=rows, x=duration, base=start, width=ROW_WIDTH, offset=ROW_BASE,
        marker={"color": KIND_COLOURS["idle"], "pattern": IDLE_PATTERN},
        customdata=hover_data(start, duration, [names[int(r)] for r in rows]),
        hovertemplate=(
            f"<b>idle</b> ({source})<br>%{{customdata[2]}}<br>from %{{customdata[0]:.4g}} "
            + unit + " for %{customdata[1]:.4g} " + unit + "<extra></extra>"
        ),
    )


def _gantt_parts(events: pd.DataFrame, scaled: tuple[float, str], aggregate_above: int,
                 bins: int, row_names: RowNames | None = None, box_text: str | None = None,
                 rows: str = "rank", split_chunks: bool | None = None
                 ) -> tuple[list[dict], dict]:
    """One timeline's bars (trace dicts) and its y axis (the rows' tick labels)."""
    scale, unit = scaled
    table = Columns(events, rows)
    held = stages_of_table(table)
    labels = labels_of_table(table, held, row_names)
    if len(events) > aggregate_above:
        traces = aggregated_traces(events, scale, unit, bins, rows)
    else:
        names = {key: (row_names or {}).get(key, row_name(key, rows)) for key in labels}
        traces = _exact_traces(table, held, scale, unit, names, box_text, split_chunks)
    axis = {"tickmode": "array", "tickvals": list(labels), "ticktext": list(labels.values()),
            "autorange": "reversed", "zeroline": False}
    return traces, axis


def gantt(
    events: pd.DataFrame,
    title: str | None = None,
    unit: str | None = None,
    aggregate_above: int = AGGREGATE_ABOVE,
    bins: int = AGGREGATE_BINS,
    row_names: RowNames | None = None,
    box_text: str | None = None,
    rows: str = "rank",
) -> go.Figure:
    """The timeline as a Gantt chart: one row per rank, one colour per kind, idle shaded.

    ``unit`` names what event times are in ("s" or "cost units"); by default it follows the
    events' source. ``rows`` is the column that picks an event's row: "rank" (the global
    rank) or "pp_rank" (the pipeline position, for one replica of a tp/dp run).
    ``row_names`` replaces "rank r" in the row labels (e.g. "pp 1 (rank 2)" for a pipeline
    position). Above ``aggregate_above`` events the rows are drawn aggregated
    (see ``pplab.charts.binning``) so the browser stays responsive, without box text.
    ``box_text`` ("microbatch", "version" or "both") writes that into every compute box;
    a box too narrow for its text shows none (hover still tells).
    """
    box_labels(events.iloc[:0], box_text)  # a bad value is refused, drawn or not
    scaled = time_scale(events, unit)
    layout: dict = {}
    traces: list[dict] = []
    if events.empty:
        layout["annotations"] = [{"text": "no events", "showarrow": False}]
    else:
        traces, layout["yaxis"] = _gantt_parts(events, scaled, aggregate_above, bins,
                                               row_names, box_text, rows)
    source = source_of(events)
    heading = title or f"{source.capitalize()} timeline"
    if len(events) > aggregate_above:
        heading += f" (aggregated: {len(events):,} events)"
    count = int(events[rows].nunique()) if len(events) else 1
    margin = {"l": 10, "r": 10, "t": 36 + TITLE_LINE_PX * title_lines(heading), "b": 40}
    # one figure made at once from plain dicts: added trace by trace, plotly re-checks the
    # layout each time, and a trace made as an object is checked and copied again
    return go.Figure(data=traces, layout=layout | dict(
        title=heading, barmode="overlay",
        height=fit_legend(traces, 80 + margin["t"] + 44 * count, margin),
        xaxis_title=f"time ({scaled[1]}, {source})",
        legend={"orientation": "v", "yanchor": "top", "y": 1, "x": 1.01, "tracegroupgap": 2},
        margin=margin,
        uniformtext={"mode": "hide", "minsize": 8},
    ))


def gantt_stack(
    timelines: Sequence[tuple[str, pd.DataFrame]],
    units: Sequence[str | None] | None = None,
    title: str = "Timelines",
    aggregate_above: int = AGGREGATE_ABOVE,
    bins: int = AGGREGATE_BINS,
    row_names: Sequence[RowNames | None] | None = None,
    box_text: str | None = None,
    rows: str = "rank",
) -> go.Figure:
    """Several timelines stacked on one figure, all in one time unit on one shared axis.

    Used for Compare (two to four configurations) and for predicted-over-measured. Cost
    units and seconds have no one unit (calibrate the predictions first, see
    ``pplab.calibration.run_prediction``); given both, each row gets its own axis and the title
    says so.
    ``box_text`` and ``rows`` are as for ``gantt``: with ``rows="pp_rank"`` a prediction and
    one replica of the measured run line up row by row.
    """
    box_labels(timelines[0][1].iloc[:0] if timelines else pd.DataFrame(
        columns=["microbatch", "version"]), box_text)
    if not timelines:
        raise ValueError("gantt_stack needs at least one timeline, got none")
    units = list(units) if units is not None else [None] * len(timelines)
    if len(units) != len(timelines):
        raise ValueError(f"gantt_stack got {len(timelines)} timelines but {len(units)} units")
    row_names = list(row_names) if row_names is not None else [None] * len(timelines)
    view = shared_time_scale([events for _, events in timelines], units)
    scales = [view or time_scale(events, unit)
              for (_, events), unit in zip(timelines, units, strict=True)]
    heights = [max(1, int(ev[rows].nunique())) if len(ev) else 1 for _, ev in timelines]
    margin = {"l": 10, "r": 10, "t": 56 + TITLE_LINE_PX * title_lines(title), "b": 40}
    # Each subplot's title sits in the gap above it, clear of the strip under the last row of
    # the subplot before: the gap is held in pixels, whatever the figure's height.
    gap_px = 56 if view is not None else 90  # without a shared axis, each row has its ticks
    plot_px = 44 * sum(heights) + gap_px * (len(heights) - 1)
    split = any(several_chunks(ev, rows) for _, ev in timelines
                if 0 < len(ev) <= aggregate_above)
    figure = make_subplots(
        rows=len(timelines), cols=1, shared_xaxes=view is not None,
        vertical_spacing=gap_px / plot_px if len(heights) > 1 else 0.0,
        row_heights=heights, subplot_titles=[
            f"{label} ({source_of(ev)}, {unit}"
            + (f"; aggregated: {len(ev):,} events)" if len(ev) > aggregate_above else ")")
            for (label, ev), (_, unit) in zip(timelines, scales, strict=True)
        ],
    )
    in_legend: set[str] = set()
    drawn: list[dict] = []
    for row, (_, events) in enumerate(timelines, start=1):
        if events.empty:
            figure.add_annotation(text="no events", showarrow=False, row=row, col=1)
        else:
            traces, axis = _gantt_parts(events, scales[row - 1], aggregate_above, bins,
                                        row_names[row - 1], box_text, rows, split)
            for trace in traces:  # one legend entry per kind across the stacked rows
                trace["showlegend"] = trace["legendgroup"] not in in_legend
                in_legend.add(trace["legendgroup"])
            figure.add_traces(traces, rows=row, cols=1)
            drawn += traces
            figure.update_yaxes(**axis, row=row, col=1)
        if view is None or row == len(timelines):
            figure.update_xaxes(title_text=f"time ({scales[row - 1][1]})", row=row, col=1)
    note = "" if view is not None else " (units differ: each row has its own time axis)"
    figure.update_layout(
        title=title + note, barmode="overlay",
        height=fit_legend(drawn, margin["t"] + margin["b"] + 40 + plot_px, margin),
        legend={"orientation": "v", "yanchor": "top", "y": 1, "x": 1.01, "tracegroupgap": 2},
        margin=margin,
        uniformtext={"mode": "hide", "minsize": 8},
    )
    return figure
