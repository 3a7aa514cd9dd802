"""How the charts look and what unit they speak: colours, names, patterns, time scales.

One colour per kind of work (F, B, I, W, optimizer, messages, idle) across every chart, one
pattern per model chunk so the chunks of an interleaved schedule can be told apart on one
rank's row, one rule for the unit a view shows its times in, and room for every legend entry
and title line (a legend that scrolls hides its last entries).

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
# plain, so schedules with one chunk per rank look as they always did. The others are a pale
# tint of the kind's colour under marks of the colour itself: told apart from chunk 0 at a
# glance even on a narrow bar (white marks on the full colour read as the same bar), and
# still the kind's colour.
CHUNK_PATTERNS = ("", ".", "x", "+", "-", "|")
CHUNK_PATTERN_NAMES = {"": "plain", ".": "dotted", "x": "crossed", "+": "gridded",
                       "-": "lined", "|": "striped"}

# Row geometry on a numeric y axis (row r sits at y = r, axis reversed so row 0 is on top).
ROW_BASE, ROW_WIDTH = -0.40, 0.56
STRIP_BASE, STRIP_WIDTH = 0.18, 0.22

LEGEND_ENTRY_PX = 22  # one line of a vertical legend, in Streamlit's theme too
TITLE_LINE_PX = 24  # one line of a title: a <br> adds one

SECONDS = "s"
COST_UNITS = "cost units"
MS_BELOW_S = 10.0  # a view whose longest timeline is shorter than this is shown in ms


CHUNK_TINT = 0.6  # how far a patterned chunk's background moves from its colour to white


def tint(colour: str, share: float) -> str:
    """``colour`` (``#RRGGBB``) moved ``share`` of the way to white."""
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(c + (255 - c) * share):02X}" for c in (red, green, blue))


def chunk_pattern(chunk: int, colour: str) -> dict:
    """The pattern chunk ``chunk`` wears over ``colour`` (empty for chunk 0: plain)."""
    shape = CHUNK_PATTERNS[chunk % len(CHUNK_PATTERNS)]
    return ({"shape": shape, "fgcolor": colour, "bgcolor": tint(colour, CHUNK_TINT), "size": 6,
             "solidity": 0.5} if shape else {})


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
    arrays = [np.asarray(column) for column in columns]
    table = np.empty((len(arrays[0]) if arrays else 0, len(arrays)), dtype=object)
    for i, array in enumerate(arrays):
        table[:, i] = array  # object cells hold Python numbers and str, as JSON wants them
    return table


def title_lines(title: str) -> int:
    """How many lines a figure's title takes (each ``<br>`` starts one)."""
    return 1 + title.count("<br>")


def fit_legend(traces: Sequence[dict], height: int, margin: dict) -> int:
    """``height``, raised where needed so that the vertical legend of a figure of ``traces``
    (trace dicts) lists every entry at once: a legend taller than the plot scrolls, and
    hides its last entries."""
    entries = len({trace.get("legendgroup") or trace.get("name") for trace in traces
                   if trace.get("showlegend") is not False and trace.get("name")})
    return max(height, margin["t"] + margin["b"] + LEGEND_ENTRY_PX * entries + 10)
