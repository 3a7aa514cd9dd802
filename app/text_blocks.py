"""Plain text in a fixed-width block that scrolls sideways: a schedule as text, a calibration,
the planner's reasons, a rank's blocking calls.

``st.code`` draws its text through Streamlit's syntax highlighter, a 1.6 MB chunk of
JavaScript that every new browser tab evaluates before it shows the page; none of these
blocks is code to highlight. Measured on the Playground (its schedule text sits in an
expander, drawn with the page), a new tab took 2.9-3.3 s to draw with ``st.code`` and
2.2-2.4 s with this block, the same minute on this 2-core machine.

    streamlit run app/lab.py
"""

from __future__ import annotations

import html

import streamlit as st

# Streamlit's own code block, near enough: a light box on either theme, the text as written.
STYLE = ("white-space: pre; overflow-x: auto; margin: 0; padding: 0.75rem 1rem; "
         "border-radius: 0.5rem; background: rgba(128, 128, 128, 0.1); "
         "font-size: 0.85rem; line-height: 1.45")


def text_block(text: str, where=st) -> None:
    """``text`` as written, fixed-width, in ``where`` (the page, or a column or container)."""
    where.html(f'<pre class="pplab-text" style="{STYLE}">{html.escape(text)}</pre>')
