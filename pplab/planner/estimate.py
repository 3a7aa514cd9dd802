"""One layout's estimate: the rules it must follow, its memory, traffic and step time.

What it teaches: the rules that shape a 3D layout. pp x tp x dp must use every GPU; tensor
parallelism stays inside a node (its all-reduces need NVLink) and must split the heads; the
layers must split evenly into pp stages (pp x v for interleaving); the global batch must split
into dp replicas of whole microbatches. A layout that follows them gets its memory per stage
(``memory``), its traffic, a lower bound on its step time without simulating, and, when
timed, its simulated step (``timing``) with the MFU and throughput that follow.

    python -c "from pplab.planner import *; print(evaluate(PRESET_MODELS['gpt3-175b'],
    PRESET_CLUSTERS['dgx-a100-80gb'].with_nodes(512), 1536, pp=8, tp=8, dp=64,
    schedule='interleaved-1f1b', num_chunks=3, recompute='selective').describe())"
"""

from __future__ import annotations

from dataclasses import replace

from pplab import limits
from pplab.formulas import pipeline as formulas
from pplab.formulas.parallel import ring_wire_bytes
from pplab.planner import flops
from pplab.planner.memory import stage_memories
from pplab.planner.results import Candidate, Layout, StepTime, Traffic
from pplab.planner.specs import (
    TERA,
    ClusterSpec,
    ModelSpec,
    check_global_batch,
    check_whole,
)
from pplab.planner.timing import (
    PipelineCosts,
    dp_allreduce_seconds,
    dp_crosses_nodes,
    pipeline_costs,
    pipeline_time,
    stage_links,
)
from pplab.sim.cost_model import CostModel

SCHEDULES = ("gpipe", "1f1b", "interleaved-1f1b", "zb-h1")


def grid_problem(model: ModelSpec, cluster: ClusterSpec, global_batch: int | None, pp: int,
                 tp: int, dp: int) -> str | None:
    """Why (pp, tp, dp) cannot run this model on this cluster, or None when it can; with
    ``global_batch`` None, whatever the batch (its split into dp replicas is not checked)."""
    gpus = cluster.num_gpus
    if pp * tp * dp != gpus:
        return f"pp x tp x dp = {pp} x {tp} x {dp} = {pp * tp * dp}, the cluster has {gpus} GPUs"
    node = cluster.gpus_per_node
    if tp > node:
        return (f"tp={tp} crosses nodes ({node} GPUs per node): its all-reduces would run on "
                f"inter-node links")
    if node % tp:
        return f"tp={tp} does not divide the {node} GPUs of a node"
    if model.heads % tp:
        return f"{model.heads} heads are not divisible by tp={tp}"
    if model.layers % pp:
        return f"{model.layers} layers are not divisible by pp={pp}"
    if pp > limits.MAX_PLANNED_PP:
        return f"pp={pp} is deeper than the planner's limit of {limits.MAX_PLANNED_PP} stages"
    if global_batch is not None and global_batch % dp:
        return f"global batch {global_batch} is not divisible by dp={dp}"
    return None


def interleaving_problem(model: ModelSpec, pp: int, v: int, m: int | None = None) -> str | None:
    """Why interleaved 1F1B cannot run v chunks per rank on pp ranks (with m microbatches per
    pipeline; None: whatever m), or None: Megatron's schedule (Narayanan et al., SC 2021,
    arXiv:2104.04473, Sec. 2.2.2) cuts the layers into pp x v equal chunks and sends the
    microbatches round in groups of pp."""
    if pp < 2 or v < 2:
        return f"interleaved-1f1b needs pp >= 2 and at least 2 chunks; got pp={pp}, v={v}"
    if model.layers % (pp * v):
        return f"{model.layers} layers are not divisible by pp x v = {pp} x {v}"
    if m is not None and m % pp:
        return f"interleaved-1f1b needs microbatches a multiple of pp={pp}; got m={m}"
    return None


def layout_problem(model: ModelSpec, cluster: ClusterSpec, global_batch: int,
                   layout: Layout) -> str | None:
    """Why ``layout`` cannot run, or None: the grid's rules, then the batch and schedule's."""
    pp, tp, dp = layout.grid
    problem = grid_problem(model, cluster, global_batch, pp, tp, dp)
    if problem:
        return problem
    b, v, name = layout.microbatch_size, layout.num_chunks, layout.schedule
    per_replica = global_batch // dp
    if per_replica % b:
        return (f"{per_replica} sequences per replica (global batch {global_batch} / dp={dp}) "
                f"are not divisible by microbatch size {b}")
    if layout.num_microbatches != per_replica // b:
        return (f"{per_replica} sequences per replica in microbatches of {b} make "
                f"{per_replica // b} microbatches, not {layout.num_microbatches}")
    if name not in SCHEDULES:
        return f"schedule {name!r} is not one of {', '.join(SCHEDULES)}"
    if name != "interleaved-1f1b":
        return None if v == 1 else f"{name} places 1 chunk per rank, not {v}"
    return interleaving_problem(model, pp, v, layout.num_microbatches)


def estimate_layout(model: ModelSpec, cluster: ClusterSpec, global_batch: int,
                    layout: Layout) -> Candidate:
    """Memory, traffic and the lower bound of a valid layout: everything but the simulation."""
    pp, tp, dp = layout.grid
    b, m, v = layout.microbatch_size, layout.num_microbatches, layout.num_chunks
    memory = stage_memories(model, pp, tp, b, m, layout.schedule, v, layout.recompute,
                            layout.sequence_parallel)
    costs = pipeline_costs(model, cluster, pp, tp, dp, b, v, layout.recompute)
    gradients = max(stage.gradients for stage in memory)
    dp_seconds = dp_allreduce_seconds(gradients, cluster, tp, dp)
    passes = 6 if layout.recompute == "full" else 4  # all-reduces per layer and microbatch
    payload = b * model.seq_len * model.hidden * model.element_bytes
    # A middle rank sends, per microbatch and chunk, an activation on and a gradient back;
    # with pp = 2 each rank lacks one of its 2v neighbours (no stage after the last).
    sends = 0 if pp == 1 else (2 * v - 1 if pp == 2 else 2 * v)
    crosses = any(stage_links(cluster, pp, tp, dp, v))
    traffic = Traffic(
        tp_bytes=float(m * costs.layers_per_rank * passes * ring_wire_bytes(payload, tp)),
        tp_link="NVLink" if tp > 1 else "none",
        pp_bytes=m * sends * costs.message_bytes,
        pp_link="none" if pp == 1 else ("inter-node" if crosses else "NVLink"),
        dp_bytes=0.0 if dp == 1 else 2.0 * (dp - 1) / dp * gradients,
        dp_link="none" if dp == 1 else
        ("inter-node" if dp_crosses_nodes(cluster, tp, dp) else "NVLink"),
    )
    return Candidate(layout=layout, memory=memory, memory_limit=cluster.memory_bytes,
                     lower_bound=_pipeline_bound(layout, costs) + dp_seconds, traffic=traffic)


def _pipeline_bound(layout: Layout, costs: PipelineCosts) -> float:
    """Seconds no simulation of this pipeline can beat, known without simulating.

    Three bounds, the largest taken. The busiest rank's work. The closed-form makespan of
    equal stages and free messages (``pplab.formulas.pipeline``): the simulated stages are no
    shorter,
    messages no faster, and a makespan never shrinks when a duration grows. And for the
    1F1B family one path through the dependencies: microbatch 0's forward down the first
    chunks of ranks 0 to p-2, all of the last rank's work, the last backward back up, with
    a message at each of the 2(p-1) hops.
    """
    p, m, v = layout.pp, layout.num_microbatches, layout.num_chunks
    work, last = costs.forward + costs.backward, costs.last_factor
    busiest = m * work * (1 + (last - 1) / v)
    bubble = _closed_form(layout, costs)
    closed = m * work / (1.0 - bubble) if bubble is not None else 0.0
    path = 0.0
    if layout.schedule != "zb-h1" and p > 1:
        hop = costs.message_seconds * min(costs.link_factors)
        path = busiest + (p - 1) * (work / v + 2 * hop)
    return max(busiest, closed, path)


def time_layout(model: ModelSpec, cluster: ClusterSpec, global_batch: int,
                candidate: Candidate) -> Candidate:
    """``candidate`` with its simulated step time and the rates that follow from it."""
    layout = candidate.layout
    pp, tp, dp = layout.grid
    m, v = layout.num_microbatches, layout.num_chunks
    costs = pipeline_costs(model, cluster, pp, tp, dp, layout.microbatch_size, v,
                           layout.recompute)
    pipeline = pipeline_time(layout.schedule, pp, m, v, costs)
    layer, layers = costs.layer, costs.layers_per_rank
    logits = (costs.last_factor - 1) * (costs.forward + costs.backward) / v
    recompute = m * layers * layer.recompute
    tp_comm = m * layers * layer.tp_comm
    compute = m * (layers * (layer.total - layer.recompute - layer.tp_comm) + logits)
    gradients = max(stage.gradients for stage in candidate.memory)
    dp_seconds = dp_allreduce_seconds(gradients, cluster, tp, dp)
    step = pipeline.makespan + dp_seconds
    time = StepTime(step=step, pipeline=pipeline.makespan, compute=compute, recompute=recompute,
                    tp_comm=tp_comm, bubble=max(pipeline.makespan - compute - recompute - tp_comm,
                                                0.0),
                    dp_allreduce=dp_seconds, message=costs.message_seconds, note=pipeline.note)
    busy = m * (pp * (costs.forward + costs.backward) + logits)
    peak = cluster.num_gpus * cluster.peak_tflops * TERA * step
    executed = flops.hardware_flops(model, global_batch, layout.recompute)
    return replace(
        candidate, time=time,
        bubble_fraction=max(1.0 - busy / (pp * pipeline.makespan), 0.0),
        bubble_closed_form=_closed_form(layout, costs),
        mfu=flops.model_flops(model, global_batch) / peak,
        hfu=executed / peak,
        tflops_per_gpu=executed / (cluster.num_gpus * step) / TERA,
        tokens_per_s=global_batch * model.seq_len / step)


def _closed_form(layout: Layout, costs) -> float | None:
    cost = CostModel(forward=costs.forward, backward=costs.backward,
                     backward_input=costs.recompute + costs.backward_input,
                     backward_weight=costs.backward_weight)
    try:
        return formulas.bubble_fraction(layout.schedule, layout.pp, layout.num_microbatches,
                                        layout.num_chunks, cost)
    except ValueError:  # outside the form's domain (zb-h1 with m < p)
        return None


def evaluate(model: ModelSpec, cluster: ClusterSpec, global_batch: int, *, pp: int, tp: int,
             dp: int, microbatch_size: int = 1, schedule: str = "1f1b",
             num_chunks: int | None = None, recompute: str = "none",
             sequence_parallel: bool = True, timed: bool = True) -> Candidate:
    """One layout's memory, time and traffic, whether it fits or not (the app's sliders).

    Raise ValueError, one line, when the layout breaks a rule.
    """
    check_global_batch(global_batch)
    for what, value in (("pp", pp), ("tp", tp), ("dp", dp),
                        ("microbatch size", microbatch_size)):
        check_whole(what, value, limits.MAX_PLANNED_GLOBAL_BATCH * limits.MAX_PLANNED_NODES)
    flops.check_recompute(recompute)
    if num_chunks is None:
        num_chunks = 2 if schedule == "interleaved-1f1b" else 1
    if pp == 1 and schedule != "interleaved-1f1b":
        schedule = "1f1b"  # one stage: every schedule runs its microbatches one by one
    layout = Layout(pp, tp, dp, microbatch_size, global_batch // (dp * microbatch_size),
                    schedule, num_chunks, recompute, bool(sequence_parallel))
    problem = layout_problem(model, cluster, global_batch, layout)
    if problem:
        raise ValueError(problem)
    candidate = estimate_layout(model, cluster, global_batch, layout)
    return time_layout(model, cluster, global_batch, candidate) if timed else candidate


