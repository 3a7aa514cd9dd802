"""Runs: recorded runs, each with the timeline its own schedule predicts drawn over it.

    streamlit run app/lab.py   (then open Runs)
"""

import json

import streamlit as st
from run_widgets import catalog, load_measured, refresh_catalog, show_problems
from shared_work import shared_cache
from text_blocks import text_block

from pplab import charts, timeline
from pplab.calibration.run_prediction import one_step
from pplab.calibration.run_views import (
    FIRST_REPLICA,
    GAP_CAPTION,
    gap_table,
    interval_text,
    measured_metrics,
    pipeline_caption,
    pipeline_row_names,
    pipeline_view,
    predicted_metrics,
    replayed,
    replicas,
    terms_table,
)
from pplab.runs import catalog as runs_catalog
from pplab.runs import run_dirs
from pplab.timeline.labels import ASYNC_STEP_BUBBLE, fraction_text, step_label

OPEN_PATH = "runs_open_path"  # set by the Run page: the run to show first


@shared_cache
def replayed_once(path: str, stamp: float):
    """``replayed`` of the run at ``path``, once for every session and rerun (a third of a
    second each time: moving the step slider replayed the whole run again); ``stamp``, the
    folder's time, reads a re-recorded run afresh."""
    return replayed(run_dirs.load_run(path))


def short_number(value: float) -> str:
    """Three or four figures: 245, 24.5, 2.45."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 \
        else f"{value:.2f}"

st.title("Runs")
st.caption("Measured runs recorded by `pplab train` or `pplab compare` (bundled in data/, yours "
           f"in {runs_catalog.user_runs_dir()}). The prediction replays the run's own schedule "
           "on the costs calibrated from the run (`pplab predict` prints the same), so both "
           "share one time axis and their gap says what the model misses.")

entries, problems = catalog()
opened = st.session_state.pop(OPEN_PATH, None)
if opened and runs_catalog.entry_at(entries, opened) is None:
    refresh_catalog()  # the run was saved after the catalog was last read
    entries, problems = catalog()
show_problems(problems)
if not entries:
    st.info("No recorded runs yet. Launch one on the Run page, or put run folders in "
            f"{runs_catalog.user_runs_dir()}.")
    st.stop()

labels = [e.label for e in entries]
if opened:
    if runs_catalog.entry_at(entries, opened) is not None:
        st.session_state["runs_pick"] = runs_catalog.entry_at(entries, opened).label
    else:
        st.warning(f"The run saved to {opened} is not among the listed runs.")
label = st.selectbox("Run", labels, key="runs_pick")
entry = entries[labels.index(label)]
run, summary = entry.run, entry.summary
load_measured(entry)  # stops with one line if the run went away since it was listed
steps = list(summary.steps)
step = steps[-1]
if len(steps) > 1:
    # keyed by the run: another run's steps start at their own last step, never at the step
    # number the previous run's slider held (its title, metrics and breakdown would follow
    # that number while the slider showed another)
    step = st.select_slider("Step shown", steps, value=steps[-1], key=f"runs_step_{run.path}",
                            format_func=lambda s: step_label(s, steps),
                            help="The first step includes warm-up; later ones show steady state.")

replica = FIRST_REPLICA
if len(replicas(summary)) > 1:
    replica = st.selectbox(
        "Measured replica", replicas(summary), format_func=lambda r: r.label,
        key=f"runs_replica_{run.path}",
        help="Each pipeline position is held by several ranks (its tensor- and data-parallel "
             "peers); the chart draws one replica's ranks under the prediction.")

measured = one_step(run.events, step)
try:
    calibration, prediction = replayed_once(str(run.path), run.path.stat().st_mtime)
    predicted = prediction.events
except ValueError as error:
    st.error(f"Cannot predict this run: {error}")
    calibration = prediction = predicted = None
rows_are = pipeline_caption(summary, replica)
rows = "pp_rank"  # pipeline positions: the prediction's rows
try:
    pipeline = pipeline_view(measured, summary, replica)
    names = pipeline_row_names(summary, replica)
except ValueError as error:
    st.warning(f"Drawn by global rank: {error}")
    pipeline, names, rows_are, rows = measured, None, "rows are global ranks", "rank"

measured_stats = measured_metrics(measured, summary)
both = [measured] + ([predicted] if predicted is not None else [])
scale, unit = charts.shared_time_scale(both, [charts.SECONDS] * len(both))
# measured above predicted, two by two: four in a row cut "11.11 % (1/9)" on a laptop
cols = [*st.columns(2), *st.columns(2)]
scope = f"Over all {measured_stats['num_ranks']} ranks of the run, " + (
    f"{ASYNC_STEP_BUBBLE}." if summary.is_async else "over this one step.")
cols[0].metric("Bubble fraction (measured)", fraction_text(measured_stats["bubble_fraction"]),
               help=scope)
if summary.is_async:
    whole = measured_metrics(run.events, summary)["bubble_fraction"]
    st.caption(f"{summary.label} never flushes: the bubble above is {ASYNC_STEP_BUBBLE}. Over "
               f"the whole run, one fill and drain for all {len(steps)} steps, it is "
               f"{fraction_text(whole)} (measured).")
cols[1].metric("Step time (measured)", f"{scale * measured_stats['makespan']:.2f} {unit}")
if measured_stats.get("tp_allreduce_fraction"):  # inside F and B: not bubble, not compute
    st.caption(f"Of all rank-time in this step (ranks x step), tensor-parallel all-reduces "
               f"inside F and B took {measured_stats['tp_allreduce_fraction']:.1%} and the "
               f"computation itself {measured_stats['compute_fraction']:.1%} (measured); the "
               f"bubble counts neither.")
shown = step_label(step, steps)
if predicted is not None:
    predicted_stats = predicted_metrics(predicted, summary)
    cols[2].metric("Bubble fraction (predicted)",
                   fraction_text(predicted_stats["bubble_fraction"]))
    cols[3].metric("Step time (predicted)", f"{scale * predicted_stats['makespan']:.2f} {unit}")
    peers = f", replica {replica.label}" if len(replicas(summary)) > 1 else ""
    figure = charts.gantt_stack(
        [(shown, predicted), (shown + peers, pipeline)], units=[charts.SECONDS] * 2,
        title=f"Predicted over measured: {summary.label}"
              f"<br><sup>{rows_are}</sup>",
        row_names=[pipeline_row_names(summary, replica, measured=False), names], rows=rows)
else:
    figure = charts.gantt(pipeline, title=f"Measured: {summary.label}, {shown}", unit="s",
                          row_names=names, rows=rows)
st.plotly_chart(figure, key="runs_gantt")
st.caption(rows_are.capitalize() + ".")

if prediction is not None and prediction.error is not None:
    st.subheader("Measured against predicted")
    steady = [summary.steps.index(s) + 1 for s in calibration.measured.steps]
    cols = st.columns(3)
    cols[0].metric("Replay error (step time)", f"{100 * prediction.error:+.1f} %",
                   help=f"The calibrated model's step (the predicted step time above) against "
                        f"the median measured step (steps {steady[0]}..{steady[-1]}, each from "
                        f"its first forward to its last optimizer step). Negative: predicted "
                        f"faster.")
    cols[1].metric("Median measured step", f"{scale * calibration.measured.step_time:.2f} {unit}")
    bar = prediction.interval
    cols[2].metric(f"{100 * bar.level:.0f} % interval (predicted)",  # fits a third of a laptop
                   f"{short_number(scale * bar.low)} to {short_number(scale * bar.high)} {unit}",
                   help="Where the measured steps should fall: the spread of steps drawn with "
                        "the run's own variation of actions and of whole steps, widened by "
                        "the model's known error (pplab.calibration.interval).")
    st.caption(interval_text(prediction, scale, unit) + ".")
    try:
        st.dataframe(gap_table(run, calibration, prediction, step, scale, unit),
                     hide_index=True, key="runs_gap")
        st.caption(f"{shown}: {GAP_CAPTION}")
    except ValueError as error:
        st.info(f"No breakdown for this step: {error}")
    with st.expander("What the model charges, term by term, and what measured each"):
        try:
            st.dataframe(terms_table(run, calibration, prediction, step, scale, unit),
                         hide_index=True, key="runs_terms")
        except ValueError as error:
            st.info(f"No terms for this step: {error}")
    with st.expander("Calibration (saved beside the run as calibration.json)"):
        text_block(calibration.describe())

left, right = st.columns(2)
if summary.losses:
    left.plotly_chart(charts.loss_curves({summary.label: summary.losses}), key="runs_loss")
if summary.memory:
    per = summary.memory_per
    right.plotly_chart(charts.memory_per_rank({summary.label: summary.memory},
                                              f"Peak memory per {per} (measured)", per),
                       key="runs_memory")
    if summary.memory_kind:
        right.caption(f"What was measured: {summary.memory_kind}.")

st.subheader("Download")
name = run.path.name
cols = st.columns(3)
cols[0].download_button("Chrome trace (JSON)",
                        json.dumps(timeline.chrome_trace(run.events)), f"{name}.trace.json",
                        "application/json", key="runs_dl_trace",
                        help="Open it in ui.perfetto.dev or chrome://tracing.")
cols[1].download_button("Events (CSV)", timeline.events_to_csv_text(run.events),
                        f"{name}.events.csv", "text/csv", key="runs_dl_csv")
cols[2].download_button("Metadata (meta.json)", json.dumps(run.metadata, indent=2),
                        f"{name}.meta.json", "application/json", key="runs_dl_meta")
with st.expander("Metadata"):
    st.json(run.metadata)
