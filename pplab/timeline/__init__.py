"""The Event table both executors write, the metrics read from it, and its exports.

``events`` holds the schema, ``analysis`` the makespan, bubble and peaks, ``trace`` the Chrome
trace and CSV; the names below are the ones pages, commands and lessons use, so they can
write ``from pplab.timeline import metrics`` without knowing which file holds what.
"""

from pplab.timeline.analysis import metrics, peak_activations, peak_held
from pplab.timeline.events import (
    BUSY_KINDS,
    COMM_EVENT_KINDS,
    COMPUTE_EVENT_KINDS,
    COORDINATE_COLUMNS,
    EVENT_COLUMNS,
    EVENT_DEFAULTS,
    SPLIT_KEYS,
    TP_DETAIL_PREFIX,
    EventKind,
    events_frame,
    events_from_columns,
)
from pplab.timeline.trace import EXTRA_TRACK_BASE, chrome_trace, events_to_csv_text

__all__ = ["BUSY_KINDS", "COMM_EVENT_KINDS", "COMPUTE_EVENT_KINDS", "COORDINATE_COLUMNS",
           "EVENT_COLUMNS", "EVENT_DEFAULTS", "EXTRA_TRACK_BASE", "EventKind", "SPLIT_KEYS",
           "TP_DETAIL_PREFIX", "chrome_trace", "events_frame", "events_from_columns",
           "events_to_csv_text", "metrics", "peak_activations", "peak_held"]
