"""An error bar with each prediction: where a measured step may fall, and why it may.

What it teaches: a predicted step time is a median, and a measured step is one draw of a
noisy machine. Two things put a measured step away from the prediction, and the interval
counts both. The run's own variability: actions vary inside a step and whole steps vary
with the machine's load, so a prediction draws many steps with action costs drawn from what
the run measured (``pplab.calibration.variation``) and the spread of the drawn step times,
never narrower than the spread of the run's own measured steps, is the first part. The
model's own error: what it gets wrong even at the median (a cost it does not know, a rank
waiting for a core), measured by benchmarks/predict_accuracy.py as the spread of its
errors. The two add in quadrature on a log scale; the benchmark then counts how many
measured steps fall inside (coverage), which is how an interval earns its "80 %".

    pplab predict data/runs/1f1b-p2m8          # "80 % of steps between ... and ... ms"
    python benchmarks/predict_accuracy.py      # its coverage column
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

INTERVAL = 0.8  # the share of measured steps an interval is meant to hold
_Z = NormalDist().inv_cdf((1 + INTERVAL) / 2)  # 1.28: the normal quantile of its upper end

# The model's own error, one standard deviation of log(predicted / measured) for a median
# step, by kind of prediction: what the draws cannot know. From the "model error" lines of
# benchmarks/predict_accuracy.py's timed tables (fresh runs on this lab's 2-core machine). A
# replay's, measured again on 2026-12-07 after the engine's group per direction: tables 1 and
# 1d gave 1.9, 2.8, 3.5, 4.2, 5.2, 5.2 and 9.0 % in seven runs; their median is 4.2 % (it was
# 3.3 % from the earlier tables, and 80 % intervals then held 61-69 % of the measured steps
# of a replay). A what-if's (7.1 %) and a shared machine's (8.8 %) stand: the same evening
# gave 4.0-10.5 % (median 8.7 %) and 3.0-10.8 % (median 7.2 %), and their intervals held
# 73-88 % and 75-94 % of the steps. The bundled runs alone say less (0.8 % for replays, 3.0 %
# for what-ifs: predict_accuracy.py --sections bundled): a few recorded runs understate a
# fresh machine's noise.
MODEL_ERROR = {"replay": 0.042, "what-if": 0.071, "shared": 0.088}


@dataclass(frozen=True)
class Interval:
    """``level`` of the measured steps should lie between ``low`` and ``high`` (seconds)."""

    low: float
    high: float
    level: float = INTERVAL

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self, scale: float = 1e3, unit: str = "ms") -> str:
        return (f"{100 * self.level:.0f} % of steps between {scale * self.low:.2f} and "
                f"{scale * self.high:.2f} {unit}")


def kind_of(replay: bool, shared: bool) -> str:
    """Which of ``MODEL_ERROR``'s figures a prediction carries."""
    return "shared" if shared else "replay" if replay else "what-if"


def error_bar(middle: float, draws: list[float], model_error: float,
              measured: tuple[float, ...] = ()) -> Interval:
    """The interval around ``middle`` (the median drawn step): the draws' own central
    ``INTERVAL`` widened, each side, by the model's error at the same level.

    ``measured`` are the calibrated run's own steps. The draws vary only the computations
    (within a step and whole steps), yet a measured step also varies by what is not
    computing: a message that stalls, a rank the system put aside. At pplab train's default
    sizes on 2 ranks (2026-12-08, 40 steps of each of four schedules) the measured steps'
    central 80 % reached 0.80-0.86 and 1.14-1.33 x their median, and the intervals held 66 %
    of the steps (74 % with this rule). So each side reaches at least as far, relative to
    ``middle``, as the run's own steps reached from their median.
    """
    below = above = 0.0
    if len(draws) >= 3 and middle > 0:
        below, above = _reach(middle, draws)
    if len(measured) >= 3:
        own_below, own_above = _reach(float(np.median(measured)), measured)
        below, above = max(below, own_below), max(above, own_above)
    model = _Z * model_error
    return Interval(middle * math.exp(-math.hypot(below, model)),
                    middle * math.exp(math.hypot(above, model)))


def _reach(middle: float, values) -> tuple[float, float]:
    """How far the central ``INTERVAL`` of ``values`` reaches below and above ``middle``,
    as logs of ratios (0 where it does not reach past it)."""
    low, high = np.quantile(values, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    below = math.log(middle / low) if 0 < low < middle else 0.0
    above = math.log(high / middle) if high > middle > 0 else 0.0
    return below, above


def coverage(pairs: list[tuple[Interval, list[float]]]) -> float | None:
    """The share of measured steps inside their prediction's interval, over ``pairs`` of
    (interval, the measured steps it predicts); None when there is no step."""
    inside = [interval_.holds(t) for interval_, times in pairs for t in times]
    return sum(inside) / len(inside) if inside else None


def model_error(errors: list[float]) -> float | None:
    """One standard deviation of log(predicted / measured) over relative ``errors`` (what
    ``MODEL_ERROR`` holds), from their median absolute value, which a single bad run moves
    less than their spread; None for fewer than three."""
    logs = [abs(math.log1p(e)) for e in errors if e > -1]
    if len(logs) < 3:
        return None
    return float(np.median(logs)) / NormalDist().inv_cdf(0.75)
