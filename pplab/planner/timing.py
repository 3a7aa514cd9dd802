"""Step time: one pipeline run through pplab's simulator, plus the data-parallel all-reduce.

What it teaches: every data-parallel replica runs the same pipeline at the same time, so one
pipeline's timeline is the step. Its stages take the durations of ``flops.layer_times`` (the
tensor-parallel all-reduces inside them), its messages cross NVLink or InfiniBand depending on
where neighbouring ranks sit, and the simulator finds the bubble. After the flush each GPU
all-reduces its gradients with its dp peers (not overlapped, as in Korthikanti et al. 2022,
Sec. 6.3); the optimizer's own time is left out (well under 1 % of these steps).

Cheap by construction: times scale with the durations, so the simulator runs once on
durations relative to the forward and the result is cached. For m > 3p microbatches it runs
m = 2p and m = 3p and extends the line through them to m: beyond the fill the makespan grows
by the same amount per microbatch. With uniform links that is exact for gpipe and 1f1b from
m = p, zb-h1 from m = 2p, and interleaved-1f1b while a message takes less than a chunk's
forward; mixed NVLink and InfiniBand hops stay within 0.2 %, interleaved messages as long as a
forward within 3 % (tests/test_planner.py checks both against direct runs).

    python -c "from pplab.planner import *; m, c = PRESET_MODELS['gpt3-175b'],
    PRESET_CLUSTERS['dgx-a100-80gb'].with_nodes(512); print(pipeline_events(m, c,
    evaluate(m, c, 1536, pp=8, tp=8, dp=64, timed=False)).head())"
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from pplab.planner.flops import LayerTimes, layer_times, logits_seconds
from pplab.planner.specs import ClusterSpec, ModelSpec
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate

EXTEND_FROM = 2  # simulate 2p and 3p microbatches, extend to m
MIN_MESSAGE = 1e-12  # a message shorter than this share of a forward is free


@dataclass(frozen=True)
class PipelineCosts:
    """Durations of one rank's whole share of the model for one microbatch, in seconds.

    ``last_factor`` scales the last model stage, which also runs the logit layer; each
    ``link_factors`` entry scales the message time across one stage boundary (1 across
    nodes, inter/intra-node bandwidth inside one).
    """

    layer: LayerTimes
    layers_per_rank: int
    forward: float
    backward_input: float
    backward_weight: float
    recompute: float
    last_factor: float
    message_bytes: float
    message_seconds: float
    link_factors: tuple[float, ...]

    @property
    def backward(self) -> float:
        return self.recompute + self.backward_input + self.backward_weight

    def cost_model(self, bytes_and_seconds: bool = True) -> CostModel:
        """The simulator's CostModel; relative to the forward when ``bytes_and_seconds`` is off."""
        scale = 1.0 if bytes_and_seconds else 1.0 / self.forward
        stages = len(self.link_factors) + 1
        stage_scale = None
        if self.last_factor != 1.0:
            stage_scale = (1.0,) * (stages - 1) + (self.last_factor,)
        message = self.message_seconds * scale
        # Relative to the forward a message is one unit of "bytes" over 1/time, so equal
        # layouts share one cached simulation whatever their sizes.
        size = self.message_bytes if bytes_and_seconds else 1.0
        free = message <= MIN_MESSAGE * self.forward * scale
        return CostModel(
            forward=self.forward * scale,
            backward=self.backward * scale,
            # The recomputation must finish before the input gradient can start.
            backward_input=(self.recompute + self.backward_input) * scale,
            backward_weight=self.backward_weight * scale,
            bandwidth=None if free else size / message,
            message_bytes=0.0 if free else size,
            stage_scale=stage_scale,
            link_scale=self.link_factors if stages > 1 and not free else None,
        )


def stage_links(cluster: ClusterSpec, pp: int, tp: int, dp: int,
                num_chunks: int) -> tuple[bool, ...]:
    """For each boundary between model stages: does the message leave the node?

    Ranks are numbered as Megatron-LM does, tensor-parallel fastest, then data-parallel, then
    pipeline: pipeline rank i of replica 0 is GPU i x tp x dp. Interleaved placements loop,
    so the boundary after the last rank's chunk goes back to rank 0.
    """
    node = [(rank * tp * dp) // cluster.gpus_per_node for rank in range(pp)]
    stages = pp * num_chunks
    return tuple(node[s % pp] != node[(s + 1) % pp] for s in range(stages - 1))


def dp_crosses_nodes(cluster: ClusterSpec, tp: int, dp: int) -> bool:
    """A data-parallel group spans tp x dp consecutive GPUs (every tp-th)."""
    return dp > 1 and tp * dp > cluster.gpus_per_node


def pipeline_costs(model: ModelSpec, cluster: ClusterSpec, pp: int, tp: int, dp: int,
                   microbatch_size: int, num_chunks: int, recompute: str) -> PipelineCosts:
    """Per-rank durations and message times for one pipeline of this layout.

    Each tp GPU sends 1/t of the boundary activation over its own network card, as Megatron's
    scatter/gather (Narayanan Sec. 4.1) or sequence parallelism does: b s h e / t bytes; the
    all-gather at the receiver runs over NVLink and is left out. The logit layer makes the
    last stage longer by its forward and backward, 3 x 2bshV/t FLOPs.
    """
    layer = layer_times(model, cluster, microbatch_size, tp, recompute)
    layers = model.layers // pp
    logits = logits_seconds(model, cluster, microbatch_size, tp)
    chunk_work = (layer.forward + layer.backward) * layers / num_chunks
    last_factor = 1.0 + 3.0 * logits / chunk_work
    message_bytes = microbatch_size * model.seq_len * model.hidden * model.element_bytes / tp
    crossing = stage_links(cluster, pp, tp, dp, num_chunks)
    inside = cluster.inter_bandwidth / cluster.intra_bandwidth
    factors = tuple(1.0 if leaves else inside for leaves in crossing)
    return PipelineCosts(
        layer=layer, layers_per_rank=layers,
        forward=layer.forward * layers, backward_input=layer.backward_input * layers,
        backward_weight=layer.backward_weight * layers, recompute=layer.recompute * layers,
        last_factor=last_factor, message_bytes=message_bytes,
        message_seconds=message_bytes / cluster.inter_bandwidth if pp > 1 else 0.0,
        link_factors=factors)


@lru_cache(maxsize=8192)
def _relative_makespan(schedule: str, pp: int, num_microbatches: int, num_chunks: int,
                       cost: CostModel) -> float:
    events = simulate(build(schedule, pp, num_microbatches, num_chunks), cost)
    return float(events["end"].max() - events["start"].min())


def _rounded(cost: CostModel) -> CostModel:
    # Equal layouts reached by different arithmetic share one cache entry.
    def r(x):
        return None if x is None else round(x, 12)
    return CostModel(
        forward=1.0, backward=r(cost.backward), backward_input=r(cost.backward_input),
        backward_weight=r(cost.backward_weight), bandwidth=r(cost.bandwidth),
        message_bytes=cost.message_bytes,
        stage_scale=None if cost.stage_scale is None else tuple(map(r, cost.stage_scale)),
        link_scale=None if cost.link_scale is None else tuple(map(r, cost.link_scale)))


@dataclass(frozen=True)
class PipelineTime:
    makespan: float  # seconds of one pipeline's step, fill to flush
    simulated: tuple[int, ...]  # the microbatch counts the simulator ran
    note: str


def pipeline_time(schedule: str, pp: int, num_microbatches: int, num_chunks: int,
                  costs: PipelineCosts) -> PipelineTime:
    """The makespan of one pipeline step: simulated, or simulated small and extended."""
    m = num_microbatches
    if pp == 1:  # one rank runs every microbatch back to back: nothing to simulate
        return PipelineTime(m * costs.last_factor * (costs.forward + costs.backward), (),
                            "one stage: m x (F + B), no pipeline")
    cost = _rounded(costs.cost_model(bytes_and_seconds=False))
    chunks = num_chunks if schedule == "interleaved-1f1b" else None
    small, large = EXTEND_FROM * pp, (EXTEND_FROM + 1) * pp
    if m <= large:
        span = _relative_makespan(schedule, pp, m, chunks, cost)
        return PipelineTime(span * costs.forward, (m,), f"simulated m={m}")
    a = _relative_makespan(schedule, pp, small, chunks, cost)
    b = _relative_makespan(schedule, pp, large, chunks, cost)
    span = b + (m - large) * (b - a) / (large - small)
    return PipelineTime(span * costs.forward, (small, large),
                        f"simulated m={small} and m={large}, extended to m={m}")


def pipeline_events(model: ModelSpec, cluster: ClusterSpec, layout,
                    num_microbatches: int | None = None) -> pd.DataFrame:
    """The simulated Event table of one pipeline of ``layout`` (a Layout or a Candidate).

    Times are seconds; messages carry their bytes. By default it runs min(m, 2p) microbatches
    (fill, steady state and drain all show, and a Gantt of it draws fast); pass
    ``num_microbatches`` for another count (a multiple of pp for interleaved-1f1b).
    """
    layout = getattr(layout, "layout", layout)
    pp, tp, dp = layout.grid
    m = num_microbatches if num_microbatches is not None else \
        min(layout.num_microbatches, EXTEND_FROM * pp)
    costs = pipeline_costs(model, cluster, pp, tp, dp, layout.microbatch_size,
                           layout.num_chunks, layout.recompute)
    chunks = layout.num_chunks if layout.schedule == "interleaved-1f1b" else None
    return simulate(build(layout.schedule, pp, m, chunks), costs.cost_model())


def dp_allreduce_seconds(gradient_bytes: float, cluster: ClusterSpec, tp: int, dp: int) -> float:
    """A ring all-reduce of one GPU's gradients over its dp peers: 2 (d-1)/d of them per link."""
    if dp == 1:
        return 0.0
    wire = 2.0 * (dp - 1) / dp * gradient_bytes
    bandwidth = cluster.inter_bandwidth if dp_crosses_nodes(cluster, tp, dp) \
        else cluster.intra_bandwidth
    return wire / bandwidth
