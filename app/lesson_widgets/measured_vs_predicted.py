"""Lesson 10's widget: a bundled run three ways (naive prediction, calibrated replay,
measured), where its step's time goes, and a what-if predicted from its calibration."""

from __future__ import annotations

import streamlit as st

from app.lesson_widgets.reading import choice, whole
from pplab import charts
from pplab.exercises.run_comparison import (
    compare_run,
    gap_figure,
    lesson_runs,
    what_if_of,
)
from pplab.limits import MAX_WHAT_IF_MICROBATCHES
from pplab.timeline import metrics
from pplab.timeline.labels import fraction_text

DEFAULTS = {"run": "1f1b-p4m8", "schedule": "1f1b", "m": "16"}
WHAT_IF_SCHEDULES = ("gpipe", "1f1b", "zb-h1")


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f} ms"


def _three_ways(comparison) -> None:
    measured = comparison.step_ms("measured (ms)")
    cols = st.columns(3)
    for col, (what, column) in zip(cols, (("Naive prediction", "naive (ms)"),
                                          ("Calibrated replay", "calibrated (ms)"),
                                          ("Measured", "measured (ms)")), strict=True):
        value = comparison.step_ms(column)
        delta = None if column == "measured (ms)" else f"{value / measured - 1:+.1%} vs measured"
        col.metric(f"Step time ({what.lower()})", f"{value:.1f} ms", delta=delta,
                   delta_color="off")
    steps = [comparison.naive, comparison.replay.events, comparison.measured]
    figure = charts.gantt_stack(
        list(zip(("naive prediction: median F and B, free messages",
                  "calibrated replay", "measured, median steady step"), steps, strict=True)),
        units=[charts.SECONDS] * 3,
        title=f"{comparison.label}: naive, calibrated, measured<br><sup>rows are ranks; "
              f"time from the step's first forward</sup>")
    st.plotly_chart(figure, key="l10_gantt")


def _breakdown(comparison) -> None:
    st.dataframe(comparison.table.round(1), hide_index=True, key="l10_table")
    st.plotly_chart(gap_figure(comparison), key="l10_bars")
    st.caption("ms per rank: each rank's step is cut into compute (forwards, backwards, the "
               "optimizer), communication (posting sends and receives, draining sends), "
               "waiting on a dependency (blocked on a message, or idle: the bubble), contention "
               "(computation stretched by sharing a core) and overhead (Python between "
               "actions), averaged over the ranks, so each column adds up to its step time. "
               "The naive prediction only computes or idles.")


def _what_if(name: str, comparison, config: dict[str, str]) -> tuple[str, int]:
    st.subheader("What if: another schedule or microbatch count on the same costs")
    left, right = st.columns(2)
    default = choice(config, DEFAULTS, "schedule", WHAT_IF_SCHEDULES)
    schedule = left.selectbox("Schedule", WHAT_IF_SCHEDULES, key="l10_schedule",
                              index=WHAT_IF_SCHEDULES.index(default))
    m = right.number_input("Microbatches m", 1, MAX_WHAT_IF_MICROBATCHES, key="l10_m",
                           value=whole(config, DEFAULTS, "m", 1, MAX_WHAT_IF_MICROBATCHES))
    try:
        prediction, naive = what_if_of(name, schedule, int(m))
    except ValueError as error:
        st.warning(f"No prediction for {schedule} at m = {m}: {error}")
        return schedule, int(m)
    p = prediction.schedule.pp_size
    naive_step = float(metrics(naive, range(p))["makespan"])
    cols = st.columns(3)
    cols[0].metric("Step time (calibrated, predicted)", _ms(prediction.step_time))
    cols[1].metric("Bubble (calibrated, predicted)", fraction_text(prediction.bubble),
                   help="Idle rank-time over ranks x step time.")
    cols[2].metric("Step time (naive, predicted)", _ms(naive_step),
                   delta=f"{naive_step / prediction.step_time - 1:+.1%} vs calibrated",
                   delta_color="off")
    if prediction.shared:
        st.caption(f"The {p} ranks share the run's cores: predicted with processor sharing "
                   f"(as if on {comparison.calibration.contention.effective_slots:g} cores).")
    st.plotly_chart(charts.gantt(prediction.events, unit=charts.SECONDS,
                                 title=f"What-if {schedule} p={p} m={m} on the costs of "
                                       f"{name} (calibrated, predicted)"), key="l10_what_if")
    return schedule, int(m)


def show(config: dict[str, str]) -> dict[str, str]:
    runs = list(lesson_runs())
    if not runs:
        st.info("No bundled runs found in data/runs: this widget needs them.")
        return dict(DEFAULTS)
    defaults = DEFAULTS | {"run": DEFAULTS["run"] if DEFAULTS["run"] in runs else runs[0]}
    name = st.selectbox("Bundled run", runs, key="l10_run",
                        index=runs.index(choice(config, defaults, "run", runs)))
    try:
        comparison = compare_run(name)
    except ValueError as error:
        st.error(f"Cannot compare {name}: {error}")
        return {"run": name, "schedule": config.get("schedule", DEFAULTS["schedule"]),
                "m": config.get("m", DEFAULTS["m"])}
    sharing = comparison.calibration.contention
    st.caption(f"{sharing.ranks} ranks on {sharing.slots} {sharing.device} cores: "
               + ("they took turns, so the calibration divides the sharing out of every "
                  f"duration (as if on {sharing.effective_slots:g} cores)." if sharing.shared
                  else "one core each, so the timeline is shaped by the schedule, the "
                       "messages and the stages' own costs."))
    _three_ways(comparison)
    _breakdown(comparison)
    schedule, m = _what_if(name, comparison, config)
    return {"run": name, "schedule": schedule, "m": str(m)}
