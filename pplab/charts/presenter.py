"""The presenter's Gantt: one step played forward in time, for a projector.

Boxes are numbered by microbatch as in the papers' figures (GPipe's Fig. 2, 1F1B's in
Narayanan et al. 2021), in large type; each frame shows the step as it stands at one moment
(``pplab.teaching.presenter.boxes_at``); the play, pause and scrub controls are Plotly's own, so the
animation runs in the browser without a round trip to the server. In every frame the boxes
that start next are joined by a line to the box they wait on, and the critical path is drawn
with a heavy outline.

    python -c "from pplab.charts.presenter import presenter_gantt; from pplab.schedules import \
build; from pplab.sim.simulator import simulate; presenter_gantt(simulate(build('gpipe', 4,
4))).show()"
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from pplab.charts.style import KIND_COLOURS, KIND_NAMES, ROW_BASE, ROW_WIDTH
from pplab.schedules.actions import ActionKind
from pplab.teaching.presenter import Walk, boxes_at, frame_times, walk

FONT_SIZE = 22
CRITICAL_OUTLINE = "#111111"
# A projector shows about 720 px: the title, the legend, the rows and the slider fit in
# FIT_PX, each row shrinking from ROW_PX down to MIN_ROW_PX to hold a deep pipeline in it.
FIT_PX, ROW_PX, MIN_ROW_PX = 590, 80, 40
TOP_PX, BOTTOM_PX = 120, 150  # title and legend above the rows; axis, slider, buttons below


def moment_text(moment: float, spacing: float) -> str:
    """A frame's moment rounded to what tells it from the next (``spacing`` apart): 7.6, not
    7.615."""
    decimals = max(0, -math.floor(math.log10(spacing))) if spacing > 0 else 0
    return f"{moment:.{decimals}f}"


def _box_traces(shown, critical: set[int], kinds) -> list[go.Bar]:
    traces = []
    for kind in kinds:
        part = shown[shown["kind"] == kind]
        outline = [4 if i in critical else 0.5 for i in part.index]
        traces.append(go.Bar(
            name=KIND_NAMES.get(kind, kind), orientation="h", base=part["start"],
            x=part["end"] - part["start"], y=part["rank"] + ROW_BASE + ROW_WIDTH / 2,
            width=ROW_WIDTH, marker={"color": KIND_COLOURS.get(kind, "#888888"),
                                     "line": {"color": CRITICAL_OUTLINE, "width": outline}},
            text=[str(int(mb)) for mb in part["microbatch"]], textposition="inside",
            insidetextanchor="middle", textfont={"size": FONT_SIZE, "color": "white"},
            hovertemplate="rank %{customdata[0]} %{customdata[1]}%{customdata[2]}: "
                          "%{base:.3g} to %{customdata[3]:.3g}<extra></extra>",
            customdata=list(zip(part["rank"], part["kind"], part["microbatch"], part["end"],
                                strict=True)),
            showlegend=True))
    return traces


def _waits_trace(found: Walk, moment: float, previous: float) -> go.Scatter:
    """Lines from each box that started in (previous, moment] back to the box it waited on."""
    xs, ys = [], []
    boxes = found.boxes
    for index in boxes.index[(boxes["start"] > previous) & (boxes["start"] <= moment)]:
        source = found.waited_on[index]
        if source < 0 or boxes.at[source, "rank"] == boxes.at[index, "rank"]:
            continue  # the same rank's previous box is just "the one before"
        xs += [boxes.at[source, "end"], boxes.at[index, "start"], None]
        ys += [boxes.at[source, "rank"], boxes.at[index, "rank"], None]
    return go.Scatter(x=xs, y=ys, mode="lines+markers", name="waited on",
                      line={"color": "#D62728", "width": 4}, marker={"size": 10},
                      hoverinfo="skip", showlegend=True)


def presenter_gantt(events, frames: int = 40, title: str = "", critical_path: bool = True,
                    unit: str = "cost units", subtitle: str = "") -> go.Figure:
    """A Figure with ``frames`` frames of the step; the first frame is the finished step.
    ``subtitle`` is a smaller line under the title (how the step was made)."""
    found = walk(events)
    critical = set(found.critical) if critical_path else set()
    kinds = [k for k in ActionKind if (found.boxes["kind"] == k).any()]
    moments = frame_times(events, frames)
    animation = []
    for number, moment in enumerate(moments):
        shown = boxes_at(events, float(moment))
        before = float(moments[number - 1]) if number else float("-inf")
        animation.append(go.Frame(
            name=f"{moment:.4g}",
            data=[*_box_traces(shown, critical, kinds), _waits_trace(found, moment, before)]))
    last = animation[-1]
    figure = go.Figure(data=last.data, frames=animation)
    ranks = sorted(int(r) for r in found.boxes["rank"].unique())
    spacing = float(moments[-1] - moments[0]) / max(1, len(moments) - 1)
    steps = [{"method": "animate", "label": moment_text(float(moment), spacing),
              "args": [[frame.name], {"mode": "immediate", "frame": {"duration": 0},
                                      "transition": {"duration": 0}}]}
             for frame, moment in zip(animation, moments, strict=True)]
    row = min(ROW_PX, max(MIN_ROW_PX, (FIT_PX - TOP_PX - BOTTOM_PX) // max(1, len(ranks))))
    # Title, then the legend, above the rows; the axis, then Play/Pause beside the slider,
    # below them: nothing is drawn over anything else at 1280 px wide. The slider's ticks
    # carry no labels (forty of them ran into each other and into the legend): the moment
    # shown is written above it, rounded, and the axis gives the scale.
    figure.update_layout(
        title={"text": title, "font": {"size": FONT_SIZE + 4}, "x": 0, "xanchor": "left",
               "xref": "paper", "y": 1, "yref": "container", "yanchor": "top",
               "pad": {"t": 8}, "subtitle": {"text": subtitle,
                                             "font": {"size": FONT_SIZE - 6}}},
        barmode="overlay", font={"size": FONT_SIZE},
        height=TOP_PX + BOTTOM_PX + row * len(ranks),
        margin={"t": TOP_PX, "b": BOTTOM_PX, "l": 10, "r": 10},
        # the axes' type named too: Streamlit's chart theme sets small ones of its own
        xaxis={"title": {"text": f"time ({unit})", "standoff": 4,
                         "font": {"size": FONT_SIZE - 4}},
               "tickfont": {"size": FONT_SIZE - 4},
               "range": [float(moments[0]), float(moments[-1])]},
        yaxis={"tickvals": ranks, "ticktext": [f"rank {r}" for r in ranks],
               "tickfont": {"size": FONT_SIZE - 2}, "autorange": "reversed"},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom",
                "font": {"size": FONT_SIZE - 4}},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0, "xanchor": "left",
                      "y": 0, "yanchor": "top", "pad": {"t": 78},
                      "font": {"size": FONT_SIZE - 4},
                      "buttons": [
                          {"label": "Play", "method": "animate",
                           "args": [None, {"frame": {"duration": 250, "redraw": True},
                                           "fromcurrent": True, "transition": {"duration": 0}}]},
                          {"label": "Pause", "method": "animate",
                           "args": [[None], {"mode": "immediate", "frame": {"duration": 0}}]}]}],
        sliders=[{"active": len(steps) - 1, "steps": steps, "x": 0.2, "len": 0.8,
                  "xanchor": "left", "y": 0, "yanchor": "top", "pad": {"t": 52, "b": 0},
                  "font": {"size": 1, "color": "rgba(0, 0, 0, 0)"},
                  "currentvalue": {"prefix": "t = ", "suffix": f" {unit}",
                                   "font": {"size": FONT_SIZE - 4, "color": "#31333F"}}}])
    return figure
