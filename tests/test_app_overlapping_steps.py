"""Several steps on the Playground, Compare and Presenter: a barrier keeps ZB-H2's 11.11 %,
post-validation takes it to 0 per step in the steady state.

Through Streamlit's AppTest, like tests/test_app_playground.py; the numbers asserted are the
simulator's own, computed beside the page.
"""

import pytest
from app_helpers import ROOT, metric, open_page
from streamlit.testing.v1 import AppTest

from pplab.timeline.labels import fraction_text


@pytest.fixture(autouse=True)
def no_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "empty"))


def test_the_playground_shows_the_steady_state_of_several_steps_under_either_sync():
    app = open_page()
    app.selectbox(key="pg_schedule").set_value("zb-h2").run()
    assert app.radio(key="pg_optsync").disabled  # one step: nothing to place between steps
    app.slider(key="pg_steps").set_value(3).run()
    assert not app.exception and not app.error
    assert metric(app, "Steady state: bubble per step (predicted, barrier)") == fraction_text(1 / 9)
    assert metric(app, "First step: bubble") == fraction_text(1 / 9)
    app.radio(key="pg_optsync").set_value("post").run()
    assert metric(app, "Steady state: bubble per step (predicted, post)") == fraction_text(0.0)
    assert metric(app, "First step: bubble") == fraction_text(1 / 9)
    text = " ".join(c.value for c in app.caption)
    assert "Regime: steady state of overlapping steps under optimizer post-validation" in text
    assert "pplab's own extension" in text


@pytest.mark.slow  # a page flow
def test_compare_puts_zb_h2_with_post_validation_beside_the_barrier_and_zb_h1():
    app = open_page("compare")
    app.selectbox(key="cmp_preset").set_value(
        "zero bubble for real: zb-h2's steps overlap under post-validation").run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table["configuration"]) == [
        "#1 zb-h1 p=4 m=8 x3 steps (barrier)", "#2 zb-h2 p=4 m=8 x3 steps (barrier)",
        "#3 zb-h2 p=4 m=8 x3 steps (post)"]
    assert list(table["bubble fraction (%)"]) == pytest.approx([11.11, 11.11, 0.0], abs=0.01)
    assert list(table["bubble over"])[2] == "one step in the steady state (post)"


@pytest.mark.slow  # a page flow
def test_the_presenter_plays_several_steps_from_a_link():
    app = AppTest.from_file(str(ROOT / "app" / "lab.py"), default_timeout=120)
    app.query_params.update({"schedule": "zb-h2", "p": "4", "m": "8", "steps": "3",
                             "sync": "post"})
    app.run()
    app.switch_page("views/presenter.py").run()
    assert not app.exception, app.exception
    assert app.slider(key="presenter_steps").value == 3
    assert app.radio(key="presenter_sync").value == "post"
    assert any(m.value.startswith(f"### Bubble {fraction_text(0.0)} per step in the steady "
                                  f"state (post), {fraction_text(1 / 9)} in the first step")
               for m in app.markdown)
    assert any("steps=3&sync=post" in c.value for c in app.caption)
