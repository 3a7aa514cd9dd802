"""Plotly figures over the Event table: the pictures the lab, the notebooks and the lessons share.

Every function is pure: it takes events (or numbers derived from them) and returns a
``plotly.graph_objects.Figure``; nothing here knows about Streamlit, so a notebook draws exactly
what the app draws. The modules:

* ``gantt``     the timeline, one row per rank, idle shaded, chunks patterned; stacks of them
* ``rows``      what a timeline's rows hold: stages, chunks, idle gaps, tick labels
* ``binning``   how a timeline of tens of thousands of events stays drawable
* ``summaries`` activations held per stage, time per rank, loss, memory
* ``style``     colours, names, patterns, and the one time unit of a view

    python -c "from pplab import charts, simulator; from pplab.schedules import build; \
charts.gantt(simulator.simulate(build('1f1b', 4, 8), simulator.CostModel())).show()"
"""

from pplab.charts.binning import AGGREGATE_ABOVE, AGGREGATE_BINS, MIXED_SHARE, aggregate, coverage
from pplab.charts.gantt import gantt, gantt_stack
from pplab.charts.rows import chunk_of, idle_spans, row_labels, stages_by_row
from pplab.charts.style import (
    ALL_KINDS,
    CHUNK_PATTERNS,
    COST_UNITS,
    KIND_COLOURS,
    KIND_NAMES,
    ROW_KINDS,
    SECONDS,
    STRIP_KINDS,
    shared_time_scale,
    source_of,
    time_scale,
    unit_of,
)
from pplab.charts.summaries import (
    LOSS_DIGITS,
    coinciding,
    figure_points,
    loss_curves,
    memory_breakdown,
    memory_per_rank,
    peak_activations,
    rank_utilisation,
)

__all__ = [
    "gantt", "gantt_stack", "idle_spans", "row_labels", "stages_by_row", "chunk_of",
    "aggregate", "coverage", "AGGREGATE_ABOVE", "AGGREGATE_BINS", "MIXED_SHARE",
    "peak_activations", "rank_utilisation", "loss_curves", "coinciding", "LOSS_DIGITS",
    "memory_per_rank",
    "memory_breakdown", "figure_points",
    "time_scale", "shared_time_scale", "unit_of", "source_of", "SECONDS", "COST_UNITS",
    "KIND_COLOURS", "KIND_NAMES", "ROW_KINDS", "STRIP_KINDS", "ALL_KINDS", "CHUNK_PATTERNS",
]
