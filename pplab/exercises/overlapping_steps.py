"""Exercise ``overlapping-steps`` (lesson 11): ZB-H2 with a barrier, and with post-validation.

Three parts, with the learner's own p, m, a rank r and costs T_F, T_I, T_W: (a) how many
forwards of the next step rank r runs again after a rollback (the forwards it ran before it
validated, ``pplab.schedules.steps.validation_points``); (b) what post-validation costs that
a barrier does not; (c) a formula, drawn per learner, for what the overlap buys per step in
the steady state (cost units saved, or the barrier's step time over post-validation's),
judged against the simulator's several-step walks at costs the learner has not seen, in each
regime of the steady state.

    pplab exercise show overlapping-steps --learner ada
"""

from __future__ import annotations

import random
from functools import lru_cache

from pplab.exercises.core import Exercise, Variant, register, right, wrong
from pplab.exercises.judging import judge_formula
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.schedules import build
from pplab.schedules.steps import repeat_steps, validation_points
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline.steady_state import steady_state

COSTS = (1, 1.5, 2, 2.5, 3)
STEPS = 3  # enough for a steady state: the first step is reported apart
_FRESH_POINTS = 8


def _draw(rng: random.Random) -> dict:
    p = rng.randint(4, 8)
    # not the last two ranks: their counts (1 and 3) are too easily guessed
    return dict(p=p, m=rng.randint(2 * p - 1, 4 * p), r=rng.randint(0, p - 3),
                steps=rng.randint(10, 99),
                form_c=rng.choice(("saving", "ratio")))


@lru_cache(maxsize=512)
def step_time(p: int, m: int, t_f: float, t_i: float, t_w: float, sync: str) -> float:
    """ZB-H2's step time in the steady state, predicted by the simulator (cost units)."""
    cost = CostModel(forward=t_f, backward_input=t_i, backward_weight=t_w,
                     backward=t_i + t_w)
    events = simulate(repeat_steps(build("zb-h2", p, m), STEPS), cost, optimizer_sync=sync)
    return float(steady_state(events, range(p))["steady_state"]["step_time"])


def redone(v: Variant) -> int:
    """The forwards rank r runs before it validates: those a rollback makes it run again."""
    return validation_points(build("zb-h2", v["p"], v["m"]))[v["r"]]


def judge_redone(v: Variant, answer) -> object:
    p, r, given, truth = v["p"], v["r"], int(answer), redone(v)
    if given == truth:
        return right(f"right: rank {r} runs {truth} forwards of the next step before its first "
                     f"input gradient, all on weights not yet validated")
    mistakes = {2 * (p - 1 - r): "that is ZB-H2's warm-up alone; one more forward comes before "
                                 "the rank's first backward",
                p - 1 - r: "that is 1F1B's and ZB-H1's warm-up; ZB-H2's is twice as long",
                p - r: "that is 1F1B's count before its first backward; ZB-H2 runs more",
                0: "the rank does not wait for the full state before it starts the next step: "
                   "that is the point of post-validation"}
    if given in mistakes:
        return wrong(mistakes[given])
    return wrong("count the rank's forwards before its first I in ZB-H2's order (pplab simulate "
                 "prints it), and the validation comes right before that I",
                 hint="too many" if given > truth else "too few")


def judge_cost(v: Variant, choice: str) -> object:
    if choice == "backup":
        return right("right: until the full state validates the update, the rank keeps what "
                     "it needs to undo it, and a failed validation costs the step again and "
                     "the forwards run since")
    return wrong({
        "activations": "ZB-H2 holds 2p-1 microbatches with or without post-validation: that "
                       "is the schedule's cost, not the validation's",
        "all-reduce": "that is what the barrier needs; post-validation passes the state from "
                      "rank to rank instead, during work that happens anyway",
        "semantics": "post-validation keeps synchronous training: every update is the one the "
                     "barrier would make (pplab's tests hold the losses equal to 1e-12)",
    }[choice])


def _fresh_points(v: Variant) -> list[dict]:
    """Costs in each regime of the steady state (no idle, the input gradients' chain, the
    paper's term), then anywhere, with p and m drawn for ZB-H2 (m >= 2p-1)."""
    rng = v.rng("formula")
    wanted = ("zero", "chain", "paper")
    points = []
    while len(points) < _FRESH_POINTS:
        t_f, t_i, t_w = (rng.choice(COSTS) for _ in range(3))
        terms = {"zero": 0.0, "chain": t_i - t_f, "paper": t_f + t_i - 2 * t_w}
        largest = max(terms, key=terms.get)
        if len(points) < len(wanted) and (largest != wanted[len(points)]
                                          or list(terms.values()).count(terms[largest]) > 1):
            continue
        p = rng.randint(2, 6)
        points.append({"p": p, "m": rng.randint(2 * p - 1, 2 * p + 2), "t_f": t_f, "t_i": t_i,
                       "t_w": t_w})
    return points


def _times(point: dict) -> tuple[float, float]:
    key = (int(point["p"]), int(point["m"]), point["t_f"], point["t_i"], point["t_w"])
    return step_time(*key, "barrier"), step_time(*key, "post")


def judge_formula_c(v: Variant, function) -> object:
    if v["form_c"] == "ratio":
        return judge_formula(
            function, ("p", "m", "t_f", "t_i", "t_w"), _fresh_points(v),
            truth=lambda point: _times(point)[0] / _times(point)[1],
            misconceptions=[
                (lambda p, m, t_f, t_i, t_w: (m * (t_f + t_i + t_w) + (p - 1) * t_f)
                 / (m * (t_f + t_i + t_w)),
                 "that assumes post-validation leaves no idle time at any costs; it does only "
                 "while no rank waits inside its own step"),
                (lambda p, m, t_f, t_i, t_w: (m * (t_f + t_i + t_w))
                 / (m * (t_f + t_i + t_w) + (p - 1) * t_f),
                 "that is post-validation's step over the barrier's, the other way round"),
            ])
    return judge_formula(
        function, ("p", "t_f", "t_i", "t_w"), _fresh_points(v),
        truth=lambda point: _times(point)[0] - _times(point)[1], unit="cost units",
        misconceptions=[
            (lambda p, t_f, t_i, t_w, **_: (p - 1) * t_f,
             "the fill is what overlapping removes, but only where it was the longest wait: "
             "compare it with the waits inside a rank's own step"),
            (lambda p, t_f, t_i, t_w, **_: (p - 1) * (t_f + t_i - 2 * t_w),
             "that is the paper's idle time of one rank, not what the overlap saves"),
            (lambda p, t_f, t_i, t_w, **_: (p - 1) * max(t_f, t_i - t_f, t_f + t_i - 2 * t_w),
             "that is the barrier's whole idle time: post-validation leaves some of it where a "
             "rank waits inside its own step"),
            (lambda p, t_f, t_i, t_w, **_: 0.0,
             "the steps do overlap: the first rank starts the next one before the last ends"),
        ])


_SAVING = ("Write how many cost units one ZB-H2 step takes less with post-validation than with "
           "a barrier, in the steady state, as a formula in p, t_f, t_i and t_w (m >= 2p-1). "
           "It is checked against the simulator at costs you have not seen.")
_RATIO = ("Write ZB-H2's step time with a barrier over its step time with post-validation, in "
          "the steady state, as a formula in p, m, t_f, t_i and t_w (m >= 2p-1). It is "
          "checked against the simulator at costs you have not seen.")


def _formula_part():
    """Part (c): one of two forms per learner, so a shared answer is no use to another."""
    return FormulaPart("c", "", judge_formula_c, variables=("p", "m", "t_f", "t_i", "t_w"),
                       forms=(Form("saving", _SAVING, ("p", "t_f", "t_i", "t_w")),
                              Form("ratio", _RATIO, ("p", "m", "t_f", "t_i", "t_w"))))


EXERCISE = register(Exercise(
    id="overlapping-steps", title="Lesson 11: zero bubble for real",
    lesson="11-zero-bubble-for-real",
    intro="ZB-H2 trains {steps} steps on p = {p} ranks, one stage each, with m = {m} "
          "microbatches per step; communication, the optimizer step and the validation take "
          "no time.",
    draw=_draw,
    parts=(
        NumberPart("a", "Under post-validation, the full state of step t reaches rank {r} "
                        "only after it has begun step t+1, and says the update must be redone. "
                        "How many forwards of step t+1 does rank {r} run again?", judge_redone,
                   whole=True, unit="forwards", low=0, high=1000),
        ChoicePart("b", "What does post-validation cost that a barrier before every optimizer "
                        "step does not?", judge_cost, options=(
            ("activations", "more microbatches' activations held at once"),
            ("backup", "a way back from each optimistic update until it is validated (a copy "
                       "of the weights and optimizer state, or a step that can be reversed), "
                       "and the work redone when validation fails"),
            ("all-reduce", "an all-reduce over every stage before each optimizer step"),
            ("semantics", "updates that differ from synchronous training's (stale weights)"))),
        _formula_part(),
    ),
))
