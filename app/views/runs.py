"""Runs: recorded runs, each with the timeline its own schedule predicts drawn over it.

    streamlit run app/lab.py   (then open Runs)
"""

import json

import streamlit as st
from lab_widgets import catalog, fraction_text, load_measured, show_problems

from pplab import charts, runs_catalog, timeline

st.title("Runs")
st.caption("Measured runs recorded by `pplab train` (bundled in data/runs, yours in "
           f"{runs_catalog.user_runs_dir()}). The prediction replays the run's own schedule "
           "with costs calibrated from its measured medians, so both share one axis in seconds.")

entries, problems = catalog()
show_problems(problems)
if not entries:
    st.info("No recorded runs yet. Launch one on the Run page, or put run folders in "
            f"{runs_catalog.user_runs_dir()}.")
    st.stop()

labels = [e.label for e in entries]
label = st.selectbox("Run", labels, key="runs_pick")
entry = entries[labels.index(label)]
run = entry.run
data = load_measured(entry)
steps = sorted(int(s) for s in run.events["step"].unique())
step = steps[0]
if len(steps) > 1:
    step = st.select_slider("Step shown", steps, value=steps[-1], key="runs_step",
                            help="The first step includes warm-up; later ones show steady state.")

try:
    predicted, measured = runs_catalog.predicted_for(run, step)
except ValueError as error:
    st.error(f"Cannot predict this run: {error}")
    predicted, measured = None, runs_catalog.one_step(run.events, step)

measured_metrics = timeline.metrics(measured)
cols = st.columns(4)
cols[0].metric("Bubble fraction (measured)", fraction_text(measured_metrics["bubble_fraction"]))
cols[1].metric("Step time (measured)", f"{1e3 * measured_metrics['makespan']:.2f} ms")
if predicted is not None:
    predicted_metrics = timeline.metrics(predicted)
    cols[2].metric("Bubble fraction (predicted)",
                   fraction_text(predicted_metrics["bubble_fraction"]))
    cols[3].metric("Step time (predicted)", f"{1e3 * predicted_metrics['makespan']:.2f} ms")
    figure = charts.gantt_stack(
        [(f"step {step}", predicted), (f"step {step}", measured)],
        units=["s", "s"], title=f"Predicted over measured: {runs_catalog.describe(run)}")
else:
    figure = charts.gantt(measured, title=f"Measured: {runs_catalog.describe(run)}")
st.plotly_chart(figure, key="runs_gantt")

left, right = st.columns(2)
if data["loss"]:
    left.plotly_chart(charts.loss_curves({runs_catalog.describe(run): data["loss"]}),
                      key="runs_loss")
if data["memory"]:
    per = data["memory_per"]
    right.plotly_chart(charts.memory_per_rank({runs_catalog.describe(run): data["memory"]},
                                              f"Peak memory per {per} (measured)", per),
                       key="runs_memory")
    if data["memory_kind"]:
        right.caption(f"What was measured: {data['memory_kind']}.")

st.subheader("Download")
name = run.path.name
cols = st.columns(3)
cols[0].download_button("Chrome trace (JSON, open in ui.perfetto.dev)",
                        json.dumps(timeline.chrome_trace(run.events)), f"{name}.trace.json",
                        "application/json", key="runs_dl_trace")
cols[1].download_button("Events (CSV)", timeline.events_to_csv_text(run.events),
                        f"{name}.events.csv", "text/csv", key="runs_dl_csv")
cols[2].download_button("Metadata (meta.json)", json.dumps(run.metadata, indent=2),
                        f"{name}.meta.json", "application/json", key="runs_dl_meta")
with st.expander("Metadata"):
    st.json(run.metadata)
