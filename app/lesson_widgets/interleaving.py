"""Lesson 6's widget: interleaved 1F1B beside 1F1B on one time axis, chunks patterned, with
the bubble in both normalisations, the activations each rank holds and the messages of a step,
all simulated, beside the lesson's closed forms."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app.lesson_widgets.reading import number, whole
from pplab import charts
from pplab.calibration.per_rank import peak_activations_per_rank, point_to_point_messages
from pplab.formulas.pipeline import bubble_fraction, bubble_ratio_to_ideal
from pplab.formulas.pipeline import peak_activations_per_rank as closed_peaks
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

NAME = "interleaved-1f1b"
DEFAULTS = {"p": "4", "m": "8", "v": "2", "latency": "0"}
COST = {"forward": 1.0, "backward": 2.0}  # cost units of a rank's whole share, as the lesson


def _read(config: dict[str, str]) -> tuple[int, int, int, float]:
    p = whole(config, DEFAULTS, "p", 2, 8)
    m = whole(config, DEFAULTS, "m", 1, 32)
    if str(config.get("v", "")).strip() == "1":
        st.caption(f"v = 1 is plain 1F1B, drawn beside it anyway; interleaving needs at least "
                   f"2 chunks per rank: showing v = {DEFAULTS['v']}.")
        config = {**config, "v": DEFAULTS["v"]}
    v = whole(config, DEFAULTS, "v", 2, 8)
    latency = number(config, DEFAULTS, "latency", 0.0, 2.0)
    if m % p:
        st.caption(f"m = {m} is not a multiple of p = {p} (Megatron's interleaving walks "
                   f"microbatches in groups of p); showing m = {m + p - m % p}.")
        m += p - m % p
    return p, m, v, latency


def show(config: dict[str, str]) -> dict[str, str]:
    p, m, v, latency = _read(config)
    cols = st.columns(4)
    p = cols[0].slider("Ranks p", 2, 8, p, key="l06_p")
    m = cols[1].slider("Microbatches m (a multiple of p)", p, 32, max(m, p), step=p,
                       key="l06_m")
    v = cols[2].slider("Chunks per rank v", 2, 8, v, key="l06_v")
    latency = cols[3].number_input("Latency per message (cost units)", 0.0, 2.0, latency, 0.05,
                                   key="l06_latency")
    if m % p:  # a slider kept from another p
        m += p - m % p
    cost = CostModel(**COST, latency=latency)
    schedules = {"1F1B": build("1f1b", p, m), f"interleaved v={v}": build(NAME, p, m, v)}
    events = {name: simulate(schedule, cost) for name, schedule in schedules.items()}
    results = {name: metrics(table, ranks=range(p)) for name, table in events.items()}
    mine = results[f"interleaved v={v}"]
    ideal = m * (COST["forward"] + COST["backward"])

    st.plotly_chart(charts.gantt_stack(
        list(events.items()), title=f"1F1B and interleaved 1F1B, p={p} m={m} v={v} "
                                    f"(predicted)"), key="l06_gantt")
    st.caption("Each chunk of a rank wears its own pattern, named in the legend: chunk 0 plain, "
               "chunk 1 dotted on a paler shade.")

    free = latency == 0
    share, over_ideal = float(mine["bubble_fraction"]), (mine["makespan"] - ideal) / ideal
    # two by two: four labels in a row were cut mid-word on a laptop
    row = [*st.columns(2), *st.columns(2)]
    row[0].metric("Bubble, idle / (ranks x makespan) (predicted)", f"{share:.2%}",
                  help="The lab's normalisation: the share of the step's rank-time not "
                       "computing.")
    row[1].metric("Bubble over the ideal time m(F+B) (predicted)", f"{over_ideal:.2%}",
                  help="The normalisation Megatron-LM prints (Narayanan et al., SC 2021, "
                       "arXiv:2104.04473, Sec. 2.2.2).")
    peaks = {name: peak_activations_per_rank(table) for name, table in events.items()}
    first, plain = peaks[f"interleaved v={v}"][0], peaks["1F1B"][0]
    row[2].metric("Rank 0's peak activations (predicted)",
                  f"{first:.4g}", delta=f"x{first / plain:.4g} of 1F1B's {plain:g}",
                  delta_color="off",
                  help="In full-rank microbatches: one microbatch's activations over the "
                       "rank's whole share of the model, so a chunk's microbatch counts 1/v.")
    messages = {name: point_to_point_messages(s) for name, s in schedules.items()}
    ratio = messages[f"interleaved v={v}"] / messages["1F1B"]
    row[3].metric("Messages per step (from the schedule)", f"{messages[f'interleaved v={v}']}",
                  delta=f"x{ratio:.3g} of 1F1B's {messages['1F1B']}", delta_color="off")
    if free:
        st.caption(f"Closed forms at free messages: bubble (p-1)/(vm+p-1) = "
                   f"{bubble_fraction(NAME, p, m, v):.2%} of the step, (p-1)/(vm) = "
                   f"{bubble_ratio_to_ideal(NAME, p, m, v):.2%} over the ideal time (Narayanan "
                   f"et al., Sec. 2.2.2); rank 0's peak "
                   f"{float(closed_peaks(NAME, p, m, v)[0]):.4g} full-rank microbatches "
                   f"(Megatron's warm-up count, each chunk 1/v).")
    else:
        st.caption(f"Every message takes {latency:g} cost units: the closed forms assume free "
                   f"messages, so only the simulator's figures are shown.")

    figure = go.Figure()
    for name, per_rank in peaks.items():
        figure.add_bar(name=name, x=[f"rank {r}" for r in sorted(per_rank)],
                       y=[per_rank[r] for r in sorted(per_rank)])
    figure.update_layout(barmode="group", yaxis_title="full-rank microbatches held",
                         title="Activations each rank holds at its worst moment (predicted)")
    st.plotly_chart(figure, key="l06_peaks")
    st.caption("Unit: one microbatch's activations over a rank's whole share of the model; a "
               "chunk holds 1/v of the rank's layers, so its microbatch counts 1/v.")
    return {"p": str(p), "m": str(m), "v": str(v), "latency": f"{latency:g}"}
