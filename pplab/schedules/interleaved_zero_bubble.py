"""Interleaved zero bubble: interleaved 1F1B's looped chunks with ZB-H1's split backward.

Each rank holds V looped chunks (stage ``chunk * P + rank``) as in interleaved 1F1B, and
every backward is split into I and W as in ZB-H1: I runs at once, so the previous stage is
never kept waiting for it, and rank r holds r W's back to fill the gaps of the drain. The
warm-up is one forward per hop shorter than interleaved 1F1B's, since an I returns sooner
than a full backward. Microbatches go through the chunks in rounds: ``max(1, M // P)``
rounds of ``M / rounds`` microbatches each, so M must be a multiple of the rounds (PyTorch's
rule, looser than Megatron's M a multiple of P).

    pplab simulate --schedule interleaved-zb --pp 4 --microbatches 8 --chunks 2
"""

from __future__ import annotations

from collections import defaultdict, deque

from pplab.schedules.actions import BACKWARD_INPUT, BACKWARD_WEIGHT, FORWARD, Action, Schedule
from pplab.schedules.registry import register


def microbatch_rounds(name: str, pp_size: int, num_microbatches: int) -> int:
    """Microbatches per round; raise ValueError when M does not split into whole rounds."""
    rounds = max(1, num_microbatches // pp_size)
    if num_microbatches % rounds:
        raise ValueError(
            f"{name} runs {num_microbatches} microbatches in {rounds} rounds of the "
            f"{pp_size} ranks; {num_microbatches} is not a multiple of {rounds}")
    return num_microbatches // rounds


@register(
    "interleaved-zb",
    paper="Zero Bubble Pipeline Parallelism, Qi et al., ICLR 2024, arXiv:2401.10241 (ZB-H1 "
          "split backward) over Megatron-LM's interleaved chunks, arXiv:2104.04473; the "
          "order of PyTorch's ScheduleInterleavedZeroBubble",
    min_chunks=2, max_chunks=None, actions_per_microbatch=3,
)
def interleaved_zero_bubble(pp_size: int, num_microbatches: int,
                            num_chunks: int = 2) -> Schedule:
    """Interleaved 1F1B with I/W split; rank r holds r W's back to fill the drain."""
    per_round = microbatch_rounds("interleaved-zb", pp_size, num_microbatches)
    orders = {rank: _rank_order(rank, pp_size, num_microbatches, num_chunks, per_round)
              for rank in range(pp_size)}
    stage_to_rank = tuple(stage % pp_size for stage in range(pp_size * num_chunks))
    return Schedule(orders, stage_to_rank, num_microbatches, name="interleaved-zb",
                    params={"num_chunks": num_chunks})


def _rank_order(rank: int, pp_size: int, num_microbatches: int, num_chunks: int,
                per_round: int) -> list[Action]:
    visits = num_microbatches * num_chunks  # forwards (and backwards) this rank runs
    warmup = min((num_chunks - 1) * per_round + (pp_size - 1 - rank), visits)

    def forward_stage(visit: int) -> int:
        # Forwards sweep the chunks upwards, a round of microbatches per chunk.
        return (visit // per_round) % num_chunks * pp_size + rank

    def backward_stage(visit: int) -> int:
        # Backwards sweep them downwards, starting when the warm-up ends.
        return (num_chunks - 1 - (visit - warmup) // per_round % num_chunks) * pp_size + rank

    next_microbatch: dict[tuple[int, str], int] = defaultdict(int)

    def take(stage: int, kind: str) -> Action:
        microbatch = next_microbatch[(stage, kind)]
        next_microbatch[(stage, kind)] += 1
        return Action(stage, kind, microbatch)

    order = [take(forward_stage(visit), FORWARD) for visit in range(warmup)]
    held_back: deque[int] = deque()  # stages of the I's whose W has not run yet
    for visit in range(warmup, visits + warmup):
        if visit < visits:
            order.append(take(forward_stage(visit), FORWARD))
        stage = backward_stage(visit)
        order.append(take(stage, BACKWARD_INPUT))
        held_back.append(stage)
        if len(held_back) > rank:
            order.append(take(held_back.popleft(), BACKWARD_WEIGHT))
    order += [take(stage, BACKWARD_WEIGHT) for stage in held_back]
    return order
