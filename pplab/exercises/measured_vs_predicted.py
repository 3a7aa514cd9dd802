"""Exercise ``measured-vs-predicted`` (lesson 10): why a real step is longer than its ideal.

The lesson's comparison of a bundled run (naive, calibrated, measured, and the breakdown of
the gap) is in ``pplab.exercises.run_comparison``. Four parts, on the learner's own runs and
numbers, none of them a figure ``pplab predict`` prints: (a) a 2-rank run's step if its
forwards and backwards computed some times faster (its overhead, messages and tail as they
were), against the calibrated model with those costs; (b) another microbatch count on a
2-rank run whose optimizer tail is some times heavier (``predict`` shows another m, never
another tail), against the calibrated model with that tail; (c) equal stages with overhead
and tail as a formula in m and p, against the simulator; (d) the largest part of a 4-rank
run's gap (one that shares 2 cores), from its breakdown. A prediction is
right within at most 10 %, and within half the naive ideal's error where that is closer: the
naive ideal (m+p-1)(F+B), the mistake the lesson warns about, is never right. Feedback names
the usual mistakes (the naive ideal, m slots, no tail, compute or tail not scaled) without
the answer.

    pplab exercise show measured-vs-predicted --learner ada
"""

from __future__ import annotations

import math
import random
import statistics

from pplab.calibration.costs import overhead_costs
from pplab.calibration.run_prediction import schedule_of
from pplab.exercises.core import Exercise, Variant, register, right, wrong
from pplab.exercises.judging import judge_formula, simulated
from pplab.exercises.parts import ChoicePart, FormulaPart, NumberPart
from pplab.exercises.run_comparison import (
    bundled_run,
    calibration_of,
    compare_run,
    faster_prediction,
    faster_step,
    heavier_tail_prediction,
    heavier_tail_step,
    lesson_runs,
    printed_by_predict,
)
from pplab.schedules.actions import ActionKind
from pplab.sim.cost_model import CostModel

TOLERANCE = 0.06  # a step prediction within 6% of its truth is right, or tighter (below)
NEAR_MISTAKE = 0.04  # an answer this close to a known mistake is taken for it
EXERCISE_SCHEDULES = ("gpipe", "1f1b")  # the schedules the parts ask about
SPEEDS = (1.5, 2, 2.5, 3)  # part (a): how many times faster every F and B computes
TAILS = (5, 8, 10, 15)  # part (b): how many times longer the optimizer tail takes
_FRESH_POINTS = 8
_DRAW_TRIES, _DRAWS_KEPT = 40, 256
_M_SLOTS = "a step is not m slots long: count the fill and the drain (the m + p - 1 of lesson 1)"
_NO_TAIL = "the optimizer tail t is missing: it comes after the last backward"


def _shown(key: str, name: str) -> dict:
    """What part ``key`` tells the learner of run ``name``: its calibrated costs in ms."""
    calibration = calibration_of(name)
    schedule = schedule_of(bundled_run(name))
    p = schedule.pp_size
    overhead = overhead_costs(calibration, schedule)
    links = [fit.latency for fit in calibration.links]
    ms = lambda x: round(1e3 * x, 2)  # noqa: E731
    # tuples: a learner's numbers are compared and hashed as they are
    forwards = tuple(ms(calibration.compute[s][ActionKind.FORWARD]) for s in range(p))
    backwards = tuple(ms(calibration.compute[s][ActionKind.FULL_BACKWARD]) for s in range(p))
    f_and_b = (ActionKind.FORWARD, ActionKind.FULL_BACKWARD)
    return {f"run_{key}": name, f"schedule_{key}": schedule.name, f"p_{key}": p,
            f"m_{key}": schedule.microbatches_per_step,
            f"f_{key}": forwards, f"b_{key}": backwards,
            f"f_{key}_text": ", ".join(f"{x:.2f}" for x in forwards),
            f"b_{key}_text": ", ".join(f"{x:.2f}" for x in backwards),
            f"o_{key}": ms(statistics.mean(row[k] for row in overhead for k in f_and_b)),
            f"t_{key}": ms(calibration.tail),
            f"lat_{key}": ms(statistics.median(links)) if links else 0.0,
            f"cores_{key}": calibration.contention.slots,
            f"shared_cores_{key}": float(calibration.contention.effective_slots
                                         or calibration.contention.slots)}


def naive_ideal(v, key: str, m: int, speed: float = 1) -> float:
    """(m + p - 1)(F + B) with the median F and B of the stages (ms): the lesson's warning."""
    return (m + v[f"p_{key}"] - 1) * (statistics.median(v[f"f_{key}"])
                                      + statistics.median(v[f"b_{key}"])) / speed


def lesson_estimate(v, key: str, m: int, speed: float = 1, tail: float = 1) -> float:
    """The lesson's way with a core per rank: m + p - 1 slots of the slowest stage (its
    computation ``speed`` times faster, o around each action), then the tail (``tail`` times
    as long), in ms."""
    p, o, t = v[f"p_{key}"], v[f"o_{key}"], v[f"t_{key}"]
    work = [(f + b) / speed + 2 * o for f, b in zip(v[f"f_{key}"], v[f"b_{key}"], strict=True)]
    return (m + p - 1) * max(work) + t * tail


def tolerance(naive: float, truth: float) -> float:
    """10 %, or half the naive ideal's error where that is less: the ideal is never right."""
    return min(TOLERANCE, abs(naive / truth - 1) / 2)


def _percent(share: float) -> float:
    return math.floor(share * 1000) / 10  # shown and applied alike, rounded down


def _fair(drawn: dict, key: str, m: int, estimate: float, truth: float) -> bool:
    """Whether the lesson's way lands well inside the tolerance and every usual mistake of
    the part well outside it, so the part has one way to be right."""
    tol = drawn[f"tol_{key}"] / 100
    return tol >= 0.02 and abs(estimate / truth - 1) <= 0.7 * tol and all(
        abs(value / truth - 1) > 1.2 * tol for value, _ in _mistakes(drawn, key, m))


def _draw_a(rng: random.Random, clean: list[str]) -> dict:
    """A run, and a speed where the lesson's way lands inside the tolerance."""
    for _ in range(_DRAW_TRIES):
        drawn = _shown("a", rng.choice(clean)) | {"speed_a": rng.choice(SPEEDS)}
        m, speed = drawn["m_a"], drawn["speed_a"]
        truth = faster_step(drawn["run_a"], speed)
        drawn["tol_a"] = _percent(tolerance(naive_ideal(drawn, "a", m, speed), truth))
        if _fair(drawn, "a", m, lesson_estimate(drawn, "a", m, speed), truth):
            break
    return drawn


def _draw_b(rng: random.Random, clean: list[str]) -> dict:
    """A run, a microbatch count and a heavier tail where the lesson's way lands inside the
    tolerance."""
    for _ in range(_DRAW_TRIES):
        drawn = _shown("b", rng.choice(clean)) | {"tail_b": rng.choice(TAILS),
                                                  "m_wi": rng.randint(4, 16)}
        m, factor = drawn["m_wi"], drawn["tail_b"]
        truth = heavier_tail_step(drawn["run_b"], m, factor)
        drawn["tol_b"] = _percent(tolerance(naive_ideal(drawn, "b", m), truth))
        if _fair(drawn, "b", m, lesson_estimate(drawn, "b", m, tail=factor), truth):
            break
    return drawn


_drawn: dict[tuple, dict] = {}  # every check draws again; the predictions make a draw dear


def _draw(rng: random.Random) -> dict:
    key = rng.getstate()
    if key not in _drawn:
        if len(_drawn) >= _DRAWS_KEPT:
            _drawn.pop(next(iter(_drawn)))
        runs = [n for n in lesson_runs()
                if schedule_of(bundled_run(n)).name in EXERCISE_SCHEDULES]
        clean = [n for n in runs if not calibration_of(n).contention.shared] or runs
        shared = [n for n in runs if calibration_of(n).contention.shared] or runs
        f_c = rng.randint(4, 24) / 2
        numbers = dict(schedule_c=rng.choice(EXERCISE_SCHEDULES), f_c=f_c,
                       b_c=f_c * rng.choice((1.5, 2, 2.5, 3)), o_c=rng.randint(1, 9) / 10,
                       t_c=rng.randint(2, 20) / 2)
        run_d = rng.choice(shared)
        numbers |= {"run_d": run_d, "p_d": calibration_of(run_d).pp_size,
                    "cores_d": calibration_of(run_d).contention.slots}
        _drawn[key] = numbers | _draw_a(rng, clean) | _draw_b(rng, clean)
    return dict(_drawn[key])


def _mistakes(v: Variant, key: str, m: int) -> list[tuple[float, str]]:
    """What the usual wrong ways of predicting part ``key``'s step give, with their names."""
    speed = v["speed_a"] if key == "a" else 1
    p, o, t = v[f"p_{key}"], v[f"o_{key}"], v[f"t_{key}"]
    work = [(f + b) / speed for f, b in zip(v[f"f_{key}"], v[f"b_{key}"], strict=True)]
    slowest = max(work)
    ideal = ("that is the naive ideal (m+p-1)(F+B): it counts no overhead around the actions, "
             "no messages and no optimizer tail")
    run = v[f"run_{key}"]
    measured = ("that is the run's own step as it was measured (pplab predict prints it); the "
                "question changes the run")
    steps = calibration_of(run).measured
    found = [(naive_ideal(v, key, m, speed), ideal), ((m + p - 1) * slowest, ideal),
             *((1e3 * time, measured) for time in (steps.step_time, *steps.times)),
             (m * (slowest + 2 * o) + t, _M_SLOTS), (m * slowest, _M_SLOTS),
             (m * sum(work) + t, "that is the whole model on one core: the stages run side by "
                                 "side"),
             ((m + p - 1) * (slowest + 2 * o), _NO_TAIL)]
    if key == "a":
        found += [(figure, "that is the run's own step as pplab predict replays it: the "
                           "forwards and backwards are faster now")
                  for figure in printed_by_predict(faster_prediction(v["run_a"], 1))]
        found += [(lesson_estimate(v, "a", m), "that is the step as the run measured it: the "
                                               "forwards and backwards are faster now"),
                  (lesson_estimate(v, "a", m) / speed,
                   "only the computation gets faster: the overhead o and the tail t stay")]
    else:
        factor = v["tail_b"]
        found += [(figure, "that is pplab predict's what-if at this m, with the tail the run "
                           "measured: the optimizer now takes longer")
                  for figure in printed_by_predict(heavier_tail_prediction(v["run_b"], m, 1))]
        found += [(lesson_estimate(v, "b", m), "that keeps the tail as the run measured it: "
                                               "the optimizer now takes longer"),
                  (lesson_estimate(v, "b", m) + (factor - 1) * p * t,
                   "the ranks' tails run side by side: the step ends one tail after the last "
                   "backward"),
                  (lesson_estimate(v, "b", v["m_b"], tail=factor),
                   "that is the run's own microbatch count; the question asks about another")]
    return found


def _judge_step(v: Variant, key: str, answer: float, truth: float, what: str,
                m: int) -> object:
    error, tol = answer / truth - 1, v[f"tol_{key}"] / 100
    if abs(error) <= tol:
        return right(f"right: {answer:g} ms is {error:+.1%} from the {what} step of "
                     f"{truth:.1f} ms (within {tol:.1%})")
    mistakes = _mistakes(v, key, m)
    naive = mistakes[0][0]
    near = [(abs(answer / value - 1), message) for value, message in mistakes
            if value > 0 and abs(answer / value - 1) <= min(NEAR_MISTAKE, tol)]
    if near:
        return wrong(min(near)[1])
    side = "below" if answer < truth else "above"
    return wrong(f"{answer:g} ms is more than {tol:.1%} {side} the {what} step: build it from "
                 f"the lesson's pieces (the pipeline's slots, the overhead around each action, "
                 f"the tail{', the sharing of cores' if key == 'b' else ''})",
                 hint=f"your answer is {answer / naive:.2f} x the naive ideal (m+p-1)(F+B) of "
                      f"{naive:.1f} ms")


def judge_faster(v: Variant, answer) -> object:
    truth = faster_step(v["run_a"], v["speed_a"])
    return _judge_step(v, "a", float(answer), truth, "calibrated model's", v["m_a"])


def judge_heavier_tail(v: Variant, answer) -> object:
    truth = heavier_tail_step(v["run_b"], v["m_wi"], v["tail_b"])
    return _judge_step(v, "b", float(answer), truth, "calibrated model's", v["m_wi"])


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("formula")
    return [{"m": rng.randint(1, 32), "p": rng.randint(2, 8)} for _ in range(_FRESH_POINTS)]


def judge_step_formula(v: Variant, function) -> object:
    f, b, o, t = v["f_c"], v["b_c"], v["o_c"], v["t_c"]
    cost = CostModel(forward=f + o, backward=b + o, optimizer=t)

    def truth(point) -> float:
        return float(simulated(v["schedule_c"], int(point["p"]), int(point["m"]),
                               cost)["makespan"])

    return judge_formula(function, ("m", "p"), _fresh_points(v), truth, misconceptions=[
        (lambda m, p: (m + p - 1) * (f + b),
         "that is the naive ideal: it leaves out the overhead o and the tail t"),
        (lambda m, p: (m + p - 1) * (f + b) + t,
         "o is paid around every forward and every backward: it is missing"),
        (lambda m, p: (m + p - 1) * (f + b + o) + t,
         "o is paid around every forward and around every backward, not once a microbatch"),
        (lambda m, p: (m + p - 1) * (f + b + 2 * o), _NO_TAIL),
        (lambda m, p: (m + p - 1) * (f + b + 2 * o) + p * t,
         "the ranks' tails run side by side: the step ends one tail after the last backward"),
        (lambda m, p: m * (f + b + 2 * o) + t, _M_SLOTS),
    ])


def judge_largest(v: Variant, choice: str) -> object:
    comparison = compare_run(v["run_d"])
    gaps = comparison.gaps()
    best = max(gaps, key=gaps.__getitem__)
    total = comparison.step_ms("measured - naive (ms)")
    if choice == best:
        return right(f"right: of the {total:.1f} ms per rank between the measured step and "
                     f"the naive prediction, {choice} adds {gaps[choice]:.1f} ms, the most "
                     f"(measured - naive, ms per rank averaged over ranks)")
    why = {"contention": "sharing cores does stretch this run's actions, but a stretched "
                         "action also holds up the ranks that need its messages, and the "
                         "breakdown does not count that time as stretch",
           "compute": "the naive prediction already counts every forward and backward"}
    return wrong(why.get(choice, "that part of the gap is not the largest: read the "
                                 "breakdown's rows, measured against naive"),
                 hint=f"that part adds {gaps[choice]:+.1f} ms per rank of the {total:.1f} ms "
                      f"gap")


_RUN_A = ("Run {run_a} ({schedule_a}, p = {p_a} ranks on {cores_a} cores, m = {m_a}) has "
          "these calibrated costs, each on a core of its own, in ms: forwards F = {f_a_text} "
          "and backwards B = {b_a_text} (stage 0 first); around each forward and backward its "
          "rank also spends o = {o_a} (Python, posting its send or receive); a message "
          "arrives about {lat_a} after it is sent; after its last backward a rank spends "
          "t = {t_a} (the flush and the optimizer). ")
_RUN_B = ("Run {run_b} ({schedule_b}, p = {p_b} ranks on {cores_b} cores, m = {m_b}) has "
          "these calibrated costs, each on a core of its own, in ms: F = {f_b_text}, "
          "B = {b_b_text}, o = {o_b}, a message arrives about {lat_b} after it is sent, "
          "tail t = {t_b}. ")

EXERCISE = register(Exercise(
    id="measured-vs-predicted", title="Lesson 10: why measured differs from predicted",
    lesson="10-measured-vs-predicted",
    intro="Step times run from a step's first forward to its last optimizer step, in ms. A "
          "prediction is right within the share each part names. The runs are bundled in "
          "data/runs.",
    draw=_draw,
    parts=(
        NumberPart("a", _RUN_A + "On a core {speed_a:g} times as fast, every forward and "
                                 "backward computes {speed_a:g} times faster; the overhead o, "
                                 "the messages and the tail t stay as they are. Predict the "
                                 "run's step time then (judged against the calibrated model "
                                 "with those costs, within {tol_a:g}%).",
                   judge_faster, unit="ms", low=0, high=1e6),
        NumberPart("b", _RUN_B + "With an optimizer {tail_b:g} times as heavy, its tail takes "
                                 "{tail_b:g} times as long; everything else stays. Predict the "
                                 "step time of the same {schedule_b} at m = {m_wi} microbatches "
                                 "then (judged against the calibrated model with that tail, "
                                 "within {tol_b:g}%).",
                   judge_heavier_tail, unit="ms", low=0, high=1e6),
        FormulaPart("c", "A pipeline of p equal stages runs {schedule_c}: every forward "
                         "computes for {f_c:g} ms and every backward for {b_c:g} ms; around "
                         "every forward and every backward its rank also spends o = {o_c:g} "
                         "ms; messages arrive the moment they are sent; after its last "
                         "backward each rank spends t = {t_c:g} ms on the optimizer. Write the "
                         "step time in ms as a formula in m and p (checked against the "
                         "simulator at values you have not seen).",
                    judge_step_formula, variables=("m", "p")),
        ChoicePart("d", "Run {run_d} ({p_d} ranks on {cores_d} cores): its measured step is "
                        "longer than its naive prediction (the median F and B, free messages, "
                        "no optimizer). Of the lesson's five parts of the gap (measured - naive, "
                        "ms per rank), which is largest?",
                   judge_largest, options=(
                       ("compute", "forwards, backwards, the optimizer"),
                       ("communication", "posting sends and receives, draining sends"),
                       ("waiting", "waiting on a dependency, or idle (the bubble)"),
                       ("contention", "actions stretched by sharing a core"),
                       ("overhead", "Python and bookkeeping between actions"))),
    ),
))
