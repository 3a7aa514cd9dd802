"""Exercise ``zero-bubble`` (lesson 3): ZB-H1's idle time when W is not the shortest part.

Three parts, with the learner's own p, costs T_F, T_I, T_W (W always longer than one of F
and I, so the paper's formula does not hold) and a target share: (a) the fewest microbatches
for which ZB-H1's bubble is at most the target (``pplab simulate`` gives the bubble at an m
the learner picks, never this m: the idle time has to be found and the fraction turned round),
checked at the answer and one microbatch fewer; (b) which wait sets the idle time, found by
matching the simulated idle time against each wait; (c) a formula for any costs, drawn per
learner (the time ZB-H1 saves over 1F1B per step, or its idle time over 1F1B's), against the
simulator at fresh costs on both sides of the paper's condition.

    pplab exercise show zero-bubble --learner ada
"""

from __future__ import annotations

import math
import random

from pplab.exercises.core import Exercise, Variant, register, right, same_number, wrong
from pplab.exercises.judging import idle_per_rank, judge_formula, simulated
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.limits import MAX_ANSWER_MICROBATCHES
from pplab.sim.cost_model import CostModel

COSTS = (1, 1.5, 2, 2.5, 3, 4)
_FRESH_POINTS = 10


def _costs(rng: random.Random, w_is_long: bool | None) -> tuple[float, float, float]:
    """(T_F, T_I, T_W) with T_F != T_I; W longer than min(T_F, T_I) when ``w_is_long``,
    shorter (strictly: at equality the paper's form and the floor agree) when False."""
    while True:
        t_f, t_i, t_w = (rng.choice(COSTS) for _ in range(3))
        shortest = min(t_f, t_i)
        if t_f != t_i and (w_is_long is None or (t_w > shortest if w_is_long
                                                 else t_w < shortest)):
            return t_f, t_i, t_w


def _draw(rng: random.Random) -> dict:
    t_f, t_i, t_w = _costs(rng, w_is_long=True)
    p = rng.randint(3, 8)
    target = rng.choice((4, 5, 6, 8, 10, 12, 15))
    idle = (p - 1) * max(t_f + t_i - t_w, t_f, t_i)
    answer_a = max(p, math.ceil(idle * (100 - target) / (target * (t_f + t_i + t_w)) - 1e-9))
    # part (b)'s m is not part (a)'s answer, which the question would then print
    m = rng.choice([k for k in range(p, 3 * p + 1) if k != answer_a])
    return dict(p=p, m=m, t_f=t_f, t_i=t_i, t_w=t_w, target_percent=target,
                form_c=rng.choice(("saving", "ratio")))


def _idle(p: int, m: int, t_f: float, t_i: float, t_w: float) -> float:
    cost = CostModel(forward=t_f, backward_input=t_i, backward_weight=t_w)
    return idle_per_rank(simulated("zb-h1", p, m, cost))


def _waits(v: Variant) -> dict[str, float]:
    """The three waits the lesson names, in cost units, for the learner's numbers."""
    hops = v["p"] - 1
    return {"forward-fill": hops * v["t_f"], "gradient-return": hops * v["t_i"],
            "weight-drain": hops * (v["t_f"] + v["t_i"] - v["t_w"])}


def _bubble(p: int, m: int, t_f: float, t_i: float, t_w: float) -> float:
    cost = CostModel(forward=t_f, backward_input=t_i, backward_weight=t_w)
    return float(simulated("zb-h1", p, m, cost)["bubble_fraction"])


def fewest_m(v: Variant) -> int:
    """The fewest microbatches (at least p) whose simulated ZB-H1 bubble is at most the
    target: the closed form proposes, the simulator decides."""
    p, costs, share = v["p"], tuple(v[k] for k in ("t_f", "t_i", "t_w")), v["target_percent"] / 100
    reaches = lambda k: _bubble(p, k, *costs) <= share + 1e-9  # noqa: E731
    idle = _idle(p, p, *costs)
    m = max(p, math.ceil(idle * (1 - share) / (share * sum(costs)) - 1e-9))
    while not reaches(m):
        m += 1
    while m > p and reaches(m - 1):
        m -= 1
    return m


def judge_fewest_m(v: Variant, answer) -> object:
    p, t_f, t_i, t_w, m = v["p"], v["t_f"], v["t_i"], v["t_w"], int(answer)
    truth, share, work = fewest_m(v), v["target_percent"] / 100, t_f + t_i + t_w
    if m == truth:
        return right(f"right: at m = {m} ZB-H1's bubble is {_bubble(p, m, t_f, t_i, t_w):.2%} "
                     f"of the step, at m = {m - 1} {_bubble(p, m - 1, t_f, t_i, t_w):.2%} "
                     f"(predicted by the simulator)")
    hops = p - 1

    def bound(idle: float, over_work: bool = False) -> int:
        return math.ceil(idle / (share * work) - (0 if over_work else idle / work) - 1e-9)

    mistakes = [
        (bound(hops * (t_f + t_i - t_w)), "that uses the paper's idle time (p-1)(T_F+T_I-T_W), "
                                          "which holds only while T_W <= min(T_F, T_I)"),
        (bound(hops * work), "that uses 1F1B's idle time (p-1)(T_F+T_B); ZB-H1 fills part of it "
                             "with weight gradients"),
        (bound(_idle(p, p, t_f, t_i, t_w), over_work=True),
         "that puts the bubble over the work alone; the question asks for its share of the "
         "step (idle time over the work plus the idle time)"),
    ]
    for value, message in mistakes:
        if m == value:
            return wrong(message)
    hint = f"at m = {m} the simulator predicts a bubble of {_bubble(p, m, t_f, t_i, t_w):.2%}"
    if m > truth:
        return wrong("that m reaches the target, but fewer microbatches reach it too", hint=hint)
    return wrong("find the idle time of a step on the lesson's timeline (it does not grow "
                 "with m), then the m that makes it a small enough share", hint=hint)


def judge_binding_wait(v: Variant, choice: str) -> object:
    idle = _idle(*(v[k] for k in ("p", "m", "t_f", "t_i", "t_w")))
    waits = _waits(v)
    binding = next(name for name, value in waits.items() if same_number(value, idle))
    if choice == binding:
        what = {"forward-fill": "last rank's fill", "gradient-return":
                "time the first input gradient takes to come back to stage 0"}[binding]
        return right(f"right: {idle:g} cost units idle on every rank, the {what} (predicted)")
    if choice == "weight-drain":
        return wrong("the paper's count holds only while T_W <= min(T_F, T_I); here W is "
                     "longer than that")
    return wrong("that wait is real, but another one is longer with these costs: compare them",
                 hint=f"that wait alone is {waits[choice]:g} cost units")


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("formula")
    points = []
    for n in range(_FRESH_POINTS):
        # both sides of the paper's condition, and both orders of T_F and T_I
        t_f, t_i, t_w = _costs(rng, w_is_long=None if n >= 4 else n % 2 == 0)
        if n < 4 and (t_f > t_i) != (n < 2):
            t_f, t_i = t_i, t_f
        p = rng.randint(2, 8)
        points.append({"p": p, "m": rng.randint(p, 2 * p), "t_f": t_f, "t_i": t_i, "t_w": t_w})
    return points


def _cost(point: dict) -> CostModel:
    return CostModel(forward=point["t_f"], backward=point["t_i"] + point["t_w"],
                     backward_input=point["t_i"], backward_weight=point["t_w"])


def _saving_simulated(point: dict) -> float:
    """Cost units one 1F1B step (B = I + W) takes longer than one ZB-H1 step."""
    p, m, cost = int(point["p"]), int(point["m"]), _cost(point)
    return float(simulated("1f1b", p, m, cost)["makespan"]
                 - simulated("zb-h1", p, m, cost)["makespan"])


def _idle_ratio_simulated(point: dict) -> float:
    """ZB-H1's idle time per rank over 1F1B's, with the same costs."""
    p, m, cost = int(point["p"]), int(point["m"]), _cost(point)
    return idle_per_rank(simulated("zb-h1", p, m, cost)) / idle_per_rank(
        simulated("1f1b", p, m, cost))


def judge_bubble_formula(v: Variant, function) -> object:
    names = ("p", "m", "t_f", "t_i", "t_w")
    if v["form_c"] == "ratio":
        return judge_formula(
            function, ("t_f", "t_i", "t_w"), _fresh_points(v), truth=_idle_ratio_simulated,
            misconceptions=[
                (lambda t_f, t_i, t_w, **_: (t_f + t_i - t_w) / (t_f + t_i + t_w),
                 "that uses the paper's idle time: it holds only while T_W <= min(T_F, T_I); "
                 "look for the waits that no order of the W's removes"),
                (lambda t_f, t_i, t_w, **_: max(t_f, t_i) / (t_f + t_i + t_w),
                 "that uses the floor alone: when W is short the drain is longer than the "
                 "floor"),
                (lambda t_f, t_i, t_w, **_: (t_f + t_i + t_w) / max(t_f + t_i - t_w, t_f, t_i),
                 "that is 1F1B's idle time over ZB-H1's, the other way round"),
            ])
    return judge_formula(
        function, names, _fresh_points(v), truth=_saving_simulated,
        misconceptions=[
            (lambda p, m, t_f, t_i, t_w: (p - 1) * (t_f + t_i + t_w) - (p - 1) * (t_f + t_i - t_w),
             "that uses the paper's idle time for ZB-H1: it holds only while T_W <= min(T_F, "
             "T_I); look for the waits that no order of the W's removes"),
            (lambda p, m, t_f, t_i, t_w: (p - 1) * t_w,
             "ZB-H1 fills more of 1F1B's bubble than one W per hop"),
            (lambda p, m, t_f, t_i, t_w: (p - 1) * max(t_f + t_i - t_w, t_f, t_i),
             "that is ZB-H1's idle time itself; the question asks how much shorter its step "
             "is than 1F1B's"),
            (lambda p, m, t_f, t_i, t_w: m * t_w,
             "the step's work is the same under both: only the idle time differs"),
        ])


EXERCISE = register(Exercise(
    id="zero-bubble", title="Lesson 3: zero bubble", lesson="03-zero-bubble",
    intro="ZB-H1 runs p = {p} stages with T_F = {t_f:g}, T_I = {t_i:g} and T_W = {t_w:g} cost "
          "units; communication is free.",
    draw=_draw,
    parts=(
        NumberPart("a", "What is the fewest microbatches m (at least p) for which ZB-H1's "
                        "bubble is at most {target_percent}% of the step (idle time over ranks "
                        "x step)?", judge_fewest_m, whole=True, unit="microbatches", low=1,
                   high=MAX_ANSWER_MICROBATCHES),
        ChoicePart("b", "With m = {m} microbatches, which wait sets each rank's idle time in "
                        "one step?", judge_binding_wait, options=(
            ("forward-fill", "the last rank waiting for its first forward"),
            ("gradient-return", "stage 0 waiting for the first input gradient to come back"),
            ("weight-drain", "the weight gradients left at the end of the step, as the paper "
                             "counts them"))),
        FormulaPart("c", "", judge_bubble_formula, variables=("p", "m", "t_f", "t_i", "t_w"),
                    forms=(
            Form("saving", "Write how many cost units one ZB-H1 step is shorter than one 1F1B "
                           "step with the same costs (B = I + W; m >= p), as a formula in p, m, "
                           "t_f, t_i and t_w. It is checked against the simulator at costs you "
                           "have not seen, W short and W long.",
                 ("p", "m", "t_f", "t_i", "t_w")),
            Form("ratio", "Write ZB-H1's idle time per rank over 1F1B's with the same costs "
                          "(B = I + W; m >= p), as a formula in t_f, t_i and t_w. It is checked "
                          "against the simulator at costs you have not seen, W short and W "
                          "long.", ("t_f", "t_i", "t_w")))),
    ),
))
