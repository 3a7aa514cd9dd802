"""Reading a widget's configuration from text (a link's query parameters) without trusting it.

A value that is missing or unreadable falls back to the widget's default, and the widget says
so in a caption; nothing a link holds can raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import streamlit as st


def _bounded(config: Mapping[str, str], defaults: Mapping[str, str], name: str,
             low: float, high: float, kind: type, what: str):
    text = str(config.get(name, defaults[name])).strip()
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        st.caption(f"{name} = {text[:40]!r} is not {what} from {low:g} to {high:g}; "
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
        st.caption(f"{name} = {text[:40]!r} is not one of {', '.join(options)}; "
                   f"showing {name} = {defaults[name]}.")
        return defaults[name]
    return text
