"""Exercise of lesson 2: how much more activation memory GPipe holds than 1F1B on one stage.

The answer is checked by running the simulator, not by comparing with a stored number: both
schedules are simulated and the peak count of microbatches held on the stage is read off
their event tables (``pplab.timeline.metrics``).

    .venv/bin/python lessons/02-memory-gpipe-vs-1f1b/exercise.py 3
"""

from __future__ import annotations

import sys
from fractions import Fraction

from pplab.exercises import exercise_main
from pplab.schedules import build
from pplab.simulator import CostModel, simulate
from pplab.timeline import metrics

STAGES = 6
MICROBATCHES = 12
STAGE = 2
QUESTION = (f"A pipeline has p = {STAGES} stages and runs m = {MICROBATCHES} microbatches per "
            f"step. At its peak, stage {STAGE} (stages count from 0) holds the activations of "
            f"how many times as many microbatches under GPipe as under 1F1B?")


def simulated_peaks(schedule: str) -> dict[int, int]:
    """Most microbatches each stage holds at once in one step, from the simulator."""
    events = simulate(build(schedule, STAGES, MICROBATCHES), CostModel(forward=1, backward=2))
    return metrics(events)["peak_activations"]


def _read(answer: object) -> Fraction | None:
    try:
        return Fraction(str(answer).strip())
    except (ValueError, ZeroDivisionError):
        return None


def check(answer: object) -> tuple[bool, str]:
    """(right?, one line that says why), for an answer typed as text or given as a number.

    A ratio may be typed as a whole number, a decimal or a fraction such as 12/4.
    """
    ratio = _read(answer)
    if ratio is None:
        return False, f"{answer!r} is not a number (type a ratio such as 2, 2.5 or 5/2)"
    gpipe, one_f_one_b = simulated_peaks("gpipe"), simulated_peaks("1f1b")
    truth = Fraction(gpipe[STAGE], one_f_one_b[STAGE])
    if ratio == truth:
        return True, (f"right: on stage {STAGE} GPipe holds {gpipe[STAGE]} microbatches "
                      f"and 1F1B {one_f_one_b[STAGE]} at their peaks (predicted by the "
                      f"simulator), a ratio of {truth}")
    if ratio == 1:
        return False, ("GPipe and 1F1B share the bubble, not the memory: GPipe runs every "
                       "forward before its first backward")
    warmup = STAGES - 1 - STAGE
    if warmup > 0 and ratio == Fraction(MICROBATCHES, warmup):
        return False, (f"you counted stage {STAGE}'s {warmup} warm-up forwards; it starts one "
                       f"more forward before its first backward")
    others = [s for s in gpipe if s != STAGE and Fraction(gpipe[s], one_f_one_b[s]) == ratio]
    if others:
        return False, (f"{ratio} is the ratio on stage {others[0]}; the question asks about "
                       f"stage {STAGE}, and stages count from 0")
    return False, (f"{ratio} is too {'high' if ratio > truth else 'low'} for the ratio the "
                   f"simulator predicts on stage {STAGE}")


def main(argv: list[str]) -> int:
    return exercise_main(
        argv, question=QUESTION, answer_name="RATIO", read=_read,
        unreadable="is not a number (type a ratio such as 2, 2.5 or 5/2)", check=check)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
