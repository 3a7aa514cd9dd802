"""The pages' way to the server's shared answers and its work pool (the Streamlit side).

``shared_cache`` decorates a function whose answers every session shares, computed once in
the asking thread; they live in ``pplab.classroom.shared_results``, not in Streamlit's caches,
which a client's "clear cache" message empties for everyone. ``pooled`` sends heavy work to
``pplab.classroom.work_pool`` and waits for it in quarter seconds, redrawing a line of
progress each time: each redraw is a point where Streamlit stops a script whose session went
away or was rerun with other values, and the ``finally`` then releases the work, which the
pool cancels when no other session waits for it. A full pool is one line ("busy, try again")
and a button, not a stalled page; a request past its deadline is one line too.

    streamlit run app/lab.py
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import plotly.graph_objects as go
import streamlit as st

from pplab.classroom.shared_results import RESULTS
from pplab.classroom.work_pool import POOL, Busy, WorkPool

WAIT_SLICE_S = 0.25


def shared_cache(function: Callable) -> Callable:
    """``function`` with its answers kept for every session, keyed by its arguments' values
    (which must pickle). The answer is shared: whoever reads it never changes it."""
    @functools.wraps(function)
    def cached(*args, **kwargs):
        return RESULTS.here(function, *args, **kwargs)
    return cached


def _sentence(error: BaseException) -> str:
    text = str(error)
    return f"{text[:1].upper()}{text[1:]}."


def pooled(function: Callable, *args, what: str = "Working", lane: WorkPool = POOL, **kwargs):
    """``function(*args, **kwargs)`` (a module-level function of pplab) computed by the work
    pool, or the answer kept from an earlier ask; ValueError as the function raised it. Stops
    the page with one line when the pool is busy, the request ran out of time or its worker
    failed. ``lane`` is the pool it goes to (the Presenter has one of its own)."""
    lane.warm()
    try:
        ticket = RESULTS.submit(function, *args, label=what.lower(), lane=lane, **kwargs)
    except Busy as error:
        st.warning(_sentence(error))
        st.button("Try again", key=f"busy_{function.__name__}")
        st.stop()
    try:
        if not ticket.wait(0):
            started, line = time.monotonic(), st.empty()
            while not ticket.wait(WAIT_SLICE_S):
                line.caption(f"{what}… {time.monotonic() - started:.0f} s")
            line.empty()
        return ticket.result()
    except RuntimeError as error:  # OutOfTime, Cancelled, a worker that failed
        st.error(_sentence(error))
        st.stop()
    finally:
        ticket.release()


class ServedFigure(go.Figure):
    """A figure shared by every session, kept only as its plain form.

    ``st.plotly_chart`` asks a figure for ``to_dict()`` on every rerun of every session, and
    plotly builds it afresh each time (a deep copy of every trace, each array converted
    again), and it reads nothing else of the figure. A shared figure never changes once
    built (see ``shared_cache``), so it keeps that dict and none of plotly's objects: a
    Gantt's are about 2,000 Python objects, which the garbage collector walks on each full
    collection, holding every session's script, for every configuration a class has asked
    for (a full collection took 0.23 s with the Playground's 224 slider positions kept).
    The dict is about 300 objects, its template one object shared by every figure. Only
    ``to_dict`` works on a served figure: ``go.Figure(served.to_dict())`` makes a figure
    to change."""

    @classmethod
    def of(cls, figure: go.Figure) -> ServedFigure:
        served = object.__new__(cls)  # no plotly state at all: only the plain form below
        plain = figure.to_dict()
        layout = plain.get("layout", {})
        if "template" in layout:
            layout["template"] = _shared_template(layout["template"])
        served.__dict__["_served"] = plain
        return served

    def to_dict(self) -> dict:
        return self.__dict__["_served"]

    def __repr__(self) -> str:
        return f"ServedFigure({len(self.to_dict().get('data', []))} traces)"


_TEMPLATES: list[dict] = []  # the templates served figures carry, each kept once


def _shared_template(template: dict) -> dict:
    """The one kept copy equal to ``template`` (a figure's template is a copy of the
    process's default one: every figure drawn here carries the same)."""
    for kept in _TEMPLATES:
        if kept == template:
            return kept
    _TEMPLATES.append(template)
    return template
