"""Exercise ``interleaving`` (lesson 6): what v chunks per rank cost in memory and messages.

Three parts, with the learner's own numbers: (a) how many times the activation memory one rank
holds at its peak under interleaved 1F1B as under 1F1B, read off two simulated timelines with
each chunk's microbatch counted as 1/v of the rank's; (b) the point-to-point messages of one
step (or, drawn per learner, of one rank) as a formula, counted in the schedule at fresh
values; (c) which v gives the shortest step once every message pays a latency, checked by
simulating every v offered.
Feedback names the usual mistakes (a chunk's microbatch counted whole, the first rank's factor
used for another rank, Megatron's "v times the messages", the largest v taken as the best).

    pplab exercise show interleaving --learner ada
"""

from __future__ import annotations

import random
from fractions import Fraction
from functools import lru_cache

from pplab.calibration.costs import sends_remotely
from pplab.calibration.per_rank import peak_activations_per_rank, point_to_point_messages
from pplab.exercises.core import Exercise, Variant, register, right, wrong
from pplab.exercises.judging import judge_formula
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

CHOICES = (1, 2, 4, 8)  # chunks per rank offered in part (c); 1 is plain 1F1B
_MARGIN = 0.01  # part (c) is drawn so the best v beats the next by at least 1 %
_FRESH_POINTS = 10


def _schedule(p: int, m: int, v: int):
    return build("1f1b", p, m) if v == 1 else build("interleaved-1f1b", p, m, v)


@lru_cache(maxsize=512)
def _peaks_per_rank(p: int, m: int, v: int) -> dict[int, Fraction]:
    """Simulated peak of every rank in full-rank microbatches, exactly (k chunk ones over v)."""
    peaks = peak_activations_per_rank(simulate(_schedule(p, m, v)))
    return {rank: Fraction(peak).limit_denominator(8 * v) for rank, peak in peaks.items()}


@lru_cache(maxsize=512)
def _step_time(p: int, m: int, v: int, cost: CostModel) -> float:
    return float(metrics(simulate(_schedule(p, m, v), cost), ranks=range(p))["makespan"])


def _step_times(numbers: dict) -> dict[int, float]:
    cost = CostModel(forward=numbers["t_f"], backward=numbers["t_b"],
                     latency=numbers["latency"])
    return {v: _step_time(numbers["p_c"], numbers["m_c"], v, cost) for v in CHOICES}


def _draw(rng: random.Random) -> dict:
    while True:  # a ratio that is not a whole number, so no count in a message can spell it
        p = rng.randint(3, 8)
        numbers = dict(p=p, v=rng.choice((2, 3, 4)), m=p * rng.randint(2, 4),
                       rank=rng.randint(1, p - 1))
        if _ratio_of(numbers).denominator > 1:
            break
    # Part (c): a pipeline whose best v is clear, so the question has one answer; the
    # simulator picks it here and again, as the judge, at check time.
    while True:
        p_c = rng.randint(3, 8)
        t_f = rng.choice((1, 2))
        part_c = dict(p_c=p_c, m_c=p_c * rng.randint(2, 4), t_f=t_f,
                      t_b=t_f * rng.choice((1.5, 2, 2.5)),
                      latency=round(t_f * rng.choice((0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)), 3))
        best, second = sorted(_step_times(part_c).values())[:2]
        if second >= best * (1 + _MARGIN):
            return numbers | part_c | {"form_b": rng.choice(("step", "rank"))}


def _ratio(v) -> tuple[Fraction, Fraction, Fraction]:
    """(interleaved peak, 1F1B peak, their ratio) on the learner's rank, simulated."""
    p, m, chunks, rank = v["p"], v["m"], v["v"], v["rank"]
    interleaved, plain = _peaks_per_rank(p, m, chunks)[rank], _peaks_per_rank(p, m, 1)[rank]
    return interleaved, plain, interleaved / plain


def _ratio_of(numbers: dict) -> Fraction:
    return _ratio(numbers)[2]


def judge_memory_ratio(v: Variant, ratio: Fraction) -> object:
    p, chunks, rank = v["p"], v["v"], v["rank"]
    interleaved, plain, truth = _ratio(v)
    if ratio == truth:
        return right(f"right: at its peak rank {rank} holds {interleaved} full-rank microbatches "
                     f"of activations under interleaved 1F1B ({interleaved * chunks} chunk "
                     f"microbatches of 1/{chunks} each) and {plain} under 1F1B (predicted by "
                     f"the simulator): {truth} times as much")
    if ratio == truth * chunks:
        return wrong(f"you counted a chunk's microbatch as a whole one: each of the {chunks} "
                     f"chunks holds 1/{chunks} of the rank's layers, so its activations are "
                     f"about 1/{chunks} of a full-rank microbatch's")
    if ratio == 1 + Fraction(p - 1, p * chunks):
        return wrong("that is the first rank's factor (Korthikanti et al.); your rank starts "
                     "fewer warm-up forwards, under both schedules")
    if ratio == 1:
        return wrong("interleaving keeps more in flight than 1F1B: its warm-up runs more "
                     "(smaller) forwards before the first backward")
    if ratio == chunks:
        return wrong("the memory does not grow v times: count the chunk microbatches held at "
                     "the first backward, each 1/v of the rank's")
    # Warm-up forwards alone: one chunk microbatch fewer, and 1F1B's warm-up one fewer too.
    warmup = (interleaved * chunks - 1) / chunks
    if ratio == warmup / plain or (plain > 1 and ratio == warmup / (plain - 1)):
        return wrong("you counted the warm-up forwards only; one more forward runs before "
                     "the first backward, under both schedules")
    if ratio.denominator % 10 == 0 and abs(ratio - truth) < Fraction(1, 100):
        return wrong("that is the ratio rounded: give it exactly, as a fraction such as 11/8")
    return wrong("count what the rank holds when its first backward starts, under each "
                 "schedule, in full-rank microbatches",
                 hint=f"{ratio} is too {'high' if ratio > truth else 'low'}")


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("messages")
    points = []
    for n in range(_FRESH_POINTS):
        p = rng.randint(2, 8)
        chunks = 1 if n < 2 else rng.randint(2, 5)  # two 1F1B points, the rest interleaved
        points.append({"p": p, "m": p * rng.randint(1, 4), "v": chunks})
    return points


def _messages(point: dict) -> float:
    return point_to_point_messages(_schedule(int(point["p"]), int(point["m"]), int(point["v"])))


def _rank_messages(point: dict) -> float:
    schedule = _schedule(int(point["p"]), int(point["m"]), int(point["v"]))
    return float(sum(sends_remotely(schedule, action.stage, action.kind)
                     for action in schedule.actions[0]))


def _judge_rank_messages(v: Variant, function) -> object:
    return judge_formula(
        function, ("m", "v"), _fresh_points(v), truth=_rank_messages,
        misconceptions=[
            (lambda m, v, **_: 2 * m * v, "the first chunk receives its input from no stage, "
                                          "and the last chunk's output goes nowhere: one "
                                          "chunk sends one message less"),
            (lambda m, v, **_: m * v, "one direction only: a chunk sends its activation "
                                      "forward and a gradient back"),
            (lambda m, v, **_: 2 * m * (2 * v - 1), "that counts the messages a rank sends "
                                                    "and receives; the question asks what it "
                                                    "sends"),
            (lambda m, v, **_: 2 * v - 1, "that is one microbatch's messages; a step has m"),
        ], source="the messages counted in the schedule", verb="counts", tolerance=1e-9)


def judge_messages(v: Variant, function) -> object:
    if v["form_b"] == "rank":
        return _judge_rank_messages(v, function)
    return judge_formula(
        function, ("p", "m", "v"), _fresh_points(v), truth=_messages,
        misconceptions=[
            (lambda p, m, v: 2 * m * v * (p - 1),
             "that is 1F1B's count times v, the way Megatron-LM rounds it; count the links "
             "between consecutive stages a microbatch crosses: with v chunks there are more "
             "than v times 1F1B's"),
            (lambda p, m, v: 2 * m * (p - 1),
             "that is 1F1B's count: with v chunks a microbatch crosses more stage boundaries"),
            (lambda p, m, v: m * (p * v - 1),
             "one direction only: each boundary carries an activation forward and a gradient "
             "back"),
            (lambda p, m, v: 2 * m * p * v,
             "the last stage sends its output nowhere, and the first stage's input gradient "
             "goes nowhere either"),
            (lambda p, m, v: 2 * (p * v - 1),
             "that is one microbatch's messages; a step has m microbatches"),
        ], source="the messages counted in the schedule", verb="counts", tolerance=1e-9)


def judge_best_v(v: Variant, choice: str) -> object:
    times = _step_times(dict(v.numbers))
    chosen = int(choice.removeprefix("v"))
    best = min(times, key=times.get)
    shown = ", ".join(f"v = {k}: {t:.4g}" for k, t in times.items())
    if chosen == best:
        return right(f"right: the simulated steps take {shown} cost units (predicted)")
    hint = f"with v = {chosen} the simulator predicts a step of {times[chosen]:.4g} cost units"
    if chosen == max(CHOICES):
        return wrong("with free messages the largest v would win, but each microbatch now "
                     "crosses p v - 1 links each way and every crossing pays the latency",
                     hint=hint)
    if chosen == 1:
        return wrong("interleaving still shortens this step: its smaller bubble outweighs the "
                     "extra messages here", hint=hint)
    return wrong("simulate the step at each v offered, or weigh the bubble each v saves "
                 "against the latency its extra crossings add", hint=hint)


EXERCISE = register(Exercise(
    id="interleaving", title="Lesson 6: interleaved 1F1B", lesson="06-interleaved-1f1b",
    intro="Interleaved 1F1B as Megatron-LM orders it: rank r of p holds the v looped chunks "
          "r, r + p, r + 2p, ... of the model, and m is a multiple of p. Costs are for a rank's "
          "whole share of the model; a chunk costs 1/v of them and holds 1/v of the activations. "
          "Ranks count from 0.",
    draw=_draw,
    parts=(
        NumberPart("a", "A pipeline of p = {p} ranks runs m = {m} microbatches per step. At "
                        "its peak, rank {rank} holds how many times the activation memory "
                        "under interleaved 1F1B with v = {v} chunks per rank as under 1F1B "
                        "(the same model, so the same layers on each rank)?",
                   judge_memory_ratio, low=0, high=10**6),
        FormulaPart("b", "", judge_messages, variables=("p", "m", "v"), forms=(
            Form("step", "Write how many point-to-point messages (activations and gradients "
                         "sent between ranks) one step of interleaved 1F1B sends, as a formula "
                         "in p, m and v (v = 1 being plain 1F1B). It is counted in the schedule "
                         "at values you have not seen.", ("p", "m", "v")),
            Form("rank", "Write how many point-to-point messages (activations and gradients "
                         "sent to another rank) one rank sends in one step of interleaved 1F1B "
                         "with p >= 2, as a formula in m and v (v = 1 being plain 1F1B). It is "
                         "counted in the schedule at values you have not seen.", ("m", "v")))),
        ChoicePart("c", "Another pipeline has p = {p_c} ranks and m = {m_c} microbatches, a "
                        "forward that costs {t_f:g} and a backward {t_b:g} cost units for a "
                        "rank's whole share, and every message takes a latency of {latency:g} "
                        "cost units. Which v gives the shortest step?",
                   judge_best_v, options=tuple(
                       (f"v{k}", "v = 1: plain 1F1B" if k == 1 else f"v = {k} chunks per rank")
                       for k in CHOICES)),
    ),
))
