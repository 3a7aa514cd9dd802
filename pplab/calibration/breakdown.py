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

``term_breakdown`` names the model's own terms instead, each with what it charges and the
measurement behind it: the typical computation, the slow tail of actions and of whole
steps, the activations a rank holds beyond what the run held, the optimizer step and flush,
Python and bookkeeping around each action, sends and receive posts, and processor sharing.

    python -c "from pplab.calibration import calibration_for, replay, gap_breakdown; \
from pplab.runs.run_dirs import load_run; run = load_run('data/runs/1f1b-p2m8'); \
c = calibration_for(run); print(gap_breakdown(run, c, replay(run, c)))"
"""

from __future__ import annotations

import pandas as pd

from pplab.calibration import costs, measure, variation
from pplab.calibration.fit import _top_level
from pplab.calibration.model import Calibration
from pplab.calibration.predict import Prediction
from pplab.runs.run_dirs import Run
from pplab.runs.summary import summarize
from pplab.schedules.actions import COMPUTE_KINDS
from pplab.sim.sharing import SharedClock
from pplab.timeline import EventKind

CATEGORIES = ("compute", "communication", "waiting on a dependency", "contention", "overhead")
# The model's terms, each charged because the recorded runs measured it (data/runs, steps
# after the first; pplab.calibration.variation and fit hold the numbers):
# * typical computation: each stage's median F, B, I, W (the bare model, before issue 25);
# * slow tail of actions: the mean action is 1.018-1.035 x the median on the 2-rank runs
#   (gpipe-p2m8: q95 1.21, q99 1.30) and a step of 32 actions meets its tail every time;
#   with the whole spread drawn, gpipe-p2m8's replay went from -1.8 % to -0.3 %; whole steps
#   vary too (1f1b-p2m8's steps took 224.7 to 252.1 ms);
# * activations held: gpipe-p2m8's B grows 1.27 % +- 0.23 % per microbatch its rank holds
#   (1.089 x at 8 held), F 0.66 % +- 0.41 %; 1F1B never holds more than P and cannot tell;
# * optimizer step and flush: the last rank's tail after its last action (5.9 ms of 1f1b-p2m8's
#   232 ms step, its Adam step 5.8 ms);
# * Python and bookkeeping: the median gap around an action outside computing, messages and
#   waits (0.04-0.05 ms on 2 ranks). pipedream-p4m8's weight stashing makes its mean 3x its
#   median (0.23 against 0.07 ms per F), and the mean would move the bundled replays by 0.1
#   to 0.7 %, but it reads as Python all the idle time of a timeline that records no waits;
# * sends and receive posts: the mean time a send or a posted receive keeps its rank (0.2-0.6
#   ms per 128-256 KiB message through gloo);
# * processor sharing: 4 ranks on 2 cores ran as if on 2.7 (1f1b-p4m8, gpipe-p4m8, zb-h1-p4m8),
#   and actions that ran with a core free still varied 0.69-1.36 x (1f1b-p4m8, q05-q95).
TERMS = ("typical computation", "slow tail of actions", "activations held",
         "optimizer step and flush", "Python and bookkeeping", "sends and receive posts",
         "processor sharing")


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


def term_breakdown(calibration: Calibration, prediction: Prediction,
                   run: Run | None = None, step: int | None = None) -> pd.DataFrame:
    """What the prediction charges for each of ``TERMS`` (seconds per rank), beside what the
    run measured for it where the prediction is a replay of ``run`` (its median step, or
    ``step``), and the measurement each term comes from."""
    predicted = _predicted_terms(calibration, prediction)
    measured = dict.fromkeys(TERMS, float("nan"))
    if run is not None and prediction.replay:
        measured = _measured_terms(run, calibration, prediction, step)
    return pd.DataFrame([{"term": term, "measured (s)": measured[term],
                          "predicted (s)": predicted[term], "measured as": text}
                         for term, text in zip(TERMS, _sources(calibration), strict=True)])


def _sources(calibration: Calibration) -> list[str]:
    """One line per term: where in the run its figures come from."""
    spread, steps, sharing = calibration.spread, calibration.step_spread, calibration.contention
    python = ", ".join(f"{k} {1e3 * v:.3f}" for k, v in calibration.python_overhead.items())
    return [
        f"median of each stage's actions, steps {', '.join(map(str, calibration.steps))}",
        (f"actions {spread[2]:.2f}..{spread[-3]:.2f} x typical (10-90 %, mean "
         f"{sum(spread) / len(spread):.3f})" if spread else "no spread measured")
        + (f", steps {steps[0]:.2f}..{steps[-1]:.2f}" if steps else ""),
        calibration.held_rule or "not measured",
        f"the last rank's tail, median {1e3 * calibration.tail:.2f} ms for "
        f"{calibration.tail_layers} layers; one optimizer step {1e3 * calibration.optimizer:.2f}"
        f" ms",
        f"median gap around an action: {python} ms",
        f"{1e3 * calibration.send_cost:.3f} ms per send, {1e3 * calibration.recv_cost:.3f} ms "
        f"per receive posted",
        (f"{sharing.ranks} ranks on {sharing.slots} {sharing.device} slots, as if on "
         f"{sharing.effective_slots or sharing.slots:g}") if sharing.shared
        else "a core (or GPU) per rank",
    ]


def _predicted_terms(calibration: Calibration, prediction: Prediction) -> dict[str, float]:
    schedule = prediction.schedule
    layers = calibration.layer_split if prediction.replay else None
    compute = costs.compute_costs(calibration, schedule, layers)
    overhead = costs.overhead_costs(calibration, schedule)
    cost = costs.cost_model_for(calibration, schedule, layers)
    factor = {}
    for rank, order in schedule.actions.items():
        halves = [(h.stage, h.kind, h.microbatch) for entry in order for h in entry.sub_actions]
        for half, held in zip(halves, variation.held_counts(halves), strict=True):
            factor[(rank, *half)] = cost.held_factor(half[1], held)
    events = prediction.events
    clock = _clock(events, calibration, prediction.shared)
    totals = dict.fromkeys(TERMS, 0.0)
    for row in events.itertuples(index=False):
        duration = float(row.end - row.start)
        alone = clock.alone(float(row.start), float(row.end)) if clock else duration
        if row.kind == EventKind.OPTIM:
            totals["optimizer step and flush"] += alone
            totals["processor sharing"] += duration - alone
        elif row.kind in COMPUTE_KINDS:
            typical = compute[row.stage][row.kind]
            grown = typical * factor.get((row.rank, row.stage, row.kind, row.microbatch), 1.0)
            totals["typical computation"] += typical
            totals["activations held"] += grown - typical
            totals["slow tail of actions"] += alone - grown
            totals["processor sharing"] += duration - alone
            messages = _messages(calibration, schedule, row.stage, row.kind)
            totals["sends and receive posts"] += messages
            totals["Python and bookkeeping"] += max(overhead[row.stage][row.kind] - messages, 0.0)
    return {term: value / schedule.pp_size for term, value in totals.items()}


def _messages(calibration: Calibration, schedule, stage: int, kind: str) -> float:
    return (calibration.send_cost * costs.sends_remotely(schedule, stage, kind)
            + calibration.recv_cost * costs.receives_remotely(schedule, stage, kind))


def _measured_terms(run: Run, calibration: Calibration, prediction: Prediction,
                    step: int | None) -> dict[str, float]:
    """The measured step (as ``gap_breakdown`` cuts it) in the terms' words: its actions'
    typical costs and what they took beyond them, its optimizer steps, and the gap
    breakdown's overhead, communication and contention."""
    table = gap_breakdown(run, calibration, prediction, step).set_index("what")["measured (s)"]
    part = run.events[run.events["step"] == (step if step is not None
                                             else median_step(run, calibration))] \
        if not prediction.schedule.is_async else \
        run.events[run.events["step"].isin(calibration.measured.steps)]
    ranks = summarize(run).ranks_of(run.events)
    inside = measure.clip(run.events if prediction.schedule.is_async else part,
                          measure.window(part))
    clock = _clock(inside, calibration, calibration.contention.shared)
    totals = dict.fromkeys(TERMS, 0.0)
    for row in inside.itertuples(index=False):
        alone = clock.alone(float(row.start), float(row.end)) if clock \
            else float(row.end - row.start)
        if row.kind == EventKind.OPTIM:
            totals["optimizer step and flush"] += alone
        elif row.kind in COMPUTE_KINDS:
            typical = calibration.compute.get(int(row.stage), {}).get(row.kind, alone)
            totals["typical computation"] += typical
            totals["slow tail of actions"] += alone - typical
    totals = {term: value / max(len(ranks), 1) for term, value in totals.items()}
    totals["Python and bookkeeping"] = table["overhead"]
    totals["sends and receive posts"] = table["communication"]
    totals["processor sharing"] = table["contention"]
    return totals
