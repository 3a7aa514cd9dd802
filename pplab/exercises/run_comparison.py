"""Lesson 10's comparison of a bundled run: naive, calibrated and measured, and where time goes.

``compare_run`` holds it: the *naive* prediction (the median F and B, free messages, no
optimizer), the *calibrated* replay (``pplab.calibration``) and the *measured* step, each cut
into compute, communication, waiting, contention and overhead (ms per rank, averaged over
ranks: the five add up to the step time). ``what_if_of`` predicts another schedule or
microbatch count on a run's calibration, ``faster_step`` and ``heavier_tail_step`` a change
``pplab predict`` does not offer (a faster core, a heavier optimizer); ``gap_figure`` draws
the breakdown. The lesson's
notebook, its widget and its exercise (``measured_vs_predicted``) all read these.

    python -c "from pplab.exercises import run_comparison as r; print(r.compare_run('gpipe-p2m8'))"
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from functools import lru_cache

import pandas as pd

from pplab.calibration import Calibration, calibration_for, gap_breakdown, replay, what_if
from pplab.calibration.breakdown import CATEGORIES, median_step
from pplab.calibration.costs import compute_costs
from pplab.calibration.predict import Prediction, predict
from pplab.calibration.run_prediction import one_step, schedule_of
from pplab.runs.resources import bundled_runs_dir
from pplab.runs.run_dirs import load_run
from pplab.runs.summary import summarize
from pplab.schedules import build
from pplab.schedules.actions import COMPUTE_KINDS, ActionKind
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

# The breakdown's rows under the names a learner types (the option names of lesson 10's (d)).
PARTS = dict(zip(("compute", "communication", "waiting", "contention", "overhead"),
                 CATEGORIES, strict=True))


@lru_cache(maxsize=16)
def bundled_run(name: str):
    """A bundled run by folder name (data/runs/NAME); RunError if it cannot be read."""
    return load_run(bundled_runs_dir() / name)


@lru_cache(maxsize=1)
def lesson_runs() -> tuple[str, ...]:
    """The bundled runs whose steps end in a flush (asynchronous PipeDream has no step)."""
    names = []
    for folder in sorted(p for p in bundled_runs_dir().iterdir() if p.is_dir()):
        try:
            if not schedule_of(bundled_run(folder.name)).is_async:
                names.append(folder.name)
        except ValueError:  # a damaged or foreign folder is not one of the lesson's runs
            continue
    return tuple(names)


def calibration_of(name: str) -> Calibration:
    """A bundled run's calibration (read from its calibration.json, or fitted in memory)."""
    return calibration_for(bundled_run(name), save=False)


def naive_cost(calibration: Calibration, schedule) -> CostModel:
    """The naive cost model: each kind's median over the stages of its cost alone (the
    calibration's; on a run with a core per rank, the median measured duration), equal
    stages, free messages, no optimizer, no Python."""
    table = compute_costs(calibration, schedule)
    # the simulator's costs are a rank's whole share, which an interleaved rank cuts in V
    median = {kind: schedule.num_chunks * statistics.median(row[kind] for row in table)
              for kind in COMPUTE_KINDS}
    return CostModel(forward=median[ActionKind.FORWARD], backward=median[ActionKind.FULL_BACKWARD],
                     backward_input=median[ActionKind.BACKWARD_INPUT],
                     backward_weight=median[ActionKind.BACKWARD_WEIGHT])


def naive_events(calibration: Calibration, schedule) -> pd.DataFrame:
    return simulate(schedule, naive_cost(calibration, schedule))  # in seconds


@dataclass(frozen=True)
class Comparison:
    """One bundled run three ways, and where the time goes (``table``, ms per rank)."""

    label: str
    shared: bool  # more busy ranks than cores
    calibration: Calibration
    measured: pd.DataFrame  # the median steady step's events, from 0 (s)
    replay: Prediction
    naive: pd.DataFrame  # the naive prediction's events (s)
    table: pd.DataFrame

    def step_ms(self, column: str) -> float:
        return float(self.table[column].iloc[-1])

    def gaps(self) -> dict[str, float]:
        """measured - naive per part of the breakdown, ms per rank, by option name."""
        rows = self.table.set_index("per rank")["measured - naive (ms)"]
        return {short: float(rows[long]) for short, long in PARTS.items()}


@lru_cache(maxsize=16)
def compare_run(name: str) -> Comparison:
    """A bundled run's naive prediction, calibrated replay and measured median step, with
    the five-part breakdown of each (treat the result as read-only)."""
    run = bundled_run(name)
    calibration = calibration_of(name)
    schedule = schedule_of(run)
    predicted = replay(run, calibration)
    step = median_step(run, calibration)
    measured = gap_breakdown(run, calibration, predicted, step=step)
    naive = naive_events(calibration, schedule)
    p = schedule.pp_size
    computing = naive[naive["kind"].isin(COMPUTE_KINDS)]
    naive_step = float(metrics(naive, range(p))["makespan"])
    naive_compute = float((computing["end"] - computing["start"]).sum()) / p
    naive_parts = dict.fromkeys(CATEGORIES, 0.0) | {
        "compute": naive_compute, "waiting on a dependency": naive_step - naive_compute}
    naive_column = [naive_parts[c] for c in CATEGORIES] + [naive_step]
    table = pd.DataFrame({
        "per rank": list(measured["what"]),
        "measured (ms)": 1e3 * measured["measured (s)"].to_numpy(),
        "calibrated (ms)": 1e3 * measured["predicted (s)"].to_numpy(),
        "naive (ms)": [1e3 * x for x in naive_column]})
    table["measured - naive (ms)"] = table["measured (ms)"] - table["naive (ms)"]
    return Comparison(summarize(run).label, calibration.contention.shared, calibration,
                      one_step(run.events, step), predicted, naive, table)


def gap_figure(comparison: Comparison):
    """Bars of the breakdown: measured, calibrated and naive, ms per rank per part."""
    import plotly.graph_objects as go

    rows = comparison.table.iloc[:-1]
    figure = go.Figure([go.Bar(name=column.split(" (")[0], y=rows["per rank"], x=rows[column],
                               orientation="h")
                        for column in ("measured (ms)", "calibrated (ms)", "naive (ms)")])
    figure.update_layout(
        barmode="group", height=360, yaxis={"autorange": "reversed"},
        title=f"Where a step's time goes: {comparison.label}",
        xaxis_title="ms per rank (each rank's step cut in five parts, averaged over ranks; "
                    "the parts add up to the step time)")
    return figure


@lru_cache(maxsize=256)
def what_if_of(name: str, schedule: str, microbatches: int) -> tuple[Prediction, pd.DataFrame]:
    """Another schedule or microbatch count on a bundled run's calibration: the calibrated
    prediction and the naive one (ValueError for a configuration it cannot predict)."""
    calibration = calibration_of(name)
    prediction = what_if(bundled_run(name), calibration, schedule=schedule,
                         microbatches=microbatches)
    return prediction, naive_events(calibration, prediction.schedule)


# ---- changes pplab predict does not offer: lesson 10's exercise asks about them ----------

def faster(calibration: Calibration, speed: float) -> Calibration:
    """The calibration with every computation ``speed`` times faster, the rest unchanged."""
    return replace(calibration, compute={stage: {kind: cost / speed for kind, cost in
                                                 costs.items()}
                                         for stage, costs in calibration.compute.items()})


@lru_cache(maxsize=256)
def faster_prediction(name: str, speed: float) -> Prediction:
    """The run's own schedule on its calibration, every computation ``speed`` times faster,
    predicted as ``pplab predict`` predicts (speed 1: its replay)."""
    calibration = faster(calibration_of(name), speed)
    return predict(calibration, schedule_of(bundled_run(name)))


@lru_cache(maxsize=256)
def heavier_tail_prediction(name: str, microbatches: int, factor: float) -> Prediction:
    """The run's schedule at ``microbatches`` with its tail ``factor`` times as long (factor
    1: the what-if ``pplab predict --microbatches`` prints)."""
    calibration = calibration_of(name)
    heavier = replace(calibration, tail=factor * calibration.tail)
    schedule = build(schedule_of(bundled_run(name)).name, calibration.pp_size, microbatches)
    return predict(heavier, schedule)


def faster_step(name: str, speed: float) -> float:
    """Lesson 10's (a): the step of ``faster_prediction`` (ms)."""
    return 1e3 * faster_prediction(name, speed).step_time


def heavier_tail_step(name: str, microbatches: int, factor: float) -> float:
    """Lesson 10's (b): the step of ``heavier_tail_prediction`` (ms)."""
    return 1e3 * heavier_tail_prediction(name, microbatches, factor).step_time


def printed_by_predict(prediction: Prediction) -> list[float]:
    """The step times ``pplab predict`` prints for ``prediction``: the step and the ends of
    its interval (ms)."""
    bar = getattr(prediction, "interval", None)
    return [1e3 * prediction.step_time] + ([1e3 * bar.low, 1e3 * bar.high] if bar else [])
