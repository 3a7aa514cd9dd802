"""Weight versions held over time: what weight stashing costs in memory, stage by stage.

A stage holds its live weights, plus every older version a microbatch still needs. Read off
an Event table (simulated or measured), version v of a stage is held from the update that
made it (the start of the run for version 0) until both the next update has replaced it and
the last backward that ran on it has ended. PipeDream's stage s of p peaks at p - s
versions, PipeDream-2BW's at two on every stage; a synchronous schedule holds one. The peak
of each curve is what the engine records as ``max_live_weight_versions`` in meta.json.

    python -c "from pplab.charts.versions import live_versions; from pplab import simulator; \
from pplab.schedules import build; s = build('pipedream', 4, 4); \
live_versions(simulator.simulate(s), s.update_every).show()"
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from pplab.charts.style import source_of, time_scale
from pplab.schedules import BACKWARD_WEIGHT, FORWARD, FULL_BACKWARD
from pplab.timeline import EventKind

_RELEASES = (FULL_BACKWARD, BACKWARD_WEIGHT)


def _update_times(mine: pd.DataFrame, update_every: int) -> list[float]:
    """When each update of one stage replaced its weights: its optimizer events if there
    are any, else the end of every ``update_every``-th backward (free optimizer steps)."""
    optim = mine[mine["kind"] == EventKind.OPTIM]
    if len(optim):
        return sorted(float(t) for t in optim["end"])
    ends = sorted(float(t) for t in mine.loc[mine["kind"].isin(_RELEASES), "end"])
    return ends[update_every - 1::update_every]


def versions_over_time(events: pd.DataFrame, update_every: int | None) -> pd.DataFrame:
    """Columns stage, time, held: the weight versions each stage holds from ``time`` on.

    ``update_every`` is the schedule's (``Schedule.update_every``; meta.json's
    ``schedule.update_every``): backwards per update, None for a synchronous schedule, which
    holds one version throughout.
    """
    rows: list[tuple[int, float, int]] = []
    if events.empty:
        return pd.DataFrame(rows, columns=["stage", "time", "held"])
    origin, finish = float(events["start"].min()), float(events["end"].max())
    compute = events[events["stage"] >= 0]
    for stage in sorted(int(s) for s in compute["stage"].unique()):
        mine = compute[compute["stage"] == stage]
        if update_every is None:
            rows += [(stage, origin, 1), (stage, finish, 1)]
            continue
        made = [origin, *_update_times(mine, int(update_every))]
        used = mine[mine["kind"].isin((FORWARD, *_RELEASES)) & (mine["version"] >= 0)]
        last_use = used.groupby("version")["end"].max()
        changes: list[tuple[float, int]] = []
        for version, start in enumerate(made):
            replaced = made[version + 1] if version + 1 < len(made) else finish
            end = max(replaced, float(last_use.get(version, replaced)))
            if end > start:  # the last update's version may be made as the run ends
                changes += [(start, 1), (end, -1)]
        held = 0
        for time, change in sorted(changes, key=lambda c: (c[0], c[1])):  # drops first
            held += change
            rows.append((stage, time, held))
    return pd.DataFrame(rows, columns=["stage", "time", "held"])


def peak_versions(events: pd.DataFrame, update_every: int | None) -> dict[int, int]:
    """The most versions each stage holds at once, read off the events."""
    table = versions_over_time(events, update_every)
    return {int(stage): int(part["held"].max()) for stage, part in table.groupby("stage")}


def live_versions(events: pd.DataFrame, update_every: int | None, title: str | None = None,
                  unit: str | None = None) -> go.Figure:
    """One step line per stage: how many weight versions it holds over time."""
    table = versions_over_time(events, update_every)
    scale, shown_unit = time_scale(events, unit)
    source = source_of(events)
    figure = go.Figure()
    for stage, part in table.groupby("stage"):
        figure.add_trace(go.Scatter(
            x=part["time"] * scale, y=part["held"], name=f"stage {stage}", mode="lines",
            line_shape="hv",
            hovertemplate=f"stage {stage}: %{{y}} versions from %{{x:.4g}} {shown_unit}"
                          "<extra></extra>"))
    figure.update_layout(
        title=title or f"Weight versions held per stage ({source})",
        xaxis_title=f"time ({shown_unit}, {source})",
        yaxis_title="weight versions held (count, live weights included)",
        yaxis={"dtick": 1, "rangemode": "tozero"}, height=320,
        margin={"l": 10, "r": 10, "t": 60, "b": 40})
    return figure
