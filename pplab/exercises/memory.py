"""Exercise ``memory`` (lesson 2): what GPipe and 1F1B hold on each stage, and why.

Three parts, with the learner's own p, stage and factor: (a) the fewest microbatches for which
a stage holds a given factor more under GPipe than under 1F1B (no tool prints it: the
simulator gives the ratio at an m the learner picks, and the judge checks the answer and one
microbatch fewer); (b) one stage's 1F1B order written out in actions, run inside pplab's 1F1B
(validate names the first broken action) and held to 1F1B's peak and makespan; (c) a formula
in p, m and i, drawn per learner (GPipe's peak over 1F1B's, or the microbatches 1F1B saves),
against the simulator at fresh values, including steps with few microbatches.

    pplab exercise show memory --learner ada
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

from pplab.exercises.core import (
    BadAnswer,
    Exercise,
    LearnerCodeError,
    Variant,
    call_learner,
    register,
    right,
    wrong,
)
from pplab.exercises.judging import judge_formula, simulated
from pplab.exercises.parts import Form, FormulaPart, NumberPart, SchedulePart, read_actions
from pplab.limits import MAX_ANSWER_MICROBATCHES
from pplab.schedules import FORWARD, Schedule, build, validate
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

_FRESH_POINTS = 8


FACTORS = (1.5, 2, 2.5, 3, 3.5, 4)


def _draw(rng: random.Random) -> dict:
    p = rng.randint(4, 10)
    stage, factor = rng.randint(0, p - 2), rng.choice(FACTORS)
    p_order = rng.randint(3, 5)
    # part (b)'s m is not part (a)'s answer, which the question would then print
    m_order = rng.choice([m for m in range(p_order + 1, p_order + 4)
                          if m != math.ceil(factor * (p - stage))])
    return dict(p=p, stage=stage, factor=factor, p_order=p_order, m_order=m_order,
                stage_order=rng.randint(0, p_order - 2), form_c=rng.choice(("ratio", "saved")))


def _ratio(p: int, m: int, stage: int) -> Fraction:
    """How many times as many microbatches ``stage`` holds under GPipe as under 1F1B."""
    gpipe = simulated("gpipe", p, m)["peak_activations"][stage]
    return Fraction(gpipe, simulated("1f1b", p, m)["peak_activations"][stage])


def fewest_m(p: int, stage: int, factor: Fraction) -> int:
    """The fewest microbatches whose simulated ratio on ``stage`` reaches ``factor``: the
    lesson's count proposes, the simulator decides (at the proposal and one fewer)."""
    m = max(1, math.ceil(factor * (p - stage)))
    while _ratio(p, m, stage) < factor:
        m += 1
    while m > 1 and _ratio(p, m - 1, stage) >= factor:
        m -= 1
    return m


def judge_fewest_m(v: Variant, answer: Fraction) -> object:
    p, stage, factor, m = v["p"], v["stage"], Fraction(v["factor"]), int(answer)
    truth = fewest_m(p, stage, factor)
    if m == truth:
        return right(f"right: at m = {m} stage {stage} holds {_ratio(p, m, stage)} times as "
                     f"many microbatches under GPipe as under 1F1B, at m = {m - 1} only "
                     f"{_ratio(p, m - 1, stage)} times (predicted by the simulator)")
    held = p - stage  # what the lesson says 1F1B holds there; the simulator decided above
    mistakes = [(factor * (held - 1), "you counted the stage's warm-up forwards only; it "
                                      "starts one more forward before its first backward"),
                (factor * p, "that counts stage 0's forwards; a later stage starts fewer "
                             "before its first backward (stages count from 0)"),
                (factor * (held + 1), "one forward too many: count the forwards the stage "
                                      "starts before its first backward")]
    for value, message in mistakes:
        if m == math.ceil(value):
            return wrong(message)
    if m == math.floor(factor * held):
        return wrong("round up, not down: the ratio must reach the factor")
    # the two peaks, not their ratio: a whole ratio could read like the m asked for
    gpipe, one = (simulated(name, p, m)["peak_activations"][stage] for name in ("gpipe", "1f1b"))
    hint = (f"at m = {m} stage {stage} holds {gpipe} microbatches under GPipe and {one} under "
            f"1F1B (simulated)")
    if m > truth:
        return wrong("at that m the ratio is reached, but fewer microbatches reach it too",
                     hint=hint)
    return wrong("GPipe holds every microbatch of the step; 1F1B holds a number that does not "
                 "grow with m: work out when their ratio reaches the factor", hint=hint)


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
    return float(_ratio(int(point["p"]), int(point["m"]), int(point["i"])))


def _saved_simulated(point: dict) -> float:
    p, m, i = int(point["p"]), int(point["m"]), int(point["i"])
    return float(simulated("gpipe", p, m)["peak_activations"][i]
                 - simulated("1f1b", p, m)["peak_activations"][i])


def _judge_saved(v: Variant, function) -> object:
    return judge_formula(
        function, ("p", "m", "i"), _fresh_points(v), truth=_saved_simulated,
        misconceptions=[
            (lambda p, m, i: m - (p - i),
             "right while the step has enough microbatches; look at a step with fewer "
             "microbatches than stages"),
            (lambda p, m, i: m - min(p - 1 - i, m),
             "you counted the warm-up forwards only; the stage starts one more forward before "
             "its first backward"),
            (lambda p, m, i: min(p - i, m) - m, "that is the other way round: 1F1B holds fewer"),
            (lambda p, m, i: m - min(p, m), "that is stage 0's saving; later stages start "
                                            "fewer warm-up forwards"),
            (lambda p, m, i: 0, "GPipe and 1F1B share the bubble, not the memory"),
        ])


def judge_ratio_formula(v: Variant, function) -> object:
    if v["form_c"] == "saved":
        return _judge_saved(v, function)
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
        NumberPart("a", "A pipeline has p = {p} stages. How many microbatches m must a step "
                        "run, at the fewest, for stage {stage} to hold at its peak at least "
                        "{factor:g} times as many microbatches' activations under GPipe as "
                        "under 1F1B?",
                   judge_fewest_m, whole=True, unit="microbatches", low=1,
                   high=MAX_ANSWER_MICROBATCHES),
        SchedulePart("b", "A pipeline of p = {p_order} stages runs m = {m_order} microbatches "
                          "per step under 1F1B. Write the order of stage {stage_order}: its "
                          "forwards (F) and full backwards (B), in the order it runs them.",
                     judge_order),
        FormulaPart("c", "", judge_ratio_formula, variables=("p", "m", "i"), forms=(
            Form("ratio", "Write how many times as many microbatches stage i holds at its peak "
                          "under GPipe as under 1F1B, as a formula in p, m and i (checked "
                          "against the simulator at values you have not seen, some with few "
                          "microbatches).", ("p", "m", "i")),
            Form("saved", "Write how many fewer microbatches' activations stage i holds at its "
                          "peak under 1F1B than under GPipe, as a formula in p, m and i "
                          "(checked against the simulator at values you have not seen, some "
                          "with few microbatches).", ("p", "m", "i")))),
    ),
))
