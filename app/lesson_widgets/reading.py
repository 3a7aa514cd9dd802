"""Reading a widget's configuration from text (a link's query parameters) without trusting it.

A value that is missing or unreadable falls back to the widget's default, and the widget says
so in a caption; nothing a link holds can raise. A value echoed back is shown literally
(``quoted``): a link such as ``?comparison=[re-enter the passcode](https://...)`` shows
those characters, never a live link, formatting or HTML inside the lab.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import streamlit as st

_PLAIN = re.compile(r"[\w .,+=/-]*")  # nothing markdown formats, links or escapes


def quoted(text: object, limit: int = 40) -> str:
    """``text``, cut to ``limit`` characters on one line, shown as typed: in quotes where it
    holds only letters, digits and a little punctuation, else as a markdown code span whose
    fence is longer than any run of backticks inside, so nothing in it is ever rendered (a
    link, an address that would turn into one, formatting, HTML)."""
    text = " ".join(str(text)[:limit].split())
    if _PLAIN.fullmatch(text) and "www" not in text.lower():
        return repr(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if not text or text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _bounded(config: Mapping[str, str], defaults: Mapping[str, str], name: str,
             low: float, high: float, kind: type, what: str):
    text = str(config.get(name, defaults[name])).strip()
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        st.caption(f"{name} = {quoted(text)} is not {what} from {low:g} to {high:g}; "
                   f"showing {name} = {defaults[name]}.")
        return kind(defaults[name])
    return value


def whole(config: Mapping[str, str], defaults: Mapping[str, str], name: str,
          low: int, high: int) -> int:
    """``config[name]`` as a whole number in [low, high], else the default, with a caption."""
    return _bounded(config, defaults, name, low, high, int, "a whole number")


def number(config: Mapping[str, str], defaults: Mapping[str, str], name: str,
           low: float, high: float) -> float:
    """``config[name]`` as a number in [low, high], else the default, with a caption."""
    return _bounded(config, defaults, name, low, high, float, "a number")


def choice(config: Mapping[str, str], defaults: Mapping[str, str], name: str,
           options: Sequence[str]) -> str:
    """``config[name]`` if it is one of ``options``, else the default, with a caption."""
    text = str(config.get(name, defaults[name])).strip()
    if text not in options:
        st.caption(f"{name} = {quoted(text)} is not one of {', '.join(options)}; "
                   f"showing {name} = {defaults[name]}.")
        return defaults[name]
    return text
