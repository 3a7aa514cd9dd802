"""The lab's server makes its slowest first views while it starts (app/warm_up.py, run by
pplab.cli.lab_server): the Playground's default figures and the Planner's default ranking are
the very answers the pages then ask for, so the first visitor waits for neither (AppTest).

    .venv/bin/python -m pytest -q tests/test_warm_up.py
"""

from __future__ import annotations

import sys

import pytest
from app_helpers import ROOT, open_page

from pplab import charts
from pplab.classroom.shared_results import RESULTS


@pytest.fixture
def warmed(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.syspath_prepend(str(ROOT / "app"))
    RESULTS.clear()
    import warm_up

    said = warm_up.warm()
    assert "Playground's gpipe p=4 m=8" in said and "Planner's ranking" in said, said
    yield
    RESULTS.clear()
    sys.modules.pop("warm_up", None)


def test_the_playground_opens_on_figures_the_server_made_as_it_started(warmed, monkeypatch):
    drawn = []
    monkeypatch.setattr(charts, "gantt", lambda *a, **k: drawn.append(a) or pytest.fail(
        "the Playground drew its first Gantt again"))
    app = open_page()
    assert app.title[0].value == "Playground" and not drawn


@pytest.mark.slow  # the Playground's warm-up is checked in the fast lane
def test_the_planner_opens_on_the_ranking_the_server_made_as_it_started(warmed, monkeypatch):
    asked = []
    submit = RESULTS.pool.submit

    def counted(key, module, name, *args, **kwargs):
        asked.append(name)
        return submit(key, module, name, *args, **kwargs)

    monkeypatch.setattr(RESULTS.pool, "submit", counted)
    app = open_page("planner")
    assert any(s.value.startswith("Every layout of these 4,096 GPUs") for s in app.subheader)
    assert "ranked_layouts" not in asked, asked
