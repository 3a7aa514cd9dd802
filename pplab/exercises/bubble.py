"""Exercise ``bubble`` (lesson 1): how many microbatches bring the bubble down, and why.

Three parts, each with the learner's own p, target and costs: (a) the fewest microbatches for
a bubble of at most the target, checked by simulating the step at the answer and one
microbatch fewer; (b) which of three changes shrinks another pipeline's bubble the most,
checked by simulating all three; (c) a formula derived from the lesson's bubble fraction (not
printed in it), drawn per learner among two forms: the fewest microbatches for any p and
target share b, or the most stages for any m and b; checked against the simulator at fresh
values. Feedback names the usual mistakes (the other
normalisation, rounding down, a backward that "matters") and gives at most a few numbers.

    pplab exercise show bubble --learner ada
    pplab exercise check bubble --learner ada a=27
"""

from __future__ import annotations

import math
import random

from pplab.exercises.core import Exercise, Variant, register, right, wrong
from pplab.exercises.judging import judge_formula, simulated
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.limits import MAX_ANSWER_MICROBATCHES
from pplab.sim.cost_model import CostModel

LABELS = {"gpipe": "GPipe", "1f1b": "1F1B"}
_TOLERANCE = 1e-9  # simulated times are sums of floats
_FRESH_POINTS = 8


def _draw(rng: random.Random) -> dict:
    t_f = rng.choice((1, 2))
    schedule = rng.choice(tuple(LABELS))
    numbers = dict(p=rng.randint(3, 12), target_percent=rng.randint(4, 25), t_f=t_f,
                   t_b=t_f * rng.choice((1, 1.5, 2, 2.5, 3)), schedule=schedule,
                   label=LABELS[schedule])
    target = numbers["target_percent"] / 100
    answer_a = math.ceil((numbers["p"] - 1) * (1 - target) / target - _TOLERANCE)
    # Part (b): a pipeline where adding microbatches and removing stages differ clearly, so
    # the question has one answer; the closed form picks it, the judge simulates. Its m is
    # not part (a)'s answer, which the question would then print.
    while True:
        p_b, m_b = rng.randint(4, 12), rng.randint(2, 24)
        more, fewer = rng.randint(2, 12), rng.randint(1, p_b - 2)
        if abs((p_b - 1) / (m_b + more + p_b - 1)
               - (p_b - fewer - 1) / (m_b + p_b - fewer - 1)) >= 0.01 and m_b != answer_a:
            break
    return numbers | dict(p_b=p_b, m_b=m_b, more=more, fewer=fewer, p_fewer=p_b - fewer,
                          form_c=rng.choice(("m", "p")))


def _cost(v: Variant, backward_speedup: float = 1) -> CostModel:
    return CostModel(forward=v["t_f"], backward=v["t_b"] / backward_speedup)


def _bubble(v: Variant, pp_size: int, num_microbatches: int, speedup: float = 1) -> float:
    cost = _cost(v, speedup)
    return float(simulated(v["schedule"], pp_size, num_microbatches, cost)["bubble_fraction"])


def judge_smallest_m(v: Variant, answer) -> object:
    m, p, target = int(answer), v["p"], v["target_percent"] / 100
    reaches = lambda k: _bubble(v, p, k) <= target + _TOLERANCE  # noqa: E731
    if reaches(m) and (m == 1 or not reaches(m - 1)):
        before = f", and m = {m - 1} would give {_bubble(v, p, m - 1):.2%}" if m > 1 else ""
        return right(f"right: m = {m} gives a bubble of {_bubble(v, p, m):.2%} of the step"
                     f"{before} (predicted by the simulator)")
    if m == math.ceil((p - 1) / target - _TOLERANCE):
        return wrong("that is the smallest m for the bubble relative to the ideal time, "
                     "(p-1)/m; the question asks for its share of the step (idle time over "
                     "ranks x makespan)")
    solved = (p - 1) * (1 - target) / target
    if not reaches(m) and m == math.floor(solved) and not math.isclose(solved, m):
        return wrong("round up, not down: m must be whole and the bubble at most the target")
    if not reaches(m):
        return wrong("work it out from the lesson's bubble fraction and your target",
                     hint=f"with m = {m} the simulator predicts a bubble of "
                          f"{_bubble(v, p, m):.2%}, above {v['target_percent']}%: "
                          f"more microbatches")
    return wrong("work it out from the lesson's bubble fraction and your target",
                 hint=f"m = {m} reaches the target ({_bubble(v, p, m):.2%}), but fewer "
                      f"microbatches reach it too")


def _changes(v: Variant) -> dict[str, float]:
    p, m = v["p_b"], v["m_b"]
    return {"more-microbatches": _bubble(v, p, m + v["more"]),
            "fewer-stages": _bubble(v, v["p_fewer"], m),
            "faster-backward": _bubble(v, p, m, speedup=2)}


def judge_best_change(v: Variant, choice: str) -> object:
    now = _bubble(v, v["p_b"], v["m_b"])
    after = _changes(v)
    best = min(("more-microbatches", "fewer-stages"), key=after.__getitem__)
    if choice == best:
        return right(f"right: {v['more']} more microbatches give "
                     f"{after['more-microbatches']:.2%}, {v['p_fewer']} stages instead of "
                     f"{v['p_b']} give {after['fewer-stages']:.2%}, a backward twice as fast "
                     f"leaves "
                     f"{after['faster-backward']:.2%} (from {now:.2%}; all predicted)")
    if choice == "faster-backward":
        return wrong("a faster backward shortens the step, but t_B/t_F cancels out of the "
                     "bubble fraction: the idle share of the step stays the same")
    if choice == "no-difference":
        return wrong("the changes move the bubble fraction by different amounts: work out "
                     "the fraction after each one",
                     hint=f"a backward twice as fast leaves it at {after['faster-backward']:.2%}")
    return wrong("adding microbatches and removing stages both shrink the bubble, "
                 "but not by the same amount here",
                 hint=f"that change gives {after[choice]:.2%} (from {now:.2%}, predicted)")


def smallest_m_simulated(v: Variant, p: int, share: float) -> int:
    """The fewest microbatches whose simulated bubble is at most ``share`` of the step.

    The closed form proposes, the simulator decides: the proposal is checked at m and m - 1
    and walked until the simulator agrees (it always has, but the simulator is the judge).
    """
    reaches = lambda k: _bubble(v, p, k) <= share + _TOLERANCE  # noqa: E731
    m = max(1, math.ceil((p - 1) * (1 - share) / share - _TOLERANCE))
    while not reaches(m):
        m += 1
    while m > 1 and reaches(m - 1):
        m -= 1
    return m


def largest_p_simulated(v: Variant, m: int, share: float) -> int:
    """The most stages whose simulated bubble at ``m`` microbatches is at most ``share``
    (proposed by the closed form, decided by the simulator, as above)."""
    reaches = lambda k: _bubble(v, k, m) <= share + _TOLERANCE  # noqa: E731
    p = max(1, math.floor(1 + share * m / (1 - share) + _TOLERANCE))
    while p > 1 and not reaches(p):
        p -= 1
    while reaches(p + 1):
        p += 1
    return p


def _fresh_points(v: Variant) -> list[dict]:
    """Points whose exact bound is not whole, so rounding the right way is the only way to
    be right: (p, b) for the fewest microbatches, (m, b) for the most stages."""
    rng = v.rng("formula")
    points: list[dict] = []
    while len(points) < _FRESH_POINTS:
        size, percent = rng.randint(2, 10), rng.randint(5, 40)
        if v["form_c"] == "p":
            size = rng.randint(2, 40)
            if size * percent % (100 - percent):
                points.append({"m": size, "b": percent / 100})
        elif (size - 1) * (100 - percent) % percent:
            points.append({"p": size, "b": percent / 100})
    return points


def _judge_largest_p(v: Variant, function) -> object:
    return judge_formula(
        function, ("m", "b"), _fresh_points(v),
        truth=lambda point: largest_p_simulated(v, int(point["m"]), point["b"]),
        misconceptions=[
            (lambda m, b: math.floor(b * m) + 1,
             "that is the most stages for the bubble relative to the ideal time, (p-1)/m; the "
             "question asks for its share of the step"),
            (lambda m, b: 1 + b * m / (1 - b),
             "p is a whole number of stages: round your bound down"),
            (lambda m, b: math.ceil(1 + b * m / (1 - b)),
             "round down, not up: p must be whole and the bubble at most b"),
            (lambda m, b: math.floor(b * m / (1 - b)),
             "one stage too few: the bubble counts p - 1 fills, not p"),
        ])


def judge_formula_part(v: Variant, function) -> object:
    if v["form_c"] == "p":
        return _judge_largest_p(v, function)
    return judge_formula(
        function, ("p", "b"), _fresh_points(v),
        truth=lambda point: smallest_m_simulated(v, int(point["p"]), point["b"]),
        misconceptions=[
            (lambda p, b: math.ceil((p - 1) / b),
             "that is the fewest microbatches for the bubble relative to the ideal time, "
             "(p-1)/m; the question asks for its share of the step"),
            (lambda p, b: (p - 1) * (1 - b) / b,
             "m is a whole number of microbatches: round your bound up"),
            (lambda p, b: math.floor((p - 1) * (1 - b) / b),
             "round up, not down: m must be whole and the bubble at most b"),
            (lambda p, b: math.ceil((p - 1) * (1 - b) / b) + 1,
             "one microbatch too many: check the smallest m your bound allows"),
        ])


EXERCISE = register(Exercise(
    id="bubble", title="Lesson 1: the bubble", lesson="01-the-bubble",
    intro="Your pipeline runs {label} with equal stages and free communication.",
    draw=_draw,
    parts=(
        NumberPart("a", "With p = {p} stages, a forward that costs {t_f:g} and a backward that "
                        "costs {t_b:g} cost units on every stage, what is the smallest number "
                        "of microbatches m for which the {label} bubble is at most "
                        "{target_percent}% of the step?",
                   judge_smallest_m, whole=True, low=1, high=MAX_ANSWER_MICROBATCHES),
        ChoicePart("b", "Another {label} pipeline has p = {p_b} stages and runs m = {m_b} "
                        "microbatches per step, with the same costs. Which one change "
                        "shrinks its bubble fraction the most?",
                   judge_best_change, options=(
                       ("more-microbatches", "run {more} more microbatches per step"),
                       ("fewer-stages", "cut the model into {p_fewer} stages instead of "
                                        "{p_b}"),
                       ("faster-backward", "make every backward twice as fast"),
                       ("no-difference", "all three shrink it by the same amount"))),
        FormulaPart("c", "", judge_formula_part, variables=("p", "m", "b"), forms=(
            Form("m", "Write the smallest number of microbatches for which the {label} bubble "
                      "is at most a share b of the step (b = 0.1 for 10%), as a formula in p "
                      "and b; ceil(x) rounds up. It is checked against the simulator at values "
                      "of p and b you have not seen.", ("p", "b")),
            Form("p", "Write the largest number of stages p for which the {label} bubble of a "
                      "step of m microbatches is at most a share b of the step (b = 0.1 for "
                      "10%), as a formula in m and b; floor(x) rounds down. It is checked "
                      "against the simulator at values of m and b you have not seen.",
                 ("m", "b")))),
    ),
))
