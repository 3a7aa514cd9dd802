"""Playground: pick a schedule and its sizes, watch the bubble appear in the predicted timeline.

Every registered family is offered, and an order searched under a memory cap for the costs
set here (``pplab search`` on the command line).

    streamlit run app/lab.py
"""

import streamlit as st
from lab_widgets import (
    CUSTOM_CSV,
    capped_1f1b_metrics,
    cost_widgets,
    explain_custom_csv,
    held_per_rank,
    overlapped_pairs,
    playground_figures,
    schedule_for,
    schedule_text,
    schedule_widgets,
    simulate_cached,
)
from text_blocks import text_block
from warm_up import PLAYGROUND_DEFAULTS  # what the server makes ready before the first visit

from pplab import charts
from pplab.formulas.pipeline import closed_form_for
from pplab.formulas.pipeline import peak_activations_per_rank as peak_activations_per_rank_closed
from pplab.formulas.zero_bubble import zb_h1_bubble_time, zb_h1_paper_bubble_time
from pplab.schedules import SCHEDULES
from pplab.timeline.labels import bubble_normalisation, fraction_text

st.title("Playground")
st.caption("A schedule says who does what, in order; the simulator runs it over a cost model "
           "and the gaps it leaves are the bubble. All times here are predicted, in cost units.")

with st.sidebar:
    st.header("Configuration")
    cost = cost_widgets("pg_", per_row=2)
    config = schedule_widgets("pg_", cost, PLAYGROUND_DEFAULTS, allow_upload=True,
                              allow_search=True)

if config.schedule == CUSTOM_CSV and not config.csv_text:
    explain_custom_csv("pg_")
    st.stop()

try:
    events, metrics = simulate_cached(config)
except ValueError as error:
    first, *grid = str(error).splitlines()
    st.error(first)
    if grid:
        text_block("\n".join(grid))
    st.stop()

schedule = schedule_for(config)
p = int(metrics["num_ranks"])
norm = bubble_normalisation(schedule)
cols = st.columns([1.15, 1.05, 1.2, 0.6])
cols[0].metric("Bubble fraction (predicted)", fraction_text(float(metrics["bubble_fraction"])),
               help=f"Normalisation: {norm}.")
cols[1].metric("Makespan (predicted)", f"{metrics['makespan']:.4g} {charts.COST_UNITS}")
peaks = metrics["peak_activations"]
per_rank = held_per_rank(config)
cols[2].metric("Peak activations (predicted)",
               f"{max(per_rank.values(), default=0):.4g} microbatches",
               help="Per rank, in full-rank microbatches: the most activations one rank holds "
                    "at once, in units of one microbatch's activations over the rank's whole "
                    "share of the model. A rank with v chunks holds 1/v of its layers in "
                    "each, so a chunk's microbatch counts 1/v. The chart below counts "
                    "microbatches per stage instead.")
cols[3].metric("Ranks", f"{p}", help=f"{len(events):,} events in the timeline")
steady = metrics.get("steady_state")
if steady is not None:
    first = metrics["first_step"]
    cols = st.columns(2)
    cols[0].metric("First step: bubble (predicted)", fraction_text(first["bubble_fraction"]),
                   help=f"{first['time']:.4g} {charts.COST_UNITS} to its last computation: "
                        f"nothing before it to overlap with, so it keeps its fill.")
    cols[1].metric(f"Steady state: bubble per step (predicted, {config.optimizer_sync})",
                   fraction_text(steady["bubble_fraction"]),
                   help=f"One step every {steady['step_time']:.4g} {charts.COST_UNITS}: the "
                        f"time from the first step's completion to the last's, per step; the "
                        f"bubble is the rank-time of one such period not spent computing or "
                        f"stepping the optimizer.")

closed = closed_form_for(schedule, config.cost, config.optimizer_sync if steady else None)
if closed.form is not None:
    line = (f"Closed form: $\\text{{bubble}} = {closed.form.latex}$ with p={config.pp_size}, "
            f"m={config.microbatches}" + (f", v={config.chunks}" if config.chunks > 1 else ""))
    if closed.value is not None:
        line += f" gives **{fraction_text(closed.value)}** of rank-time ({norm})"
        if closed.ratio_to_ideal is not None:
            line += (f"; the papers' other normalisation, bubble over ideal time, is "
                     f"{100 * closed.ratio_to_ideal:.2f} %")
    else:
        line += f" (no value here: {closed.note})"
    st.markdown(f"{line}. Source: {closed.form.source}.")
    st.caption(f"Regime: {closed.form.regime}."
               + (f" pplab's own extension: {closed.form.extension}."
                  if closed.form.extension else ""))
    if config.schedule == "zb-h1" and closed.value is not None:
        papers = zb_h1_paper_bubble_time(config.pp_size, config.cost)
        ours = zb_h1_bubble_time(config.pp_size, config.cost)
        paper = "the same" if papers == ours else (
            f"{papers:.4g} {charts.COST_UNITS} of idle time per rank instead of "
            f"{ours:.4g}: here W is longer than F or I, where the "
            f"max(...) form, pplab's own extension, is what the simulator finds")
        st.caption(f"Qi et al.'s Table 2 gives the bubble as (p-1)(T_F+T_B-T_W), with their B "
                   f"our I; at these costs it says {paper}.")
elif config.searched:
    found = schedule.params
    baseline = capped_1f1b_metrics(config)
    st.markdown(
        f"Searched order for these costs with at most **{found['max_in_flight']}** "
        f"microbatches held per stage, found by *{found['found_by']}*. 1F1B with its warm-up "
        f"cut to the same cap: bubble {fraction_text(float(baseline['bubble_fraction']))}, "
        f"makespan {baseline['makespan']:.4g} {charts.COST_UNITS} (predicted); the search never "
        f"does worse. No closed form: the order depends on the costs. Normalisation: {norm}.")
elif config.schedule in SCHEDULES:
    family = SCHEDULES[config.schedule]
    st.markdown(f"No simple closed form is shown for {config.schedule}; source: {family.paper}. "
                f"Normalisation: {norm}.")
if config.cost.overlap > 0 and not overlapped_pairs(schedule):
    st.caption(f"The overlap cost ({config.cost.overlap:g}) changes nothing here: "
               f"{config.label()} has no overlapped F;B pairs (dualpipe-v has).")

gantt_figure, peaks_figure, ranks_figure = playground_figures(config)
st.plotly_chart(gantt_figure, key="gantt")
text, csv_text = schedule_text(config)
st.download_button("Download this schedule (CSV)", csv_text, config.file_name(), "text/csv",
                   key="pg_download_csv",
                   help="PyTorch's compute-only CSV: edit it and upload it back as custom CSV, "
                        "or train it with `pplab train --csv FILE`.")

left, right = st.columns(2)
left.plotly_chart(peaks_figure, key="peaks")
if schedule.num_chunks > 1:
    first = per_rank.get(0, 0.0)
    held = max(peaks[s] for s in peaks if schedule.stage_to_rank[s] == 0)
    text = (f"Each bar counts one stage's microbatches. Rank 0's {schedule.num_chunks} chunks "
            f"each hold 1/{schedule.num_chunks} of its layers, so at its worst moment it holds "
            f"{first:.4g} full-rank microbatches (predicted), not the {held} of its fullest "
            f"chunk.")
    try:
        closed_rank = peak_activations_per_rank_closed(
            config.schedule, config.pp_size, config.microbatches, config.chunks)[0]
        text += (f" Closed form (Megatron's warm-up, each chunk 1/v): {float(closed_rank):.4g}"
                 + (f", 1F1B's {config.pp_size} times 1 + (p-1)/(p v) (Korthikanti et al., "
                    f"MLSys 2023, arXiv:2205.05198, Sec. 4.2.3)"
                    if config.microbatches > config.pp_size else "") + ".")
    except ValueError:
        pass
    left.caption(text)
right.plotly_chart(ranks_figure, key="ranks")

with st.expander("The schedule as text (PyTorch's action notation: 2F0 = stage 2, F, mb 0)"):
    text_block(text)
