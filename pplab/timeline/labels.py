"""How the lab says its numbers in words: fractions, steps, and what a bubble is measured over.

Pages, the CLI and notebooks print these the same way, so a learner reads "27.27 % (3/11)"
and "step 3 of 6" everywhere alike. Steps are counted from 1 for people (the Event table
counts from 0).

    python -c "from pplab.timeline.labels import fraction_text; print(fraction_text(3 / 11))"
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from pplab.schedules import Schedule

BUBBLE_OVER_ONE_STEP = "idle rank-time / (ranks × makespan) over one training step"


def fraction_text(value: float) -> str:
    """27.27 % (3/11): the percentage, and the small fraction it is when there is one."""
    close = Fraction(value).limit_denominator(200)
    exact = abs(float(close) - value) < 1e-9 and close.denominator > 1
    return f"{100 * value:.2f} %" + (f" ({close.numerator}/{close.denominator})" if exact else "")


def step_label(step: int, steps: Sequence[int]) -> str:
    """``step 3 of 6`` for the event table's step number ``step`` among the run's ``steps``."""
    ordered = sorted(steps)
    return f"step {ordered.index(step) + 1} of {len(ordered)}"


def bubble_normalisation(schedule: Schedule) -> str:
    """What the bubble fraction of ``schedule`` is measured over, in words."""
    if schedule.is_async:  # no flush, so no step boundary to cut at
        return (f"idle rank-time / (ranks × makespan) over the whole run of "
                f"{schedule.num_steps} steps, since {schedule.name} never flushes")
    return BUBBLE_OVER_ONE_STEP


# An asynchronous schedule's steps overlap, so a step's own events span part of its
# neighbours' work: measured over one step they show that step's fill and drain alone.
ASYNC_STEP_BUBBLE = ("per step: this step's own microbatches over their span; the steps of a "
                     "schedule that never flushes overlap, so the other steps' work inside "
                     "that span counts as idle here (the step's fill and drain alone), not "
                     "the run's bubble")


def bubble_scope(is_async: bool, whole_run: bool, num_steps: int | None = None) -> str:
    """Which bubble a figure is, in a few words: one step, or the whole asynchronous run."""
    if not is_async:
        return "one step"
    if whole_run:
        return f"whole run ({num_steps} steps, no flush)" if num_steps else "whole run"
    return "one step's own microbatches (steps overlap)"


# What starts formatting, a link, HTML or LaTeX in Streamlit's markdown, wherever it stands.
_MARKDOWN_SPECIALS = "\\`*_[]<>~$|#"


def plain_text(text: object) -> str:
    """``text`` escaped so that Streamlit's markdown shows it as typed: a folder named
    ``**run**`` or ``[x](http://…)`` is a name, never formatting or a link."""
    return "".join(f"\\{ch}" if ch in _MARKDOWN_SPECIALS else ch for ch in str(text))
