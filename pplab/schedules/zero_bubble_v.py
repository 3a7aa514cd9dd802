"""ZB-V: zero bubble at 1F1B's memory, from a V-shaped placement of two chunks per rank.

The model is cut into 2P stages and rank r holds stages r and 2P-1-r: a microbatch runs
down the ranks through the first chunk and back up through the second, so the first rank
holds both the first stage and the loss. Each rank then sees its two chunks' work arrive
from opposite ends of the pipe, which lets the W's fill every gap while each rank holds
about as many activations as 1F1B (the first chunk's forwards of the warm-up, then one of
each chunk at a time). With equal F, I and W the ranks never idle after their first forward.

    pplab simulate --schedule zb-v --pp 4 --microbatches 8 --cost f=1,i=1,w=1
"""

from __future__ import annotations

from collections import defaultdict

from pplab.schedules.actions import BACKWARD_INPUT, BACKWARD_WEIGHT, FORWARD, Action, Schedule
from pplab.schedules.registry import register


def v_shape(pp_size: int) -> tuple[int, ...]:
    """Stage -> rank for the V: stages 0..P-1 go down the ranks, P..2P-1 come back up."""
    return tuple(range(pp_size)) + tuple(reversed(range(pp_size)))


def v_stages(rank: int, pp_size: int) -> tuple[int, int]:
    """The two stages of ``rank``: its chunk on the way down and its chunk on the way up."""
    return rank, 2 * pp_size - 1 - rank


class ChunkCounters:
    """Hands out each chunk's microbatches in order, one counter per (stage, kind)."""

    def __init__(self) -> None:
        self._next: dict[tuple[int, str], int] = defaultdict(int)

    def take(self, stage: int, kind: str) -> Action:
        microbatch = self._next[(stage, kind)]
        self._next[(stage, kind)] += 1
        return Action(stage, kind, microbatch)

    def count(self, stage: int, kind: str) -> int:
        return self._next[(stage, kind)]


@register(
    "zb-v",
    paper="Pipeline Parallelism with Controllable Memory, Qi et al., 2024, "
          "arXiv:2405.15362; Zero Bubble Pipeline Parallelism, arXiv:2401.10241 v2, Sec. 6 "
          "(ZB-V); the order of PyTorch's ScheduleZBVZeroBubble",
    min_chunks=2, max_chunks=2, actions_per_microbatch=3,
)
def zb_v(pp_size: int, num_microbatches: int, num_chunks: int = 2) -> Schedule:
    """V-shaped placement, I/W split: zero bubble at 1F1B's activation memory when F = I = W."""
    orders = {rank: _zb_v_order(rank, pp_size, num_microbatches) for rank in range(pp_size)}
    return Schedule(orders, v_shape(pp_size), num_microbatches, name="zb-v")


def _zb_v_order(rank: int, pp_size: int, num_microbatches: int) -> list[Action]:
    # The handcrafted pattern needs at least 2P-1 microbatches to fill the V; with fewer it
    # is built for 2P-1 and the microbatches that do not exist are dropped, which keeps
    # every dependency of the ones that do.
    planned = max(2 * pp_size - 1, num_microbatches)
    down, up = v_stages(rank, pp_size)
    next_of = ChunkCounters()
    order: list[Action] = []

    def run(stage: int, *kinds: str) -> None:
        order.extend(next_of.take(stage, kind) for kind in kinds)

    # Warm-up: forwards of the first chunk until the first microbatch has come back up to
    # this rank, then both chunks' forwards, then the second chunk starts its backwards.
    for _ in range(2 * (pp_size - rank) - 1):
        run(down, FORWARD)
    for _ in range(rank):
        run(up, FORWARD)
        run(down, FORWARD)
    for _ in range(pp_size - rank):
        run(up, FORWARD, BACKWARD_INPUT, BACKWARD_WEIGHT)
    # Steady state: one F, I and W of each chunk per round.
    while next_of.count(up, FORWARD) < next_of.count(down, FORWARD) or \
            next_of.count(down, FORWARD) < planned:
        if next_of.count(down, FORWARD) < planned:
            run(down, FORWARD)
        run(down, BACKWARD_INPUT, BACKWARD_WEIGHT)
        run(up, FORWARD, BACKWARD_INPUT, BACKWARD_WEIGHT)
    # Cool-down: the input gradients first, so the ranks upstream are not kept waiting,
    # then the weight gradients that are left.
    for _ in range(rank):
        run(down, BACKWARD_INPUT)
        run(up, BACKWARD_INPUT)
    for _ in range(pp_size - rank):
        run(down, BACKWARD_INPUT, BACKWARD_WEIGHT)
    while next_of.count(up, BACKWARD_WEIGHT) < next_of.count(up, BACKWARD_INPUT):
        run(up, BACKWARD_WEIGHT)
    while next_of.count(down, BACKWARD_WEIGHT) < next_of.count(down, BACKWARD_INPUT):
        run(down, BACKWARD_WEIGHT)
    return [action for action in order if action.microbatch < num_microbatches]
