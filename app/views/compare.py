"""Compare: two to four configurations, simulated or recorded, on one shared time axis.

    streamlit run app/lab.py   (then open Compare)
"""

from pathlib import Path

import pandas as pd
import streamlit as st
from lab_widgets import (
    SEARCHED,
    cost_widgets,
    schedule_for,
    schedule_widgets,
    simulate_cached,
)
from lesson_widgets.reading import quoted
from run_widgets import catalog, load_measured, show_problems
from shared_work import shared_cache

from pplab import charts
from pplab.calibration.run_prediction import in_seconds, seconds_per_cost_unit
from pplab.calibration.run_views import metrics_row, on_the_costs_of, rank_names
from pplab.engine.compare_table import MAIN_COLUMNS, display_table, fill_split_columns
from pplab.runs.comparisons import load_comparison
from pplab.timeline.labels import bubble_scope, step_label

# Sets of configurations to start from: (how many shown at first, each one's schedule, p, m, v
# and, for several steps, how many and how they meet at the optimizer step).
PRESETS = {
    "the classics": (2, [("gpipe", 4, 8, 2), ("1f1b", 4, 8, 2), ("interleaved-1f1b", 4, 8, 2),
                         ("zb-h1", 4, 8, 2)]),
    "beyond the classics: zb-v and dualpipe-v beside 1f1b": (
        4, [("1f1b", 4, 8, 1), ("zb-h2", 4, 8, 1), ("zb-v", 4, 8, 2), ("dualpipe-v", 4, 8, 2)]),
    "looped chunks: interleaved, breadth-first, zero bubble": (
        3, [("interleaved-1f1b", 4, 8, 2), ("looped-bfs", 4, 8, 2), ("interleaved-zb", 4, 8, 2),
            ("1f1b", 4, 8, 1)]),
    "a searched order against the hand-made ones": (
        4, [("1f1b", 4, 8, 1), (SEARCHED, 4, 8, 1), ("zb-h1", 4, 8, 1), ("zb-h2", 4, 8, 1)]),
    "zero bubble for real: zb-h2's steps overlap under post-validation": (
        3, [("zb-h1", 4, 8, 1, 3, "barrier"), ("zb-h2", 4, 8, 1, 3, "barrier"),
            ("zb-h2", 4, 8, 1, 3, "post"), ("1f1b", 4, 8, 1, 3, "post")]),
}


# The Metrics table's columns that a saved comparison's own table gives already (its median
# over steps): left out there, so a configuration shows one bubble on the page.
SHOWN_ABOVE = ("bubble fraction (%)", "compute (%)", "tp all-reduce inside F/B (%)",
               "bubble over")


def busy_split(metrics: dict) -> dict:
    """Busy time split as timeline.metrics splits it, in % of ranks x makespan."""
    return {"compute (%)": round(100 * float(metrics.get("compute_fraction", 0.0)), 2),
            "tp all-reduce inside F/B (%)":
                round(100 * float(metrics.get("tp_allreduce_fraction", 0.0)), 2)}


@shared_cache  # kept in the server's shared answers: no client's clear-cache empties them
def calibrated(run_path: str, config=None) -> dict:
    """A row's calibrated prediction on the recorded run at ``run_path`` (its own schedule's
    replay without ``config``): the predicted step and its 80 % interval, in ms."""
    from pplab.runs.run_dirs import load_run

    try:
        run = load_run(Path(run_path))
        prediction = on_the_costs_of(run, None if config is None else schedule_for(config))
    except (OSError, ValueError) as error:
        return {"calibrated step (ms)": None, "80 % interval (ms)": str(error).splitlines()[0]}
    bar = prediction.interval
    row = {"calibrated step (ms)": round(1e3 * prediction.step_time, 2),
           "80 % interval (ms)": f"{1e3 * bar.low:.2f} to {1e3 * bar.high:.2f}"}
    if prediction.measured is not None:
        times = prediction.measured.times
        row["measured steps inside"] = f"{sum(bar.holds(t) for t in times)} of {len(times)}"
    return row


def comparison_caption(rows: list[dict]) -> str:
    """What the comparison's table measures: which steps, which shares, which not."""
    kept = sorted({int(s) for row in rows for s in row.get("steps_measured") or ()})
    steps = (f"the median over steps {kept[0] + 1}..{kept[-1] + 1} of each run (step 1 is "
             f"warm-up)" if len(kept) > 1 else "the median over each run's steps")
    return (f"Measured; step time and bubble are {steps}, the figure this page gives for each "
            f"configuration; the timelines below draw each run's last step. Bubble, compute "
            f"and tp all-reduce are shares of rank-time, time / (ranks x step time): tensor "
            f"parallelism's all-reduces run inside F and B, so they are taken out of compute "
            f"and shown apart instead of hiding in busy time. Formula: the closed form at the "
            f"same sizes. Hover a column's name for what it holds.")


def preset_key(preset: str, key: str) -> str:
    """Each preset keeps its own widgets (moving to another shows that one's configurations);
    the first keeps the plain keys."""
    index = list(PRESETS).index(preset)
    return key if index == 0 else f"{key}{index}_"


st.title("Compare")
st.caption("Simulated configurations are predicted in cost units; recorded runs are measured in "
           "seconds (their last step). With a recorded run among them, the predictions are "
           "drawn in seconds too, so every row shares one time axis in one unit.")

entries, problems = catalog()
show_problems(problems)
folders = sorted({e.comparison for e in entries if e.comparison is not None},
                 key=lambda folder: (not folder.bundled, folder.name))
modes = ["configurations I choose"] + [folder.title for folder in folders]
linked = st.query_params.get("comparison")  # /compare?comparison=NAME opens that one
if linked and "cmp_link_read" not in st.session_state:
    st.session_state["cmp_link_read"] = True
    named = [f.title for f in folders if Path(f.path).name == linked]
    if named:
        st.session_state["cmp_mode"] = named[0]
    else:
        st.caption(f"No comparison {quoted(linked, 60)} here; choose one below.")
mode = st.radio("What to compare", modes, horizontal=True, key="cmp_mode")

chosen: list[tuple[str, object]] = []
if mode == "configurations I choose":
    preset = st.selectbox("Start from", list(PRESETS), key="cmp_preset",
                          help="Sets of configurations side by side; change any of them below.")
    shown, defaults = PRESETS[preset]
    count = st.slider("Configurations", 2, 4, shown, key=preset_key(preset, "cmp_count"))
    cost = cost_widgets("cmp_", per_row=3)
    columns = st.columns(count)
    for i, column in enumerate(columns):
        with column:
            st.subheader(f"#{i + 1}")
            sources = ["simulated", "recorded run"] if entries else ["simulated"]
            source = st.radio("Source", sources, horizontal=True, key=f"cmp{i}_source")
            if source == "simulated":
                chosen.append(("sim", schedule_widgets(preset_key(preset, f"cmp{i}_"), cost,
                                                       defaults[i], allow_search=True)))
            else:
                labels = [e.label for e in entries]
                label = st.selectbox("Run", labels, index=min(i, len(labels) - 1),
                                     key=f"cmp{i}_run")
                chosen.append(("run", entries[labels.index(label)]))
else:
    folder = folders[[f.title for f in folders].index(mode)]
    try:
        comparison = load_comparison(folder.path)
    except ValueError as error:
        st.error(str(error))
        st.stop()
    if comparison.description:
        st.info(comparison.description)
    # A comparison saved before the split of busy time gets it from its runs' events.
    rows = fill_split_columns(comparison.path, comparison.rows)
    shown_rows, tips = display_table(rows, comparison.columns, MAIN_COLUMNS)
    if shown_rows and shown_rows[0]:
        st.dataframe(pd.DataFrame(shown_rows), hide_index=True, key="cmp_bundled_table",
                     column_config={name: st.column_config.Column(help=tip)
                                    for name, tip in tips.items()})
        st.caption(comparison_caption(rows))
        every, every_tip = display_table(rows, comparison.columns)
        if len(every[0]) > len(shown_rows[0]):
            with st.expander(f"All {len(every[0])} columns (the table scrolls sideways)"):
                st.dataframe(pd.DataFrame(every), hide_index=True, key="cmp_bundled_all",
                             column_config={name: st.column_config.Column(help=tip)
                                            for name, tip in every_tip.items()})
    members = [e for e in entries if e.comparison == folder]
    labels = [e.label for e in members]
    if st.session_state.get("cmp_bundled_for") != str(folder.path):
        # another comparison's runs: its picks start from its own first four, never from
        # labels the previous comparison's picker held
        st.session_state["cmp_bundled_for"] = str(folder.path)
        st.session_state.pop("cmp_bundled_pick", None)
    picked = st.multiselect("Timelines to draw (up to 4)", labels, default=labels[:4],
                            max_selections=4, key="cmp_bundled_pick")
    chosen = [("run", members[labels.index(label)]) for label in picked]
    if not chosen:
        st.info("Pick at least one run to draw.")
        st.stop()

# A prediction in cost units shares an axis with a measurement only once a cost unit has a
# length in seconds: the forward the first recorded run's calibration prices, by default.
seconds_per_unit = None
recorded = [item for kind, item in chosen if kind == "run"]
if recorded and any(kind == "sim" for kind, _ in chosen):
    try:
        guess_ms = 1e3 * seconds_per_cost_unit(recorded[0].run)
        why = ("Defaults to the forward of one stage (a rank's share) that the first recorded "
               "run's calibration prices: its computation and the overhead around it.")
    except (OSError, ValueError) as error:  # an unreadable run stops the page further down
        guess_ms, why = 1.0, f"Defaults to 1 ms: {str(error).splitlines()[0]}."
    guess_ms = min(max(guess_ms, 0.001), 1e6)  # the input's bounds
    # keyed by the run, so choosing another run brings its own forward back as default
    unit_ms = st.number_input(
        "1 cost unit (one forward of one stage) lasts, in ms", 0.001, 1e6, round(guess_ms, 3),
        format="%.3f", key=f"cmp_unit_ms_{recorded[0].run.path}", help=why)
    seconds_per_unit = unit_ms / 1e3

timelines, units, names, metrics_list, losses, memory = [], [], [], [], {}, {}
predicted = []  # each row's calibrated prediction and interval, with a recorded run among them
scopes = []  # which bubble each row's figure is: one step, or a no-flush schedule's whole run
memory_per = "rank"
for i, (kind, item) in enumerate(chosen):
    if kind == "sim":
        try:
            events, metrics = simulate_cached(item)
        except ValueError as error:
            st.error(f"#{i + 1}: {error}")
            st.stop()
        label, unit, row_names = f"#{i + 1} {item.label()}", charts.COST_UNITS, None
        simulated = schedule_for(item)
        scopes.append(bubble_scope(simulated.is_async, True, simulated.num_steps))
        if metrics.get("steady_state") is not None:  # several steps: one in the steady state
            steady = metrics["steady_state"]
            metrics = {**metrics, "makespan": steady["step_time"],
                       "bubble_fraction": steady["bubble_fraction"]}
            scopes[-1] = f"one step in the steady state ({item.optimizer_sync})"
        if seconds_per_unit is not None:
            events = in_seconds(events, seconds_per_unit)
            metrics = {**metrics, "makespan": metrics["makespan"] * seconds_per_unit}
            label, unit = f"{label} (calibrated)", charts.SECONDS
        predicted.append(calibrated(str(recorded[0].run.path), item)
                         if recorded and item.steps == 1 else {})
    else:
        data = load_measured(item)
        summary = data.summary
        events, metrics, unit = data.events, data.metrics, charts.SECONDS
        scopes.append(bubble_scope(summary.is_async, False))
        row_names = rank_names(summary, events["rank"].unique())
        label = f"#{i + 1} {summary.label} (last step, {step_label(data.step, summary.steps)})"
        if summary.losses:
            losses[f"#{i + 1} {summary.label}"] = summary.losses
        if summary.memory:
            memory[f"#{i + 1} {summary.label}"] = summary.memory
            memory_per = summary.memory_per
        predicted.append(calibrated(str(item.run.path)))
    timelines.append((label, events))
    units.append(unit)
    names.append(row_names)
    metrics_list.append(metrics)

scale, view_unit = charts.shared_time_scale([events for _, events in timelines], units)
rows = [{"configuration": label, **metrics_row(events, metrics, scale, view_unit),
         **busy_split(metrics), "bubble over": scope, **calibrated_row}
        for (label, events), metrics, scope, calibrated_row
        in zip(timelines, metrics_list, scopes, predicted, strict=True)]
st.plotly_chart(charts.gantt_stack(timelines, units, title="Side by side", row_names=names),
                key="cmp_gantt")
st.subheader("Metrics")
if mode != "configurations I choose":  # one bubble per configuration: the table above's
    rows = [{name: value for name, value in row.items() if name not in SHOWN_ABOVE
             and not name.startswith("makespan (")} for row in rows]
st.dataframe(pd.DataFrame(rows), hide_index=True, key="cmp_table")
if mode != "configurations I choose":
    st.caption("Each timeline drawn above, beside the comparison's table: its step time, "
               "bubble and shares of rank-time are there, as the median over the run's steps.")
else:
    st.caption("Bubble, compute and tp all-reduce are shares of rank-time over ranks x "
               "makespan. A tensor-parallel rank waits in its all-reduces inside F and B; that "
               "time counts as tp all-reduce, not compute, so the four shares (with the "
               "optimizer) add to 100%. A recorded run's row is its last step, as drawn.")
# a column is about as wide as its name (and a cell's few digits): past a laptop's page, say so
if sum(30 + 7 * max(len(str(name)), 8) for name in rows[0]) > 800:
    st.caption(f"On a laptop's page the table's {len(rows[0])} columns scroll sideways.")
if recorded:
    st.caption("Calibrated step and 80 % interval (predicted): each configuration on the costs "
               "the first recorded run measured, its own schedule a replay (`pplab predict` "
               "prints the same); the interval is where 80 % of measured steps should fall, "
               "from the run's own spread of actions and steps and the model's known error, "
               "and a recorded run says how many of its steady steps did (measured).")
if losses:
    st.plotly_chart(charts.loss_curves(losses), key="cmp_loss")
    for group in charts.coinciding(losses):
        st.caption(f"The loss curves of {', '.join(group[:-1])} and {group[-1]} coincide to "
                   f"{charts.LOSS_DIGITS} decimals, so the last drawn covers the others (dashed "
                   f"in the legend): the same model from the same seed on the same batches. A "
                   f"schedule or a split changes when each piece of work runs and where, not "
                   f"what is computed; only rounding in a different order tells them apart.")
if memory:
    st.plotly_chart(charts.memory_per_rank(memory, f"Peak memory per {memory_per} (measured)",
                                           memory_per), key="cmp_memory")
if not losses and not memory:
    st.caption("Loss curves and memory per rank appear when a recorded run is among the choices.")
