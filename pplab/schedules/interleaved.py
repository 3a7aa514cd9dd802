"""Interleaved 1F1B: each rank holds several non-adjacent chunks of the model.

With V chunks per rank a microbatch crosses every rank V times, each time doing 1/V of the
work, so the fill and drain shrink by V at the cost of V times more messages.

    pplab simulate --schedule interleaved-1f1b --pp 4 --microbatches 8 --chunks 2
"""

from __future__ import annotations

from pplab.schedules.actions import FORWARD, FULL_BACKWARD, Action, Schedule
from pplab.schedules.registry import register


def _chunk_and_microbatch(k: int, pp_size: int, num_chunks: int) -> tuple[int, int]:
    # Megatron walks microbatches in groups of P: P microbatches through chunk 0, the same P
    # through chunk 1, ..., then the next group of P.
    chunk = (k // pp_size) % num_chunks
    microbatch = (k // (pp_size * num_chunks)) * pp_size + k % pp_size
    return chunk, microbatch


@register(
    "interleaved-1f1b",
    paper="Megatron-LM interleaved schedule, Narayanan et al., SC 2021, arXiv:2104.04473, Sec. 2.2",
    min_chunks=2,
    max_chunks=None,
)
def interleaved_1f1b(pp_size: int, num_microbatches: int, num_chunks: int = 2) -> Schedule:
    """1F1B over V looped chunks per rank: the bubble shrinks V times."""
    if num_microbatches % pp_size:
        raise ValueError(
            f"interleaved-1f1b walks microbatches in groups of the {pp_size} ranks; "
            f"{num_microbatches} microbatches is not a multiple of {pp_size}"
        )
    total = num_microbatches * num_chunks

    def stage_of(rank: int, chunk: int) -> int:
        return chunk * pp_size + rank

    orders: dict[int, list[Action]] = {}
    for rank in range(pp_size):
        if num_microbatches == pp_size:
            warmup = total  # Megatron's rule: with M == P the steady state has nothing to pair
        else:
            warmup = min((pp_size - rank - 1) * 2 + (num_chunks - 1) * pp_size, total)

        def forward(k: int, rank: int = rank) -> Action:
            chunk, mb = _chunk_and_microbatch(k, pp_size, num_chunks)
            return Action(stage_of(rank, chunk), FORWARD, mb)

        def backward(k: int, rank: int = rank) -> Action:
            chunk, mb = _chunk_and_microbatch(k, pp_size, num_chunks)
            return Action(stage_of(rank, num_chunks - 1 - chunk), FULL_BACKWARD, mb)

        order = [forward(k) for k in range(warmup)]
        for k in range(total - warmup):
            order += [forward(warmup + k), backward(k)]
        order += [backward(k) for k in range(total - warmup, total)]
        orders[rank] = order

    stage_to_rank = tuple(stage % pp_size for stage in range(pp_size * num_chunks))
    return Schedule(
        orders, stage_to_rank, num_microbatches, name="interleaved-1f1b",
        params={"num_chunks": num_chunks},
    )
