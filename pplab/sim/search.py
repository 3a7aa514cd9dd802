"""Search for an order: the least bubble a memory cap allows, for given costs.

The hand-made families are a few points in a vast space of orders. Qi et al. (Zero Bubble
Pipeline Parallelism, ICLR 2024, arXiv:2401.10241, Sec. 3 and Appendix) search that space
for the measured F, B and W times and a memory limit: a greedy heuristic places each pass
as time goes on (the input gradient first, since the previous stage waits for it; a forward
while memory allows; a weight gradient to fill a gap that would otherwise stay idle), tried
with several numbers of warm-up forwards, and the best is kept; an integer program then
polishes it. pplab does the heuristic part, with no solver:

* every greedy candidate is played forward in time on the simulator's one walk
  (``pplab.schedules.walk``), whose chooser picks a rank's next action the moment the rank
  falls free, with the cost model's per-stage durations and message times, so each order it
  writes is runnable by construction;
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

from collections import deque
from typing import NamedTuple

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
from pplab.schedules.walk import Item, Walk
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import Links, simulate
from pplab.timeline import metrics

SEARCHED = "searched"
_HAND_MADE = ("1f1b", "zb-h1", "zb-h2", "gpipe")


class Policy(NamedTuple):
    """One greedy rule set: how a free rank picks its next action."""

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
    cost = cost if cost is not None else CostModel()
    cap = pp_size if max_in_flight is None else max_in_flight
    _check_request(pp_size, num_microbatches, cap)

    candidates: list[tuple[str, Schedule]] = [
        ("1f1b with the warm-up cut to the cap",
         memory_capped_1f1b(pp_size, num_microbatches, cap))]
    candidates += [(name, build(name, pp_size, num_microbatches)) for name in _HAND_MADE]
    for policy in POLICIES:
        orders = _greedy_orders(policy, pp_size, num_microbatches, cap, cost)
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
    if actions > limits.MAX_SEARCH_ACTIONS:
        raise ValueError(f"search: pp {pp_size} x {num_microbatches} microbatches is about "
                         f"{actions:,} actions per candidate; the search takes at most "
                         f"{limits.MAX_SEARCH_ACTIONS:,} (pplab.sim.search)")


class _Greedy:
    """One policy played forward in time: the walk's chooser for every rank.

    The walk asks it for a rank's next action whenever the rank falls free or something
    reaches it, ranks free at one instant in rank order, so when a rank chooses, every
    action that started earlier anywhere is known with the time its output arrives
    (``Walk.usable_at``): each rank has a core of its own, so an action's end is known when
    it starts. Durations are the cost model's per stage (``CostModel.stage_durations``, so
    calibrated ``stage_costs`` count) and messages go over ``Links`` as the simulator's do.
    """

    def __init__(self, policy: Policy, pp_size: int, num_microbatches: int, cap: int,
                 durations: list[dict[str, float]]) -> None:
        p = pp_size
        self.policy, self.m, self.cap, self.durations = policy, num_microbatches, cap, durations
        self.last = p - 1
        self.ahead = {"1f1b": lambda r: p - r, "zb-h2": lambda r: 2 * (p - r) - 1,
                      "cap": lambda r: cap}[policy.forwards_ahead]
        self.backward_kind = BACKWARD_INPUT if policy.split_backward else FULL_BACKWARD
        self.orders: dict[int, list[Action]] = {r: [] for r in range(p)}
        self.next_forward, self.next_backward = [0] * p, [0] * p
        self.held = [0] * p  # microbatches whose activations the rank keeps
        self.pending: list[deque[int]] = [deque() for _ in range(p)]  # I done, W not yet

    def finished(self, r: int) -> bool:
        return self.next_backward[r] == self.m and not self.pending[r]

    def __call__(self, walk: Walk, r: int) -> Item | None:
        action = self._choose(walk, r, walk.now)
        if action is None:
            return None
        mb = action.microbatch
        if action.kind == FORWARD:
            self.next_forward[r] += 1
            self.held[r] += 1
        elif action.kind == BACKWARD_WEIGHT:
            self.pending[r].popleft()
            self.held[r] -= 1
        else:
            self.next_backward[r] += 1
            if action.kind == BACKWARD_INPUT:
                self.pending[r].append(mb)
            else:
                self.held[r] -= 1
        self.orders[r].append(action)
        return Item(action, self.durations[r][action.kind])

    def _inputs(self, walk: Walk, r: int) -> tuple[float | None, float | None]:
        """When the next backward's gradient and the next forward's activation reach ``r``
        (None: not yet promised; the last rank's backward starts from its loss, the first
        rank's forward from the data)."""
        gradient = walk.usable_at((r + 1, BACKWARD_INPUT, self.next_backward[r]), r) \
            if r < self.last else walk.now
        activation = walk.usable_at((r - 1, FORWARD, self.next_forward[r]), r) \
            if r > 0 and self.next_forward[r] < self.m else walk.now
        return gradient, activation

    def _choose(self, walk: Walk, r: int, t: float) -> Action | None:
        gradient, activation = self._inputs(walk, r)
        mb = self.next_backward[r]
        if mb < self.next_forward[r] and gradient is not None and gradient <= t:
            return Action(r, self.backward_kind, mb)
        mb = self.next_forward[r]
        if (mb < self.m and self.held[r] < self.cap and mb - self.next_backward[r] < self.ahead(r)
                and activation is not None and activation <= t):
            return Action(r, FORWARD, mb)
        if self.pending[r]:
            coming = [when for when in (gradient, activation) if when is not None and when > t]
            fits = not coming or min(coming) - t >= self.durations[r][BACKWARD_WEIGHT]
            if self.held[r] >= self.cap or not self.policy.weights_only_in_gaps_they_fit or fits:
                return Action(r, BACKWARD_WEIGHT, self.pending[r][0])
        return None


def _greedy_orders(policy: Policy, pp_size: int, num_microbatches: int, cap: int,
                   cost: CostModel) -> dict[int, list[Action]] | None:
    """Play ``policy`` forward in time on the walk; None if a rank would wait forever."""
    placement = Schedule({r: () for r in range(pp_size)}, tuple(range(pp_size)),
                         num_microbatches)
    greedy = _Greedy(policy, pp_size, num_microbatches, cap, cost.stage_durations(placement))
    Walk(placement.stage_to_rank, dict.fromkeys(range(pp_size), greedy),
         deliver=Links(cost, pp_size)).run()
    if not all(greedy.finished(r) for r in range(pp_size)):
        return None
    return greedy.orders
