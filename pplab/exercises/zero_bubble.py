"""Exercise ``zero-bubble`` (lesson 3): ZB-H1's idle time when W is not the shortest part.

Three parts, with the learner's own p, m and costs T_F, T_I, T_W (W always longer than one
of F and I, so the paper's formula does not hold): (a) each rank's idle time in one step,
read off the simulated timeline; (b) which wait sets it, found by matching the simulated idle
time against each wait; (c) the bubble fraction for any costs as a formula in p, m, t_f, t_i
and t_w, against the simulator at fresh costs on both sides of the paper's condition.

    pplab exercise show zero-bubble --learner ada
"""

from __future__ import annotations

import random
from fractions import Fraction

from pplab.exercises.core import (
    ChoicePart,
    Exercise,
    FormulaPart,
    NumberPart,
    Variant,
    register,
    right,
    same_number,
    wrong,
)
from pplab.exercises.judging import idle_per_rank, judge_formula, simulated
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
    return dict(p=p, m=rng.randint(p, 3 * p), t_f=t_f, t_i=t_i, t_w=t_w)


def _idle(p: int, m: int, t_f: float, t_i: float, t_w: float) -> float:
    cost = CostModel(forward=t_f, backward_input=t_i, backward_weight=t_w)
    return idle_per_rank(simulated("zb-h1", p, m, cost))


def _waits(v: Variant) -> dict[str, float]:
    """The three waits the lesson names, in cost units, for the learner's numbers."""
    hops = v["p"] - 1
    return {"forward-fill": hops * v["t_f"], "gradient-return": hops * v["t_i"],
            "weight-drain": hops * (v["t_f"] + v["t_i"] - v["t_w"])}


def judge_idle(v: Variant, idle: Fraction) -> object:
    p, m, t_f, t_i, t_w = (v[k] for k in ("p", "m", "t_f", "t_i", "t_w"))
    truth = _idle(p, m, t_f, t_i, t_w)
    work = m * (t_f + t_i + t_w)
    if same_number(idle, truth):
        return right(f"right: {truth:g} cost units idle on every rank (predicted by the "
                     f"simulator), a bubble of {truth / (work + truth):.2%} of the step")
    hops = p - 1
    mistakes = [
        (hops * (t_f + t_i - t_w), "that is the paper's (p-1)(T_F+T_I-T_W), which holds only "
                                   "while T_W <= min(T_F, T_I); look at what stage 0 and the "
                                   "last rank wait for"),
        (hops * (t_f + t_i + t_w), "that is 1F1B's bubble (p-1)(T_F+T_B) with T_B = T_I + T_W; "
                                   "ZB-H1 fills part of it with weight gradients"),
        (hops * t_f, "that is only the last rank's fill, (p-1)T_F; another rank waits longer, "
                     "and every rank is idle equally long"),
        (hops * t_i, "that is only stage 0's wait for the first input gradient, (p-1)T_I; "
                     "another rank waits longer, and every rank is idle equally long"),
        (p * truth, "that is the idle time of all ranks together; the question asks for one "
                    "rank's"),
        (truth / (work + truth), "that is the bubble as a share of the step; the question asks "
                                 "for cost units"),
    ]
    for value, message in mistakes:
        if same_number(idle, value, 1e-6) and not same_number(value, truth):
            return wrong(message)
    return wrong("find the longest wait of the step on the lesson's timeline",
                 hint=f"{float(idle):g} cost units is too "
                      f"{'much' if idle > truth else 'little'}")


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


def _bubble_simulated(point: dict) -> float:
    cost = CostModel(forward=point["t_f"], backward_input=point["t_i"],
                     backward_weight=point["t_w"])
    return float(simulated("zb-h1", int(point["p"]), int(point["m"]), cost)["bubble_fraction"])


def _share(idle: float, m: float, t_f: float, t_i: float, t_w: float) -> float:
    return idle / (m * (t_f + t_i + t_w) + idle)


def judge_bubble_formula(v: Variant, function) -> object:
    return judge_formula(
        function, ("p", "m", "t_f", "t_i", "t_w"), _fresh_points(v), truth=_bubble_simulated,
        misconceptions=[
            (lambda p, m, t_f, t_i, t_w: _share((p - 1) * (t_f + t_i - t_w), m, t_f, t_i, t_w),
             "that uses the paper's idle time: it holds only while T_W <= min(T_F, T_I); look "
             "for the waits that no order of the W's removes"),
            (lambda p, m, t_f, t_i, t_w: _share((p - 1) * (t_f + t_i + t_w), m, t_f, t_i, t_w),
             "that uses 1F1B's idle time; ZB-H1 fills part of it with weight gradients"),
            (lambda p, m, t_f, t_i, t_w: _share((p - 1) * max(t_f, t_i), m, t_f, t_i, t_w),
             "that uses the floor alone: when W is short the drain is longer than the floor"),
            (lambda p, m, t_f, t_i, t_w: (p - 1) * max(t_f + t_i - t_w, t_f, t_i),
             "that is the idle time in cost units; the question asks for its share of the step"),
            (lambda p, m, t_f, t_i, t_w: (p - 1) * max(t_f + t_i - t_w, t_f, t_i)
             / (m * (t_f + t_i + t_w)),
             "that is the idle time relative to the work; the step is the work plus the idle "
             "time"),
        ])


EXERCISE = register(Exercise(
    id="zero-bubble", title="Lesson 3: zero bubble", lesson="03-zero-bubble",
    intro="ZB-H1 runs p = {p} stages and m = {m} microbatches with T_F = {t_f:g}, "
          "T_I = {t_i:g} and T_W = {t_w:g} cost units; communication is free.",
    draw=_draw,
    parts=(
        NumberPart("a", "For how many cost units of one step is each rank idle?", judge_idle,
                   unit="cost units", low=0, high=10**6),
        ChoicePart("b", "Which wait sets that idle time?", judge_binding_wait, options=(
            ("forward-fill", "the last rank waiting for its first forward"),
            ("gradient-return", "stage 0 waiting for the first input gradient to come back"),
            ("weight-drain", "the weight gradients left at the end of the step, as the paper "
                             "counts them"))),
        FormulaPart("c", "Write the bubble fraction of one ZB-H1 step (m >= p; idle time over "
                         "the step) for any costs, as a formula in p, m, t_f, t_i and t_w. It "
                         "is checked against the simulator at costs you have not seen, W short "
                         "and W long.",
                    judge_bubble_formula, variables=("p", "m", "t_f", "t_i", "t_w")),
    ),
))
