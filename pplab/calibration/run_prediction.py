"""Predicting a recorded run from its own schedule, on the measured run's time axis.

To put a prediction over a measurement, the run's schedule is replayed on the costs fitted
from the run itself (``pplab.calibration``: every stage's work, the links, the overhead
around each action, the step's tail, the sharing of cores), so what differs is what the
model misses, and the Runs page says which part. One step is shown over its window, from
its first forward to its last optimizer step, as the prediction is. The same calibration's
forward (``seconds_per_cost_unit``) also gives a cost unit its length in seconds, so a
simulated configuration can share a time axis with a recorded run.

    python -c "from pplab.runs.run_dirs import load_run; from pplab.calibration.run_prediction \
    import \
predicted_for; print(predicted_for(load_run('data/runs/1f1b-p4m8'), 1)[0].head())"
"""

from __future__ import annotations

import statistics

import pandas as pd

from pplab import limits
from pplab.runs.run_dirs import Run
from pplab.schedules import build, schedule_from_csv_text
from pplab.schedules.actions import FORWARD, Schedule
from pplab.sim.cost_model import CostModel


def schedule_of(run: Run) -> Schedule:
    """The schedule a run executed, from the CSV its metadata keeps (or rebuilt by name)."""
    schedule = run.metadata.get("schedule")
    if not isinstance(schedule, dict):
        raise ValueError(f"{run.path.name}: meta.json has no 'schedule' object")
    name = str(schedule.get("name", "custom"))
    # A CSV keeps the exact order, but not an asynchronous family's update rule: those are
    # rebuilt from their sizes.
    if schedule.get("csv") and not schedule.get("is_async"):
        replay = schedule_from_csv_text(str(schedule["csv"]), name=name)
        actions = sum(len(order) for order in replay.actions.values())
        if actions > limits.MAX_REPLAY_ACTIONS:
            raise ValueError(f"{run.path.name}: its schedule of {actions:,} actions is too big to "
                             f"replay here (limit {limits.MAX_REPLAY_ACTIONS:,})")
        return replay
    try:
        depth = int(schedule["pp_size"])
        microbatches = int(schedule["num_microbatches"])
        chunks = int(schedule.get("num_chunks") or 1)
        steps = int(schedule.get("num_steps") or 1)
    except KeyError as error:
        raise ValueError(f"{run.path.name}: meta.json schedule lacks {error}") from None
    except (TypeError, ValueError):
        raise ValueError(f"{run.path.name}: meta.json schedule sizes are not whole numbers: "
                         f"{schedule}") from None
    options = {"num_steps": steps} if schedule.get("is_async") else {}
    if depth * microbatches * chunks * steps > limits.MAX_REPLAY_ACTIONS:
        raise ValueError(f"{run.path.name}: {depth} ranks x {microbatches} microbatches x "
                         f"{chunks} chunks x {steps} steps is too big to replay here "
                         f"(limit {limits.MAX_REPLAY_ACTIONS:,})")
    return build(name, depth, microbatches, chunks, **options)


def one_step(events: pd.DataFrame, step: int) -> pd.DataFrame:
    """The events of one training step over its window, from time 0 at its first forward.

    Ranks do not wait for each other between steps, so a rank that finished the previous
    step early posts its first receive before the step's first forward; those events are
    cut to the window (``pplab.calibration.measure``), as a prediction starts them at 0. A
    step without any computation is shown from its first event.
    """
    from pplab.calibration.measure import clip, window

    part = events[events["step"] == step]
    if part.empty:
        steps = sorted(int(s) for s in events["step"].unique())
        raise ValueError(f"step {step} is not in this run; it has steps {steps[0]}..{steps[-1]}")
    try:
        span = window(part)
    except ValueError:
        span = (float(part["start"].min()), float(part["end"].max()))
    return clip(part, span)


def seconds_per_cost_unit(run: Run) -> float:
    """How long one cost unit (one stage's forward of a rank's share, F = 1) lasted in a
    measured run: the forward its calibration prices for its own schedule
    (``pplab.calibration.cost_model_for``, the one way a calibration becomes a cost model),
    the median over its stages, times V for an interleaved run, whose stage is 1/V of a
    rank's share. ValueError if the run has no forward that took time."""
    from pplab.calibration import calibration_for, cost_model_for
    from pplab.classroom.passcode import in_classroom

    schedule = schedule_of(run)
    calibration = calibration_for(run, save=not in_classroom())
    cost = cost_model_for(calibration, schedule)
    forward = statistics.median(row[0] for row in cost.stage_costs) * schedule.num_chunks
    # the overhead around a forward is priced too, but alone it is no forward to scale by
    computed = any(costs.get(FORWARD, 0.0) > 0 for costs in calibration.compute.values())
    if forward <= 0 or not computed:
        raise ValueError("the run has no measured forward (F) events that took time, so "
                         "there is nothing to calibrate from")
    return forward / CostModel().forward


def in_seconds(events: pd.DataFrame, seconds_per_unit: float) -> pd.DataFrame:
    """Predicted events in cost units, redrawn in seconds at ``seconds_per_unit``."""
    return events.assign(start=events["start"] * seconds_per_unit,
                         end=events["end"] * seconds_per_unit)


def predicted_for(run: Run, step: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predicted, measured) events of one step, both in seconds from the step's first
    forward: the run's calibrated replay (``pplab.calibration``) and the measured step.

    The predicted table has one row per pipeline position (rank = pp_rank); the measured
    one names the global ranks of the run, each with its pp_rank, tp_rank and dp_rank.
    ``pplab.calibration.run_views.pipeline_view`` picks one tp/dp replica of it, whose
    pp_rank rows are the prediction's.
    """
    from pplab.calibration import calibration_for, replay
    from pplab.classroom.passcode import in_classroom

    schedule_of(run)  # a schedule too big to replay is refused before any fitting
    measured = one_step(run.events, step)
    return replay(run, calibration_for(run, save=not in_classroom())).events, measured
