"""The zero-bubble paper's bubble times, for one flushed step and for overlapping steps.

What it teaches: splitting the backward into I and W (Qi et al., ICLR 2024,
arXiv:2401.10241, Sec. 2) leaves idle time that depends on the three costs, not only on p
and m. The paper's Table 2 gives ZB-H1's and ZB-H2's bubble as one rank's idle time; a
flushed step adds the last rank's fill, overlapping steps (its Sec. 4) take it away, and
beyond the paper's costs other waits take over. Each function says which part is the
paper's and which pplab's; ``pplab.formulas.pipeline`` turns them into fractions.

    python -c "from pplab.formulas.zero_bubble import zb_overlapped_bubble_time as b; \
from pplab.sim.cost_model import CostModel; print(b('zb-h2', 4, CostModel()))"
"""

from __future__ import annotations

from pplab.sim.cost_model import CostModel


def check_closed_form_cost(cost: CostModel | None) -> CostModel:
    """``cost`` (default: F = I = W = 1) if every closed form's assumptions hold for it: free
    messages, no optimizer or validation time, equal stages; ValueError naming what not."""
    cost = cost or CostModel()
    if cost.message_time() > 0 or cost.optimizer > 0 or cost.validation > 0:
        raise ValueError(
            "the closed forms assume free communication and no optimizer time; got "
            f"{cost.message_time()} per message, optimizer {cost.optimizer} and validation "
            f"{cost.validation}")
    if cost.stage_scale is not None and len(set(cost.stage_scale)) > 1:
        raise ValueError(
            f"the closed forms assume equal stages; got stage_scale {cost.stage_scale}")
    return cost


def zb_h1_paper_bubble_time(pp_size: int, cost: CostModel | None = None) -> float:
    """ZB-H1's bubble time as the paper writes it (Qi et al., ICLR 2024, arXiv:2401.10241,
    Sec. 2.3, Table 2): ``(p-1)(T_F + T_B - T_W)``, its B being our I. Equal to
    ``zb_h1_bubble_time`` while T_W <= min(T_F, T_I), the paper's transformer regime; below
    it beyond, where pplab's order waits on the chain of forwards or of input gradients."""
    cost = check_closed_form_cost(cost)
    return (pp_size - 1) * (cost.forward + cost.backward_input - cost.backward_weight)


def zb_h1_bubble_time(pp_size: int, cost: CostModel | None = None) -> float:
    """Bubble time of ZB-H1 on the busiest rank, for M >= P microbatches.

    The paper (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 2.3, Table 2) gives
    ``(p-1)(T_F + T_B - T_W)`` (its B is our I) for any costs, with no condition; its
    transformer counts have T_W < T_F < T_B (Table 1). That term is the largest only while
    T_W <= min(T_F, T_I); beyond, the chain of forwards or of input gradients sets the
    bubble. pplab's own extension, not the paper's, ``(p-1) * max(T_F + T_I - T_W, T_F,
    T_I)`` matches pplab's zb-h1 order exactly on a grid of costs (tests/test_formulas.py).
    """
    cost = check_closed_form_cost(cost)
    return max(zb_h1_paper_bubble_time(pp_size, cost),
               (pp_size - 1) * cost.forward, (pp_size - 1) * cost.backward_input)


def zb_h2_bubble_time(pp_size: int, cost: CostModel | None = None) -> float:
    """Bubble time of pplab's ZB-H2 on the busiest rank, for M >= 2P-1 microbatches.

    The ZB paper (Sec. 2.3, Table 2) gives ``(p-1)(T_F + T_B - 2T_W)`` (its B is our I):
    each rank's idle time between its own first and last pass, as the authors' playground
    measures it. Without the optimizer's synchronisation (the paper's Sec. 4) ranks may
    start and end a step apart, and at T_F = T_I = T_W nothing is left. pplab flushes every
    step, so the last rank's (p-1) T_F wait for its first forward stays: pplab's bubble is
    ``(p-1) * max(T_F, T_I - T_F, T_F + T_I - 2T_W)``, the paper's term being the largest
    while T_W <= T_F and 2T_W <= T_F + T_I. Both match pplab's zb-h2 order
    exactly on a grid of costs (tests/test_new_schedules.py).
    """
    cost = check_closed_form_cost(cost)
    f, i, w = cost.forward, cost.backward_input, cost.backward_weight
    return (pp_size - 1) * max(f, i - f, f + i - 2 * w)


def zb_overlapped_bubble_time(schedule_name: str, pp_size: int,
                              cost: CostModel | None = None) -> float:
    """Idle time per step of pplab's ZB-H1 or ZB-H2 in the steady state of overlapping steps
    (post-validation, the ZB paper's Sec. 4), for m >= p (ZB-H1) or m >= 2p-1 (ZB-H2).

    The last rank's (p-1) T_F fill now overlaps the step before, so it drops out of the
    flushed forms: ZB-H2 leaves ``(p-1) max(0, T_I - T_F, T_F + T_I - 2T_W)``, the paper's
    ``(p-1)(T_F + T_B - 2T_W)`` (zero at equal costs) wherever that is the largest; ZB-H1
    ``(p-1) max(T_F + T_I - T_W, T_I)``. Both maxima are pplab's, found for pplab's orders
    and held to the simulator on a grid of costs (tests/test_overlapping_steps.py).
    """
    cost = check_closed_form_cost(cost)
    f, i, w = cost.forward, cost.backward_input, cost.backward_weight
    if schedule_name == "zb-h2":
        return (pp_size - 1) * max(0.0, i - f, f + i - 2 * w)
    if schedule_name == "zb-h1":
        return (pp_size - 1) * max(f + i - w, i)
    raise ValueError(f"no zero-bubble form for {schedule_name!r}")


def zb_fraction(bubble: float, num_microbatches: int, cost: CostModel) -> float:
    """Bubble time per rank as a share of the step: b / (m (F + I + W) + b)."""
    work = num_microbatches * (cost.forward + cost.backward_input + cost.backward_weight)
    return bubble / (work + bubble) if work + bubble > 0 else 0.0
