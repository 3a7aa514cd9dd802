"""Where a step's time went, measured and predicted, and the gap between them by cause.

What it teaches: every rank is doing exactly one thing at every instant of a step, so
ranks x step time splits without remainder into

* compute: forwards, backwards and the optimizer (tensor-parallel all-reduces inside a
  forward or backward count with it),
* communication: posting sends and receives, waiting for sends to drain, all-reduces
  between steps,
* waiting on a dependency: blocked on a message that has not come, or idle with nothing
  to do (the pipeline's bubble),
* contention: computation stretched by sharing a core (or GPU) with other busy ranks,
* overhead: everything else (Python between actions, bookkeeping).

Both timelines are cut the same way, per rank and averaged over ranks, so the five gaps
(measured minus predicted) add up to the gap in step time: the row with the largest gap
says what the prediction misses.

    python -c "from pplab.calibration import calibration_for, replay, gap_breakdown; \
from pplab.runs.run_dirs import load_run; run = load_run('data/runs/1f1b-p2m8'); \
c = calibration_for(run); print(gap_breakdown(run, c, replay(run, c)))"
"""

from __future__ import annotations

import pandas as pd

from pplab.calibration import costs, measure
from pplab.calibration.fit import _top_level
from pplab.calibration.model import Calibration
from pplab.calibration.predict import Prediction
from pplab.runs.run_dirs import Run
from pplab.runs.summary import summarize
from pplab.schedules.actions import COMPUTE_KINDS
from pplab.sim.sharing import SharedClock
from pplab.timeline import EventKind

CATEGORIES = ("compute", "communication", "waiting on a dependency", "contention", "overhead")


def _clock(events: pd.DataFrame, calibration: Calibration, shared: bool) -> SharedClock | None:
    """Processor sharing read back from a timeline's busy time (None: cores of their own).

    A prediction draws one row per pipeline position, each standing for its tp x dp
    replicas, which share the cores with it: its clock has the slots of one replica."""
    if not shared:
        return None
    sharing = calibration.contention
    replicas = max(1, sharing.ranks // calibration.pp_size) \
        if events["rank"].nunique() <= calibration.pp_size else 1
    busy = [(int(r.rank), float(r.start), float(r.end)) for r in events.itertuples()
            if r.kind in COMPUTE_KINDS or r.kind == EventKind.OPTIM]
    return SharedClock(busy, (sharing.effective_slots or sharing.slots) / replicas)


def measured_parts(events: pd.DataFrame, ranks: list[int], calibration: Calibration,
                   length: float) -> dict[str, float]:
    """Seconds per rank in each category over one step window of ``length`` (from 0)."""
    clock = _clock(events, calibration, calibration.contention.shared)
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for rank in ranks:
        mine = events[events["rank"] == rank]
        if mine.empty:
            totals["waiting on a dependency"] += length
            continue
        top = _top_level(mine)
        work = stretched = talk = waited = 0.0
        for row in top.itertuples(index=False):
            duration = float(row.end - row.start)
            if row.kind in COMPUTE_KINDS or row.kind == EventKind.OPTIM:
                alone = clock.alone(float(row.start), float(row.end)) if clock else duration
                work += alone
                stretched += duration - alone
            elif row.kind == EventKind.WAIT and row.stage >= 0:
                waited += duration
            else:  # send, recv, allreduce, the drain of sends
                talk += duration
        idle = float(top["start"].min()) + max(length - float(top["end"].max()), 0.0)
        totals["compute"] += work
        totals["contention"] += stretched
        totals["communication"] += talk
        totals["waiting on a dependency"] += waited + idle
        totals["overhead"] += max(length - work - stretched - talk - waited - idle, 0.0)
    return {name: value / max(len(ranks), 1) for name, value in totals.items()}


def predicted_parts(prediction: Prediction, calibration: Calibration) -> dict[str, float]:
    """The same split of a prediction, from the costs it was made with; under processor
    sharing its computation is read back through the same clock as the measured one."""
    schedule = prediction.schedule
    overhead = costs.overhead_costs(calibration, schedule)
    events = prediction.events
    clock = _clock(events, calibration, prediction.shared)
    length = prediction.step_time
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for rank in range(schedule.pp_size):
        mine = events[events["rank"] == rank]
        work = stretched = talk = other = 0.0
        for row in mine.itertuples(index=False):
            duration = float(row.end - row.start)
            if row.kind == EventKind.OPTIM:  # the tail: all-reduces and the drain, then the step
                share = calibration.tail_communication / calibration.tail \
                    if calibration.tail > 0 and not schedule.is_async else 0.0
                talk += duration * share
                work += duration * (1 - share)
            elif row.kind in COMPUTE_KINDS:
                # a shared core stretches an action past its cost; otherwise it only varies
                alone = clock.alone(float(row.start), float(row.end)) if clock else duration
                work += alone
                stretched += duration - alone
                messages = (calibration.send_cost
                            * costs.sends_remotely(schedule, row.stage, row.kind)
                            + calibration.recv_cost
                            * costs.receives_remotely(schedule, row.stage, row.kind))
                talk += messages
                other += max(overhead[row.stage][row.kind] - messages, 0.0)
        totals["compute"] += work
        totals["contention"] += stretched
        totals["communication"] += talk
        totals["overhead"] += other
        totals["waiting on a dependency"] += max(length - work - stretched - talk - other, 0.0)
    return {name: value / schedule.pp_size for name, value in totals.items()}


def gap_breakdown(run: Run, calibration: Calibration, prediction: Prediction,
                  step: int | None = None) -> pd.DataFrame:
    """One row per category, seconds per rank: measured, predicted and the gap; the last row
    is the step time, which the rows above it add up to.

    The measured side is ``step``, by default the calibration's median step (the steady
    step whose window is the median's), cut to its window.
    """
    summary = summarize(run)
    ranks = summary.ranks_of(run.events)
    if prediction.schedule.is_async:
        part = run.events[run.events["step"].isin(calibration.measured.steps)]
    else:
        part = run.events[run.events["step"] == (step if step is not None
                                                 else median_step(run, calibration))]
    if not part["kind"].isin(COMPUTE_KINDS).any():
        raise ValueError(f"{run.path.name}: that step has no computation to break down")
    span = measure.window(part)
    length = span[1] - span[0]
    # an asynchronous window holds the warm-up step's last work too, as measure.measured cuts it
    inside = measure.clip(run.events if prediction.schedule.is_async else part, span)
    measured = measured_parts(inside, ranks, calibration, length)
    predicted = predicted_parts(prediction, calibration)
    rows = [{"what": name, "measured (s)": measured[name], "predicted (s)": predicted[name],
             "gap (s)": measured[name] - predicted[name]} for name in CATEGORIES]
    rows.append({"what": "step time", "measured (s)": length,
                 "predicted (s)": prediction.step_time, "gap (s)": length - prediction.step_time})
    return pd.DataFrame(rows)


def median_step(run: Run, calibration: Calibration) -> int:
    """The steady step whose window length is the median of them (the lower one if even)."""
    windows = measure.step_windows(run.events[run.events["step"].isin(calibration.measured.steps)])
    if not windows:
        raise ValueError(f"{run.path.name} has no steady step with computation")
    ordered = sorted(windows, key=lambda s: (windows[s][1] - windows[s][0], s))
    return ordered[(len(ordered) - 1) // 2]
