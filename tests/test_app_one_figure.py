"""One figure per idea on a page: a configuration's bubble is given once, under a name a person
reads, and curves drawn on one another say so in words (AppTest).

    .venv/bin/python -m pytest -q tests/test_app_one_figure.py
"""

from __future__ import annotations

import pytest
from app_helpers import open_page

from pplab.engine.compare_table import DISPLAY


@pytest.fixture(scope="module")
def bundled_comparison(tmp_path_factory):
    """The Compare page on a saved comparison, opened once: the tests only read it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        app = open_page("compare")
        app.radio(key="cmp_mode").set_value("bundled comparison pp4-vs-tp4-cpu").run()
    assert not app.exception, app.exception
    return app


@pytest.mark.slow  # a page flow
def test_a_saved_comparison_gives_one_bubble_per_configuration_under_human_names(
        bundled_comparison):
    app = bundled_comparison
    saved_names = {name for name in DISPLAY if "_" in name}
    bubbles = []
    for frame in app.dataframe:
        columns = list(frame.value.columns)
        assert not saved_names & set(columns), columns  # step_time_s, bubble_fraction, ...
        bubbles += [name for name in columns if name.startswith("bubble") and "formula" not in name]
    # the comparison's table and its expander of every column: the same median, nowhere else
    assert bubbles == ["bubble (%)", "bubble (%)"], bubbles
    main = app.dataframe[0].value.set_index("configuration")
    assert main.loc["gpipe:pp=4,m=8", "bubble (%)"] == pytest.approx(53.06, abs=0.01)
    assert any("median over steps 2..6" in c.value and "last step" in c.value
               for c in app.caption)
    assert any("scroll" in e.label for e in app.expander)


def test_loss_curves_drawn_on_one_another_are_said_in_words(bundled_comparison):
    app = bundled_comparison
    said = [c.value for c in app.caption if "coincide" in c.value]
    assert said and "#1" in said[0] and "#2" in said[0] and "same seed" in said[0], said
    loss = [c for c in app.get("plotly_chart") if "Loss" in c.proto.spec][0]
    assert "(= #1" in loss.proto.spec  # the covered curve's legend entry names the one on top
