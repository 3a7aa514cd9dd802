"""Planner: pp x tp x dp at the size of GPT-3, its memory per GPU, its pipeline, its rank.

A thin face over ``pplab.planner`` (docs/planner.md): pick a model and a cluster, move pp, tp,
the microbatch size, the schedule and the recomputation, and read the layout's predicted memory
per pipeline rank against the GPU's limit, the simulated timeline of one of its pipelines and
where it ranks among every layout of the same GPUs. ``pplab plan`` prints the same table.

    streamlit run app/lab.py   (then open Planner)
"""

import pandas as pd
import streamlit as st
from shared_work import pooled, shared_cache
from text_blocks import text_block
from warm_up import PLANNER_DEFAULTS

from pplab import charts
from pplab.classroom import page_work
from pplab.cli.plan import explain_lines, ranked_rows
from pplab.limits import (
    MAX_PAGE_GLOBAL_BATCH,
    MAX_PLANNER_PAGE_NODES,
    MAX_PLANNER_PAGE_RANKED_PP,
)
from pplab.planner import (
    PRESET_CLUSTERS,
    PRESET_MODELS,
    RECOMPUTE,
    SCHEDULES,
    explain,
)
from pplab.planner.search import chunk_options, microbatch_options, valid_grids
from pplab.planner.specs import GB, GIB


def _specs(model_name: str, cluster_name: str, nodes: int):
    return PRESET_MODELS[model_name], PRESET_CLUSTERS[cluster_name].with_nodes(nodes)


def ranked(model_name: str, cluster_name: str, nodes: int, batch: int):
    """(PlanResult, "") or (None, the one line saying why nothing fits), from the work pool."""
    return pooled(page_work.ranked_layouts, *_specs(model_name, cluster_name, nodes), batch,
                  MAX_PLANNER_PAGE_RANKED_PP, what="Ranking every layout of these GPUs")


def layout_estimate(model_name: str, cluster_name: str, nodes: int, batch: int, **layout):
    """(Candidate, "") for the sliders' layout, timed, or (None, the rule it breaks)."""
    return pooled(page_work.layout_estimate, *_specs(model_name, cluster_name, nodes), batch,
                  layout, what="Timing your layout")


def one_pipeline(model_name: str, cluster_name: str, nodes: int, layout):
    """The simulated events of one pipeline of ``layout`` (a planner Layout)."""
    return pooled(page_work.one_pipeline, *_specs(model_name, cluster_name, nodes), layout,
                  what="Simulating one pipeline")


def why(model_name: str, cluster_name: str, nodes: int, batch: int, candidate, layout):
    """``explain`` of the chosen layout, in lines."""
    result, _ = ranked(model_name, cluster_name, nodes, batch)
    return _why(model_name, cluster_name, nodes, batch, layout, candidate, result)


@shared_cache
def _why(model_name: str, cluster_name: str, nodes: int, batch: int, layout, candidate,
         result):
    return explain_lines(explain(candidate, result))


def _nearest(options: list[int], wanted: int) -> int:
    return min(options, key=lambda option: (abs(option - wanted), -option))


st.title("Planner")
st.caption("Pipeline, tensor and data parallelism at real sizes. Every number here is "
           "predicted: memory from Korthikanti et al.'s formulas, time from the simulator over "
           "FLOP- and bandwidth-derived costs (assumptions and published checks: "
           "docs/planner.md). `pplab plan` prints the same ranking.")

with st.sidebar:
    st.header("Model and cluster")
    # the server ranks these defaults' layouts as it starts (warm_up.py)
    first_model, first_nodes, first_batch = PLANNER_DEFAULTS
    model_name = st.selectbox("Model", list(PRESET_MODELS), key="pl_model",
                              index=list(PRESET_MODELS).index(first_model))
    cluster_name = st.selectbox("Node", list(PRESET_CLUSTERS), key="pl_cluster")
    nodes = int(st.number_input("Nodes", 1, MAX_PLANNER_PAGE_NODES, first_nodes,
                                key="pl_nodes"))
    batch = int(st.number_input("Global batch (sequences per step)", 1, MAX_PAGE_GLOBAL_BATCH,
                                first_batch, key="pl_batch"))
    model, cluster = _specs(model_name, cluster_name, nodes)
    st.caption(model.describe())
    st.caption(cluster.describe())

gpus = cluster.num_gpus
st.subheader("Your layout")
left, middle, right = st.columns(3)
# The planner says which grids it accepts; the batch's split is left to the error below, so
# a layout that breaks only that rule can be picked and shows the rule.
grids = valid_grids(model, cluster)
pp_options = sorted({grid[0] for grid in grids})
pp = left.select_slider("pp (pipeline ranks)", pp_options, _nearest(pp_options, 8),
                        key="pl_pp", help="Only depths that split the layers evenly.")
tp_options = sorted({grid[1] for grid in grids if grid[0] == pp})
tp = middle.select_slider("tp (tensor-parallel GPUs)", tp_options,
                          _nearest(tp_options, 8), key="pl_tp",
                          help="Inside one node, dividing the heads.")
dp = gpus // (pp * tp)
right.metric("dp (data-parallel replicas)", f"{dp}", help=f"{gpus} GPUs / (pp × tp)")
b_options = microbatch_options(batch, dp) or [1]
b = left.select_slider("Microbatch size b (sequences)", b_options, 1, key="pl_b")
if batch % dp == 0:
    left.caption(f"m = {batch} / (dp × b) = {batch // dp // b} microbatches per pipeline")
schedule = middle.selectbox("Schedule", SCHEDULES, key="pl_schedule",
                            index=SCHEDULES.index("1f1b"))
chunks = None
if schedule == "interleaved-1f1b":
    v_options = chunk_options(model, pp) or [2]
    chunks = middle.select_slider("Chunks v per rank", v_options, v_options[0], key="pl_v")
recompute = right.select_slider("Recompute", RECOMPUTE, "selective", key="pl_recompute",
                                help="none keeps every activation; selective reruns the "
                                     "attention core; full keeps only each layer's input.")
sequence_parallel = right.toggle("Sequence parallelism", True, key="pl_sp")

layout = {"pp": pp, "tp": tp, "dp": dp, "microbatch_size": b, "schedule": schedule,
          "num_chunks": chunks, "recompute": recompute, "sequence_parallel": sequence_parallel}
candidate, problem = layout_estimate(model_name, cluster_name, nodes, batch, **layout)
if candidate is None:
    st.error(problem)
else:
    time, peak = candidate.time, candidate.peak_memory / GIB
    cols = st.columns(4)
    cols[0].metric("Memory per GPU (predicted)", f"{peak:.1f} GiB",
                   help=f"Pipeline rank {candidate.peak_rank}, the fullest; the GPU has "
                        f"{cluster.memory_gib:g} GiB.")
    cols[1].metric("Step time (predicted)", f"{time.step:.2f} s",
                   help=f"{candidate.tokens_per_s:,.0f} tokens/s over the whole cluster.")
    cols[2].metric("Bubble (predicted)", f"{100 * candidate.bubble_fraction:.1f} %",
                   help="Idle share of one pipeline's rank-time, exposed messages included.")
    cols[3].metric("MFU (predicted)", f"{100 * candidate.mfu:.1f} %",
                   help=f"Model FLOPs per second over the GPUs' peak; "
                        f"{candidate.tflops_per_gpu:.0f} TFLOP/s per GPU executed, "
                        f"recomputation included.")
    if not candidate.fits:
        st.warning(f"Does not fit: pipeline rank {candidate.peak_rank} needs {peak:.1f} GiB > "
                   f"{cluster.memory_gib:g} GiB. More recomputation, a deeper pipeline, more "
                   f"tensor parallelism or a smaller microbatch lower it.")
    st.caption(
        f"Where the {time.step:.2f} s go on the busiest rank (predicted): compute "
        f"{time.compute:.2f} s, recomputation {time.recompute:.2f} s, tensor-parallel "
        f"all-reduces {time.tp_comm:.2f} s, bubble {time.bubble:.2f} s, then the data-parallel "
        f"all-reduce {time.dp_allreduce:.2f} s. Each GPU sends per step: tp "
        f"{candidate.traffic.tp_bytes / GB:.1f} GB ({candidate.traffic.tp_link}), pp "
        f"{candidate.traffic.pp_bytes / GB:.1f} GB ({candidate.traffic.pp_link}), dp "
        f"{candidate.traffic.dp_bytes / GB:.1f} GB ({candidate.traffic.dp_link}).")
    st.plotly_chart(charts.memory_breakdown([s.as_dict() for s in candidate.memory],
                                            candidate.memory_limit), key="pl_memory")
    events = one_pipeline(model_name, cluster_name, nodes, candidate.layout)
    shown = int(events.loc[events["microbatch"] >= 0, "microbatch"].max()) + 1
    st.plotly_chart(charts.gantt(
        events, unit=charts.SECONDS,
        title=f"Predicted timeline of one pipeline: {shown} of its "
              f"{candidate.layout.num_microbatches} microbatches"), key="pl_gantt")

st.subheader(f"Every layout of these {gpus:,} GPUs, fastest first (predicted)")
result, nothing_fits = ranked(model_name, cluster_name, nodes, batch)
if result is None:
    st.warning(nothing_fits)
    st.stop()
table = pd.DataFrame(ranked_rows(result.ranked))
if candidate is not None:
    table.insert(1, "yours", [row.layout == candidate.layout for row in result.ranked])
# What ranks a layout first (its grid, step time, bubble, MFU, memory), then the memory by
# part and the traffic per link: a laptop's page shows the first ones without scrolling.
first = [name for name in ("#", "yours", "pp", "tp", "dp", "schedule", "step (s)",
                           "bubble (%)", "MFU (%)", "memory (GiB)") if name in table.columns]
table = table[first + [name for name in table.columns if name not in first]]
st.dataframe(table, hide_index=True, key="pl_table", column_config={
    name: st.column_config.NumberColumn(format="%.1f") for name in table.columns
    if "(" in name and name != "step (s)"} | {
    "step (s)": st.column_config.NumberColumn(format="%.2f")} | {
    name: st.column_config.Column(pinned=True) for name in ("#", "yours") if name in first})
where = ""
if candidate is not None and candidate.fits:
    place = 1 + sum(other.step_s < candidate.step_s for other in result.ranked)
    where = (f" Yours ({candidate.step_s:.2f} s) would be #{place}."
             if place <= len(result.ranked) else
             f" Yours ({candidate.step_s:.2f} s) is slower than all of them.")
deeper = [pp for pp in pp_options if pp > MAX_PLANNER_PAGE_RANKED_PP]
st.caption(f"{len(table.columns)} columns: scroll the table sideways for the memory by part "
           f"and the traffic per link (# stays in view). "
           f"{len(result.feasible)} layouts fit in {cluster.memory_gib:g} GiB; the "
           f"{len(result.ranked)} fastest are shown, each with the lightest recomputation that "
           f"fits. Memory is the fullest pipeline rank's; GB/step is what one GPU sends per "
           f"step on that link.{where}" + (
               f" Pipelines deeper than {MAX_PLANNER_PAGE_RANKED_PP} (pp = "
               f"{', '.join(map(str, deeper))}) are timed above when you choose them but not "
               f"ranked here, where each takes seconds to simulate: `pplab plan` ranks them "
               f"too." if deeper else ""))
if candidate is not None and candidate.fits and st.toggle(
        "Why each other grid ranks above or below your layout", key="pl_explain"):
    text_block("\n".join(why(model_name, cluster_name, nodes, batch, candidate,
                             candidate.layout)))
