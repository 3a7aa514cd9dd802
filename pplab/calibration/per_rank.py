"""What one rank carries in a step: the activations it holds at once, and the messages it sends.

``timeline.peak_activations`` counts microbatches per *stage*. A rank of an interleaved
schedule holds v stages (chunks), each 1/v of the rank's layers, so a chunk's microbatch
keeps about 1/v of the activations a whole rank's microbatch keeps: counting chunk
microbatches as whole ones overstates the memory v times. Here a rank's stages are summed
over time with a weight each: by default its share of the rank (1/v), which gives the peak
in *full-rank microbatches*; for a measured run, the bytes one microbatch of that stage
saved (measured), which gives bytes.

    python -c "from pplab.schedules import build; from pplab.sim.simulator import simulate; \
from pplab.calibration.per_rank import peak_activations_per_rank as f; \
print(f(simulate(build('interleaved-1f1b', 4, 8, 2))))"
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from pplab.calibration.costs import sends_remotely
from pplab.schedules.actions import Schedule
from pplab.timeline import COMPUTE_EVENT_KINDS, EventKind, peak_activations, peak_held

# The CPU engine counts what autograd saves, per stage; on CUDA the figure is the device's
# peak allocation, already per rank (weights included).
SAVED_PER_STAGE = "saved activations per stage"


def stage_shares(events: pd.DataFrame) -> dict[int, float]:
    """Each stage's share of its rank's model: 1 / (stages that rank computes).

    Equal chunks, as the cost model assumes (``CostModel.stage_factors``)."""
    compute = events[events["kind"].isin(COMPUTE_EVENT_KINDS) & (events["stage"] >= 0)]
    shares: dict[int, float] = {}
    for _, stages in compute.groupby("rank")["stage"].unique().items():
        shares.update({int(stage): 1.0 / len(stages) for stage in stages})
    return shares


def peak_held_per_rank(events: pd.DataFrame,
                       weights: Mapping[int, float] | None = None) -> dict[int, float]:
    """The most a rank holds at once: held microbatches of each of its stages times the
    stage's weight, summed, at the worst moment of the run (``timeline.peak_held``)."""
    return peak_held(events, "rank", stage_shares(events) if weights is None else weights)


def peak_activations_per_rank(events: pd.DataFrame) -> dict[int, float]:
    """Peak activations of every rank in full-rank microbatches (a chunk's counts 1/v)."""
    return peak_held_per_rank(events)


def measured_peak_bytes_per_rank(events: pd.DataFrame, metadata: Mapping) -> dict[int, float]:
    """A measured run's peak saved-activation bytes per rank, from its per-stage figures.

    The engine on CPU measures, per stage, the bytes autograd saves for one microbatch
    (``meta.json`` ``peak_memory_bytes`` is that times the stage's peak count); summed over a
    rank's stages along the measured timeline they give the rank's peak. ValueError for a
    run measured another way (CUDA reports one peak per rank already).
    """
    kind = str(metadata.get("peak_memory_kind", ""))
    if not kind.startswith(SAVED_PER_STAGE):
        raise ValueError(f"this run measured memory as {kind!r}, not {SAVED_PER_STAGE!r} per "
                         f"stage; its figures are not split by stage")
    counts = peak_activations(events)
    per_stage = {int(s): float(b) for s, b in metadata["peak_memory_bytes"].items()}
    per_microbatch = {s: per_stage[s] / counts[s] for s in per_stage if counts.get(s)}
    return peak_held_per_rank(events, per_microbatch)


def point_to_point_messages(schedule: Schedule) -> int:
    """Messages between ranks in ``schedule``: every F whose next stage lives on another rank
    sends its activation there, every B or I whose previous stage does sends its gradient.
    (The W half sends nothing.) For a flushed schedule that is one step's messages."""
    return sum(sends_remotely(schedule, action.stage, action.kind)
               for _, action in schedule.all_actions())


def sends_per_step(events: pd.DataFrame) -> dict[int, int]:
    """Send events of a timeline, counted per step (a measured run records one per message;
    the simulator only where messages cost time)."""
    sends = events[events["kind"] == EventKind.SEND]
    return {int(step): int(n) for step, n in sends.groupby("step").size().items()}
