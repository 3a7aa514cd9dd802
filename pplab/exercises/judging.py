"""What the judges of every exercise share: the simulator at a learner's numbers, and formulas
checked against it at fresh values.

A judge never compares with a stored answer. It simulates the schedule the question is about
(``simulated``) and reads the figure off the Event table, exactly as a learner would with
``pplab simulate``; a formula is evaluated at values the learner has not seen and compared with
the simulator there (``judge_formula``), and a formula a learner often writes by mistake is
recognised by evaluating it at the same values, so the feedback can name the misconception.

    python -c "from pplab.exercises.judging import simulated; print(simulated('1f1b', 4, 8))"
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache

from pplab.exercises.core import (
    Judgement,
    LearnerCodeError,
    call_learner,
    right,
    same_number,
    wrong,
)
from pplab.exercises.formula import Formula
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

Point = Mapping[str, float]
DEFAULT_COST = CostModel()  # F = 1, B = 2: the lessons' cost units


@lru_cache(maxsize=1024)
def simulated(schedule_name: str, pp_size: int, num_microbatches: int,
              cost: CostModel = DEFAULT_COST) -> dict:
    """``metrics`` of one simulated step of a registered schedule (cached: a learner's retries
    and the report's many learners ask for the same few). Treat the result as read-only."""
    events = simulate(build(schedule_name, pp_size, num_microbatches), cost)
    return metrics(events, ranks=range(pp_size))


def idle_per_rank(result: Mapping) -> float:
    """The longest idle time of any rank in one step, in the run's time unit."""
    return max(float(part["idle"]) for part in result["per_rank"].values())


def show_point(point: Point) -> str:
    return ", ".join(f"{name} = {value:g}" for name, value in point.items())


def _by_name(function: Callable, variables: Sequence[str]) -> bool:
    """Whether a Python function takes the variables by their names (``def f(p, b)`` or
    ``def f(**values)``) rather than only in order."""
    try:
        inspect.signature(function).bind(**dict.fromkeys(variables))
    except (TypeError, ValueError):
        return False
    return True


def evaluate(function: Callable, variables: Sequence[str], point: Point) -> float:
    """The learner's formula (or Python function of ``variables``, by name where its
    parameters are named so, else in order) at ``point``; LearnerCodeError in one line when
    it cannot give a real number there."""
    try:
        if isinstance(function, Formula):
            value = function(**point)
        elif _by_name(function, variables):
            value = call_learner(function, **{name: point[name] for name in variables})
        else:
            value = call_learner(function, *(point[name] for name in variables))
    except ZeroDivisionError:
        raise LearnerCodeError(f"your formula divides by zero at {show_point(point)}") from None
    except ArithmeticError as error:
        raise LearnerCodeError(f"your formula gives {error} at {show_point(point)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise LearnerCodeError(f"your formula gives {type(value).__name__} at "
                               f"{show_point(point)}, not a number")
    return float(value)


def judge_formula(function: Callable, variables: Sequence[str], points: Sequence[Point],
                  truth: Callable[[Point], float],
                  misconceptions: Sequence[tuple[Callable[..., float], str]],
                  source: str = "the simulator", verb: str = "predicts",
                  unit: str = "", tolerance: float = 1e-6) -> Judgement:
    """Right when the formula agrees with ``truth`` at every point. ``source`` names where the
    truth comes from (the simulator, the planner, a count over the schedule), ``verb`` what it
    does, and ``unit`` follows each value in the messages.

    A wrong formula that agrees with a known mistake at every point gets that mistake's
    message; any other gets a plain one and, as a hint, one point where it disagrees.
    """
    unit = f" {unit}" if unit else ""
    foreign = sorted(getattr(function, "names", frozenset()) - {v.lower() for v in variables})
    if foreign:
        return wrong(f"your formula names {', '.join(foreign)}; your question asks for one in "
                     f"{', '.join(variables)}")
    try:
        given = [evaluate(function, variables, point) for point in points]
    except LearnerCodeError as error:
        return wrong(str(error))
    expected = [truth(point) for point in points]
    if all(same_number(g, e, tolerance) for g, e in zip(given, expected, strict=True)):
        shown = points[-1]
        return right(f"right: your formula matches {source} at {len(points)} values, "
                     f"e.g. {show_point(shown)} gives {expected[-1]:.4g}{unit}")
    for mistake, message in misconceptions:
        try:
            theirs = [mistake(**point) for point in points]
        except ArithmeticError:  # the mistake has no value at some point: not this one
            continue
        if all(same_number(g, t, tolerance) for g, t in zip(given, theirs, strict=True)):
            return wrong(message)
    first = next(i for i, (g, e) in enumerate(zip(given, expected, strict=True))
                 if not same_number(g, e, tolerance))
    return wrong(f"your formula disagrees with {source}",
                 hint=f"at {show_point(points[first])} yours gives {given[first]:.4g}{unit}, "
                      f"{source} {verb} {expected[first]:.4g}{unit}")
