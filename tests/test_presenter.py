"""The presenter's Gantt: its frames are the simulator's events, cut at each moment; the box
each box waited on and the critical path follow from the dependencies.

    .venv/bin/python -m pytest -q tests/test_presenter.py
"""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import ROOT
from lanes import fast_first
from streamlit.testing.v1 import AppTest

from pplab.charts.presenter import presenter_gantt
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.teaching.presenter import compute_boxes, walk
from pplab.timeline.labels import fraction_text

CASES = [("gpipe", 4, 4, None), ("interleaved-1f1b", 2, 4, 2), ("1f1b", 4, 8, None),
         ("zb-h1", 3, 6, None)]
COST = CostModel(forward=1.0, backward=2.0, backward_input=1.2, backward_weight=0.8)


def _frame_boxes(frame) -> set[tuple]:
    found = set()
    for trace in frame.data:
        if trace.type != "bar":
            continue
        for base, width, (rank, kind, mb, _end) in zip(trace.base, trace.x, trace.customdata,
                                                     strict=True):
            found.add((int(rank), str(kind), int(mb), round(float(base), 9),
                       round(float(base + width), 9)))
    return found


@pytest.mark.parametrize("name,p,m,v", fast_first(2, CASES))
def test_every_frame_is_the_simulated_step_cut_at_its_moment(name, p, m, v):
    events = simulate(build(name, p, m, v), COST)
    figure = presenter_gantt(events, frames=12)
    boxes = compute_boxes(events)
    assert len(figure.frames) == 12
    for frame in figure.frames:
        moment = float(frame.name)
        started = boxes[boxes["start"] < moment - 1e-9 * max(1.0, moment)]
        expected = {(int(b.rank), str(b.kind), int(b.microbatch), round(float(b.start), 9),
                     round(min(float(b.end), moment), 9)) for b in started.itertuples()}
        got = _frame_boxes(frame)
        assert len(got) == len(expected), frame.name
        # frame names are rounded to 4 digits: compare which boxes have started, and where
        assert {g[:4] for g in got} == {e[:4] for e in expected}, frame.name
    assert _frame_boxes(figure.frames[-1]) == {
        (int(b.rank), str(b.kind), int(b.microbatch), round(float(b.start), 9),
         round(float(b.end), 9)) for b in boxes.itertuples()}, "the last frame is the step"


@pytest.mark.parametrize("name,p,m,v", fast_first(2, CASES))
def test_the_critical_path_runs_without_a_gap_from_start_to_end(name, p, m, v):
    for latency in (0.0, 0.25):
        events = simulate(build(name, p, m, v), CostModel(
            forward=1.0, backward=2.0, backward_input=1.2, backward_weight=0.8,
            latency=latency))
        found = walk(events)
        boxes = found.boxes
        path = boxes.loc[list(found.critical)]
        assert path["start"].iloc[0] == pytest.approx(boxes["start"].min())
        assert path["end"].iloc[-1] == pytest.approx(boxes["end"].max())
        for before, after in zip(path.itertuples(), path.iloc[1:].itertuples(), strict=False):
            hop = latency if before.rank != after.rank else 0.0
            assert after.start == pytest.approx(before.end + hop), (before, after)
        # every box waited on one that ended no later than it started
        for index, source in enumerate(found.waited_on):
            if source >= 0:
                assert boxes.at[source, "end"] <= boxes.at[index, "start"] + 1e-9


def test_boxes_are_numbered_by_microbatch():
    figure = presenter_gantt(simulate(build("gpipe", 2, 3), COST), frames=4)
    bars = [t for t in figure.frames[-1].data if t.type == "bar"]
    assert sorted(int(text) for t in bars for text in t.text) == sorted(list(range(3)) * 4)
    assert np.all([t.textfont.size >= 20 for t in bars]), "large type, for a projector"


def test_the_presenter_page_opens_from_a_link_and_refuses_a_bad_value(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(str(ROOT / "app" / "lab.py"), default_timeout=120)
    app.query_params.update({"schedule": "gpipe", "p": "3", "m": "lots"})
    app.run()
    app.switch_page("views/presenter.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="presenter_schedule").value == "gpipe"
    assert app.slider(key="presenter_p").value == 3
    assert app.slider(key="presenter_m").value == 8
    assert any("'lots' is not a whole number" in c.value for c in app.caption)
    assert any("/presenter?schedule=gpipe&p=3&m=8&critical=yes" in c.value for c in app.caption)
    bubble = fraction_text(2 / 10)  # (p - 1) / (m + p - 1) at p = 3, m = 8
    assert any(m.value.startswith(f"### Bubble {bubble} of rank-time") for m in app.markdown)


@pytest.mark.parametrize("p", fast_first(1, [2, 4, 8]))
def test_the_presenter_fits_a_projector_with_nothing_drawn_over_the_title(p):
    from pplab.charts.presenter import FIT_PX

    figure = presenter_gantt(simulate(build("1f1b", p, 8), COST), frames=40)
    layout = figure.layout
    assert layout.height <= FIT_PX + 20, "the slider stays above the fold of a 720 px screen"
    # the title on top, the legend just above the rows, the buttons and slider under the axis
    assert layout.title.yref == "container" and layout.legend.y > 1
    assert layout.updatemenus[0].y <= 0 and layout.sliders[0].y <= 0
    assert layout.updatemenus[0].yanchor == layout.sliders[0].yanchor == "top"
    labels = [step.label for step in layout.sliders[0].steps]
    assert all(len(label.partition(".")[2]) <= 1 for label in labels), labels  # not 7.615
    assert float(labels[-1]) == pytest.approx(float(figure.frames[-1].name), abs=0.5)
