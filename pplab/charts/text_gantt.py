"""A timeline as text: one row per rank, one letter per time slot, for terminals and logs.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8
"""

from __future__ import annotations

import math

from pplab.schedules import COMPUTE_KINDS
from pplab.timeline import EventKind

GANTT_COLUMNS = 100


def gantt_letters() -> dict[str, str]:
    """The letter of each busy event kind: the action kinds as schedules write them, O for
    the optimizer step."""
    return {**{kind: kind for kind in COMPUTE_KINDS}, EventKind.OPTIM: "O"}


def gantt_text(events, ranks=None, width: int = GANTT_COLUMNS) -> str:
    """One row per rank, one character per time slot: F, B, I, W, O (optimizer), '.' idle.

    ``ranks`` are the run's ranks (default: those with events), so a rank with nothing to do
    still gets its idle row. The slot is sized so a unit of work spans a few characters when
    the run is short and the whole run fits ~``width`` columns when it is long; the
    microbatch is written where it fits.
    """
    letters = gantt_letters()
    work = events[events["kind"].isin(tuple(letters))]
    if work.empty:
        return "(no compute events)"
    origin = float(events["start"].min())
    makespan = float(events["end"].max()) - origin
    if makespan <= 0:
        return "(every action takes no time: nothing to draw)"
    shortest = float((work["end"] - work["start"])[work["end"] > work["start"]].min())
    slot = makespan / width
    for per_unit in (3, 2, 1):
        if not math.isnan(shortest) and makespan / (shortest / per_unit) <= width:
            slot = shortest / per_unit
            break
    columns = max(1, math.ceil(makespan / slot - 1e-9))
    lines = []
    shown = events["rank"].unique() if ranks is None else ranks
    for rank in sorted(int(r) for r in shown):
        row = ["."] * columns
        mine = work[work["rank"] == rank]
        for kind, mb, start, end in zip(mine["kind"], mine["microbatch"], mine["start"],
                                        mine["end"], strict=True):
            first = round((start - origin) / slot)
            last = max(first + 1, round((end - origin) / slot))
            last = min(last, columns)
            label = letters[kind] + (str(mb) if mb >= 0 else "")
            cells = last - first
            text = label.ljust(cells) if len(label) <= cells else letters[kind] * cells
            row[first:last] = list(text[:cells])
        lines.append(f"rank {rank:>2} |{''.join(row)}|")
    lines.append(f"          one character = {slot:g} cost units; '.' idle, O optimizer")
    return "\n".join(lines)
