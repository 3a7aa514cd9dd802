"""Exercise of lesson 1: the fewest microbatches that bring the GPipe bubble down to 10 %.

The answer is checked by running the simulator, not by comparing with a stored number: the
bubble at your m must be at most the target, and at m - 1 it must not be.

    .venv/bin/python lessons/01-the-bubble/exercise.py 10
"""

from __future__ import annotations

import sys

from pplab.exercises import exercise_main
from pplab.schedules import build
from pplab.simulator import CostModel, simulate
from pplab.timeline import metrics

STAGES = 4
TARGET = 0.10
SCHEDULE = "gpipe"
MAX_ANSWER = 1000
QUESTION = (f"With p = {STAGES} stages, what is the smallest number of microbatches m for which "
            f"the {SCHEDULE} bubble is at most {TARGET:.0%} of the step?")
_TOLERANCE = 1e-9  # simulated times are sums of floats


def simulated_bubble(microbatches: int) -> float:
    """Idle rank-time over ranks x makespan of one GPipe step, from the simulator."""
    events = simulate(build(SCHEDULE, STAGES, microbatches), CostModel(forward=1, backward=2))
    return float(metrics(events)["bubble_fraction"])


def check(answer: object) -> tuple[bool, str]:
    """(right?, one line that says why), for an answer typed as text or given as a number."""
    try:
        m = int(str(answer).strip())
    except ValueError:
        return False, f"{answer!r} is not a whole number of microbatches"
    if not 1 <= m <= MAX_ANSWER:
        return False, f"m must be between 1 and {MAX_ANSWER}, got {m}"
    bubble = simulated_bubble(m)
    if bubble > TARGET + _TOLERANCE:
        return False, (f"with m = {m} the simulator predicts a bubble of {bubble:.2%}, "
                       f"above {TARGET:.0%}: more microbatches")
    if m > 1:
        fewer = simulated_bubble(m - 1)
        if fewer <= TARGET + _TOLERANCE:
            return False, (f"m = {m} works ({bubble:.2%}), but m = {m - 1} already gives "
                           f"{fewer:.2%}: try fewer")
    return True, (f"right: m = {m} gives a bubble of {bubble:.2%} and m = {m - 1} would give "
                  f"{simulated_bubble(m - 1):.2%}" if m > 1 else f"right: {bubble:.2%}")


def main(argv: list[str]) -> int:
    return exercise_main(
        argv, question=QUESTION, answer_name="M",
        read=lambda text: text if text.strip().isdigit() else None,
        unreadable="is not a whole number of microbatches", check=check)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
