"""A runtime file that copies pplab's own executor gets no points.

The guard already keeps pplab out of the learner's process: ``import pplab`` and reading its
files are refused. What it cannot see is source pasted into the file. This check reads the
file as text (it never runs it) and counts the lines it shares with pplab's executor, its
communication and its stage code (``pplab/engine/executor.py``, ``comms.py``, ``stage.py``,
``optimizer_sync.py``): lines of real code, compared with their spacing and comments
removed, long enough that two people writing the same runtime would not write them alike.
A few shared lines are chance; ``COPIED_LINES`` of them are a copy.

    python -c "from pplab.exercises.runtime_copies import copied_lines; print(copied_lines(''))"
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

SOURCES = ("executor.py", "comms.py", "stage.py", "optimizer_sync.py")
MIN_CHARS = 28  # shorter lines ("out = stage(x)") are what anyone writes
COPIED_LINES = 3


def _normal(line: str) -> str:
    code = line.split("#", 1)[0]
    return "".join(code.split())


@lru_cache(maxsize=1)
def _pplab_lines() -> frozenset[str]:
    engine = Path(__file__).resolve().parents[1] / "engine"
    lines = set()
    for name in SOURCES:
        for line in (engine / name).read_text().splitlines():
            code = _normal(line)
            if len(code) >= MIN_CHARS and not code.startswith(("\"", "'", "f\"")):
                lines.add(code)
    return frozenset(lines)


def copied_lines(text: str) -> str | None:
    """Why the file is refused as a copy of pplab's executor, or None."""
    known = _pplab_lines()
    shared = [line.strip() for line in text.splitlines() if _normal(line) in known]
    if len(shared) < COPIED_LINES:
        return None
    shown = "; ".join(shared[:2])
    return (f"refused: {len(shared)} lines of the file are pplab's own executor's "
            f"(pplab/engine/{', '.join(SOURCES)}), e.g. {shown[:200]}: the lab grades a "
            f"runtime you wrote")
