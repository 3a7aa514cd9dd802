"""The small charts beside a timeline: activations held, time per rank, loss, memory.

Each one names its unit and whether its numbers were predicted or measured. Steps are
counted from 1, as the step slider and the Gantt's hover count them.

    python -c "from pplab import charts; charts.loss_curves({'run': [2.7, 2.1, 1.5]}).show()"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from pplab.charts.style import KIND_COLOURS
from pplab.schedules import FORWARD
from pplab.timeline import EventKind


def peak_activations(peaks: Mapping[int, int | float], source: str = "predicted") -> go.Figure:
    """Microbatches whose activations a stage holds at its worst moment, one bar per stage."""
    stages = sorted(int(s) for s in peaks)
    # made at once: plotly checks a figure's layout again on every later update
    return go.Figure(go.Bar(
        x=[f"stage {s}" for s in stages], y=[peaks[s] for s in stages],
        marker_color=KIND_COLOURS[FORWARD],
        hovertemplate="%{x}: %{y} microbatches of activations held<extra></extra>",
    ), layout={"title": f"Peak activations per stage ({source})", "height": 300,
               "yaxis_title": "microbatches held (count)",
               "margin": {"l": 10, "r": 10, "t": 50, "b": 30}})


def rank_utilisation(per_rank: Mapping[int, Mapping[str, float]], unit: str,
                     source: str = "predicted") -> go.Figure:
    """Busy, communication and idle time of each rank as stacked bars."""
    ranks = sorted(int(r) for r in per_rank)
    return go.Figure([go.Bar(
        name=part, x=[f"rank {r}" for r in ranks],
        y=[float(per_rank[r].get(part, 0.0)) for r in ranks], marker_color=colour,
        hovertemplate=f"%{{x}} {part}: %{{y:.4g}} {unit}<extra></extra>",
    ) for part, colour in (("busy", KIND_COLOURS[FORWARD]), ("comm", KIND_COLOURS[EventKind.SEND]),
                           ("idle", "#BBBBBB"))],
        layout={"title": f"Time per rank ({source})", "barmode": "stack", "height": 300,
                "yaxis_title": f"time ({unit})", "margin": {"l": 10, "r": 10, "t": 50, "b": 30}})


LOSS_DIGITS = 4  # the digits a loss is printed with: curves that agree to them coincide


def coinciding(losses: Mapping[str, Sequence[float]]) -> list[list[str]]:
    """Groups of two or more runs whose loss curves agree at every step to ``LOSS_DIGITS``
    decimals: drawn on one another, only the last of each group shows."""
    groups: list[list[str]] = []
    for label, values in losses.items():
        for group in groups:
            first = losses[group[0]]
            if len(first) == len(values) and all(
                    abs(a - b) < 0.5 * 10 ** -LOSS_DIGITS for a, b in zip(first, values,
                                                                          strict=True)):
                group.append(label)
                break
        else:
            if len(values):
                groups.append([label])
    return [group for group in groups if len(group) > 1]


def loss_curves(losses: Mapping[str, Sequence[float]], title: str = "Loss (measured)") -> go.Figure:
    """One line per run: training loss after each step, steps counted from 1. A curve that
    another drawn before it covers is dashed and says so in the legend ("= #1 gpipe")."""
    covered = {label: group[0] for group in coinciding(losses) for label in group[1:]}
    lines = [go.Scatter(
        name=label if label not in covered else f"{label} (= {covered[label]})",
        x=list(range(1, len(values) + 1)), y=list(values),
        mode="lines+markers" if len(values) <= 50 else "lines",
        line={"dash": "dash"} if label in covered else None,
        hovertemplate=f"{label}<br>step %{{x}}: loss %{{y:.4f}}<extra></extra>",
    ) for label, values in losses.items() if len(values)]
    return go.Figure(lines, layout={
        "title": title, "height": 320, "xaxis_title": "step (counted from 1)",
        "yaxis_title": "loss (cross-entropy, nats)",
        "margin": {"l": 10, "r": 10, "t": 50, "b": 40}})


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


# The parts of one GPU's memory, bottom to top, with their colours: the model states first
# (fixed by the layout), then the activations (what the schedule and recomputation change).
MEMORY_PARTS = (("weights", "weights", "#4C78A8"), ("gradients", "gradients", "#72B7B2"),
                ("optimizer", "optimizer states", "#B279A2"),
                ("activations", "activations", "#F58518"))


def memory_breakdown(stages: Sequence[Mapping[str, float]], limit_bytes: float,
                     source: str = "predicted") -> go.Figure:
    """Stacked bars of each pipeline rank's memory per GPU in GiB, a line at the GPU's limit.

    ``stages`` are one mapping per rank with ``rank`` and the bytes of each part
    (``weights``, ``gradients``, ``optimizer``, ``activations``), as the planner's
    ``StageMemory.as_dict()`` gives them.
    """
    gib = float(2**30)
    names = [f"rank {int(stage['rank'])}" for stage in stages]
    figure = go.Figure()
    for part, label, colour in MEMORY_PARTS:
        figure.add_trace(go.Bar(
            name=label, x=names, y=[float(stage[part]) / gib for stage in stages],
            marker_color=colour,
            hovertemplate=f"%{{x}} {label}: %{{y:.2f}} GiB<extra></extra>"))
    limit = limit_bytes / gib
    figure.add_hline(y=limit, line={"color": "#D62728", "dash": "dash", "width": 2},
                     annotation_text=f"GPU limit {limit:g} GiB", annotation_position="top left")
    tallest = max((sum(float(stage[part]) for part, _, _ in MEMORY_PARTS) for stage in stages),
                  default=0.0) / gib
    figure.update_layout(
        title=f"Memory per GPU by pipeline rank ({source})", barmode="stack", height=340,
        yaxis_title="memory per GPU (GiB)", yaxis_range=[0, 1.08 * max(tallest, limit)],
        margin={"l": 10, "r": 10, "t": 50, "b": 30},
    )
    return figure


def figure_points(figure: go.Figure) -> int:
    """How many bars or markers a figure asks the browser to draw."""
    return sum(len(trace.x) if trace.x is not None else 0 for trace in figure.data)
