"""Each lesson's widget, embedded in the Lessons page beside the lesson's text.

A widget is a module here named in ``WIDGETS`` for its lesson folder. It holds

* ``DEFAULTS``: the widget's configuration as text (``{"p": "4", "m": "8"}``), the values it
  opens with;
* ``show(config) -> dict``: draws the widget with Streamlit, starting from ``config`` (the
  page's query parameters merged over ``DEFAULTS``; a value it cannot read falls back to its
  default with a caption saying so, never an exception), and returns the configuration it
  shows now, as text, so the page can print a link that opens exactly this view.

Widget keys start with the lesson's number (``l05_``), so two widgets never share a key.

    streamlit run app/lab.py   (then open Lessons)
"""

from __future__ import annotations

import importlib
from types import ModuleType

WIDGETS = {
    "01-the-bubble": "bubble",
    "02-memory-gpipe-vs-1f1b": "memory",
    "03-zero-bubble": "zero_bubble",
    "04-write-your-own-schedule": "own_schedule",
    "04a-write-your-own-runtime": "blocking_runtime",
    "05-cutting-a-model-into-stages": "stage_split",
    "06-interleaved-1f1b": "interleaving",
    "07-pipedream-and-staleness": "staleness",
    "08-tensor-and-data-parallel": "tensor_data",
    "09-3d-parallelism-at-gpt-3-scale": "gpt3_3d",
    "10-measured-vs-predicted": "measured_vs_predicted",
    "11-zero-bubble-for-real": "overlapping_steps",
}


def widget_for(lesson_name: str) -> ModuleType | None:
    """The widget module of a lesson folder, or None when the lesson has none (yet)."""
    name = WIDGETS.get(lesson_name)
    if name is None:
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"{__name__}.{name}":
            return None
        raise
