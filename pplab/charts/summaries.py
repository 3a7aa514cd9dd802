"""The small charts beside a timeline: activations held, time per rank, loss, memory.

Each one names its unit and whether its numbers were predicted or measured. Steps are
counted from 1, as the step slider and the Gantt's hover count them.

    python -c "from pplab import charts; charts.loss_curves({'run': [2.7, 2.1, 1.5]}).show()"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from ..schedules import FORWARD
from .style import KIND_COLOURS


def peak_activations(peaks: Mapping[int, int | float], source: str = "predicted") -> go.Figure:
    """Microbatches whose activations a stage holds at its worst moment, one bar per stage."""
    stages = sorted(int(s) for s in peaks)
    figure = go.Figure(go.Bar(
        x=[f"stage {s}" for s in stages], y=[peaks[s] for s in stages],
        marker_color=KIND_COLOURS[FORWARD],
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
    for part, colour in (("busy", KIND_COLOURS[FORWARD]), ("comm", KIND_COLOURS["send"]),
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
    """One line per run: training loss after each step, steps counted from 1."""
    figure = go.Figure()
    for label, values in losses.items():
        if len(values):
            figure.add_trace(go.Scatter(
                name=label, x=list(range(1, len(values) + 1)), y=list(values),
                mode="lines+markers" if len(values) <= 50 else "lines",
                hovertemplate=f"{label}<br>step %{{x}}: loss %{{y:.4f}}<extra></extra>",
            ))
    figure.update_layout(
        title=title, height=320, xaxis_title="step (counted from 1)",
        yaxis_title="loss (cross-entropy, nats)",
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
