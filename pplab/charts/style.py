"""How the charts look and what unit they speak: colours, names, patterns, time scales.

One colour per kind of work (F, B, I, W, optimizer, messages, idle) across every chart, one
pattern per model chunk so the chunks of an interleaved schedule can be told apart on one
rank's row, and one rule for the unit a view shows its times in.

    python -c "from pplab.charts.style import KIND_NAMES; print(KIND_NAMES)"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pplab.schedules import BACKWARD_INPUT, BACKWARD_WEIGHT, FORWARD, FULL_BACKWARD
from pplab.timeline import COMM_EVENT_KINDS, COMPUTE_EVENT_KINDS, EventKind

STRIP_KINDS = COMM_EVENT_KINDS  # drawn as a thin strip under the compute bar
ROW_KINDS = COMPUTE_EVENT_KINDS + (EventKind.OPTIM, EventKind.WAIT)
ALL_KINDS = ROW_KINDS + STRIP_KINDS

KIND_COLOURS: dict[str, str] = {
    FORWARD: "#4C78A8",
    FULL_BACKWARD: "#F58518",
    BACKWARD_INPUT: "#E45756",
    BACKWARD_WEIGHT: "#72B7B2",
    EventKind.OPTIM: "#54A24B",
    EventKind.WAIT: "#EECA3B",
    EventKind.SEND: "#9D755D",
    EventKind.RECV: "#B279A2",
    EventKind.ALLREDUCE: "#FF9DA6",
    "idle": "#EEEEEE",
}
KIND_NAMES: dict[str, str] = {
    FORWARD: "F forward",
    FULL_BACKWARD: "B full backward",
    BACKWARD_INPUT: "I backward (input grad)",
    BACKWARD_WEIGHT: "W backward (weight grad)",
    EventKind.OPTIM: "optimizer step",
    EventKind.WAIT: "wait",
    EventKind.SEND: "send",
    EventKind.RECV: "recv",
    EventKind.ALLREDUCE: "all-reduce",
    "idle": "idle (bubble)",
}
# Patterns name their background colour: Streamlit's chart theme otherwise paints it in the
# page's colour, and a white-dotted bar on a white page disappears.
IDLE_PATTERN = {"shape": "/", "fgcolor": "#BBBBBB", "bgcolor": "#EEEEEE", "size": 6}

# Chunk c of a rank (its c-th stage, counting up) wears CHUNK_PATTERNS[c % len]: chunk 0 is
# plain, so schedules with one chunk per rank look as they always did.
CHUNK_PATTERNS = ("", ".", "x", "+", "-", "|")
CHUNK_PATTERN_NAMES = {"": "plain", ".": "dotted", "x": "crossed", "+": "gridded",
                       "-": "lined", "|": "striped"}

# Row geometry on a numeric y axis (row r sits at y = r, axis reversed so row 0 is on top).
ROW_BASE, ROW_WIDTH = -0.40, 0.56
STRIP_BASE, STRIP_WIDTH = 0.18, 0.22

SECONDS = "s"
COST_UNITS = "cost units"
MS_BELOW_S = 10.0  # a view whose longest timeline is shorter than this is shown in ms


def chunk_pattern(chunk: int, colour: str) -> dict:
    """The pattern chunk ``chunk`` wears over ``colour`` (empty for chunk 0: plain)."""
    shape = CHUNK_PATTERNS[chunk % len(CHUNK_PATTERNS)]
    return ({"shape": shape, "fgcolor": "white", "bgcolor": colour, "size": 5, "solidity": 0.35}
            if shape else {})


def chunk_name(chunk: int) -> str:
    return f"chunk {chunk} ({CHUNK_PATTERN_NAMES[CHUNK_PATTERNS[chunk % len(CHUNK_PATTERNS)]]})"


def unit_of(events: pd.DataFrame, unit: str | None = None) -> str:
    """What the event times are in: ``unit`` if given, else seconds for measured events."""
    if unit is not None:
        return unit
    measured = len(events) and (events["source"] == "measured").any()
    return SECONDS if measured else COST_UNITS


def shared_time_scale(timelines: Sequence[pd.DataFrame],
                      units: Sequence[str | None] | None = None) -> tuple[float, str] | None:
    """The one (factor, unit name) every timeline of a view is drawn in, or None if they differ.

    Seconds are shown in ms when the longest timeline is shorter than ``MS_BELOW_S``; cost
    units are shown as they are. A view mixing seconds with cost units has no one unit: the
    caller should calibrate the predictions first (``pplab.calibration.run_prediction``).
    """
    units = list(units) if units is not None else [None] * len(timelines)
    if len(units) != len(timelines):
        raise ValueError(f"got {len(timelines)} timelines but {len(units)} units")
    names = {unit_of(events, unit) for events, unit in zip(timelines, units, strict=True)}
    if len(names) > 1:
        return None
    name = names.pop() if names else COST_UNITS
    if name != SECONDS:
        return 1.0, name
    span = max((float(e["end"].max() - e["start"].min()) for e in timelines if len(e)),
               default=0.0)
    return (1e3, "ms") if span < MS_BELOW_S else (1.0, SECONDS)


def time_scale(events: pd.DataFrame, unit: str | None = None) -> tuple[float, str]:
    """The factor from one timeline's event times to displayed times, and the unit's name."""
    return shared_time_scale([events], [unit])


def source_of(events: pd.DataFrame) -> str:
    """'measured', 'predicted' or 'mixed': every number the lab shows says which it is."""
    sources = set(events["source"].unique()) if len(events) else {"simulated"}
    if sources == {"measured"}:
        return "measured"
    if sources == {"simulated"}:
        return "predicted"
    return "mixed"


def hover_data(*columns) -> np.ndarray:
    """Columns side by side for ``customdata``, each keeping its type (numbers stay numbers,
    so the hover's number formats apply)."""
    return pd.DataFrame({i: np.asarray(c) for i, c in enumerate(columns)}).to_numpy(dtype=object)
