"""Compare: two to four configurations, simulated or recorded, on one shared time axis.

    streamlit run app/lab.py   (then open Compare)
"""

import pandas as pd
import streamlit as st
from lab_widgets import (
    catalog,
    cost_widgets,
    load_measured,
    run_summary,
    schedule_widgets,
    show_problems,
    simulate_cached,
)

from pplab import charts, runs_catalog

DEFAULTS = [
    ("gpipe", 4, 8, 2), ("1f1b", 4, 8, 2), ("interleaved-1f1b", 4, 8, 2), ("zb-h1", 4, 8, 2),
]

st.title("Compare")
st.caption("Simulated configurations are predicted in cost units; recorded runs are measured in "
           "seconds (their last step). Rows share one time axis when their units agree.")

entries, problems = catalog()
show_problems(problems)
comparisons = sorted({e.origin for e in entries if e.origin.startswith("comparison ")})
modes = ["configurations I choose"] + [f"bundled {c}" for c in comparisons]
mode = st.radio("What to compare", modes, horizontal=True, key="cmp_mode")

chosen: list[tuple[str, object]] = []
if mode == "configurations I choose":
    count = st.slider("Configurations", 2, 4, 2, key="cmp_count")
    cost = cost_widgets("cmp_")
    columns = st.columns(count)
    for i, column in enumerate(columns):
        with column:
            st.subheader(f"#{i + 1}")
            sources = ["simulated", "recorded run"] if entries else ["simulated"]
            source = st.radio("Source", sources, horizontal=True, key=f"cmp{i}_source")
            if source == "simulated":
                chosen.append(("sim", schedule_widgets(f"cmp{i}_", cost, DEFAULTS[i])))
            else:
                labels = [e.label for e in entries]
                label = st.selectbox("Run", labels, index=min(i, len(labels) - 1),
                                     key=f"cmp{i}_run")
                chosen.append(("run", entries[labels.index(label)]))
else:
    origin = mode.removeprefix("bundled ")
    folder = runs_catalog.bundled_comparisons_dir() / origin.removeprefix("comparison ")
    description = runs_catalog.comparison_description(folder)
    if description:
        st.info(description)
    table, notes = runs_catalog.comparison_table(folder)
    if len(table):
        st.dataframe(table, hide_index=True, key="cmp_bundled_table", column_config={
            name: st.column_config.Column(help=note) for name, note in notes.items() if note})
    members = [e for e in entries if e.origin == origin]
    labels = [e.label for e in members]
    picked = st.multiselect("Timelines to draw (up to 4)", labels, default=labels[:4],
                            max_selections=4, key="cmp_bundled_pick")
    chosen = [("run", members[labels.index(label)]) for label in picked]
    if not chosen:
        st.info("Pick at least one run to draw.")
        st.stop()

# A prediction in cost units shares an axis with a measurement only once a cost unit has a
# length in seconds; the first recorded run's median forward is a fair first guess.
seconds_per_unit = None
recorded = [item for kind, item in chosen if kind == "run"]
if recorded and any(kind == "sim" for kind, _ in chosen):
    forwards = load_measured(recorded[0])["events"].query("kind == 'F'")
    guess = float((forwards["end"] - forwards["start"]).median()) * 1e3 if len(forwards) else 1.0
    guess = min(max(guess, 0.001), 1e6)  # the input's bounds: instant forwards must not break it
    if st.checkbox("Draw the predictions in seconds, to share the measured runs' time axis",
                   value=True, key="cmp_calibrate"):
        # keyed by the run, so choosing another run brings its own forward back as default
        unit_ms = st.number_input(
            "1 cost unit (one forward of one stage) lasts, in ms", 0.001, 1e6,
            round(guess, 3), format="%.3f", key=f"cmp_unit_ms_{recorded[0].run.path}",
            help="Defaults to the median measured forward of the first recorded run chosen.")
        seconds_per_unit = unit_ms / 1e3

timelines, units, rows, losses, memory, memory_per = [], [], [], {}, {}, "rank"
for i, (kind, item) in enumerate(chosen):
    if kind == "sim":
        try:
            events, metrics = simulate_cached(item)
        except ValueError as error:
            st.error(f"#{i + 1}: {error}")
            st.stop()
        label, unit, shown_unit = f"#{i + 1} {item.label()}", None, "cost units"
        if seconds_per_unit is not None:
            events = events.assign(start=events["start"] * seconds_per_unit,
                                   end=events["end"] * seconds_per_unit)
            metrics = {**metrics, "makespan": metrics["makespan"] * seconds_per_unit}
            label, unit, shown_unit = f"{label} (calibrated)", "s", "s"
    else:
        data = load_measured(item)
        events, metrics = data["events"], data["metrics"]
        label = f"#{i + 1} {runs_catalog.describe(item.run)} (step {data['step']})"
        unit, shown_unit = "s", "s"
        if data["loss"]:
            losses[f"#{i + 1} {runs_catalog.describe(item.run)}"] = data["loss"]
        if data["memory"]:
            memory[f"#{i + 1} {runs_catalog.describe(item.run)}"] = data["memory"]
            memory_per = data["memory_per"]
    timelines.append((label, events))
    units.append(unit)
    rows.append({"configuration": label, **run_summary(events, metrics, shown_unit)})

st.plotly_chart(charts.gantt_stack(timelines, units, title="Side by side"), key="cmp_gantt")
st.subheader("Metrics")
st.dataframe(pd.DataFrame(rows), hide_index=True, key="cmp_table")
if losses:
    st.plotly_chart(charts.loss_curves(losses), key="cmp_loss")
if memory:
    st.plotly_chart(charts.memory_per_rank(memory, f"Peak memory per {memory_per} (measured)",
                                           memory_per), key="cmp_memory")
if not losses and not memory:
    st.caption("Loss curves and memory per rank appear when a recorded run is among the choices.")
