"""How a run's actions vary: inside a step, from step to step, and with what their rank holds.

What it teaches: a typical cost per stage and kind is not the whole story of a measured
step. Actions of one kind on one stage differ inside a step (a slow tail that every step of
thirty-odd actions meets), whole steps run slower or faster together (someone else's job on
the machine), and an action costs more when its rank holds many microbatches of
activations (a working set past the caches: GPipe holds all of them, 1F1B at most P). Each
is measured here from the actions a calibration walked, as plain numbers a prediction draws
from (``pplab.calibration.predict``) or charges (``held_factors`` for the simulator).

    python -c "from pplab.calibration import calibration_for; from pplab.runs.run_dirs \
import load_run; c = calibration_for(load_run('data/runs/gpipe-p2m8')); \
print(c.spread, c.step_spread, c.held_growth, c.held_rule)"
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    COMPUTE_KINDS,
    FORWARD,
    FULL_BACKWARD,
    Action,
)
from pplab.sim.cost_model import hold

OUTLIER = 3.0  # a duration over this many times its stage's median is not typical of it
# The whole measured distribution, slow tail included: on the bundled 2-rank runs the mean
# action is 1.018-1.035 x the median (q95 1.21, q99 1.30 in gpipe-p2m8), and a step of 32
# actions meets its slow tail every time; cutting the rarest tenth, as pplab did, made every
# replay short (gpipe-p2m8 -1.8 % -> -0.3 %, interleaved-1f1b-p2v2m8 -3.5 % -> -2.5 %).
QUANTILES = np.linspace(0.0, 1.0, 21)

# This machine's growth of an action's cost per microbatch of activations its rank holds,
# for a run whose own actions cannot tell it (1F1B holds at most P, too few to fit a slope).
# Measured in data/runs/gpipe-p2m8 (recorded 2026-12-02 on this lab's 2-core machine, 2
# layers of d_model 256 per stage, 4 x 64 tokens per microbatch; steps 1, 2, 5): over the
# held counts 0..8 of its 160 steady actions, duration / its stage's median grows by
# 0.0066 +- 0.0041 per microbatch for F and 0.0127 +- 0.0023 for B (least squares; B at 8
# held is 1.089, at 1..6 held 0.98-1.00). I and W, never measured held-dependent here, take
# B's. The README's what-if table saw the same: GPipe at m = 16 ran its forwards 10-18 %
# slower per microbatch than 1F1B did. A working set is bytes: a run whose activations are
# another size (its messages, one activation each, say which) grows in proportion, so
# 1f1b-p4m8's half-size activations (131,072-byte messages) grow half as fast.
MACHINE_HELD_GROWTH = {FORWARD: 0.0066, FULL_BACKWARD: 0.0127, BACKWARD_INPUT: 0.0127,
                       BACKWARD_WEIGHT: 0.0127}
HELD_SOURCE = "data/runs/gpipe-p2m8"
HELD_SOURCE_BYTES = 262_144  # its messages: 4 x 64 tokens x d_model 256 in float32
HELD_PRECISION = 0.005  # a slope known to +-0.5 % per microbatch is the run's own to use
HELD_SAMPLES = 16  # fewer actions of a kind, or fewer than 3 held counts: no slope fitted


def quantiles(values: list[float]) -> tuple[float, ...]:
    """``QUANTILES`` of ``values`` (empty for fewer than two)."""
    return tuple(float(q) for q in np.quantile(values, QUANTILES)) if len(values) > 1 else ()


def within_step(actions: list[dict], alone: Callable[[float, float], float]) -> list[float]:
    """Each action's cost over the median of its kind on its stage in the same step.

    Only the variation inside a step: what makes ranks that meet at every message wait for
    each other. Whole steps slowed together are ``step_factors``'.
    """
    groups: dict[tuple, list[float]] = defaultdict(list)
    for a in actions:
        groups[(a["step"], a["stage"], a["kind"])].append(alone(a["start"], a["end"]))
    relative = []
    for values in groups.values():
        middle = statistics.median(values)
        if len(values) > 1 and middle > 0:
            relative += [v / middle for v in values if v <= OUTLIER * middle]
    return relative


def unshared(actions: list[dict], busy: list[tuple[int, float, float]],
             slots: float) -> list[dict]:
    """The actions that never ran beside more busy intervals than there were ``slots``:
    what they took is what they cost alone, with nothing of the sharing in it."""
    marks = np.unique([t for _, start, end in busy for t in (start, end)])
    change = np.zeros(len(marks) + 1)
    for _, start, end in busy:
        change[np.searchsorted(marks, start)] += 1
        change[np.searchsorted(marks, end)] -= 1
    running = np.cumsum(change)[:-1]  # busy intervals from each mark to the next
    out = []
    for a in actions:
        first, last = np.searchsorted(marks, [a["start"], a["end"]])
        if last <= first or running[first:last].max() <= slots:
            out.append(a)
    return out


def step_factors(actions: list[dict], alone: Callable[[float, float], float],
                 typical: dict[int, dict[str, float]]) -> list[float]:
    """Per step, how much slower (above 1) or faster its actions ran than the median step's:
    each step's mean action over the typical one (counted up to ``OUTLIER``), over the
    median of those. A mean, not a median: a step is slow as much by a burst of slow
    actions as by all of them a little (1f1b-p2m8's steps of 224.7 to 252.1 ms had median
    actions within 1 % of each other). Around 1: how slow a typical action is, slow tail
    included, is ``within_step``'s to say. One step gives nothing: an empty list."""
    per_step: dict[int, list[float]] = defaultdict(list)
    for a in actions:
        cost = typical.get(a["stage"], {}).get(a["kind"], 0.0)
        if cost > 0:
            per_step[a["step"]].append(min(alone(a["start"], a["end"]) / cost, OUTLIER))
    if len(per_step) < 2:
        return []
    means = [statistics.mean(values) for values in per_step.values()]
    middle = statistics.median(means)
    return [m / middle for m in means] if middle > 0 else []


@dataclass(frozen=True)
class HeldGrowth:
    growth: dict[str, float]  # relative cost per microbatch held beyond ``seen``, per kind
    seen: int  # the most microbatches a rank held when one of its actions started
    rule: str


def held_growth(actions: list[dict], alone: Callable[[float, float], float],
                typical: dict[int, dict[str, float]], message_bytes: float = 0) -> HeldGrowth:
    """How an action's cost grows with the microbatches its rank holds (``a["held"]``).

    A run that held many (GPipe) measures its own slope, duration over its stage's typical
    cost against the count held, when least squares knows it to ``HELD_PRECISION``; a kind
    it cannot tell takes this machine's (``MACHINE_HELD_GROWTH``, scaled by the run's
    ``message_bytes`` when it sent any). The costs fitted from the run already hold up to
    ``seen``: only beyond it does an action grow.
    """
    seen = max((a["held"] for a in actions), default=0)
    size = message_bytes / HELD_SOURCE_BYTES if message_bytes > 0 else 1.0
    growth = {kind: value * size for kind, value in MACHINE_HELD_GROWTH.items()}
    own, own_kinds = [], set()
    for kind in COMPUTE_KINDS:
        points = [(a["held"], alone(a["start"], a["end"]) / typical[a["stage"]][kind])
                  for a in actions if a["kind"] == kind and typical[a["stage"]].get(kind)]
        points = [(h, r) for h, r in points if r <= OUTLIER]
        slope = _slope(points)
        if slope is not None:
            growth[kind] = max(slope, 0.0)  # fewer held never made an action dearer
            own.append(f"{kind} {100 * growth[kind]:+.2f} %")
            own_kinds.add(kind)
    if FULL_BACKWARD in own_kinds:  # the halves of a backward grow as the whole one did
        for kind in (BACKWARD_INPUT, BACKWARD_WEIGHT):
            if kind not in own_kinds:
                growth[kind] = growth[FULL_BACKWARD]
    figures = _figures(growth)
    if len(own) == len({a["kind"] for a in actions}):
        rule = f"measured in this run (held 0..{seen}): {figures} per microbatch held"
    else:
        scaled = f" x {size:.2f} for this run's activations" if size != 1.0 else ""
        rule = (f"{figures} per microbatch held beyond this run's {seen}: this machine's, "
                f"from {HELD_SOURCE}{scaled}" + (f" ({', '.join(own)} measured here)"
                                                 if own else ""))
    return HeldGrowth(growth, seen, rule)


def _figures(growth: dict[str, float]) -> str:
    """``F +0.66 %, B I W +1.27 %``: kinds of one growth written once."""
    groups: dict[str, list[str]] = defaultdict(list)
    for kind, value in growth.items():
        groups[f"{100 * value:+.2f} %"].append(kind)
    return ", ".join(f"{' '.join(kinds)} {value}" for value, kinds in groups.items())


def _slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of relative cost on the count held, if it is known well enough."""
    if len(points) < HELD_SAMPLES or len({h for h, _ in points}) < 3:
        return None
    held, relative = (np.array(column, dtype=float) for column in zip(*points, strict=True))
    spread = float(((held - held.mean()) ** 2).sum())
    slope, intercept = np.polyfit(held, relative, 1)
    residual = relative - (slope * held + intercept)
    error = float(np.sqrt((residual ** 2).sum() / (len(held) - 2) / spread))
    return float(slope) if error <= HELD_PRECISION else None


def held_counts(order: list[tuple[int, str, int]]) -> list[int]:
    """For one rank's actions in order, ``(stage, kind, microbatch)``, how many microbatches
    it holds as each starts (``pplab.sim.cost_model.hold``'s rule, the simulator's)."""
    held: set = set()
    out = []
    for stage, kind, microbatch in order:
        out.append(len(held))
        hold(held, Action(stage, kind, microbatch))
    return out
