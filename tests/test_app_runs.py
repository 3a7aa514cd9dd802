"""The Runs page's replay: a bundled run's error, and its gap broken down by cause (AppTest).

    pytest -q tests/test_app_runs.py
"""

from pathlib import Path

import pytest
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


@pytest.mark.parametrize("label", [BUNDLED_1F1B, BUNDLED_SHARED])
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


def test_the_breakdown_follows_the_step_shown_including_the_warm_up(runs_page):
    app = runs_page
    app.selectbox(key="runs_pick").set_value(BUNDLED_1F1B).run()
    last = gap_table(app)
    app.select_slider(key="runs_step").set_value(0).run()
    assert not app.exception
    first = gap_table(app)
    assert first["per rank"].tolist() == last["per rank"].tolist()
    assert first.iloc[5, 1] != last.iloc[5, 1]  # another step, another measured step time
