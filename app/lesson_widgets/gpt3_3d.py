"""Lesson 9's widget: pick tp, pp and dp (and b, recomputation, sequence parallelism) for
GPT-3 on GPUs of a given memory, and read what the planner predicts: memory per GPU against
the limit, the bubble, the bytes each GPU sends per step on each link, feasible or not.

The GPUs are tp x pp x dp DGX A100 GPUs (8 a node, NVLink inside, InfiniBand between) with
the memory chosen; the schedule is 1F1B. Every number is ``pplab.planner``'s prediction."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.lesson_widgets.reading import choice, number, whole
from app.shared_work import pooled
from pplab import charts
from pplab.classroom import page_work
from pplab.exercises.gpt3_layouts import NODE, cluster_of
from pplab.formulas import pipeline as formulas
from pplab.limits import MAX_LAYOUT_GPUS, MAX_PAGE_GLOBAL_BATCH, MAX_PLANNED_PP
from pplab.planner import PRESET_MODELS, RECOMPUTE
from pplab.planner.specs import GB, GIB

DEFAULTS = {"model": "gpt3-175b", "memory": "80", "batch": "1536", "tp": "8", "pp": "8",
            "dp": "64", "b": "1", "recompute": "selective", "sp": "on"}
TP_OPTIONS = ("1", "2", "4", "8", "16")  # 16 is offered to show why tp stays in a node
B_OPTIONS = ("1", "2", "4", "8", "16")


def estimate(model_name: str, memory: float, batch: int, pp: int, tp: int, dp: int, b: int,
             recompute: str, sp: bool):
    """(Candidate, "") for the layout, timed in the lab's work pool (a deep pipeline takes
    seconds to simulate), or (None, the rule it breaks)."""
    gpus = pp * tp * dp
    layout = {"pp": pp, "tp": tp, "dp": dp, "microbatch_size": b, "schedule": "1f1b",
              "recompute": recompute, "sequence_parallel": sp}
    return pooled(page_work.layout_estimate, PRESET_MODELS[model_name],
                  cluster_of(gpus // NODE.gpus_per_node, memory), batch, layout,
                  what="Simulating one pipeline")


def _traffic_table(candidate, cluster) -> pd.DataFrame:
    speeds = {"NVLink": cluster.intra_bandwidth, "inter-node": cluster.inter_bandwidth}
    traffic, rows = candidate.traffic, []
    for kind, sent, link in (("tensor parallel (all-reduces)", traffic.tp_bytes,
                              traffic.tp_link),
                             ("pipeline (activations and gradients)", traffic.pp_bytes,
                              traffic.pp_link),
                             ("data parallel (gradient all-reduce)", traffic.dp_bytes,
                              traffic.dp_link)):
        rows.append({"traffic": kind, "GB per GPU per step": round(sent / GB, 3),
                     "link": link,
                     "seconds at the link's nominal speed":
                         round(sent / speeds[link], 4) if link in speeds else 0.0})
    return pd.DataFrame(rows)


def show(config: dict[str, str]) -> dict[str, str]:
    models = list(PRESET_MODELS)
    top = st.columns(3)
    model_name = top[0].selectbox("Model", models, key="l09_model",
                                  index=models.index(choice(config, DEFAULTS, "model", models)))
    memory = top[1].number_input("GPU memory (GiB)", 1.0, 1024.0,
                                 number(config, DEFAULTS, "memory", 1, 1024), step=8.0,
                                 key="l09_memory")
    batch = int(top[2].number_input("Global batch (sequences)", 1, MAX_PAGE_GLOBAL_BATCH,
                                    whole(config, DEFAULTS, "batch", 1, MAX_PAGE_GLOBAL_BATCH),
                                    key="l09_batch"))
    grid = st.columns(3)
    tp = int(grid[0].select_slider("tp (tensor parallel, inside a node)", TP_OPTIONS,
                                   choice(config, DEFAULTS, "tp", TP_OPTIONS), key="l09_tp"))
    pp = int(grid[1].number_input("pp (pipeline stages)", 1, MAX_PLANNED_PP,
                                  whole(config, DEFAULTS, "pp", 1, MAX_PLANNED_PP), key="l09_pp"))
    dp = int(grid[2].number_input("dp (data-parallel replicas)", 1, MAX_LAYOUT_GPUS,
                                  whole(config, DEFAULTS, "dp", 1, MAX_LAYOUT_GPUS),
                                  key="l09_dp"))
    more = st.columns(3)
    b = int(more[0].select_slider("Microbatch size b (sequences)", B_OPTIONS,
                                  choice(config, DEFAULTS, "b", B_OPTIONS), key="l09_b"))
    recompute = more[1].radio("Recomputation", RECOMPUTE, horizontal=True, key="l09_recompute",
                              index=RECOMPUTE.index(choice(config, DEFAULTS, "recompute",
                                                           RECOMPUTE)))
    sp = more[2].toggle("Sequence parallelism", key="l09_sp",
                        value=choice(config, DEFAULTS, "sp", ("on", "off")) == "on")
    shown = {"model": model_name, "memory": f"{memory:g}", "batch": str(batch), "tp": str(tp),
             "pp": str(pp), "dp": str(dp), "b": str(b), "recompute": recompute,
             "sp": "on" if sp else "off"}

    gpus, node = tp * pp * dp, NODE.gpus_per_node
    model = PRESET_MODELS[model_name]
    st.caption(f"{model.describe()}. tp x pp x dp = {tp} x {pp} x {dp} = {gpus:,} GPUs of "
               f"{memory:g} GiB, {node} a node; 1F1B; all numbers predicted by the planner.")
    if gpus % node:
        st.error(f"Not feasible: {gpus:,} GPUs is not a whole number of {node}-GPU nodes.")
        return shown
    if gpus > MAX_LAYOUT_GPUS:
        st.error(f"{gpus:,} GPUs is more than this widget plans for ({MAX_LAYOUT_GPUS:,}).")
        return shown
    candidate, problem = estimate(model_name, float(memory), batch, pp, tp, dp, b, recompute,
                                  bool(sp))
    if candidate is None:
        st.error(f"Not feasible: {problem}.")
        return shown
    peak, rank = candidate.peak_memory / GIB, candidate.peak_rank
    cols = st.columns(4)
    cols[0].metric("Memory per GPU (predicted)", f"{peak:.1f} GiB",
                   help=f"Pipeline rank {rank}, the fullest; the limit is {memory:g} GiB.")
    m = candidate.layout.num_microbatches
    cols[1].metric("Bubble (simulated)", f"{candidate.bubble_fraction:.1%}",
                   help=f"Idle rank-time over ranks x makespan of one pipeline step, messages "
                        f"included; the closed form (p-1)/(m+p-1) gives "
                        f"{formulas.bubble_fraction('1f1b', pp, m):.1%} with m = {m}.")
    cols[2].metric("Step time (predicted)", f"{candidate.time.step:.2f} s")
    cols[3].metric("Microbatches per pipeline m", f"{m}", help=f"{batch} / (dp x b)")
    if candidate.fits:
        st.info(f"Feasible: every GPU is used, tp = {tp} stays inside a node, and the "
                   f"fullest GPU (pipeline rank {rank}) needs {peak:.1f} GiB <= {memory:g} GiB.")
    else:
        stage = candidate.memory[rank]
        st.error(f"Does not fit: pipeline rank {rank} needs {peak:.1f} GiB > {memory:g} GiB "
                 f"({stage.model_states / GIB:.1f} GiB weights, gradients and optimizer "
                 f"states, {stage.activations / GIB:.1f} GiB activations).")
    st.plotly_chart(charts.memory_breakdown([s.as_dict() for s in candidate.memory],
                                            candidate.memory_limit), key="l09_memory_bars")
    st.dataframe(_traffic_table(candidate, cluster_of(gpus // node, memory)), hide_index=True,
                 key="l09_traffic")
    st.caption("Bytes one GPU sends per step on each kind of link (predicted), and how long "
               "they take at the link's nominal speed per direction: NVLink "
               f"{NODE.intra_node_gbs:g} GB/s inside a node, InfiniBand "
               f"{NODE.inter_node_gbs:g} GB/s between nodes.")
    return shown
