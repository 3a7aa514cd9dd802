"""The instructor's gate in classroom mode: what starts processes or writes files asks first.

Outside classroom mode (the default, a lab on localhost) everything is open and nothing here
draws anything. In classroom mode a session becomes the instructor's by typing the passcode
``pplab lab --classroom`` printed; the check is ``pplab.classroom.passcode.passcode_matches``
(constant
time), and a session gets a few tries only.
"""

from __future__ import annotations

import secrets

import streamlit as st

from pplab.classroom.passcode import in_classroom, passcode_matches
from pplab.limits import MAX_PASSCODE_TRIES


def session_key() -> str:
    """This browser session's own random key: the owner of what it starts."""
    return st.session_state.setdefault("classroom_session", secrets.token_hex(16))


def is_instructor() -> bool:
    return not in_classroom() or bool(st.session_state.get("classroom_instructor"))


def instructor_only(purpose: str) -> bool:
    """True when this session may ``purpose`` (e.g. "start training"); otherwise says why,
    offers the passcode box, and returns False."""
    if is_instructor():
        return True
    tries = st.session_state.get("classroom_tries", 0)
    st.info(f"Classroom mode: only the instructor can {purpose} here. Everything that reads "
            f"or simulates is yours to use.")
    if tries >= MAX_PASSCODE_TRIES:
        st.error(f"{MAX_PASSCODE_TRIES} wrong passcodes from this session: ask the instructor.")
        return False
    if tries:
        st.error(f"That is not the passcode ({MAX_PASSCODE_TRIES - tries} tries left).")
    # A new box after each wrong try, so a wrong passcode is never typed twice by a rerun.
    typed = st.text_input("Instructor passcode", type="password", key=f"classroom_code_{tries}")
    if typed:
        if passcode_matches(typed):
            st.session_state["classroom_instructor"] = True
        else:
            st.session_state["classroom_tries"] = tries + 1
        st.rerun()
    return False


def sidebar_badge() -> None:
    if in_classroom():
        who = "instructor" if is_instructor() else "student"
        st.sidebar.caption(f"Classroom mode: you are the {who} in this session.")
