"""Lesson 7's widget: PipeDream or PipeDream-2BW simulated with the weight version written in
every box, the versions each stage holds over time, each stage's delay, and the bundled fair
comparison (loss at equal optimizer updates, measured) at the learning rate picked."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.lesson_widgets.reading import choice, whole
from pplab import charts
from pplab.charts.versions import live_versions
from pplab.schedules import build, weight_versions
from pplab.schedules.pipedream import gradient_delays, versions_held
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.teaching import staleness
from pplab.timeline import metrics

FAMILIES = ("pipedream", "pipedream-2bw")
DEFAULTS = {"schedule": "pipedream-2bw", "p": "4", "m": "4", "steps": "3", "lr": "0.001"}
COST = CostModel(forward=1, backward=2)  # the lessons' cost units


def _read(config: dict[str, str]) -> tuple[str, int, int, int]:
    name = choice(config, DEFAULTS, "schedule", FAMILIES)
    p = whole(config, DEFAULTS, "p", 2, 8)
    m = whole(config, DEFAULTS, "m", 1, 16)
    steps = whole(config, DEFAULTS, "steps", 1, 4)
    if name == "pipedream-2bw" and m < p:
        st.caption(f"PipeDream-2BW needs at least as many microbatches per step as stages "
                   f"(m = {m} < p = {p}); showing m = {p}.")
        m = p
    return name, p, m, steps


def _stage_table(schedule) -> pd.DataFrame:
    versions, delays, held = weight_versions(schedule), gradient_delays(schedule), \
        versions_held(schedule)
    total = schedule.total_microbatches
    return pd.DataFrame([{
        "stage": s,
        "version of microbatches 0, 1, 2, ...": " ".join(
            str(versions[(s, mb)]) for mb in range(min(total, 12))) + (" ..." if total > 12
                                                                          else ""),
        "delay of each update (updates)": " ".join(str(d) for d in delays[s][:12]),
        "versions held at most": held[s]} for s in range(schedule.num_stages)])


def _fair_comparison(config: dict[str, str]) -> str:
    try:
        document = staleness.load()
    except ValueError as error:
        st.info(f"The bundled comparison cannot be read: {error}")
        return DEFAULTS["lr"]
    rates = list(document["losses"]["sync"])
    opening = DEFAULTS["lr"] if DEFAULTS["lr"] in rates else rates[0]
    lr = choice(config, {**DEFAULTS, "lr": opening}, "lr", rates)
    lr = st.select_slider("Learning rate (Adam)", rates, value=lr, key="l07_lr")
    st.plotly_chart(staleness.loss_figure(document, lr), key="l07_loss")
    finals = staleness.final_losses(document)
    st.dataframe(pd.DataFrame([{"schedule": staleness.LABELS[name],
                                **{f"lr {r}": round(v, 4) for r, v in finals[name].items()},
                                "best over the rates": round(min(finals[name].values()), 4)}
                               for name in staleness.SCHEDULES]),
                 hide_index=True, key="l07_finals")
    study = document["study"]
    st.caption(f"Measured on CPU, pp = {study['pp']}, {study['updates']} updates of "
               f"{study['rows_per_update']} rows each for every schedule, from the same data; "
               f"final loss = mean over the last 10% of the updates; one seed "
               f"({study['seed']}). Made by `python benchmarks/staleness.py`.")
    return lr


def show(config: dict[str, str]) -> dict[str, str]:
    name, p, m, steps = _read(config)
    cols = st.columns(4)
    name = cols[0].selectbox("Schedule", FAMILIES, index=FAMILIES.index(name), key="l07_schedule")
    p = cols[1].slider("Pipeline depth p", 2, 8, p, key="l07_p")
    low = p if name == "pipedream-2bw" else 1
    m = cols[2].slider("Microbatches per step m", low, 16, max(m, low), key="l07_m")
    steps = cols[3].slider("Steps", 1, 4, steps, key="l07_steps")
    schedule = build(name, p, m, num_steps=steps)
    events = simulate(schedule, COST)
    result = metrics(events, ranks=range(p))
    st.plotly_chart(charts.gantt(
        events, title=f"{name}, p={p} m={m}, {steps} steps (predicted): microbatch·version "
                      f"in every box", box_text="both"), key="l07_gantt")
    st.caption(f"Bubble over the whole run (no flush, one fill and drain for {steps} steps): "
               f"{100 * float(result['bubble_fraction']):.2f} % of ranks x makespan "
               f"(predicted). A version counts a stage's optimizer updates so far.")
    st.plotly_chart(live_versions(events, schedule.update_every,
                                  title=f"Weight versions each stage holds, {name} p={p} m={m} "
                                        f"(predicted)"), key="l07_versions")
    st.dataframe(_stage_table(schedule), hide_index=True, key="l07_stages")
    st.subheader("Staleness at equal updates (measured)")
    lr = _fair_comparison(config)
    return {"schedule": name, "p": str(p), "m": str(m), "steps": str(steps), "lr": lr}
