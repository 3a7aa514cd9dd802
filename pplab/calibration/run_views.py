"""What the lab draws of a recorded run: one step, one pipeline, rows a person can read.

The Event table names *global* ranks, each with its coordinate beside it (``pp_rank``,
``tp_rank``, ``dp_rank``). With tensor or data parallelism a pipeline position is held by
several ranks (its tp and dp peers), numbered in Megatron order, tp fastest: global rank =
(pp x dp_size + dp) x tp_size + tp (``pplab.topology``). A prediction has one row per
pipeline position (its ``pp_rank`` is its rank), so before the two are drawn one over the
other the measured table is cut down to one replica (one dp, one tp coordinate) and both are
drawn by ``pp_rank``: row i of the prediction and row i of the measurement are then the same
stages.

    python -c "from pplab.runs.run_dirs import load_run; from pplab.runs.summary import summarize; \
from pplab.calibration.run_views import pipeline_view, Replica; \
from pplab.timeline import EventKind; \
run = load_run('data/comparisons/pp4-vs-tp4-cpu/5-1f1b-p2m8-tp2'); \
view = pipeline_view(run.events, summarize(run), Replica(tp=1)); \
print(view[view.kind == EventKind.FORWARD].groupby(['pp_rank', 'rank']).stage.unique())"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from pplab import timeline
from pplab.calibration.run_prediction import one_step
from pplab.runs import run_dirs
from pplab.runs.summary import RunSummary, summarize

__all__ = ["Replica", "FIRST_REPLICA", "replicas", "pipeline_view", "pipeline_row_names",
           "pipeline_caption", "rank_names", "MeasuredStep", "last_step", "measured_metrics",
           "predicted_metrics", "metrics_row", "replayed", "gap_table", "GAP_CAPTION",
           "interval_text", "terms_table", "on_the_costs_of"]


class Replica(NamedTuple):
    """One copy of the pipeline: the ranks with these data- and tensor-parallel coordinates."""

    dp: int = 0
    tp: int = 0

    @property
    def label(self) -> str:
        return f"tp={self.tp} dp={self.dp}"


FIRST_REPLICA = Replica(dp=0, tp=0)


def replicas(summary: RunSummary) -> list[Replica]:
    """Every replica of the run's pipeline, dp-major as the ranks are numbered."""
    return [Replica(dp, tp) for dp in range(summary.dp_size) for tp in range(summary.tp_size)]


def pipeline_view(events: pd.DataFrame, summary: RunSummary,
                  replica: Replica = FIRST_REPLICA) -> pd.DataFrame:
    """The events of one replica's ranks (its tp and dp coordinates), global ranks kept:
    draw them by ``pp_rank``, the pipeline position.

    Raises ValueError when the events name ranks the run's pp x tp x dp grid does not have
    (a meta.json that does not match its events).
    """
    topology = summary.topology
    if not (0 <= replica.dp < topology.dp_size and 0 <= replica.tp < topology.tp_size):
        raise ValueError(f"replica {replica.label} is outside tp {topology.tp_size} x "
                         f"dp {topology.dp_size}")
    highest = int(events["rank"].max()) if len(events) else -1
    if highest >= topology.world_size:
        raise ValueError(
            f"the events name rank {highest}, but meta.json says pp {topology.pp_size} x "
            f"tp {topology.tp_size} x dp {topology.dp_size} = {topology.world_size} ranks")
    mine = (events["dp_rank"] == replica.dp) & (events["tp_rank"] == replica.tp)
    return events[mine].reset_index(drop=True)


def pipeline_row_names(summary: RunSummary, replica: Replica = FIRST_REPLICA,
                       measured: bool = True) -> dict[int, str] | None:
    """Row names of a pipeline view: ``pp 1 (rank 2)``; None when rows are simply ranks."""
    topology = summary.topology
    if topology.world_size == topology.pp_size:
        return None
    return {pp: f"pp {pp}" + (f" (rank {topology.rank_of(pp, replica.dp, replica.tp)})"
                              if measured else "")
            for pp in range(topology.pp_size)}


def pipeline_caption(summary: RunSummary, replica: Replica = FIRST_REPLICA) -> str:
    """What the rows of a predicted-over-measured chart are, said on the chart."""
    if summary.tp_size == summary.dp_size == 1:
        return "rows are pipeline positions (here, one rank each)"
    return (f"rows are pipeline positions; measured: the ranks of replica {replica.label}, one "
            f"of tp {summary.tp_size} x dp {summary.dp_size} peers per position")


def rank_names(summary: RunSummary, ranks: Iterable[int]) -> dict[int, str] | None:
    """``rank 3 (pp 1 tp 1)`` for each of ``ranks`` of a tp/dp run; None when ranks are
    pipeline positions (no tp, no dp) or lie outside the run's grid."""
    topology = summary.topology
    ranks = sorted(int(r) for r in ranks)
    if topology.world_size == topology.pp_size or not ranks or ranks[-1] >= topology.world_size:
        return None
    names = {}
    for rank in ranks:
        coords = topology.coords(rank)
        parts = [f"pp {coords.pp}"] + [f"{name} {getattr(coords, name)}" for name in ("tp", "dp")
                                       if getattr(topology, f"{name}_size") > 1]
        names[rank] = f"rank {rank} ({' '.join(parts)})"
    return names


@dataclass(frozen=True)
class MeasuredStep:
    """One step of a recorded run, what the lab draws of it, and what the run says."""

    step: int
    events: pd.DataFrame  # that step's events, from time 0
    metrics: dict
    summary: RunSummary

    @property
    def number(self) -> int:
        """The step counted from 1, as the slider and the loss chart count it."""
        return self.summary.steps.index(self.step) + 1


def last_step(run: run_dirs.Run) -> MeasuredStep:
    """The run's last step (the first includes warm-up), with its metrics and summary."""
    summary = summarize(run)
    if not summary.steps:
        raise ValueError(f"{run.path} holds no events")
    events = one_step(run.events, summary.steps[-1])
    return MeasuredStep(summary.steps[-1], events, measured_metrics(events, summary), summary)


def measured_metrics(events: pd.DataFrame, summary: RunSummary) -> dict:
    """Metrics of measured events over every rank of the run (an idle rank's time is bubble)."""
    return timeline.metrics(events, summary.ranks_of(events))


def predicted_metrics(events: pd.DataFrame, summary: RunSummary) -> dict:
    """Metrics of a run's prediction over every pipeline position of it."""
    known = summary.pp_size is not None and int(events["rank"].max()) < summary.pp_size
    return timeline.metrics(events, range(summary.pp_size) if known else None)


def metrics_row(events: pd.DataFrame, metrics: dict, scale: float, unit: str) -> dict:
    """One row of a metrics table, times in the view's unit (``scale`` x event times)."""
    peaks = metrics.get("peak_activations") or {}
    return {
        "source": "measured" if metrics.get("source") == "measured" else "predicted",
        f"makespan ({unit})": round(float(metrics["makespan"]) * scale, 6),
        "bubble fraction (%)": round(100 * float(metrics["bubble_fraction"]), 2),
        "ranks": int(metrics.get("num_ranks", events["rank"].nunique())),
        "peak activations (microbatches, max over stages)": max(peaks.values(), default=0),
        "events": len(events),
    }


GAP_CAPTION = (
    "Each rank's step splits into compute (forwards, backwards, optimizer), communication "
    "(posting sends and receives, draining sends, all-reduces between steps), waiting on a "
    "dependency (blocked on a message, or idle: the bubble), contention (computation "
    "stretched by sharing a core) and overhead (Python and bookkeeping between actions); "
    "per rank, averaged over ranks, so the rows add up to the step time.")


def replayed(run: run_dirs.Run):
    """(calibration, prediction) of ``run``'s own schedule on the costs fitted from it;
    ValueError when the run cannot be calibrated or replayed."""
    from pplab.calibration import calibration_for, replay
    from pplab.calibration.run_prediction import schedule_of
    from pplab.classroom.passcode import in_classroom

    schedule_of(run)  # refuses a schedule too big to replay before any fitting
    calibration = calibration_for(run, save=not in_classroom())
    return calibration, replay(run, calibration)


def on_the_costs_of(run: run_dirs.Run, schedule=None):
    """``schedule`` predicted on ``run``'s calibration, interval and all (the run's own
    schedule, a replay, when None); ValueError when it cannot be."""
    from pplab.calibration import calibration_for, predict
    from pplab.calibration.run_prediction import schedule_of
    from pplab.classroom.passcode import in_classroom

    if schedule is None:
        return replayed(run)[1]
    schedule_of(run)  # the run must be one a calibration can read
    calibration = calibration_for(run, save=not in_classroom())
    layers = sum(calibration.layer_split)
    if schedule.num_stages > layers:
        raise ValueError(f"{schedule.num_stages} stages need at least {schedule.num_stages} "
                         f"layers; the run's model has {layers}")
    summary = summarize(run)
    return predict(calibration, schedule, replicas=summary.tp_size * summary.dp_size)


def gap_table(run: run_dirs.Run, calibration, prediction, step: int, scale: float,
              unit: str) -> pd.DataFrame:
    """Where step ``step``'s time went, measured and predicted, in the view's unit."""
    from pplab.calibration import gap_breakdown

    table = gap_breakdown(run, calibration, prediction, step=step)
    return pd.DataFrame({
        "per rank": table["what"],
        f"measured ({unit})": (table["measured (s)"] * scale).round(3),
        f"predicted ({unit})": (table["predicted (s)"] * scale).round(3),
        f"measured - predicted ({unit})": (table["gap (s)"] * scale).round(3),
    })


def interval_text(prediction, scale: float = 1e3, unit: str = "ms") -> str:
    """The prediction's interval in the view's unit: "an 80 % interval: 222.46 to 245.43 ms"
    and, for a replay, how many of the run's measured steps it holds."""
    bar = prediction.interval
    text = (f"{100 * bar.level:.0f} % of steps should take {scale * bar.low:.2f} to "
            f"{scale * bar.high:.2f} {unit} (predicted: the run's own spread of actions and "
            f"steps, and the model's known error)")
    times = prediction.measured.times if prediction.measured is not None else ()
    if times:
        inside = sum(bar.holds(t) for t in times)
        text += f"; {inside} of the run's {len(times)} steady steps did (measured)"
    return text


def terms_table(run: run_dirs.Run, calibration, prediction, step: int, scale: float,
                unit: str) -> pd.DataFrame:
    """What the model charges for each of its terms, measured and predicted, in the view's
    unit, with the measurement each comes from."""
    from pplab.calibration.breakdown import term_breakdown

    table = term_breakdown(calibration, prediction, run, step=step)
    return pd.DataFrame({
        "term (per rank)": table["term"],
        f"measured ({unit})": (table["measured (s)"] * scale).round(3),
        f"predicted ({unit})": (table["predicted (s)"] * scale).round(3),
        "measured as": table["measured as"],
    })
