"""Lesson 4a's widget: a rank's blocking calls under GPipe or 1F1B, in order, and whether
a blocking runtime gets through the step or which rank waits in which call
(``pplab.teaching.blocking``, the rule real gloo ranks follow in tests/test_runtime_lab.py)."""

from __future__ import annotations

import streamlit as st

from app.lesson_widgets.reading import choice, whole
from app.text_blocks import text_block
from pplab.schedules import build
from pplab.teaching.blocking import blocking_messages, blocking_run

DEFAULTS = {"schedule": "1f1b", "p": "2", "m": "4", "rank": "0"}
SCHEDULES = ("gpipe", "1f1b")


def show(config: dict[str, str]) -> dict[str, str]:
    cols = st.columns(4)
    schedule = cols[0].radio("Schedule", SCHEDULES, horizontal=True, key="l04a_schedule",
                             index=SCHEDULES.index(choice(config, DEFAULTS, "schedule",
                                                          SCHEDULES)))
    p = cols[1].slider("Pipeline depth p", 2, 6, whole(config, DEFAULTS, "p", 2, 6),
                       key="l04a_p")
    m = cols[2].slider("Microbatches m", 1, 12, whole(config, DEFAULTS, "m", 1, 12),
                       key="l04a_m")
    rank = cols[3].slider("Rank", 0, p - 1, min(whole(config, DEFAULTS, "rank", 0, 5), p - 1),
                          key="l04a_rank")
    built = build(schedule, p, m)
    calls = blocking_messages(built, rank)
    st.caption(f"Rank {rank}'s blocking calls under {schedule}, p = {p}, m = {m}, in the "
               f"order its actions ({' '.join(str(a)[1:] for a in built.actions[rank])}) "
               f"make them:")
    text_block("\n".join(f"{n + 1:>3}. {call}" for n, call in enumerate(calls)) or "(none)")
    stuck = blocking_run(built)
    if stuck is None:
        st.success("A blocking runtime gets through this step: every send meets its receive.")
    else:
        st.warning("A blocking runtime deadlocks here: "
                   + "; ".join(f"rank {r} waits in {call}" for r, call in sorted(stuck.items()))
                   + ". Post the receives ahead (irecv) and the sends no longer wait.")
    return {"schedule": schedule, "p": str(p), "m": str(m), "rank": str(rank)}
