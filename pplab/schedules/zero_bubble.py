"""ZB-H1: 1F1B with the backward split into I (input gradient) and W (weight gradient).

Only I lies on the critical path between ranks: the previous stage waits for the input
gradient, never for the weight gradient. Running I at once and holding W back until there is
nothing else to do fills most of 1F1B's drain bubble at the same peak activation memory.

    pplab simulate --schedule zb-h1 --pp 4 --microbatches 8 --cost f=1,i=1,w=1
"""

from __future__ import annotations

from collections import deque

from .actions import BACKWARD_INPUT, BACKWARD_WEIGHT, FORWARD, Action, Schedule
from .registry import register


@register("zb-h1", paper="Zero Bubble Pipeline Parallelism, Qi et al., ICLR 2024, "
          "arXiv:2401.10241, Sec. 3.1 (ZB-H1)", actions_per_microbatch=3)
def zb_h1(pp_size: int, num_microbatches: int, num_chunks: int = 1) -> Schedule:
    """1F1B with I/W split; rank r keeps r weight gradients pending to fill the drain."""
    orders = {rank: _zb_h1_order(rank, pp_size, num_microbatches)
              for rank in range(pp_size)}
    return Schedule(orders, tuple(range(pp_size)), num_microbatches, name="zb-h1")


def _zb_h1_order(rank: int, pp_size: int, num_microbatches: int) -> list[Action]:
    # 1F1B's forwards; each backward becomes an I at once and a W held back. Later ranks
    # reach their backwards first and wait longest for the next forward, so rank r holds
    # r W's back: every I goes upstream as early as possible and the W's fill the drain.
    warmup = min(pp_size - 1 - rank, num_microbatches)
    order = [Action(rank, FORWARD, mb) for mb in range(warmup)]
    pending: deque[int] = deque()
    for mb in range(num_microbatches):
        if warmup + mb < num_microbatches:
            order.append(Action(rank, FORWARD, warmup + mb))
        order.append(Action(rank, BACKWARD_INPUT, mb))
        pending.append(mb)
        if len(pending) > rank:
            order.append(Action(rank, BACKWARD_WEIGHT, pending.popleft()))
    order += [Action(rank, BACKWARD_WEIGHT, mb) for mb in pending]
    return order
