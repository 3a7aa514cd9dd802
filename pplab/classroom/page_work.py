"""What the lab's pages compute, as plain functions of plain values, so any process can run them.

The lab's pages ask for the same few things: a schedule simulated (a family, an uploaded CSV,
an order searched under a memory cap) and the planner's ranking of every layout of a cluster.
Written here as functions of numbers, text and frozen dataclasses, one such call can run in
the server (a small family) or in a worker of ``pplab.classroom.work_pool`` (anything that
takes more than about half a second), and its answer is keyed by what it was asked, never by
a file's name: the same CSV uploaded as ``a.csv`` and as ``b.csv`` is one computation
(``pplab.classroom.shared_results``).

    python -c "from pplab.classroom.page_work import family_order; from pplab.sim.simulator \\
    import CostModel; print(family_order('1f1b', 4, 8, 1, CostModel()).metrics['makespan'])"
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pplab import timeline
from pplab.planner import (
    Candidate,
    ClusterSpec,
    Layout,
    ModelSpec,
    NoFeasiblePlan,
    PlanResult,
    evaluate,
    pipeline_events,
    plan,
)
from pplab.schedules import SCHEDULES, Schedule, build, schedule_from_csv_text, validate
from pplab.schedules.steps import repeat_steps
from pplab.sim.search import memory_capped_1f1b, search_schedule
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline.steady_state import steady_state

# A family above this many actions goes to the work pool: simulating it and drawing its
# figures takes more than about half a second on a 2-core laptop (interleaved-zb at p=16,
# m=64, v=8 is 24,576 actions and 0.9 s).
HEAVY_ACTIONS = 8192


@dataclass(frozen=True)
class Simulated:
    """One schedule and its predicted timeline; shared by every session, never changed."""

    schedule: Schedule
    events: pd.DataFrame
    metrics: dict


def simulated(schedule: Schedule, cost: CostModel, steps: int = 1,
              optimizer_sync: str | None = None) -> Simulated:
    """``schedule`` simulated; with ``steps`` > 1 (a synchronous one) that many steps, their
    optimizer steps placed by ``optimizer_sync`` (default a barrier), and the metrics hold
    the first step and the steady state apart (``timeline.steady_state``)."""
    if steps > 1 and not schedule.is_async:
        schedule = repeat_steps(schedule, steps)
        optimizer_sync = optimizer_sync or "barrier"
    elif schedule.is_async:
        optimizer_sync = None
    events = simulate(schedule, cost, optimizer_sync=optimizer_sync)
    # every rank counts, an idle one too
    metrics = timeline.metrics(events, range(schedule.pp_size))
    if optimizer_sync is not None:
        metrics.update(steady_state(events, range(schedule.pp_size)),
                       optimizer_sync=optimizer_sync)
    return Simulated(schedule, events, metrics)


def family_actions(name: str, pp_size: int, num_microbatches: int, num_chunks: int) -> int:
    """About how many actions ``build(name, ...)`` makes: what decides where it runs."""
    family = SCHEDULES.get(name)
    per = family.actions_per_microbatch if family is not None else 3
    return pp_size * max(1, num_chunks) * num_microbatches * per


def family_order(name: str, pp_size: int, num_microbatches: int, num_chunks: int,
                 cost: CostModel, steps: int = 1,
                 optimizer_sync: str | None = None) -> Simulated:
    """A registered family built and simulated (``steps`` of it, see ``simulated``);
    ValueError for sizes it does not take."""
    return simulated(build(name, pp_size, num_microbatches, num_chunks), cost, steps,
                     optimizer_sync)


def csv_order(csv_text: str, cost: CostModel, steps: int = 1,
              optimizer_sync: str | None = None) -> Simulated:
    """An uploaded order, checked (it may deadlock or miss work) and simulated."""
    return simulated(validate(schedule_from_csv_text(csv_text, name="custom")), cost, steps,
                     optimizer_sync)


def searched_order(pp_size: int, num_microbatches: int, cost: CostModel,
                   max_in_flight: int) -> Simulated:
    """The order ``pplab search`` finds for these costs under the memory cap, simulated."""
    return simulated(search_schedule(pp_size, num_microbatches, cost, max_in_flight), cost)


def capped_1f1b(pp_size: int, num_microbatches: int, max_in_flight: int,
                cost: CostModel) -> Simulated:
    """1F1B with its warm-up cut to the cap: what a searched order is measured against."""
    return simulated(memory_capped_1f1b(pp_size, num_microbatches, max_in_flight), cost)


def layout_estimate(model: ModelSpec, cluster: ClusterSpec, global_batch: int,
                    layout: dict) -> tuple[Candidate | None, str]:
    """(one layout timed and sized by the planner, "") or (None, the rule it breaks)."""
    try:
        return evaluate(model, cluster, global_batch, **layout), ""
    except ValueError as error:
        return None, str(error).splitlines()[0]


def one_pipeline(model: ModelSpec, cluster: ClusterSpec, layout: Layout) -> pd.DataFrame:
    """The simulated events of one pipeline of a planner layout (seconds)."""
    return pipeline_events(model, cluster, layout)


def ranked_layouts(model: ModelSpec, cluster: ClusterSpec, global_batch: int,
                   max_pp: int | None = None) -> tuple[PlanResult | None, str]:
    """(the planner's ranking, "") or (None, the one line saying why nothing fits); with
    ``max_pp``, pipelines deeper than that are not ranked (the Planner page's bound: a
    deeper one takes seconds per simulated step)."""
    gpus = cluster.num_gpus
    depths = None if max_pp is None else \
        [pp for pp in range(1, min(max_pp, gpus) + 1) if gpus % pp == 0]
    try:
        return plan(model, cluster, global_batch, pp_sizes=depths), ""
    except NoFeasiblePlan as error:  # it carries the whole plan: too much to send back
        return None, str(error)
