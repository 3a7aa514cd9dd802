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

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pplab.calibration import costs, measure
from pplab.calibration.interval import MODEL_ERROR, Interval, error_bar, kind_of
from pplab.calibration.model import Calibration, Measured
from pplab.calibration.run_prediction import schedule_of
from pplab.limits import MAX_SAMPLED_ACTIONS
from pplab.runs.run_dirs import Run
from pplab.runs.summary import summarize
from pplab.schedules import build
from pplab.schedules.actions import COMPUTE_KINDS, Schedule
from pplab.sim.sharing import simulate_shared
from pplab.timeline import metrics

SAMPLES = 31  # steps drawn for one prediction: their median is the answer, their spread its bar


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
    interval: Interval | None = None  # where the measured steps should fall

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured step time, for a replay."""
        if self.measured is None or self.measured.step_time <= 0:
            return None
        return (self.step_time - self.measured.step_time) / self.measured.step_time


def predict(calibration: Calibration, schedule: Schedule, *, replicas: int = 1,
            layer_split: tuple[int, ...] | None = None, samples: int = SAMPLES,
            replay: bool = False) -> Prediction:
    """Predict ``schedule`` with ``calibration``'s costs; ``replicas`` (tp x dp) processes
    hold each pipeline position, which matters only when they share cores.

    Actions vary: a step whose ranks meet at every message (1F1B) waits for the slower of
    two varying actions each time, longer than for two typical ones, and whole steps vary
    with the machine. So ``samples`` steps are drawn, each with a factor for the whole step
    (``Calibration.step_spread``) and one for each action's computation
    (``Calibration.spread``); the median step is the prediction (its timeline is the one
    drawn) and the drawn steps with the model's known error make its interval
    (``pplab.calibration.interval``). Under processor sharing the costs drawn are what each
    action would cost alone, and the sharing stretches them again as it stretched the run's.
    """
    cost = costs.cost_model_for(calibration, schedule, layer_split)
    overhead = costs.overhead_costs(calibration, schedule)
    sharing = calibration.contention
    processes = schedule.pp_size * replicas
    shared = processes > sharing.slots
    slots = (sharing.effective_slots or sharing.slots) if shared else processes
    actions = sum(len(order) for order in schedule.actions.values())
    draws = min(samples, max(1, MAX_SAMPLED_ACTIONS // max(actions, 1)))
    random = np.random.default_rng(0)  # the same prediction every time it is asked
    within = _sampler(calibration.spread, random)
    whole = len(set(calibration.step_spread)) > 1

    def one(spread=None) -> Prediction:
        return _prediction(schedule, simulate_shared(schedule, cost, slots, replicas,
                                                     lead=overhead, spread=spread), shared)

    if draws < 3 or (within is None and not whole):
        drawn = [one()]
    else:
        # Whole steps at evenly spaced quantiles of the measured ones, not at random: a few
        # measured steps can fall in two groups, and the median drawn step must be the one
        # at their median, not whichever group more random draws happened to hit.
        count = draws - 1 + draws % 2
        levels = (np.arange(count) + 0.5) / count
        steps = np.interp(levels, np.linspace(0.0, 1.0, len(calibration.step_spread)),
                          calibration.step_spread) if whole else np.ones(count)
        drawn = [one(lambda step=float(step): step * (within() if within else 1.0))
                 for step in steps]
        drawn.sort(key=lambda p: p.step_time)
    middle = drawn[len(drawn) // 2]
    bar = error_bar(middle.step_time, [p.step_time for p in drawn],
                    MODEL_ERROR[kind_of(replay, shared)], calibration.measured.times)
    return replace(middle, replay=replay, interval=bar)


def _sampler(quantiles: tuple[float, ...], random: np.random.Generator):
    """A draw from measured ``quantiles`` (0 to 1, evenly spaced); None if they never vary."""
    if len(set(quantiles)) < 2:
        return None
    grid = np.linspace(0.0, 1.0, len(quantiles))
    return lambda: float(np.interp(random.random(), grid, quantiles))


def _prediction(schedule: Schedule, events: pd.DataFrame, shared: bool) -> Prediction:
    """One step's events from 0 at its first computation, with its step time and bubble;
    an asynchronous schedule's window as a measured one's (``measure.measured``): from the
    first computation of its first steady step to the end, every step's work in it."""
    if schedule.is_async:
        first = measure.steady_steps(range(schedule.num_steps), is_async=True)[0]
        compute = events[events["kind"].isin(COMPUTE_KINDS) & (events["step"] >= first)]
        origin = float(compute["start"].min()) if len(compute) else 0.0
        events = measure.clip(events, (origin, float(events["end"].max())))
    else:
        events = events[events["step"] == events["step"].min()]
        compute = events[events["kind"].isin(COMPUTE_KINDS)]
        origin = float(compute["start"].min()) if len(compute) else 0.0
        events = events.assign(start=(events["start"] - origin).clip(lower=0.0),
                               end=(events["end"] - origin).clip(lower=0.0))
    events = events.reset_index(drop=True)
    stats = metrics(events, range(schedule.pp_size))
    return Prediction(schedule, events, float(stats["makespan"]),
                      float(stats["bubble_fraction"]), shared, replay=False)


def replay(run: Run, calibration: Calibration) -> Prediction:
    """The run's own schedule on its own costs, with its measured figures beside it."""
    summary = summarize(run)
    schedule = schedule_of(run)
    result = predict(calibration, schedule, replicas=summary.tp_size * summary.dp_size,
                     layer_split=calibration.layer_split, replay=True)
    return replace(result, measured=calibration.measured)


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
