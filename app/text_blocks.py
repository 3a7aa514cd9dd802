"""Plain text in a fixed-width block that scrolls sideways: a schedule as text, a calibration,
the planner's reasons, a rank's blocking calls, the commands a lesson asks you to type.

``st.code`` draws its text through Streamlit's syntax highlighter, a 1.6 MB chunk of
JavaScript that every new browser tab evaluates before it shows the page; none of these
blocks is code to highlight. Measured on the Playground (its schedule text sits in an
expander, drawn with the page), a new tab took 2.9-3.3 s to draw with ``st.code`` and
2.2-2.4 s with this block, the same minute on this 2-core machine. A lesson's fenced blocks
are shell commands (``markdown_with_text_blocks``); the highlighter cost lesson 5's page
0.42 s of the browser's time in a new tab (profiled with Chromium's sampling profiler).

    streamlit run app/lab.py
"""

from __future__ import annotations

import html
import re

import streamlit as st

# Streamlit's own code block, near enough: a light box on either theme, the text as written.
STYLE = ("white-space: pre; overflow-x: auto; margin: 0; padding: 0.75rem 1rem; "
         "border-radius: 0.5rem; background: rgba(128, 128, 128, 0.1); "
         "font-size: 0.85rem; line-height: 1.45")


def text_block(text: str, where=st) -> None:
    """``text`` as written, fixed-width, in ``where`` (the page, or a column or container)."""
    where.html(f'<pre class="pplab-text" style="{STYLE}">{html.escape(text)}</pre>')


# A fenced block at the start of a line: ```bash, the text, ``` (the lessons' commands).
FENCED = re.compile(r"^```[\w+-]*\n(.*?)\n```[ \t]*$", re.MULTILINE | re.DOTALL)


def markdown_with_text_blocks(text: str, where=st) -> None:
    """Markdown ``text`` with each fenced block drawn as a ``text_block``: the prose between
    blocks as markdown, the blocks as written."""
    start = 0
    for block in FENCED.finditer(text):
        if prose := text[start:block.start()].strip():
            where.markdown(prose)
        text_block(block.group(1), where)
        start = block.end()
    if prose := text[start:].strip():
        where.markdown(prose)
