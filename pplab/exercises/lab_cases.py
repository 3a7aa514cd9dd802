"""The coding lab's hidden cases, and the rules that no pplab builder follows.

Every learner's file is checked on seven cases: four small fixed ones, then three drawn from
the learner's name. Each case also carries two limits of the learner's own:

* ``k``: 1F1B may hold at most k microbatches in flight on any stage (activations whose
  backward has not ended), as when memory is short;
* ``d``: a ZB-H1 weight gradient W may run at most d input gradients I after its own I (on
  its rank), so the activations it keeps are freed sooner.

Where ``k >= p`` and ``d >= p - 1`` the limit is the family's own and the target is pplab's
builder of that family. The last two drawn cases set a tighter k and d. pplab registers no
family that follows them, so a file that copies pplab's builders (or the lesson's plain
orders) fails those cases; the rule is checked on the learner's order itself (the simulator's
peak-activation count, the position of each W), and its step must be no longer than the
tightest order this module writes for the rule (``capped_1f1b``, ``delayed_zb_h1``), which
only the parent process runs.

    python -c "from pplab.exercises.lab_cases import hidden_cases; print(hidden_cases('ada'))"
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from pplab.exercises.core import course_key, variant_seed
from pplab.schedules import BACKWARD_INPUT, BACKWARD_WEIGHT, Action, Schedule, validate
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

_FIXED_SIZES = ((2, 3), (3, 3), (4, 2), (1, 2))  # small first, then m < p, then one stage
DRAWN_CASES = 3
RULED_CASES = 2  # of the drawn ones, the last two set a learner's own k and d


@dataclass(frozen=True)
class Case:
    """One hidden case: depth, microbatches, costs, and the learner's two limits."""

    p: int
    m: int
    cost: CostModel
    k: int  # 1F1B: microbatches in flight on a stage, at most
    d: int  # ZB-H1: input gradients a W may wait behind, at most

    def ruled(self, part: str) -> bool:
        """Whether the learner's limit is tighter than the family's own here."""
        if part == "1f1b":
            return self.k < min(self.p, self.m)
        if part == "zb-h1":
            return self.d < min(self.p, self.m) - 1
        return False

    def args(self, part: str) -> list[int]:
        """What the learner's function of ``part`` is called with."""
        return {"gpipe": [self.p, self.m], "1f1b": [self.p, self.m, self.k],
                "zb-h1": [self.p, self.m, self.d]}[part]

    def describe(self, part: str = "") -> str:
        c = self.cost
        limit = {"1f1b": f", k = {self.k}", "zb-h1": f", d = {self.d}"}.get(part, "")
        return (f"p = {self.p}, m = {self.m}{limit}, F = {c.forward:g}, B = {c.backward:g} "
                f"(I = {c.backward_input:g} + W = {c.backward_weight:g})")


def hidden_cases(learner: str | None = None, course: str | None = None) -> list[Case]:
    """Four fixed small cases, then three drawn for the learner (or for anyone); the last
    two with a k and a d tighter than 1F1B's and ZB-H1's own."""
    rng = random.Random(variant_seed("schedule-lab", learner or "anyone", course_key(course)))
    sizes = [(p, m, p, max(p - 1, 0)) for p, m in _FIXED_SIZES]
    for n in range(DRAWN_CASES):
        p = rng.randint(3, 8)
        m = rng.randint(p, 3 * p)
        ruled = n >= DRAWN_CASES - RULED_CASES
        sizes.append((p, m, rng.randint(1, p - 1) if ruled else p,
                      rng.randint(0, p - 2) if ruled else p - 1))
    cases = []
    for p, m, k, d in sizes:
        f, i, w = rng.choice((1, 1.5, 2)), rng.choice((0.5, 1, 1.5, 2)), rng.choice((0.5, 1, 2))
        cases.append(Case(p, m, CostModel(forward=f, backward=i + w, backward_input=i,
                                          backward_weight=w), k, d))
    return cases


def capped_1f1b(p: int, m: int, k: int) -> dict[int, list[Action]]:
    """1F1B whose rank r runs min(p - 1 - r, k - 1) warm-up forwards: at most k in flight."""
    orders = {}
    for r in range(p):
        warmup = min(p - 1 - r, k - 1, m)
        order = [Action(r, "F", j) for j in range(warmup)]
        for j in range(m):
            if warmup + j < m:
                order.append(Action(r, "F", warmup + j))
            order.append(Action(r, "B", j))
        orders[r] = order
    return orders


def delayed_zb_h1(p: int, m: int, d: int) -> dict[int, list[Action]]:
    """ZB-H1 whose rank r keeps at most min(r, d) weight gradients pending."""
    orders = {}
    for r in range(p):
        warmup, pending, order = min(p - 1 - r, m), [], []
        order += [Action(r, "F", j) for j in range(warmup)]
        for j in range(m):
            if warmup + j < m:
                order.append(Action(r, "F", warmup + j))
            order.append(Action(r, "I", j))
            pending.append(j)
            if len(pending) > min(r, d):
                order.append(Action(r, "W", pending.pop(0)))
        orders[r] = order + [Action(r, "W", j) for j in pending]
    return orders


@lru_cache(maxsize=256)
def ruled_target(part: str, case: Case) -> dict:
    """``metrics`` of the tightest order this module writes for the case's rule."""
    orders = (capped_1f1b(case.p, case.m, case.k) if part == "1f1b"
              else delayed_zb_h1(case.p, case.m, case.d))
    schedule = validate(Schedule(orders, tuple(range(case.p)), case.m, name=f"{part} ruled"))
    return metrics(simulate(schedule, case.cost), ranks=range(case.p))


def rule_broken(part: str, case: Case, schedule: Schedule, peaks: dict[int, int]) -> str | None:
    """Why the learner's order breaks the case's rule, or None (checked on the order and
    on the simulated peaks, never against a builder)."""
    if part == "1f1b":
        for stage, held in sorted(peaks.items()):
            if held > case.k:
                return (f"stage {stage} holds {held} microbatches in flight at its peak; this "
                        f"case allows at most k = {case.k}")
        return None
    for rank, actions in schedule.actions.items():
        inputs_done = 0
        done_at: dict[int, int] = {}
        for action in actions:
            if action.kind == BACKWARD_INPUT:
                done_at[action.microbatch] = inputs_done
                inputs_done += 1
            elif action.kind == BACKWARD_WEIGHT and action.microbatch in done_at:
                behind = inputs_done - 1 - done_at[action.microbatch]
                if behind > case.d:
                    return (f"{action} on rank {rank} runs {behind} input gradients after its "
                            f"own I; this case allows at most d = {case.d}")
    return None
