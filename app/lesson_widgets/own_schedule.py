"""Lesson 4's widget: a built-in schedule written out in the action language the learner's
functions return, rank by rank, and the timeline the simulator gives it."""

from __future__ import annotations

import streamlit as st

from app.lesson_widgets.reading import choice, whole
from app.text_blocks import text_block
from pplab import charts
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate

DEFAULTS = {"schedule": "1f1b", "p": "3", "m": "4"}
SCHEDULES = ("gpipe", "1f1b", "zb-h1")


def show(config: dict[str, str]) -> dict[str, str]:
    cols = st.columns(3)
    schedule = cols[0].radio("Schedule", SCHEDULES, horizontal=True, key="l04_schedule",
                             index=SCHEDULES.index(choice(config, DEFAULTS, "schedule",
                                                          SCHEDULES)))
    p = cols[1].slider("Pipeline depth p", 2, 8, whole(config, DEFAULTS, "p", 2, 8), key="l04_p")
    m = cols[2].slider("Microbatches m", 1, 12, whole(config, DEFAULTS, "m", 1, 12), key="l04_m")
    built = build(schedule, p, m)
    text_block(built.pretty())
    st.plotly_chart(charts.gantt(simulate(built, CostModel()),
                                 title=f"Predicted timeline of {schedule} p={p} m={m} "
                                       "(cost units)"), key="l04_gantt")
    return {"schedule": schedule, "p": str(p), "m": str(m)}
