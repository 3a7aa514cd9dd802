"""Lesson 11's widget: one step of a zero-bubble schedule, then several with a barrier before
each optimizer step, then several under post-validation, on one time axis, with the first
step's bubble and the steady state's per step."""

from __future__ import annotations

import streamlit as st

from app.lesson_widgets.reading import choice, number, whole
from pplab import charts
from pplab.schedules import build
from pplab.schedules.steps import repeat_steps
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline.labels import fraction_text
from pplab.timeline.steady_state import steady_state

SCHEDULES = ("zb-h2", "zb-h1", "1f1b")
DEFAULTS = {"schedule": "zb-h2", "p": "4", "m": "8", "steps": "3", "t_f": "1", "t_i": "1",
            "t_w": "1"}


def show(config: dict[str, str]) -> dict[str, str]:
    cols = st.columns(7)
    name = cols[0].selectbox("Schedule", SCHEDULES, key="l11_schedule",
                             index=SCHEDULES.index(choice(config, DEFAULTS, "schedule",
                                                          SCHEDULES)))
    p = cols[1].slider("Pipeline depth p", 2, 8, whole(config, DEFAULTS, "p", 2, 8),
                       key="l11_p")
    m = cols[2].slider("Microbatches m", 1, 24, whole(config, DEFAULTS, "m", 1, 24),
                       key="l11_m")
    steps = cols[3].slider("Steps", 2, 5, whole(config, DEFAULTS, "steps", 2, 5), key="l11_steps")
    costs = {key: cols[i + 4].slider(label, 0.5, 3.0, number(config, DEFAULTS, key, 0.5, 3.0),
                                     step=0.5, key=f"l11_{key}")
             for i, (key, label) in enumerate((("t_f", "t_F"), ("t_i", "t_I"), ("t_w", "t_W")))}
    cost = CostModel(forward=costs["t_f"], backward=costs["t_i"] + costs["t_w"],
                     backward_input=costs["t_i"], backward_weight=costs["t_w"])
    try:
        one = build(name, p, m)
    except ValueError as error:
        st.error(f"Cannot build this schedule: {str(error).splitlines()[0]}")
        return _shown(name, p, m, steps, costs)
    several = repeat_steps(one, steps)
    timelines = [("one step", simulate(one, cost))]
    shown = st.columns(2)
    for column, sync in zip(shown, ("barrier", "post"), strict=True):
        events = simulate(several, cost, optimizer_sync=sync)
        timelines.append((f"{steps} steps, {sync}", events))
        state = steady_state(events, range(p))
        column.metric(f"{sync}: bubble per step in the steady state (predicted)",
                      fraction_text(state["steady_state"]["bubble_fraction"]),
                      help=f"One step every {state['steady_state']['step_time']:.4g} cost "
                           f"units; the first step alone: "
                           f"{fraction_text(state['first_step']['bubble_fraction'])}.")
    st.plotly_chart(charts.gantt_stack(timelines, title=f"{name} p={p} m={m}: one step, then "
                                       f"{steps} with a barrier, then {steps} under "
                                       f"post-validation (predicted, cost units)"),
                    key="l11_gantt")
    return _shown(name, p, m, steps, costs)


def _shown(name: str, p: int, m: int, steps: int, costs: dict[str, float]) -> dict[str, str]:
    return ({"schedule": name, "p": str(p), "m": str(m), "steps": str(steps)}
            | {k: f"{v:g}" for k, v in costs.items()})
