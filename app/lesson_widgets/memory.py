"""Lesson 2's widget: the activations each stage holds at its worst moment under GPipe and
1F1B, simulated, beside the lesson's count of in-flight microbatches."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app.lesson_widgets.reading import whole
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

DEFAULTS = {"p": "4", "m": "8"}


def show(config: dict[str, str]) -> dict[str, str]:
    left, right = st.columns(2)
    p = left.slider("Pipeline depth p", 2, 16, whole(config, DEFAULTS, "p", 2, 16), key="l02_p")
    m = right.slider("Microbatches m", 1, 64, whole(config, DEFAULTS, "m", 1, 64), key="l02_m")
    figure = go.Figure()
    peaks = {}
    for name in ("gpipe", "1f1b"):
        peaks[name] = metrics(simulate(build(name, p, m), CostModel()))["peak_activations"]
        stages = sorted(peaks[name])
        figure.add_bar(name=name, x=[f"stage {s}" for s in stages],
                       y=[peaks[name][s] for s in stages])
    figure.update_layout(barmode="group", title="Activations held at the worst moment "
                         "(predicted; unit: one microbatch's activations on one stage)",
                         yaxis_title="microbatches held")
    st.plotly_chart(figure, key="l02_peaks")
    worst = {name: max(values.values()) for name, values in peaks.items()}
    st.caption(f"GPipe's worst stage holds {worst['gpipe']} microbatches, 1F1B's "
               f"{worst['1f1b']}: the same bubble, {worst['gpipe'] / worst['1f1b']:.3g}x less "
               f"memory at the worst stage with 1F1B.")
    return {"p": str(p), "m": str(m)}
