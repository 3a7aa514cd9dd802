"""Presenter: one step (or a few) played forward in time in large type, for the projector.

Play, pause and scrub run in the browser; boxes are numbered by microbatch as in the papers'
figures; each box that starts is joined to the box it waited on, and the critical path (the
chain that sets the step's length) has a heavy outline. The address holds the view, so a link
reproduces it exactly: /presenter?schedule=1f1b&p=4&m=8. Several steps show where the
optimizer step falls between them: a barrier, or post-validation, where ZB-H2's steps overlap
(/presenter?schedule=zb-h2&p=4&m=8&steps=3&sync=post).

    streamlit run app/lab.py   (then open Presenter)
"""

import streamlit as st
from lesson_widgets.reading import choice, whole
from shared_work import pooled, shared_cache

from pplab.charts.presenter import presenter_gantt
from pplab.classroom.work_pool import PRESENTER_POOL
from pplab.limits import MAX_PRESENTER_BOXES
from pplab.schedules import build
from pplab.schedules.steps import OPTIMIZER_SYNCS, repeat_steps
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.teaching.presenter import walk
from pplab.timeline import metrics
from pplab.timeline.labels import fraction_text
from pplab.timeline.steady_state import steady_state

SCHEDULES = ("gpipe", "1f1b", "interleaved-1f1b", "zb-h1", "zb-h2")
DEFAULTS = {"schedule": "1f1b", "p": "4", "m": "8", "v": "2", "critical": "yes", "steps": "1",
            "sync": "barrier"}


@shared_cache
def _step(schedule: str, p: int, m: int, v: int, steps: int, sync: str):
    """The view's predicted events, their walk and its bubbles (steady state and first step,
    or the one step's), once for every session; ValueError for sizes the family refuses."""
    built = build(schedule, p, m, v if v > 1 else None)
    cost = CostModel(forward=1.0, backward=2.0, backward_input=1.0, backward_weight=1.0)
    if steps == 1:
        events = simulate(built, cost)
        return events, walk(events), (float(metrics(events)["bubble_fraction"]),)
    events = simulate(repeat_steps(built, steps), cost, optimizer_sync=sync)
    state = steady_state(events, range(p))
    return events, walk(events), (state["steady_state"]["bubble_fraction"],
                                  state["first_step"]["bubble_fraction"])


if "presenter_link" not in st.session_state:  # a link is read once, on arrival
    st.session_state["presenter_link"] = dict(st.query_params)
link = st.session_state["presenter_link"]
with st.sidebar:
    st.header("Presenter")
    schedule = st.selectbox("Schedule", SCHEDULES, key="presenter_schedule",
                            index=SCHEDULES.index(choice(link, DEFAULTS, "schedule", SCHEDULES)))
    p = st.slider("Pipeline depth p", 2, 8, whole(link, DEFAULTS, "p", 2, 8), key="presenter_p")
    m = st.slider("Microbatches m", 1, 16, whole(link, DEFAULTS, "m", 1, 16), key="presenter_m")
    v = (st.slider("Chunks v", 2, 4, whole(link, DEFAULTS, "v", 2, 4), key="presenter_v")
         if schedule == "interleaved-1f1b" else 1)
    steps = st.slider("Training steps", 1, 4, whole(link, DEFAULTS, "steps", 1, 4),
                      key="presenter_steps")
    sync = st.radio("Optimizer step", OPTIMIZER_SYNCS, horizontal=True, key="presenter_sync",
                    index=OPTIMIZER_SYNCS.index(choice(link, DEFAULTS, "sync", OPTIMIZER_SYNCS)),
                    disabled=steps == 1,
                    help="barrier: every rank waits for the slowest before the optimizer "
                         "step. post: each steps at once and validates during the next "
                         "step's warm-up (Qi et al., ICLR 2024, Sec. 4).")
    critical = st.toggle("Mark the critical path", key="presenter_critical",
                         value=choice(link, DEFAULTS, "critical", ("yes", "no")) == "yes")

kinds = 3 if schedule.startswith("zb") else 2  # F and B, or F, I and W
boxes = p * max(v, 1) * m * kinds * steps
if boxes > MAX_PRESENTER_BOXES:  # every box is drawn in every frame of the animation
    st.error(f"{boxes:,} boxes ({p} x {max(v, 1)} x {m} x {kinds} x {steps} steps) is more "
             f"than the Presenter animates ({MAX_PRESENTER_BOXES:,}, pplab.limits): fewer "
             f"steps, microbatches or chunks.")
    st.stop()
try:
    events, found, bubbles = _step(schedule, p, m, v, steps, sync)
except ValueError as error:
    st.error(f"Cannot build this schedule: {str(error).splitlines()[0]}")
    st.stop()
several = steps > 1
label = f"{schedule} p={p} m={m}" + (f" v={v}" if v > 1 else "")
what = f"{steps} steps, optimizer step: {sync}" if several else "one step"
# The figure's animation frames take seconds to build: once per view for every session, in
# the Presenter's own worker, so the projector never waits behind a student's ranking.
# what is shown on the title's line, how it was made under it: one line ran past 1280 px
st.plotly_chart(pooled(presenter_gantt, events, title=f"{label}: {what}",
                       subtitle="predicted, t_F = 1, t_B = 2", critical_path=critical,
                       what="Drawing the step", lane=PRESENTER_POOL), key="presenter_gantt")
if several:
    st.markdown(f"### Bubble {fraction_text(bubbles[0])} per step in the steady state ({sync}), "
                f"{fraction_text(bubbles[1])} in the first step; the critical path runs "
                f"through {len(found.critical)} of {len(found.boxes)} boxes")
else:
    st.markdown(f"### Bubble {fraction_text(bubbles[0])} of rank-time (idle rank-time / "
                f"(ranks x step)); the critical path runs through {len(found.critical)} of "
                f"{len(found.boxes)} boxes")
shown = {"schedule": schedule, "p": str(p), "m": str(m), "critical": "yes" if critical else "no"}
if several:
    shown.update(steps=str(steps), sync=sync)
if v > 1:
    shown["v"] = str(v)
st.query_params.from_dict(shown)
st.caption("A link to exactly this view: `/presenter?" + "&".join(f"{k}={v}" for k, v in
                                                              shown.items()) + "`")
