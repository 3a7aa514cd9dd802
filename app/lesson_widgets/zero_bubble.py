"""Lesson 3's widget: 1F1B and ZB-H1 simulated one above the other at the learner's costs, the
backward split into input gradient I and weight gradient W, with both bubbles."""

from __future__ import annotations

import streamlit as st

from app.lesson_widgets.reading import number, whole
from pplab import charts
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics
from pplab.timeline.labels import fraction_text

DEFAULTS = {"p": "4", "m": "8", "t_f": "1", "t_i": "1", "t_w": "1"}


def show(config: dict[str, str]) -> dict[str, str]:
    cols = st.columns(5)
    p = cols[0].slider("Pipeline depth p", 2, 12, whole(config, DEFAULTS, "p", 2, 12), key="l03_p")
    m = cols[1].slider("Microbatches m", 1, 48, whole(config, DEFAULTS, "m", 1, 48),
                       key="l03_m")
    costs = {name: cols[i + 2].slider(label, 0.5, 3.0, number(config, DEFAULTS, name, 0.5, 3.0),
                                      step=0.5, key=f"l03_{name}")
             for i, (name, label) in enumerate((("t_f", "t_F"), ("t_i", "t_I"), ("t_w", "t_W")))}
    cost = CostModel(forward=costs["t_f"], backward=costs["t_i"] + costs["t_w"],
                     backward_input=costs["t_i"], backward_weight=costs["t_w"])
    timelines = [(name, simulate(build(name, p, m), cost)) for name in ("1f1b", "zb-h1")]
    shown = st.columns(2)
    for column, (name, events) in zip(shown, timelines, strict=True):
        found = metrics(events)
        column.metric(f"{name} bubble (simulated)", fraction_text(float(found["bubble_fraction"])),
                      help="Idle rank-time over ranks x makespan.")
    st.plotly_chart(charts.gantt_stack(timelines, title="Predicted timelines (cost units): "
                                       "1F1B above, ZB-H1 below"), key="l03_gantt")
    return {"p": str(p), "m": str(m)} | {k: f"{v:g}" for k, v in costs.items()}
