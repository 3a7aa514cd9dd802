"""Predicting a step from a calibration: the run's own configuration (replay) or another.

What it teaches: a prediction is only as honest as what it is compared with. A replay runs
the run's own schedule on the costs fitted from the run and is judged against the run's
own measured step (``pplab.calibration.measure``: the same window, first computation to
last optimizer step). A what-if runs another schedule, microbatch count, chunk count or
depth on the same costs (``pplab.calibration.costs``), with the microbatch size the run
had. With more busy ranks than cores the ranks share them (``sharing.simulate_shared``);
otherwise the lab's one simulator draws the timeline. Each drawn action starts where its
computation does, after the overhead the calibration found around it, so a predicted
timeline reads like a measured one.

    pplab predict data/runs/1f1b-p2m8
    pplab predict data/runs/1f1b-p2m8 --schedule zb-h1 --microbatches 16
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pplab.calibration import costs
from pplab.calibration.model import Calibration, Measured
from pplab.calibration.run_prediction import schedule_of
from pplab.limits import MAX_SAMPLED_ACTIONS
from pplab.runs.run_dirs import Run
from pplab.runs.summary import summarize
from pplab.schedules import build
from pplab.schedules.actions import COMPUTE_KINDS, Schedule
from pplab.sim.sharing import simulate_shared
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

SAMPLES = 21  # steps drawn for one prediction; their median is the answer


@dataclass(frozen=True)
class Prediction:
    """A predicted step: its timeline (seconds from the first computation) and figures."""

    schedule: Schedule
    events: pd.DataFrame
    step_time: float
    bubble: float
    shared: bool  # the ranks shared cores (or GPUs): drawn by processor sharing
    replay: bool
    measured: Measured | None = None

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured step time, for a replay."""
        if self.measured is None or self.measured.step_time <= 0:
            return None
        return (self.step_time - self.measured.step_time) / self.measured.step_time


def predict(calibration: Calibration, schedule: Schedule, *, replicas: int = 1,
            layer_split: tuple[int, ...] | None = None, samples: int = SAMPLES) -> Prediction:
    """Predict ``schedule`` with ``calibration``'s costs; ``replicas`` (tp x dp) processes
    hold each pipeline position, which matters only when they share cores.

    Actions vary: a step whose ranks meet at every message (1F1B) waits for the slower of
    two varying actions each time, longer than for two typical ones. So when the run
    measured a spread (and its ranks had cores of their own), ``samples`` steps are drawn,
    each action's computation from that spread, and the median step is the prediction (its
    timeline is the one drawn).
    """
    cost = costs.cost_model_for(calibration, schedule, layer_split)
    overhead = costs.overhead_costs(calibration, schedule)
    sharing = calibration.contention
    processes = schedule.pp_size * replicas
    shared = processes > sharing.slots
    slots = (sharing.effective_slots or sharing.slots) if shared else processes
    actions = sum(len(order) for order in schedule.actions.values())
    draws = min(samples, max(1, MAX_SAMPLED_ACTIONS // max(actions, 1)))
    # Under processor sharing the spread is already what sharing made of the actions, and
    # the sharing model makes it again: shared ranks are predicted from typical costs.
    if shared or len(set(calibration.spread)) < 2 or draws < 3:
        events = (simulate_shared(schedule, cost, slots, replicas, lead=overhead) if shared
                  else _trim_overhead(simulate(schedule, cost), overhead))
        return _prediction(schedule, events, shared)
    random = np.random.default_rng(0)  # the same prediction every time it is asked
    grid = np.linspace(0.0, 1.0, len(calibration.spread))

    def spread() -> float:
        return float(np.interp(random.random(), grid, calibration.spread))

    drawn = sorted((_prediction(schedule, simulate_shared(schedule, cost, slots, replicas,
                                                          lead=overhead, spread=spread), shared)
                    for _ in range(draws - 1 + draws % 2)), key=lambda p: p.step_time)
    return drawn[len(drawn) // 2]


def _prediction(schedule: Schedule, events: pd.DataFrame, shared: bool) -> Prediction:
    """One step's events from 0 at its first computation, with its step time and bubble."""
    if not schedule.is_async:
        events = events[events["step"] == events["step"].min()]
    compute = events[events["kind"].isin(COMPUTE_KINDS)]
    origin = float(compute["start"].min()) if len(compute) else 0.0
    events = events.assign(start=(events["start"] - origin).clip(lower=0.0),
                           end=(events["end"] - origin).clip(lower=0.0)).reset_index(drop=True)
    stats = metrics(events, range(schedule.pp_size))
    return Prediction(schedule, events, float(stats["makespan"]),
                      float(stats["bubble_fraction"]), shared, replay=False)


def _trim_overhead(events: pd.DataFrame, overhead: list[dict[str, float]]) -> pd.DataFrame:
    """Start each computation after the overhead that the simulator charged before it."""
    kinds = events["kind"].to_numpy()
    stages = events["stage"].to_numpy()
    shift = [overhead[s][k] if k in COMPUTE_KINDS and s >= 0 else 0.0
             for s, k in zip(stages, kinds, strict=True)]
    starts = (events["start"] + shift).where(events["start"] + shift < events["end"],
                                             events["end"])
    return events.assign(start=starts)


def replay(run: Run, calibration: Calibration) -> Prediction:
    """The run's own schedule on its own costs, with its measured figures beside it."""
    summary = summarize(run)
    schedule = schedule_of(run)
    result = predict(calibration, schedule, replicas=summary.tp_size * summary.dp_size,
                     layer_split=calibration.layer_split)
    return Prediction(**{**result.__dict__, "replay": True,
                         "measured": calibration.measured})


def what_if(run: Run, calibration: Calibration, *, schedule: str | None = None,
            microbatches: int | None = None, chunks: int | None = None,
            pp_size: int | None = None) -> Prediction:
    """Another configuration on the run's costs (a replay when nothing differs).

    Unset options keep the run's own. The model keeps its layers, so a deeper pipeline
    needs at least one layer per stage; tensor and data parallelism stay as they ran.
    """
    summary = summarize(run)
    own = schedule_of(run)
    name = schedule or own.name
    chosen = (name, microbatches or own.microbatches_per_step, chunks, pp_size or own.pp_size)
    same = (name == own.name and chosen[1] == own.microbatches_per_step
            and chunks in (None, own.num_chunks) and chosen[3] == own.pp_size)
    if same:
        return replay(run, calibration)
    if own.is_async and name == own.name:
        target = build(name, chosen[3], chosen[1], chunks, num_steps=own.num_steps)
    else:
        target = build(name, chosen[3], chosen[1], chunks)
    layers = sum(calibration.layer_split)
    if target.num_stages > layers:
        raise ValueError(f"{target.num_stages} stages need at least {target.num_stages} layers; "
                         f"the run's model has {layers}")
    return predict(calibration, target, replicas=summary.tp_size * summary.dp_size)
