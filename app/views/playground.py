"""Playground: pick a schedule and its sizes, watch the bubble appear in the predicted timeline.

    streamlit run app/lab.py
"""

import streamlit as st
from lab_widgets import (
    closed_form,
    cost_widgets,
    fraction_text,
    normalisation,
    schedule_text,
    schedule_widgets,
    simulate_cached,
)

from pplab import charts
from pplab.schedules import SCHEDULES

st.title("Playground")
st.caption("A schedule says who does what, in order; the simulator runs it over a cost model "
           "and the gaps it leaves are the bubble. All times here are predicted, in cost units.")

with st.sidebar:
    st.header("Configuration")
    cost = cost_widgets("pg_")
    config = schedule_widgets("pg_", cost, ("gpipe", 4, 8, 2), allow_upload=True)

try:
    events, metrics = simulate_cached(config)
except ValueError as error:
    first, *grid = str(error).splitlines()
    st.error(first)
    if grid:
        st.code("\n".join(grid), language=None)
    st.stop()

p = int(metrics["num_ranks"])
norm = normalisation(config.schedule)
cols = st.columns([1.15, 1.05, 1.2, 0.6])
cols[0].metric("Bubble fraction (predicted)", fraction_text(float(metrics["bubble_fraction"])),
               help=f"Normalisation: {norm}.")
cols[1].metric("Makespan (predicted)", f"{metrics['makespan']:.4g} cost units")
peaks = metrics["peak_activations"]
cols[2].metric("Peak activations (predicted)", f"{max(peaks.values(), default=0)} microbatches",
               help="Most microbatches whose activations one stage holds at once.")
cols[3].metric("Ranks", f"{p}", help=f"{len(events):,} events in the timeline")

latex, source, value, ratio, why_not = closed_form(config)
if latex:
    line = (f"Closed form: $\\text{{bubble}} = {latex}$ with p={config.pp_size}, "
            f"m={config.microbatches}" + (f", v={config.chunks}" if config.chunks > 1 else ""))
    if value is not None:
        line += (f" gives **{fraction_text(value)}** of rank-time ({norm}); "
                 f"the papers' other normalisation, bubble over ideal time, is "
                 f"{100 * ratio:.2f} %")
    else:
        line += f" (no value here: {why_not})"
    st.markdown(f"{line}. Source: {source}.")
elif config.schedule in SCHEDULES:
    family = SCHEDULES[config.schedule]
    st.markdown(f"No simple closed form is shown for {config.schedule}; source: {family.paper}. "
                f"Normalisation: {norm}.")

st.plotly_chart(charts.gantt(events, title=f"Predicted timeline: {config.label()}"), key="gantt")

left, right = st.columns(2)
left.plotly_chart(charts.peak_activations(peaks), key="peaks")
right.plotly_chart(charts.rank_utilisation(metrics["per_rank"], "cost units"), key="ranks")

if config.schedule in SCHEDULES:
    with st.expander("The schedule as text (PyTorch's action notation: 2F0 = stage 2, F, mb 0)"):
        st.code(schedule_text(config), language=None)
