"""Lesson 8's widget: one link, one model, spread over n ranks by pipeline, tensor or data
parallelism; what each puts on the wire per step and how much of it the step waits for, by
formula, beside the bytes and all-reduce times measured in the bundled comparison."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.lesson_widgets.reading import choice, number, whole
from app.shared_work import shared_cache
from pplab.engine.compare_table import fill_split_columns
from pplab.formulas import parallel as pf
from pplab.runs.comparisons import load_comparison
from pplab.runs.resources import bundled_comparisons_dir

DEFAULTS = {"sizes": "mine", "bandwidth": "25", "latency": "10", "degree": "4",
            "layers": "32", "h": "4096", "s": "2048", "batch": "32", "microbatch": "1",
            "bytes": "2", "vocab": "50304"}
SIZES = ("mine", "bundled")
BUNDLED = "pp4-vs-tp4-cpu"
# The bundled comparison's model and batch (data/comparisons/pp4-vs-tp4-cpu/comparison.json):
# 4 ranks, 4 layers, d_model 128, seq_len 64, 64 sequences, float32, vocabulary 16.
BUNDLED_SIZES = {"degree": 4, "layers": 4, "h": 128, "s": 64, "batch": 64, "microbatch": 8,
                 "bytes": 4, "vocab": 16}
ROWS = {"pipeline": "gpipe:pp=4,m=8", "tensor": "tp:tp=4", "data": "dp:dp=4"}
MIB = 2**20


@shared_cache
def bundled_rows(folder: str) -> list[dict]:
    """The bundled comparison's rows, with the split of busy time worked out from its runs."""
    comparison = load_comparison(folder)
    return fill_split_columns(comparison.path, comparison.rows)


def _sizes(config: dict[str, str]) -> dict[str, int]:
    cols = st.columns(4)
    limits = {"degree": (2, 64), "layers": (1, 512), "h": (8, 65536), "s": (1, 131072),
              "batch": (1, 65536), "microbatch": (1, 65536), "bytes": (1, 8),
              "vocab": (1, 10**6)}
    labels = {"degree": "Ranks n", "layers": "Layers L", "h": "Hidden size h",
              "s": "Sequence s (tokens)", "batch": "Sequences per step",
              "microbatch": "Microbatch b (sequences)", "bytes": "Bytes per element e",
              "vocab": "Vocabulary"}
    return {name: int(cols[i % 4].number_input(
        labels[name], low, high, whole(config, DEFAULTS, name, low, high), step=1,
        key=f"l08_{name}")) for i, (name, (low, high)) in enumerate(limits.items())}


def _chart(costs: list[pf.WireCost]) -> go.Figure:
    names = [c.parallelism for c in costs]
    figure = go.Figure()
    figure.add_bar(name="on the critical path", x=names, y=[c.critical_seconds * 1e3
                                                            for c in costs])
    figure.add_bar(name="can hide behind compute", x=names,
                   y=[(c.seconds - c.critical_seconds) * 1e3 for c in costs])
    figure.update_layout(barmode="stack", yaxis_title="ms per step (busiest rank)",
                         title="Communication per step by formula (alpha-beta link, ring "
                               "all-reduce; predicted, ms)")
    return figure


NARROW = "On a laptop's page the table scrolls sideways: its last columns are to the right."


def _measured(rows: list[dict]) -> pd.DataFrame:
    by_name = {row["configuration"]: row for row in rows}
    table = []
    for parallelism, configuration in ROWS.items():
        row = by_name.get(configuration)
        if row is None:
            continue
        table.append({
            "parallelism": parallelism, "configuration": configuration,
            "bytes per step, all ranks (measured)": int(row["bytes_per_step"]),
            "bytes per step, all ranks (formula)": int(row["bytes_per_step_formula"]),
            "all-reduce ms per rank (measured)": round(1e3 * row["allreduce_s_per_step"], 1),
            "tp all-reduce inside F/B (% of ranks x step)":
                round(100 * row.get("tp_allreduce_fraction", float("nan")), 1),
            "bubble (% of ranks x step, measured)": round(100 * row["bubble_fraction"], 1),
        })
    return pd.DataFrame(table)


def show(config: dict[str, str]) -> dict[str, str]:
    top = st.columns(3)
    sizes = top[0].radio("Sizes", SIZES, horizontal=True, key="l08_sizes",
                         index=SIZES.index(choice(config, DEFAULTS, "sizes", SIZES)),
                         help="'bundled' sets the model and batch of the bundled comparison, "
                              "so the formula's bytes can be held against the measured ones.")
    bandwidth = top[1].number_input("Link bandwidth (GB/s)", 0.001, 10000.0,
                                    number(config, DEFAULTS, "bandwidth", 0.001, 10000.0),
                                    key="l08_bandwidth")
    latency = top[2].number_input("Link latency (us)", 0.0, 1e6,
                                  number(config, DEFAULTS, "latency", 0.0, 1e6),
                                  key="l08_latency")
    shape = BUNDLED_SIZES if sizes == "bundled" else _sizes(config)
    # The learner's own sizes are kept in the link while the bundled ones are shown.
    own = ({k: str(v) for k, v in shape.items()} if sizes == "mine"
           else {k: str(config.get(k, DEFAULTS[k])) for k in BUNDLED_SIZES})
    shown = {"sizes": sizes, "bandwidth": f"{bandwidth:g}", "latency": f"{latency:g}", **own}
    try:
        costs = pf.wire_per_step(shape["degree"], shape["layers"], shape["batch"],
                                 shape["microbatch"], shape["s"], shape["h"], shape["vocab"],
                                 shape["bytes"], bandwidth * 1e9, latency * 1e-6)
    except ValueError as error:
        st.error(f"These sizes do not fit together: {error}.")
        return shown
    st.dataframe(pd.DataFrame([{
        "parallelism": c.parallelism, "MiB sent per rank": round(c.bytes_per_rank / MIB, 3),
        "transfers": c.transfers, "ms on the wire": round(c.seconds * 1e3, 4),
        "ms on the critical path": round(c.critical_seconds * 1e3, 4), "where": c.where}
        for c in costs]), hide_index=True, key="l08_table")
    st.caption(NARROW)
    st.plotly_chart(_chart(costs), key="l08_chart")
    st.caption(f"Predicted by pplab.formulas.parallel for the busiest rank of {shape['degree']} "
               f"ranks, one link of {bandwidth:g} GB/s and {latency:g} us between every pair: "
               "a message takes latency + bytes / bandwidth; a ring all-reduce 2(n-1) such "
               "steps of 1/n of its tensor. Critical path: every tp all-reduce; the pipeline's "
               "fill and drain (GPipe, transfers shorter than a forward); the gradient "
               "all-reduce in full, as pplab runs it after the flush (DDP would hide most of it "
               "behind the backward). The MLP is 4h wide; dp all-reduces every parameter.")
    _bundled_beside(costs if sizes == "bundled" else None)
    return shown


def _bundled_beside(costs: list[pf.WireCost] | None) -> None:
    folder = bundled_comparisons_dir() / BUNDLED
    try:
        rows = bundled_rows(str(folder))
    except ValueError as error:
        st.caption(f"The bundled comparison is not there to compare with: {error}")
        return
    st.markdown(f"**Measured: the bundled comparison {BUNDLED}** (4 CPU ranks on a shared "
                "2-core machine, gloo; bytes are exact, times noisy)")
    table = _measured(rows)
    st.dataframe(table, hide_index=True, key="l08_measured")
    st.caption(NARROW)
    tp = next((row for row in rows if row["configuration"] == ROWS["tensor"]), None)
    if tp and tp.get("tp_allreduce_s_per_step", 0) > 0:
        # A ring over 4 ranks sends 2 x 3/4 of each rank's payload: what the link carried.
        wire = pf.ring_wire_bytes(int(tp["tp_bytes_per_step"]) // int(tp["ranks"]), 4)
        st.metric("gloo's all-reduces here moved about (measured)",
                  f"{wire / tp['tp_allreduce_s_per_step'] / 1e9:.2g} GB/s per rank",
                  help="The tp run's ring bytes per rank per step over its measured tp "
                       "all-reduce seconds per rank per step: set the link bandwidth to this "
                       "to compare the formula's time with the measured one.")
    if costs is not None:
        by_name = {c.parallelism: c for c in costs}
        st.caption(
            "With the bundled sizes the formula's bytes per rank are "
            + ", ".join(f"{name} {by_name[name].bytes_per_rank:,}" for name in ROWS)
            + " (ring share; the table above counts payload summed over ranks).")
