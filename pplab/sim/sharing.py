"""Ranks that share cores: the simulator's one walk where n busy ranks split C cores.

What it teaches: with more busy ranks than cores (4 ranks on a 2-core laptop, or two ranks on
one GPU) no rank runs at its own speed. Processor sharing is the simplest honest model:
while n ranks compute, each advances at min(1, C / n) of its speed, so an action's length
depends on what the others are doing at the time, and the measured timeline shows ranks
"waiting" that were really queueing for a core. ``simulate_shared`` is the simulator's walk
(``pplab.schedules.walk``) at that rate: time goes from one completion or arrival to the
next, never in fixed steps; with at least as many cores as ranks it gives exactly
``pplab.sim.simulator.simulate``'s timeline (tests/test_calibrate.py checks).
``SharedClock`` runs the model backwards: from a measured timeline, what each action would
have taken alone.

    python -c "from pplab.sim.sharing import simulate_shared; \
from pplab.schedules import build; from pplab.sim.cost_model import CostModel; \
print(simulate_shared(build('1f1b', 4, 8), CostModel(), slots=2).end.max())"
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pplab.schedules.actions import Schedule
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate


class SharedClock:
    """The measured busy intervals of all ranks, read as processor sharing on ``slots`` cores.

    ``alone(start, end)`` is how long an interval of busy time would have lasted on a core of
    its own: the work done in it, the integral of the rate min(1, slots / n) at which it ran,
    n counting the busy intervals (this one included) at each instant.
    """

    def __init__(self, busy: list[tuple[int, float, float]], slots: float) -> None:
        self.slots = slots
        marks = sorted({t for _, start, end in busy for t in (start, end)})
        self._times = np.array(marks or [0.0])
        change = np.zeros(len(self._times))
        index = {t: i for i, t in enumerate(marks)}
        for _, start, end in busy:
            change[index[start]] += 1
            change[index[end]] -= 1
        counts = np.cumsum(change)[:-1]
        rate = np.minimum(1.0, slots / np.maximum(counts, 1.0))
        self._work = np.concatenate([[0.0], np.cumsum(np.diff(self._times) * rate)])

    def alone(self, start: float, end: float) -> float:
        if end <= start:
            return 0.0
        return float(np.interp(end, self._times, self._work)
                     - np.interp(start, self._times, self._work))


def processor_sharing(slots: float, replicas: int = 1) -> Callable[[int], float]:
    """The walk's rate when ranks share ``slots`` cores: each of n busy positions, held by
    ``replicas`` processes each, progresses at min(1, slots / (n x replicas))."""
    return lambda busy: min(1.0, slots / (busy * replicas))


def simulate_shared(schedule: Schedule, cost: CostModel, slots: float, replicas: int = 1,
                    lead: list[dict[str, float]] | None = None,
                    spread: Callable[[], float] | None = None) -> pd.DataFrame:
    """The simulator's timeline when the ranks share ``slots`` cores (or GPUs).

    ``replicas`` is how many processes hold each pipeline position (tp x dp): they are busy
    together, so n running positions load n x replicas processes on the slots. ``lead``
    gives, per stage and kind, the part of an action that is overhead before its
    computation: the drawn event then starts where the computation does. ``spread()``,
    when given, draws a factor for each action's computation: one sample of a step whose
    actions vary as measured ones do.
    """
    return simulate(schedule, cost, processor_sharing(slots, replicas), lead, spread)
