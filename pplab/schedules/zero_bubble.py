"""ZB-H1 and ZB-H2: 1F1B with the backward split into I (input gradient) and W (weight gradient).

Only I lies on the critical path between ranks: the previous stage waits for the input
gradient, never for the weight gradient. Running I at once and holding W back until there is
nothing else to do fills 1F1B's bubbles. The two handcrafted schedules of the paper differ
only in two numbers per rank, the warm-up forwards and the W's held back:

* ZB-H1: rank r runs P-1-r warm-up forwards, like 1F1B, and holds r W's back. Peak
  activation memory stays 1F1B's (P microbatches); most of the drain bubble is filled.
* ZB-H2: twice both, 2(P-1-r) warm-up forwards and 2r W's held back. The extra forwards
  fill the bubble before the first backward, the held-back W's the drain, at 2P-1
  microbatches of activation memory. With equal F, I and W every rank then works without a
  gap from its first forward to its last W: the step is a parallelogram. A flushed step
  still starts the last rank (P-1) forwards late; the paper's optimizer post-validation
  (Sec. 4) lets the next step start early instead.

    pplab simulate --schedule zb-h1 --pp 4 --microbatches 8 --cost f=1,i=1,w=1
    pplab simulate --schedule zb-h2 --pp 4 --microbatches 8 --cost f=1,i=1,w=1
"""

from __future__ import annotations

from collections import deque

from pplab.schedules.actions import BACKWARD_INPUT, BACKWARD_WEIGHT, FORWARD, Action, Schedule
from pplab.schedules.registry import register

_PAPER = "Zero Bubble Pipeline Parallelism, Qi et al., ICLR 2024, arXiv:2401.10241"


@register("zb-h1", paper=f"{_PAPER}, Sec. 2.1 (ZB-H1)", actions_per_microbatch=3)
def zb_h1(pp_size: int, num_microbatches: int, num_chunks: int = 1) -> Schedule:
    """1F1B with I/W split; rank r keeps r weight gradients pending to fill the drain."""
    orders = {rank: split_backward_order(rank, num_microbatches, warmup=pp_size - 1 - rank,
                                         held_back=rank)
              for rank in range(pp_size)}
    return Schedule(orders, tuple(range(pp_size)), num_microbatches, name="zb-h1")


@register("zb-h2", paper=f"{_PAPER}, Sec. 2.2 (ZB-H2)", actions_per_microbatch=3)
def zb_h2(pp_size: int, num_microbatches: int, num_chunks: int = 1) -> Schedule:
    """ZB-H1 with twice the warm-up and held-back W's: no gap inside a rank, 2P-1 in flight."""
    orders = {rank: split_backward_order(rank, num_microbatches,
                                         warmup=2 * (pp_size - 1 - rank), held_back=2 * rank)
              for rank in range(pp_size)}
    return Schedule(orders, tuple(range(pp_size)), num_microbatches, name="zb-h2")


def split_backward_order(rank: int, num_microbatches: int, warmup: int,
                         held_back: int) -> list[Action]:
    """``warmup`` forwards, then F, I and the oldest W beyond ``held_back`` pending; then W's.

    Later ranks reach their backwards first and wait longest for the next forward, so they
    hold more W's back: every I goes upstream as early as possible and the W's fill the
    drain. Each held-back W keeps its microbatch's activation alive until it runs.
    """
    warmup = min(warmup, num_microbatches)
    order = [Action(rank, FORWARD, mb) for mb in range(warmup)]
    pending: deque[int] = deque()
    for mb in range(num_microbatches):
        if warmup + mb < num_microbatches:
            order.append(Action(rank, FORWARD, warmup + mb))
        order.append(Action(rank, BACKWARD_INPUT, mb))
        pending.append(mb)
        if len(pending) > held_back:
            order.append(Action(rank, BACKWARD_WEIGHT, pending.popleft()))
    order += [Action(rank, BACKWARD_WEIGHT, mb) for mb in pending]
    return order
