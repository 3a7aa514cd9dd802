"""Interleaved 1F1B: each rank holds several non-adjacent chunks of the model.

With V chunks per rank a microbatch crosses every rank V times, each time doing 1/V of the
work, so the fill and drain shrink by V at the cost of V times more messages.

    pplab simulate --schedule interleaved-1f1b --stages 4 --microbatches 8 --chunks 2
"""

from __future__ import annotations

from .actions import FORWARD, FULL_BACKWARD, Action, Schedule
from .registry import register


def _chunk_and_microbatch(k: int, num_ranks: int, num_chunks: int) -> tuple[int, int]:
    # Megatron walks microbatches in groups of P: P microbatches through chunk 0, the same P
    # through chunk 1, ..., then the next group of P.
    chunk = (k // num_ranks) % num_chunks
    microbatch = (k // (num_ranks * num_chunks)) * num_ranks + k % num_ranks
    return chunk, microbatch


@register(
    "interleaved-1f1b",
    paper="Megatron-LM interleaved schedule, Narayanan et al., SC 2021, arXiv:2104.04473, Sec. 2.2",
    min_chunks=2,
    max_chunks=None,
)
def interleaved_1f1b(num_stages: int, num_microbatches: int, num_chunks: int = 2) -> Schedule:
    """1F1B over V looped chunks per rank: the bubble shrinks V times."""
    num_ranks = num_stages
    if num_microbatches % num_ranks:
        raise ValueError(
            f"interleaved-1f1b walks microbatches in groups of the {num_ranks} ranks; "
            f"{num_microbatches} microbatches is not a multiple of {num_ranks}"
        )
    total = num_microbatches * num_chunks

    def stage_of(rank: int, chunk: int) -> int:
        return chunk * num_ranks + rank

    orders: dict[int, list[Action]] = {}
    for rank in range(num_ranks):
        if num_microbatches == num_ranks:
            warmup = total  # Megatron's rule: with M == P the steady state has nothing to pair
        else:
            warmup = min((num_ranks - rank - 1) * 2 + (num_chunks - 1) * num_ranks, total)

        def forward(k: int, rank: int = rank) -> Action:
            chunk, mb = _chunk_and_microbatch(k, num_ranks, num_chunks)
            return Action(stage_of(rank, chunk), FORWARD, mb)

        def backward(k: int, rank: int = rank) -> Action:
            chunk, mb = _chunk_and_microbatch(k, num_ranks, num_chunks)
            return Action(stage_of(rank, num_chunks - 1 - chunk), FULL_BACKWARD, mb)

        order = [forward(k) for k in range(warmup)]
        for k in range(total - warmup):
            order += [forward(warmup + k), backward(k)]
        order += [backward(k) for k in range(total - warmup, total)]
        orders[rank] = order

    stage_to_rank = tuple(stage % num_ranks for stage in range(num_ranks * num_chunks))
    return Schedule(
        orders, stage_to_rank, num_microbatches, name="interleaved-1f1b",
        params={"num_chunks": num_chunks},
    )
