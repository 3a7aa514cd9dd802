"""Lesson 5's widget: a split editor over costs calibrated from a bundled run.

Type a split as ``pplab train --split`` takes it (``3,3,2``) and see each stage's compute and
activation memory, the step and bubble the simulator predicts for it, and the split with the
shortest step found by searching them all. A what-if makes the head dearer, as a larger
vocabulary would; the run's measured memory per stage sits beside the closed form below.

    streamlit run app/lab.py   (then open Lessons, lesson 5)
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app.lesson_widgets.reading import quoted
from app.shared_work import shared_cache
from pplab import charts
from pplab.limits import MAX_SPLIT_CHARS
from pplab.runs.resources import bundled_runs_dir
from pplab.runs.run_dirs import load_run
from pplab.teaching.stage_memory import MIB, fit_activation_bytes, formula_bytes, measured_memory
from pplab.teaching.stage_split import (
    LESSON_RUN,
    SCHEDULES,
    best_split,
    bundled_costs,
    read_split,
    simulate_split,
)

GPIPE_RUN = "gpipe-p4m8"  # the same model under GPipe: one microbatch's bytes per stage
DEFAULTS = {"layers": "8", "p": "4", "microbatches": "8", "split": "", "head": "0",
            "schedule": "1f1b"}
_WHOLE = {"layers": (2, 24), "p": (1, 8), "microbatches": (1, 32)}
_HEAD_MOST = 4.0
MS = 1e3
BUBBLE_NORM = "idle rank-time / (ranks x makespan)"


@shared_cache
def _calibrated():
    costs, calibration = bundled_costs(LESSON_RUN)
    memory = measured_memory(load_run(bundled_runs_dir() / LESSON_RUN))
    return costs, calibration.contention.shared, memory, fit_activation_bytes(memory)


@shared_cache
def _gpipe_memory():
    return measured_memory(load_run(bundled_runs_dir() / GPIPE_RUN))


def _read(config: dict[str, str]) -> tuple[dict, list[str]]:
    """The configuration as numbers; what cannot be read falls back to its default."""
    values, notes = {}, []
    if "stages" in config:  # only a link made when the depth was called "stages" has it
        config = {**config, "p": config["stages"]}
    for name, (low, high) in _WHOLE.items():
        text = str(config.get(name, DEFAULTS[name])).strip()
        if text.isdigit() and low <= int(text) <= high:
            values[name] = int(text)
        else:
            values[name] = int(DEFAULTS[name])
            notes.append(f"{name} {quoted(text, 20)} is not a whole number from {low} to "
                         f"{high}; showing {DEFAULTS[name]}")
    head = str(config.get("head", DEFAULTS["head"])).strip()
    try:
        values["head"] = float(head)
        if not 0 <= values["head"] <= _HEAD_MOST:
            raise ValueError
    except ValueError:
        values["head"] = 0.0
        notes.append(f"head {quoted(head, 20)} is not a number from 0 to {_HEAD_MOST:g}; "
                     f"showing 0")
    schedule = str(config.get("schedule", DEFAULTS["schedule"]))
    values["schedule"] = schedule if schedule in SCHEDULES else DEFAULTS["schedule"]
    if schedule not in SCHEDULES:
        notes.append(f"schedule {quoted(schedule, 20)} is not one of {', '.join(SCHEDULES)}; "
                     f"showing {DEFAULTS['schedule']}")
    values["split"] = str(config.get("split", ""))[:MAX_SPLIT_CHARS]
    return values, notes


def _bars(title: str, unit: str, series: dict[str, list[float]]) -> go.Figure:
    figure = go.Figure([go.Bar(name=name, x=[f"stage {s}" for s in range(len(ys))], y=ys,
                               hovertemplate=f"%{{x}}: %{{y:.3g}} {unit}<extra>{name}</extra>")
                        for name, ys in series.items()])
    figure.update_layout(title=title, barmode="group", height=300, yaxis_title=unit,
                         margin={"l": 10, "r": 10, "t": 50, "b": 30})
    return figure


def show(config: dict[str, str]) -> dict[str, str]:
    values, notes = _read(config)
    costs, shared, memory, act = _calibrated()
    embed_layers, head_layers = costs.in_layers()
    sharing = ("its ranks shared cores; the calibration divides that out" if shared
               else "one core per rank")
    st.caption(f"Costs calibrated from the bundled run {LESSON_RUN} (measured; {sharing}): "
               f"one layer's F {costs.layer_f * MS:.2f} ms and B {costs.layer_b * MS:.2f} ms "
               f"per microbatch; the embedding adds {embed_layers:.2f} and the head "
               f"{head_layers:.2f} layers' worth of F + B (a fit: small or negative extras "
               f"are within its noise). Messages are left out: they do not depend on the split.")
    top = st.columns(4)
    layers = top[0].slider("Layers L", *_WHOLE["layers"], values["layers"], key="l05_layers")
    stages = top[1].slider("Pipeline depth p (one stage per rank)", *_WHOLE["p"],
                           min(values["p"], layers), key="l05_p")
    microbatches = top[2].slider("Microbatches m", *_WHOLE["microbatches"],
                                 values["microbatches"], key="l05_microbatches")
    schedule = top[3].radio("Schedule", SCHEDULES, SCHEDULES.index(values["schedule"]),
                            key="l05_schedule", horizontal=True)
    head = st.slider("What-if: the head costs this many more layers' worth", 0.0, _HEAD_MOST,
                     values["head"], 0.25, key="l05_head",
                     help="0 is the run as measured. A real vocabulary makes the logit layer "
                          "cost about V/(12h) layers' forward (V tokens, hidden size h).")
    text = st.text_input("Split (layers per stage, like --split 3,3,2; empty: pplab's even "
                         "split)", values["split"], max_chars=MAX_SPLIT_CHARS, key="l05_split")
    for note in notes:
        st.caption(note)
    stages = min(stages, layers)
    costs = costs.with_head(head)
    try:
        split = read_split(text, layers, stages)
    except ValueError as error:
        split = read_split("", layers, stages)
        st.caption(f"Split {quoted(text)} cannot be used: {error}. Showing the even split "
                   f"{','.join(map(str, split))}.")
    events, result = simulate_split(costs, split, microbatches, schedule)
    try:
        best = best_split(costs, layers, stages, microbatches, schedule)
    except ValueError as error:
        best = None
        st.caption(f"No search for the best split: {error}.")
    shown = st.columns(3)
    shown[0].metric("Your step (predicted)", f"{result['makespan'] * MS:.1f} ms",
                    help=f"Split {','.join(map(str, split))}, simulated {schedule}.")
    shown[1].metric("Bubble (predicted)", f"{float(result['bubble_fraction']):.1%}",
                    help=f"Normalisation: {BUBBLE_NORM}; an uneven split idles the "
                         f"faster stages too.")
    if best is not None:
        shown[2].metric("Best split (shortest step)", ",".join(map(str, best.split)),
                        f"{(result['makespan'] / best.step_time - 1):+.1%} yours vs best",
                        delta_color="inverse",
                        help=f"Best = shortest simulated step among all {best.splits} splits "
                             f"({best.simulated} simulated; the rest could not win).")
    series = {"yours": [t * MS for t in costs.stage_times(split)]}
    peaks = {"yours": [b / MIB for b in act.peaks(split, microbatches, schedule)]}
    if best is not None:
        series["best"] = [t * MS for t in best.stage_times]
        peaks["best"] = [b / MIB for b in act.peaks(best.split, microbatches, schedule)]
    cols = st.columns(2)
    # half a page each: short titles, the rest of what they show in the caption under them
    cols[0].plotly_chart(_bars("Compute per stage (calibrated)", "ms", series),
                         key="l05_compute")
    cols[1].plotly_chart(_bars("Peak activations per stage (predicted)", "MiB", peaks),
                         key="l05_memory")
    model, rows = dict(memory.shape[0]), memory.shape[1]
    st.caption(f"Compute: F + B of one microbatch on each stage, in ms. Memory: the "
               f"activations a stage holds at its peak under {schedule}, in MiB: the "
               "microbatches it holds then (the schedule's closed form) x "
               f"one microbatch's saved activations there, fitted per layer from {LESSON_RUN}'s "
               f"measured peaks (its microbatch: {rows} sequences of {model.get('seq_len')} "
               f"tokens, d_model {model.get('d_model')}).")
    st.plotly_chart(charts.gantt(events, title=f"Your split {','.join(map(str, split))}: one "
                                               f"{schedule} step (predicted)", unit="s"),
                    key="l05_gantt")
    with st.expander(f"Measured: activation memory per stage in {LESSON_RUN}"):
        try:
            formula = formula_bytes(memory, _gpipe_memory())
            source = f"one microbatch's bytes from {GPIPE_RUN} (its peak / m)"
        except ValueError:
            formula = [h * b for h, b in zip(memory.formula_held, memory.bytes_per_microbatch,
                                             strict=True)]
            source = "one microbatch's bytes from this run's own peaks"
        st.plotly_chart(_bars(f"{LESSON_RUN}: peak saved activations per stage (MiB)", "MiB",
                              {"measured": [b / MIB for b in memory.peak_bytes],
                               "min(p - i, m) x one microbatch": [b / MIB for b in formula]}),
                        key="l05_measured")
        shared_note = (f"{memory.pp_size} ranks shared the cores: that changes when work "
                       f"runs, not what a stage saves. " if shared else "")
        st.caption(f"Measured by the engine: {memory.kind}. Microbatches held at the peak: "
                   f"{list(memory.formula_held)} by the formula, {list(memory.held)} in the "
                   f"measured events; {source}. {shared_note}")
    return {"layers": str(layers), "p": str(stages), "microbatches": str(microbatches),
            "split": text, "head": f"{head:g}", "schedule": schedule}
