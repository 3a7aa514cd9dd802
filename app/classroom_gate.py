"""The instructor's gate: what starts processes, runs uploaded code or writes files asks first.

Outside classroom mode (the default, a lab on localhost) it is open to a browser on the lab's
own machine and to nobody else: a page served to another address (``streamlit run`` without
``--server.address`` listens on every interface) runs no code for it. In classroom mode a
session becomes the instructor's by typing the passcode ``pplab lab --classroom`` printed; the
check is ``pplab.classroom.passcode.passcode_matches`` (constant time), and wrong tries are
counted per client address across sessions, with a wait that grows
(``pplab.classroom.passcode_tries``).
"""

from __future__ import annotations

import secrets

import streamlit as st

from pplab.classroom.passcode import digest_problem, in_classroom, passcode_matches
from pplab.classroom.passcode_tries import TRIES
from pplab.limits import MAX_PASSCODE_TRIES


def session_key() -> str:
    """This browser session's own random key: the owner of what it starts."""
    return st.session_state.setdefault("classroom_session", secrets.token_hex(16))


def client_address() -> str | None:
    """The browser's address as the server sees it; None for this machine (loopback)."""
    address = st.context.ip_address  # Streamlit answers None for 127.0.0.1 and ::1
    return address if isinstance(address, str) and address else None


def is_instructor() -> bool:
    if in_classroom():
        return bool(st.session_state.get("classroom_instructor"))
    return client_address() is None  # outside a class, the lab is its own machine's user's


def instructor_only(purpose: str) -> bool:
    """True when this session may ``purpose`` (e.g. "start training"); otherwise says why,
    offers the passcode box where there is one, and returns False."""
    if is_instructor():
        return True
    address = client_address()
    if not in_classroom():
        st.warning(f"This lab is not in classroom mode and your browser connects from "
                   f"{address}: only a browser on the lab's own machine may {purpose}. To "
                   f"share it, start it with pplab lab --classroom.")
        return False
    st.info(f"Classroom mode: only the instructor can {purpose} here. Everything that reads "
            f"or simulates is yours to use.")
    problem = digest_problem()
    if problem:
        st.error(problem)
        return False
    wrong, wait = TRIES.wrong_tries(address), TRIES.wait_left(address)
    if wait > 0:
        ask = " Ask the instructor." if wrong >= MAX_PASSCODE_TRIES else ""
        st.error(f"{wrong} wrong passcodes from your address: the next try is taken in "
                 f"{wait:.0f} s.{ask}")
        return False
    if wrong:
        st.error(f"That is not the passcode ({wrong} wrong from your address).")
    # A new box after each try, so a passcode is never typed twice by a rerun.
    tries = st.session_state.get("classroom_tries", 0)
    typed = st.text_input("Instructor passcode", type="password", key=f"classroom_code_{tries}")
    if typed:
        st.session_state["classroom_tries"] = tries + 1
        if TRIES.attempt(address, lambda: passcode_matches(typed)):
            st.session_state["classroom_instructor"] = True
        st.rerun()
    return False


def sidebar_badge() -> None:
    if in_classroom():
        who = "instructor" if is_instructor() else "student"
        st.sidebar.caption(f"Classroom mode: you are the {who} in this session.")
