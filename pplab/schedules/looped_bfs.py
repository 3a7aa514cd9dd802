"""Looped breadth-first: each rank holds V looped chunks and runs each chunk for every microbatch.

Interleaved 1F1B goes depth-first: a microbatch is pushed through the next chunk as soon as
it can. Breadth-first runs all microbatches through a chunk before the next chunk starts,
then all backwards chunk by chunk in reverse (the last microbatch first, since the last
stage finishes it last). With at least as many microbatches as ranks the pipe never drains
between chunks, so the bubble is interleaved 1F1B's, (p-1)/(v*m+p-1), but every
microbatch's activations are kept until the backwards start, as in GPipe: the schedule
suits data-parallel sharding, where weights gathered once per chunk serve every microbatch.

    pplab simulate --schedule looped-bfs --pp 4 --microbatches 8 --chunks 2
"""

from __future__ import annotations

from pplab.schedules.actions import FORWARD, FULL_BACKWARD, Action, Schedule
from pplab.schedules.registry import register


@register(
    "looped-bfs",
    paper="Breadth-First Pipeline Parallelism, Lamy-Poirier, 2023, arXiv:2211.05953; "
          "the order of PyTorch's ScheduleLoopedBFS",
    min_chunks=2, max_chunks=None,
)
def looped_bfs(pp_size: int, num_microbatches: int, num_chunks: int = 2) -> Schedule:
    """All microbatches through one chunk before the next, V looped chunks per rank."""
    orders = {}
    for rank in range(pp_size):
        stages = [chunk * pp_size + rank for chunk in range(num_chunks)]
        forwards = [Action(stage, FORWARD, mb)
                    for stage in stages for mb in range(num_microbatches)]
        backwards = [Action(stage, FULL_BACKWARD, mb)
                     for stage in reversed(stages) for mb in reversed(range(num_microbatches))]
        orders[rank] = forwards + backwards
    stage_to_rank = tuple(stage % pp_size for stage in range(pp_size * num_chunks))
    return Schedule(orders, stage_to_rank, num_microbatches, name="looped-bfs",
                    params={"num_chunks": num_chunks})
