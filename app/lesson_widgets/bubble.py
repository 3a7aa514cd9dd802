"""Lesson 1's widget: a GPipe or 1F1B step simulated at p and m, its bubble beside the formula,
and where the idle time sits (at the two ends, or in the middle of each rank's row)."""

from __future__ import annotations

import streamlit as st

from app.lesson_widgets.reading import choice, number, whole
from pplab import charts
from pplab.formulas.pipeline import bubble_fraction
from pplab.schedules import COMPUTE_KINDS, build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics
from pplab.timeline.labels import fraction_text

DEFAULTS = {"schedule": "gpipe", "p": "4", "m": "8", "backward": "2"}
SCHEDULES = ("gpipe", "1f1b")


def idle_at_ends_and_middle(events) -> tuple[float, float]:
    """Idle rank-time before each rank's first and after its last computation (the ends), and
    between them (the middle), summed over ranks."""
    computing = events[events["kind"].isin(COMPUTE_KINDS)]
    step_end = float(computing["end"].max())
    ends = middle = 0.0
    for _, row in computing.groupby("rank"):
        first, last = float(row["start"].min()), float(row["end"].max())
        busy = float((row["end"] - row["start"]).sum())
        ends += first + (step_end - last)
        middle += (last - first) - busy
    return ends, middle


def show(config: dict[str, str]) -> dict[str, str]:
    left, mid, right, far = st.columns(4)
    schedule = left.radio("Schedule", SCHEDULES, horizontal=True, key="l01_schedule",
                          index=SCHEDULES.index(choice(config, DEFAULTS, "schedule", SCHEDULES)))
    p = mid.slider("Pipeline depth p", 2, 16, whole(config, DEFAULTS, "p", 2, 16), key="l01_p")
    m = right.slider("Microbatches m", 1, 64, whole(config, DEFAULTS, "m", 1, 64), key="l01_m")
    backward = far.slider("Backward cost t_B (t_F = 1)", 0.5, 4.0,
                          number(config, DEFAULTS, "backward", 0.5, 4.0), step=0.5,
                          key="l01_backward")
    events = simulate(build(schedule, p, m), CostModel(forward=1.0, backward=backward))
    simulated = float(metrics(events)["bubble_fraction"])
    ends, middle = idle_at_ends_and_middle(events)
    cols = st.columns(3)
    cols[0].metric("Bubble (simulated)", fraction_text(simulated),
                   help="Idle rank-time over ranks x makespan.")
    cols[1].metric("(p-1)/(m+p-1)", fraction_text(bubble_fraction(schedule, p, m)),
                   help="The lesson's formula, same normalisation.")
    total = ends + middle
    cols[2].metric("Idle time in the middle", f"{middle / total:.0%}" if total else "none",
                   help="Share of all idle rank-time that sits between a rank's first and "
                        "last computation rather than before or after them.")
    st.plotly_chart(charts.gantt(events, title=f"Predicted timeline: {schedule} p={p} m={m} "
                                               f"(cost units, t_F = 1)"), key="l01_gantt")
    return {"schedule": schedule, "p": str(p), "m": str(m), "backward": f"{backward:g}"}
