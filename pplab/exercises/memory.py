"""Exercise ``memory`` (lesson 2): what GPipe and 1F1B hold on each stage, and why.

Three parts, with the learner's own p, m and stage: (a) how many times as many microbatches
a stage holds under GPipe as under 1F1B, read off two simulated timelines; (b) one stage's
1F1B order written out in actions, run inside pplab's 1F1B (validate names the first broken
action) and held to 1F1B's peak and makespan; (c) part (a) for any stage as a formula in p, m
and i, against the simulator at fresh values, including steps with few microbatches.

    pplab exercise show memory --learner ada
"""

from __future__ import annotations

import random
from fractions import Fraction

from pplab.exercises.core import (
    BadAnswer,
    Exercise,
    FormulaPart,
    LearnerCodeError,
    NumberPart,
    SchedulePart,
    Variant,
    call_learner,
    read_actions,
    register,
    right,
    wrong,
)
from pplab.exercises.judging import judge_formula, simulated
from pplab.schedules import FORWARD, Schedule, build, validate
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

_FRESH_POINTS = 8


def _draw(rng: random.Random) -> dict:
    p = rng.randint(4, 10)
    p_order = rng.randint(3, 5)
    return dict(p=p, m=rng.randint(p + 1, 4 * p), stage=rng.randint(0, p - 2),
                p_order=p_order, m_order=rng.randint(p_order + 1, p_order + 3),
                stage_order=rng.randint(0, p_order - 2))


def judge_ratio(v: Variant, ratio: Fraction) -> object:
    p, m, stage = v["p"], v["m"], v["stage"]
    gpipe = simulated("gpipe", p, m)["peak_activations"]
    one_f_one_b = simulated("1f1b", p, m)["peak_activations"]
    truth = Fraction(gpipe[stage], one_f_one_b[stage])
    if ratio == truth:
        return right(f"right: at their peaks stage {stage} holds {gpipe[stage]} microbatches "
                     f"under GPipe and {one_f_one_b[stage]} under 1F1B (predicted by the "
                     f"simulator), a ratio of {truth}")
    if ratio == 1:
        return wrong("GPipe and 1F1B share the bubble, not the memory: GPipe runs every "
                     "forward before its first backward")
    if ratio == Fraction(m, p - 1 - stage):
        return wrong("you counted the stage's warm-up forwards; it starts one more forward "
                     "before its first backward")
    if ratio.denominator % 10 == 0 and abs(ratio - truth) < Fraction(1, 100):
        return wrong("that is the ratio rounded: give it exactly, as a fraction such as 5/2")
    if any(Fraction(gpipe[s], one_f_one_b[s]) == ratio for s in gpipe if s != stage):
        return wrong("that is the ratio on another stage; the question asks about yours, and "
                     "stages count from 0")
    return wrong("count what each schedule holds on this stage when its first "
                 "backward starts",
                 hint=f"{ratio} is too {'high' if ratio > truth else 'low'}")


def _order_cases(v: Variant, answer) -> list[tuple[int, int, int]]:
    """(stage, p, m) to check: the learner's own, and for a function two fresh ones too."""
    own = [(v["stage_order"], v["p_order"], v["m_order"])]
    if not callable(answer):
        return own
    rng = v.rng("order")
    fresh = []
    for _ in range(2):
        p = rng.randint(2, 6)
        fresh.append((rng.randint(0, p - 1), p, rng.randint(1, 2 * p)))
    return own + fresh


def _judge_order(stage: int, p: int, m: int, actions) -> object:
    foreign = next((a for a in actions if a.stage != stage), None)
    if foreign is not None:
        return wrong(f"{foreign} belongs to stage {foreign.stage}; this rank holds stage "
                     f"{stage} only")
    reference = build("1f1b", p, m)
    orders = dict(reference.actions) | {stage: tuple(actions)}
    try:
        mine = validate(Schedule(orders, reference.stage_to_rank, m, name="yours"))
    except ValueError as error:
        reason = getattr(error, "reason", str(error))
        return wrong(f"the order cannot run: {reason}")
    cost = CostModel(forward=1, backward=2)
    result = metrics(simulate(mine, cost), ranks=range(p))
    target = simulated("1f1b", p, m, cost)
    peak, makespan = result["peak_activations"][stage], result["makespan"]
    first_backward = next((n for n, a in enumerate(actions) if a.kind != FORWARD), 0)
    all_forwards_first = all(a.kind != FORWARD for a in actions[first_backward:])
    if all_forwards_first and peak > target["peak_activations"][stage]:
        return wrong("that is GPipe's order for this stage: it runs every forward before its "
                     "first backward, so it holds all its microbatches at once")
    if peak > target["peak_activations"][stage]:
        return wrong("the order runs, but the stage holds more microbatches at once than "
                     "under 1F1B: start its backwards sooner", hint=f"it holds {peak}")
    if makespan > target["makespan"] + 1e-9:
        return wrong("the order runs, but the step takes longer than under 1F1B: the rank "
                     "waits where 1F1B keeps working",
                     hint=f"{makespan:g} cost units against {target['makespan']:g}")
    return right(f"right: the order runs, holds at most {peak} microbatches on stage {stage} "
                 f"and the step takes {makespan:g} cost units, as under 1F1B (predicted)")


def judge_order(v: Variant, answer) -> object:
    for n, (stage, p, m) in enumerate(_order_cases(v, answer)):
        try:
            actions = (read_actions(call_learner(answer, stage, p, m)) if callable(answer)
                       else answer)
        except (LearnerCodeError, BadAnswer) as error:
            return wrong(str(error))
        judgement = _judge_order(stage, p, m, actions)
        if n == 0:
            own = judgement
        if not judgement.right:
            return judgement if n == 0 else wrong(
                f"for stage {stage} of p = {p}, m = {m}: {judgement.message}", judgement.hint)
    return own


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("formula")
    points = []
    for _ in range(_FRESH_POINTS):
        p = rng.randint(2, 12)
        points.append({"p": p, "m": rng.randint(1, 3 * p), "i": rng.randint(0, p - 1)})
    for _ in range(2):  # steps with fewer microbatches than the stage's warm-up needs
        p = rng.randint(4, 12)
        points.append({"p": p, "m": rng.randint(1, p - 1), "i": 0})
    return points


def _ratio_simulated(point: dict) -> float:
    p, m, i = int(point["p"]), int(point["m"]), int(point["i"])
    gpipe = simulated("gpipe", p, m)["peak_activations"][i]
    return gpipe / simulated("1f1b", p, m)["peak_activations"][i]


def judge_ratio_formula(v: Variant, function) -> object:
    return judge_formula(
        function, ("p", "m", "i"), _fresh_points(v), truth=_ratio_simulated,
        misconceptions=[
            (lambda p, m, i: m / (p - i),
             "right while the step has enough microbatches; look at a step with fewer "
             "microbatches than stages"),
            (lambda p, m, i: m / (p - 1 - i),
             "you counted the warm-up forwards only; the stage starts one more forward before "
             "its first backward"),
            (lambda p, m, i: m / min(p - 1 - i, m),
             "you counted the warm-up forwards only; the stage starts one more forward before "
             "its first backward"),
            (lambda p, m, i: min(p - i, m) / m, "that is 1F1B's peak over GPipe's, the other "
                                                "way round"),
            (lambda p, m, i: m / min(p, m), "that is stage 0's ratio; later stages start fewer "
                                            "warm-up forwards"),
            (lambda p, m, i: 1, "GPipe and 1F1B share the bubble, not the memory"),
        ])


EXERCISE = register(Exercise(
    id="memory", title="Lesson 2: same bubble, less memory", lesson="02-memory-gpipe-vs-1f1b",
    intro="Stages count from 0. A stage holds a microbatch's activations from the start of its "
          "forward to the end of its backward.",
    draw=_draw,
    parts=(
        NumberPart("a", "A pipeline has p = {p} stages and runs m = {m} microbatches per step. "
                        "At its peak, stage {stage} holds the activations of how many times "
                        "as many microbatches under GPipe as under 1F1B?",
                   judge_ratio, low=0, high=10**6),
        SchedulePart("b", "A pipeline of p = {p_order} stages runs m = {m_order} microbatches "
                          "per step under 1F1B. Write the order of stage {stage_order}: its "
                          "forwards (F) and full backwards (B), in the order it runs them.",
                     judge_order),
        FormulaPart("c", "Write how many times as many microbatches stage i holds at its peak "
                         "under GPipe as under 1F1B, as a formula in p, m and i (checked "
                         "against the simulator at values you have not seen, some with few "
                         "microbatches).",
                    judge_ratio_formula, variables=("p", "m", "i")),
    ),
))
