"""One stage per rank: naive model parallelism, GPipe and 1F1B.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8
"""

from __future__ import annotations

from pplab.schedules.actions import FORWARD, FULL_BACKWARD, Action, Schedule
from pplab.schedules.registry import register


def _one_stage_per_rank(name: str, orders: dict[int, list[Action]], num_microbatches: int):
    return Schedule(orders, tuple(range(len(orders))), num_microbatches, name=name)


@register("naive",
          paper="plain model parallelism (no pipelining), e.g. GPipe, Huang et al. 2019, Fig. 2b")
def naive(pp_size: int, num_microbatches: int, num_chunks: int = 1) -> Schedule:
    """Each microbatch runs forward and backward through every stage before the next starts."""
    orders = {rank: [] for rank in range(pp_size)}
    for mb in range(num_microbatches):
        for stage in range(pp_size):
            orders[stage].append(Action(stage, FORWARD, mb))
            orders[stage].append(Action(stage, FULL_BACKWARD, mb))
    return _one_stage_per_rank("naive", orders, num_microbatches)


@register("gpipe", paper="GPipe, Huang et al., NeurIPS 2019, arXiv:1811.06965")
def gpipe(pp_size: int, num_microbatches: int, num_chunks: int = 1) -> Schedule:
    """All forwards, then all backwards, then one optimizer step after the flush."""
    orders = {
        stage: [Action(stage, FORWARD, mb) for mb in range(num_microbatches)]
        + [Action(stage, FULL_BACKWARD, mb) for mb in range(num_microbatches)]
        for stage in range(pp_size)
    }
    return _one_stage_per_rank("gpipe", orders, num_microbatches)


def one_f_one_b_order(stage: int, pp_size: int, num_microbatches: int) -> list[Action]:
    """Warm up with enough forwards to fill the pipe below, then alternate F and B, then drain.

    Rank ``r`` runs ``P - 1 - r`` warm-up forwards, so at most ``P - r`` microbatches are
    ever in flight on it: the memory saving of 1F1B over GPipe's ``M``.
    """
    warmup = min(pp_size - 1 - stage, num_microbatches)
    order = [Action(stage, FORWARD, mb) for mb in range(warmup)]
    for k in range(num_microbatches - warmup):
        order.append(Action(stage, FORWARD, warmup + k))
        order.append(Action(stage, FULL_BACKWARD, k))
    order += [
        Action(stage, FULL_BACKWARD, mb)
        for mb in range(num_microbatches - warmup, num_microbatches)
    ]
    return order


@register("1f1b", paper="PipeDream-Flush, Narayanan et al., ICML 2021, arXiv:2006.09503; "
          "Megatron-LM, Narayanan et al., SC 2021, arXiv:2104.04473")
def one_f_one_b(pp_size: int, num_microbatches: int, num_chunks: int = 1) -> Schedule:
    """One forward, one backward in the steady state; a flush and one optimizer step per step."""
    orders = {s: one_f_one_b_order(s, pp_size, num_microbatches) for s in range(pp_size)}
    return _one_stage_per_rank("1f1b", orders, num_microbatches)
