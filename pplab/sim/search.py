"""Search for an order: the least bubble a memory cap allows, for given costs.

The hand-made families are a few points in a vast space of orders. Qi et al. (Zero Bubble
Pipeline Parallelism, ICLR 2024, arXiv:2401.10241, Sec. 3 and Appendix) search that space
for the measured F, B and W times and a memory limit: a greedy heuristic places each pass
as time goes on (the input gradient first, since the previous stage waits for it; a forward
while memory allows; a weight gradient to fill a gap that would otherwise stay idle), tried
with several numbers of warm-up forwards, and the best is kept; an integer program then
polishes it. pplab does the heuristic part, with no solver:

* every candidate is played forward in time by a list scheduler that uses the cost model's
  durations and message times, one rank at a time in time order, so each order it writes
  is runnable by construction;
* the candidates are the greedy policies (full or split backward; weight gradients to fill
  any gap, or only gaps they fit; at most 1F1B's, ZB-H2's or the cap's forwards ahead of
  the backwards) and the hand-made families of one chunk per rank, including 1F1B with its
  warm-up cut to the cap;
* each is validated and simulated; those over the cap are dropped, and of those whose bubble
  is no more than the capped 1F1B's, the fastest step wins (with B = I + W, as by default,
  the fastest step is the one with the least bubble).

The memory cap counts what ``pplab.timeline.peak_activations`` counts: microbatches a stage
holds from the start of their forward to the end of their backward (of W when split).

    python -c "from pplab.sim.search import search_schedule; \\
print(search_schedule(4, 8, max_in_flight=4).pretty())"
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from pplab import limits
from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    FORWARD,
    FULL_BACKWARD,
    Action,
    Schedule,
)
from pplab.schedules.registry import build
from pplab.schedules.validate import validate

if TYPE_CHECKING:  # the cost model imports this package: a runtime import would be circular
    from pplab.sim.cost_model import CostModel

SEARCHED = "searched"
# The search simulates a dozen candidates: at this size that takes several seconds.
MAX_SEARCH_ACTIONS = 20_000
_HAND_MADE = ("1f1b", "zb-h1", "zb-h2", "gpipe")


class Policy(NamedTuple):
    """One greedy rule set: how the list scheduler picks a rank's next action."""

    split_backward: bool  # I and W, or a full B
    weights_only_in_gaps_they_fit: bool  # else a W fills any gap at all
    forwards_ahead: str  # "1f1b": P-r, "zb-h2": 2(P-r)-1, "cap": as memory allows

    def label(self) -> str:
        backward = "I+W" if self.split_backward else "B"
        weights = ", W in gaps it fits" if self.weights_only_in_gaps_they_fit else ""
        return f"greedy {backward}, forwards ahead like {self.forwards_ahead}{weights}"


POLICIES = tuple(
    Policy(split, lazy, ahead)
    for split in (True, False)
    for lazy in ((False, True) if split else (False,))
    for ahead in ("1f1b", "zb-h2", "cap")
)


def memory_capped_1f1b(pp_size: int, num_microbatches: int, max_in_flight: int) -> Schedule:
    """1F1B whose warm-up is cut so no stage holds more than ``max_in_flight`` microbatches.

    Rank r runs ``min(P-1-r, cap-1)`` warm-up forwards; the warm-ups still shrink down the
    pipe, so no rank ever waits on a forward that a rank above has not run. With a cap of
    P or more this is 1F1B itself: the baseline the search must never lose to.
    """
    _check_request(pp_size, num_microbatches, max_in_flight)
    orders = {}
    for rank in range(pp_size):
        warmup = min(pp_size - 1 - rank, max_in_flight - 1, num_microbatches)
        order = [Action(rank, FORWARD, mb) for mb in range(warmup)]
        for mb in range(num_microbatches):
            if warmup + mb < num_microbatches:
                order.append(Action(rank, FORWARD, warmup + mb))
            order.append(Action(rank, FULL_BACKWARD, mb))
        orders[rank] = order
    return Schedule(orders, tuple(range(pp_size)), num_microbatches, name="1f1b-capped",
                    params={"max_in_flight": max_in_flight})


def search_schedule(pp_size: int, num_microbatches: int, cost: CostModel | None = None,
                    max_in_flight: int | None = None) -> Schedule:
    """The best order found for ``cost`` with at most ``max_in_flight`` microbatches a stage.

    ``max_in_flight`` defaults to ``pp_size``, 1F1B's memory. The result is named
    "searched", is always valid, never holds more than the cap, never has more bubble than
    ``memory_capped_1f1b`` under the same cap and costs, and is never slower than it.
    ``params`` records the cap and which candidate won.
    """
    from pplab.sim.cost_model import CostModel
    from pplab.sim.simulator import simulate
    from pplab.timeline import metrics

    cost = cost if cost is not None else CostModel()
    cap = pp_size if max_in_flight is None else max_in_flight
    _check_request(pp_size, num_microbatches, cap)
    timing = _Timing(cost, pp_size, num_microbatches)

    candidates: list[tuple[str, Schedule]] = [
        ("1f1b with the warm-up cut to the cap",
         memory_capped_1f1b(pp_size, num_microbatches, cap))]
    candidates += [(name, build(name, pp_size, num_microbatches)) for name in _HAND_MADE]
    for policy in POLICIES:
        orders = _greedy_orders(policy, pp_size, num_microbatches, cap, timing)
        if orders is not None:
            candidates.append((policy.label(), Schedule(orders, tuple(range(pp_size)),
                                                        num_microbatches, name=SEARCHED)))

    scored = []
    for position, (_, schedule) in enumerate(candidates):
        validate(schedule)  # a candidate that cannot run is a bug in this module: fail loudly
        summary = metrics(simulate(schedule, cost), ranks=range(pp_size))
        peak = max(summary["peak_activations"].values(), default=0)
        if peak <= cap:
            scored.append((summary["makespan"], summary["bubble_fraction"], peak, position))
    baseline_bubble = next(bubble for _, bubble, _, position in scored if position == 0)
    allowed = [score for score in scored if score[1] <= baseline_bubble + 1e-12]
    _, _, peak, winner = min(allowed)
    label, best = candidates[winner]
    return Schedule(best.actions, best.stage_to_rank, num_microbatches, name=SEARCHED,
                    params={"max_in_flight": cap, "found_by": label, "peak_in_flight": peak})


def _check_request(pp_size: int, num_microbatches: int, max_in_flight: int) -> None:
    for what, value in (("pipeline depth", pp_size), ("microbatches", num_microbatches),
                        ("max_in_flight", max_in_flight)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"search: {what} must be a whole number >= 1, got {value!r}")
    limits.check_count("pipeline depth", pp_size, limits.MAX_PP_SIZE)
    actions = 3 * pp_size * num_microbatches
    if actions > MAX_SEARCH_ACTIONS:
        raise ValueError(f"search: pp {pp_size} x {num_microbatches} microbatches is about "
                         f"{actions:,} actions per candidate; the search takes at most "
                         f"{MAX_SEARCH_ACTIONS:,} (pplab.sim.search)")


class _Timing:
    """Durations per rank and message times per link, as the simulator charges them."""

    def __init__(self, cost: CostModel, pp_size: int, num_microbatches: int) -> None:
        placement = Schedule({r: () for r in range(pp_size)}, tuple(range(pp_size)),
                             num_microbatches)
        factors = cost.stage_factors(placement)
        per_kind = {FORWARD: cost.forward, FULL_BACKWARD: cost.backward,
                    BACKWARD_INPUT: cost.backward_input, BACKWARD_WEIGHT: cost.backward_weight}
        self.duration = [{kind: time * factors[rank] for kind, time in per_kind.items()}
                         for rank in range(pp_size)]
        self.message = [cost.message_time() * factor
                        for factor in cost.link_factors(pp_size)]


def _greedy_orders(policy: Policy, pp_size: int, num_microbatches: int, cap: int,
                   timing: _Timing) -> dict[int, list[Action]] | None:
    """Play ``policy`` forward in time; None if it would leave a rank waiting forever.

    Ranks are served in the order of the time they fall free or something reaches them, so
    when a rank chooses, every action that started earlier anywhere is known, with the time
    its output arrives. A rank may be queued more than once; a stale entry is skipped.
    """
    p, m = pp_size, num_microbatches
    ahead_limit = {"1f1b": lambda r: p - r, "zb-h2": lambda r: 2 * (p - r) - 1,
                   "cap": lambda r: cap}[policy.forwards_ahead]
    backward_kind = BACKWARD_INPUT if policy.split_backward else FULL_BACKWARD
    orders: dict[int, list[Action]] = {r: [] for r in range(p)}
    forward_in: dict[tuple[int, int], float] = {}  # (rank, mb) -> activation arrives
    gradient_in: dict[tuple[int, int], float] = {}  # (rank, mb) -> input gradient arrives
    next_forward, next_backward = [0] * p, [0] * p
    held = [0] * p  # microbatches whose activations the rank keeps
    pending: list[deque[int]] = [deque() for _ in range(p)]
    queue = [(0.0, r) for r in range(p)]
    busy_until = [0.0] * p
    parked: list[int] = []

    def wake(r: int, when: float) -> None:
        heapq.heappush(queue, (max(when, busy_until[r]), r))

    def finished(r: int) -> bool:
        return next_backward[r] == m and not pending[r]

    def known_arrivals(r: int, t: float) -> list[float]:
        times = [gradient_in.get((r, next_backward[r]), math.inf)] if r < p - 1 else []
        if r > 0 and next_forward[r] < m:
            times.append(forward_in.get((r, next_forward[r]), math.inf))
        return [time for time in times if t < time < math.inf]

    def choose(r: int, t: float) -> Action | None:
        mb = next_backward[r]
        if mb < next_forward[r] and (r == p - 1 or gradient_in.get((r, mb), math.inf) <= t):
            return Action(r, backward_kind, mb)
        mb = next_forward[r]
        if (mb < m and held[r] < cap and mb - next_backward[r] < ahead_limit(r)
                and (r == 0 or forward_in.get((r, mb), math.inf) <= t)):
            return Action(r, FORWARD, mb)
        if pending[r]:
            coming = known_arrivals(r, t)
            fits = not coming or min(coming) - t >= timing.duration[r][BACKWARD_WEIGHT]
            if held[r] >= cap or not policy.weights_only_in_gaps_they_fit or fits:
                return Action(r, BACKWARD_WEIGHT, pending[r][0])
        return None

    while queue:
        t, r = heapq.heappop(queue)
        if t < busy_until[r] or finished(r):
            continue
        action = choose(r, t)
        if action is None:
            coming = known_arrivals(r, t)
            if coming:
                wake(r, min(coming))
            elif r not in parked:
                parked.append(r)  # woken when any rank next finishes something
            continue
        end = busy_until[r] = t + timing.duration[r][action.kind]
        orders[r].append(action)
        if action.kind == FORWARD:
            next_forward[r] += 1
            held[r] += 1
            if r + 1 < p:
                forward_in[(r + 1, action.microbatch)] = end + timing.message[r]
                wake(r + 1, forward_in[(r + 1, action.microbatch)])
        elif action.kind == BACKWARD_WEIGHT:
            pending[r].popleft()
            held[r] -= 1
        else:
            next_backward[r] += 1
            if action.kind == BACKWARD_INPUT:
                pending[r].append(action.microbatch)
            else:
                held[r] -= 1
            if r > 0:
                gradient_in[(r - 1, action.microbatch)] = end + timing.message[r - 1]
                wake(r - 1, gradient_in[(r - 1, action.microbatch)])
        wake(r, end)
        for waiting in parked:
            wake(waiting, end)
        parked.clear()
    if not all(finished(r) for r in range(p)):
        return None
    return orders
