"""The Runs page's replay: a bundled run's error, its interval, and its gap broken down by
cause and by the model's terms; the Compare page's calibrated predictions with their
intervals (AppTest).

    pytest -q tests/test_app_runs.py
"""

from pathlib import Path

import pytest
from lanes import fast_first
from streamlit.testing.v1 import AppTest

from pplab.calibration import CATEGORIES

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "lab.py")
BUNDLED_1F1B = "1f1b p=2 m=8 · cpu · 1f1b-p2m8 (bundled)"
BUNDLED_SHARED = "1f1b p=4 m=8 · cpu · 1f1b-p4m8 (bundled)"


@pytest.fixture
def runs_page(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "no-runs-of-yours"))
    app = AppTest.from_file(ENTRY, default_timeout=120).run()
    app.switch_page("views/runs.py").run()
    assert not app.exception, app.exception
    return app


def gap_table(app: AppTest):
    tables = [d.value for d in app.dataframe if "per rank" in d.value.columns]
    assert len(tables) == 1, [list(d.value.columns) for d in app.dataframe]
    return tables[0]


def metric(app: AppTest, label: str) -> str:
    found = [m.value for m in app.metric if m.label == label]
    assert found, f"no metric {label!r} among {[m.label for m in app.metric]}"
    return found[0]


@pytest.mark.parametrize("label", fast_first(1, [BUNDLED_1F1B, BUNDLED_SHARED]))
def test_a_bundled_run_shows_its_replay_error_and_where_the_gap_is(runs_page, label):
    app = runs_page
    app.selectbox(key="runs_pick").set_value(label).run()
    assert not app.exception and not app.error
    error = metric(app, "Replay error (step time)")
    assert error.endswith(" %") and abs(float(error.split()[0])) < 15  # the bundled runs: < 7
    table = gap_table(app)
    assert list(table["per rank"]) == [*CATEGORIES, "step time"]
    measured = [c for c in table.columns if c.startswith("measured (")][0]
    # The five parts of every rank's step add up to the step (ms, rounded per row).
    assert abs(table[measured].iloc[:5].sum() - table[measured].iloc[5]) < 0.01 + 1e-3 * 5
    contention = table.set_index("per rank").loc["contention", measured]
    assert (contention > 0) == (label == BUNDLED_SHARED)  # only 4 ranks on 2 cores share


@pytest.mark.slow  # a page flow
def test_the_breakdown_follows_the_step_shown_including_the_warm_up(runs_page):
    app = runs_page
    app.selectbox(key="runs_pick").set_value(BUNDLED_1F1B).run()
    last = gap_table(app)
    [s for s in app.select_slider if s.label == "Step shown"][0].set_value(0).run()
    assert not app.exception
    first = gap_table(app)
    assert first["per rank"].tolist() == last["per rank"].tolist()
    assert first.iloc[5, 1] != last.iloc[5, 1]  # another step, another measured step time


@pytest.mark.slow  # a page flow
def test_a_replay_shows_its_interval_and_what_each_term_of_the_model_charges(runs_page):
    from pplab.calibration.breakdown import TERMS

    app = runs_page
    app.selectbox(key="runs_pick").set_value(BUNDLED_SHARED).run()
    assert not app.exception and not app.error
    low, _, high, unit = metric(app, "80 % interval (predicted)").split()
    predicted, predicted_unit = metric(app, "Step time (predicted)").split()
    assert unit == predicted_unit and float(low) < float(predicted) < float(high)
    terms = [d.value for d in app.dataframe if "term (per rank)" in d.value.columns]
    assert len(terms) == 1 and list(terms[0]["term (per rank)"]) == list(TERMS)
    assert terms[0].set_index("term (per rank)").loc["processor sharing"].iloc[1] > 0


@pytest.mark.slow  # a page flow calibrating each run
def test_compare_gives_each_configuration_a_calibrated_step_and_its_interval(runs_page):
    app = runs_page
    app.switch_page("views/compare.py").run()
    app.radio(key="cmp1_source").set_value("recorded run").run()
    app.selectbox(key="cmp1_run").set_value(BUNDLED_1F1B).run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table["source"]) == ["predicted", "measured"]
    for _, row in table.iterrows():
        low, high = (float(x) for x in row["80 % interval (ms)"].split(" to "))
        assert low < row["calibrated step (ms)"] < high
    inside, _, steps = table["measured steps inside"].iloc[1].split()
    assert 0 <= int(inside) <= int(steps) == 5  # the bundled run's steady steps
