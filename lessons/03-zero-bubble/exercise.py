"""Exercise of lesson 3: the bubble of ZB-H1 when the weight gradient is the longest part.

The answer is checked by running the simulator, not by comparing with a stored number: the
ZB-H1 step is simulated at the question's costs and each rank's idle time is read off the
event table (``pplab.timeline.metrics``).

    .venv/bin/python lessons/03-zero-bubble/exercise.py 6
"""

from __future__ import annotations

import sys
from fractions import Fraction

from pplab.exercises import exercise_main
from pplab.schedules import build
from pplab.simulator import CostModel, simulate
from pplab.timeline import metrics

STAGES = 4
MICROBATCHES = 8
FORWARD, INPUT_GRAD, WEIGHT_GRAD = 1, 2, 3
COST = CostModel(forward=FORWARD, backward_input=INPUT_GRAD, backward_weight=WEIGHT_GRAD)
QUESTION = (f"ZB-H1 runs p = {STAGES} stages and m = {MICROBATCHES} microbatches with "
            f"T_F = {FORWARD}, T_I = {INPUT_GRAD} and T_W = {WEIGHT_GRAD} cost units. "
            f"How many cost units of one step is each rank idle?")
_TOLERANCE = 1e-9  # simulated times are sums of floats


def simulated_idle() -> float:
    """Idle time of the busiest rank in one ZB-H1 step, in cost units, from the simulator.

    Every rank does the same work, so every rank is idle for the same time.
    """
    result = metrics(simulate(build("zb-h1", STAGES, MICROBATCHES), COST))
    return max(float(part["idle"]) for part in result["per_rank"].values())


def _read(answer: object) -> float | None:
    text = str(answer).strip().removesuffix("cost units").strip()
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def check(answer: object) -> tuple[bool, str]:
    """(right?, one line that says why), for an answer typed as text or given as a number."""
    idle = _read(answer)
    if idle is None:
        return False, f"{answer!r} is not a number of cost units"
    truth = simulated_idle()
    if abs(idle - truth) <= _TOLERANCE:
        work = MICROBATCHES * (FORWARD + INPUT_GRAD + WEIGHT_GRAD)
        return True, (f"right: {truth:g} cost units idle on every rank (predicted by the "
                      f"simulator), a bubble of {truth / (work + truth):.2%} of the step")
    hops = STAGES - 1
    if abs(idle - hops * (FORWARD + INPUT_GRAD - WEIGHT_GRAD)) <= _TOLERANCE:
        return False, ("that is the paper's (p-1)(T_F+T_I-T_W), which holds only while "
                       "T_W <= min(T_F, T_I); look at what stage 0 waits for")
    if abs(idle - hops * (FORWARD + INPUT_GRAD + WEIGHT_GRAD)) <= _TOLERANCE:
        return False, ("that is 1F1B's bubble (p-1)(T_F+T_B) with T_B = T_I + T_W; ZB-H1 "
                       "fills part of it with weight gradients")
    if abs(idle - hops * FORWARD) <= _TOLERANCE:
        return False, ("that is only the last rank's fill, (p-1)T_F; another rank waits longer, "
                       "and every rank is idle equally long")
    return False, (f"{idle:g} cost units is too {'much' if idle > truth else 'little'} for "
                   f"the idle time the simulator predicts")


def main(argv: list[str]) -> int:
    return exercise_main(argv, question=QUESTION, answer_name="COST_UNITS",
                         read=_read, unreadable="is not a number of cost units", check=check)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
