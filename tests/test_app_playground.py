"""The Playground's searched order and overlap cost, the new families, and Compare's presets.

Through Streamlit's AppTest, like tests/test_app.py; the numbers asserted are the simulator's
and the search's own, computed here beside the page.
"""

import importlib.util
import json
import sys

import pytest
from app_helpers import ROOT, metric, open_page
from lanes import fast_first
from streamlit.testing.v1 import AppTest

from pplab.schedules import build, schedule_from_csv_text, validate
from pplab.sim.cost_model import CostModel
from pplab.sim.search import memory_capped_1f1b, search_schedule
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

SEARCHED = "searched (memory cap C)"


@pytest.fixture(autouse=True)
def no_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "empty"))






def gantt_title(app: AppTest) -> str:
    return json.loads(app.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]


def lab_widgets():
    if str(ROOT / "app") not in sys.path:
        sys.path.insert(0, str(ROOT / "app"))
    spec = importlib.util.spec_from_file_location("lab_widgets", ROOT / "app" / "lab_widgets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def makespan(schedule, cost=None) -> float:
    return metrics(simulate(schedule, cost or CostModel()), range(schedule.pp_size))["makespan"]


def test_the_searched_option_shows_the_order_found_under_the_cap():
    app = open_page()
    app.selectbox(key="pg_schedule").set_value(SEARCHED).run()
    assert not app.exception and not app.error
    assert app.slider(key="pg_cap").value == 4  # p: 1F1B's memory
    app.slider(key="pg_cap").set_value(2).run()
    found = search_schedule(4, 8, CostModel(), 2)
    assert metric(app, "Makespan (predicted)") == f"{makespan(found):.4g} cost units"
    assert metric(app, "Peak activations (predicted)") == "2 microbatches"
    assert gantt_title(app) == "Predicted timeline: searched (cap 2) p=4 m=8"
    said = [m.value for m in app.markdown if m.value.startswith("Searched order")][0]
    assert f"found by *{found.params['found_by']}*" in said
    baseline = makespan(memory_capped_1f1b(4, 8, 2))
    assert f"makespan {baseline:.4g} cost units" in said and makespan(found) <= baseline

    button = [b for b in app.get("download_button")
              if b.proto.label == "Download this schedule (CSV)"][0]
    assert button.proto.url.endswith(".csv")
    widgets = lab_widgets()
    config = widgets.SimConfig("searched", 4, 8, 1, CostModel(), max_in_flight=2)
    assert config.file_name() == "searched-cap2-p4m8.csv"
    _, csv_text = widgets.schedule_text(config)
    assert validate(schedule_from_csv_text(csv_text)).actions == found.actions


@pytest.mark.slow  # a page flow
def test_the_search_plays_the_costs_set_on_the_page():
    app = open_page()
    app.selectbox(key="pg_schedule").set_value(SEARCHED).run()
    app.number_input(key="pg_l").set_value(0.5).run()
    cost = CostModel(latency=0.5)
    assert metric(app, "Makespan (predicted)") == \
        f"{makespan(search_schedule(4, 8, cost, 4), cost):.4g} cost units"


@pytest.mark.slow  # a page flow
def test_the_overlap_cost_shortens_dualpipe_v_and_says_it_changes_nothing_elsewhere():
    app = open_page()
    overlap = app.slider(key="pg_ovl")
    assert overlap.value == 0.0 and "dualpipe-v" in overlap.help
    app.selectbox(key="pg_schedule").set_value("dualpipe-v").run()
    dualpipe = build("dualpipe-v", 4, 8)
    assert metric(app, "Makespan (predicted)") == f"{makespan(dualpipe):.4g} cost units"
    app.slider(key="pg_ovl").set_value(1.0).run()
    overlapped = makespan(dualpipe, CostModel(overlap=1.0))
    assert overlapped < makespan(dualpipe)
    assert metric(app, "Makespan (predicted)") == f"{overlapped:.4g} cost units"
    assert not any("changes nothing" in c.value for c in app.caption)
    app.selectbox(key="pg_schedule").set_value("zb-v").run()
    assert any("changes nothing here: zb-v p=4 m=8 v=2 has no overlapped F;B pairs"
               in c.value for c in app.caption)


@pytest.mark.parametrize("name, closed", fast_first(1, [
    ("zb-v", "5.88 %"), ("zb-h2", "11.11 %"), ("looped-bfs", "15.79 %"), ("dualpipe-v", None),
    ("interleaved-zb", None)]))
def test_the_new_families_show_their_closed_form_where_there_is_one(name, closed):
    app = open_page()
    app.selectbox(key="pg_schedule").set_value(name).run()
    assert not app.exception and not app.error
    assert gantt_title(app).startswith(f"Predicted timeline: {name} p=4 m=8")
    text = " ".join(m.value for m in app.markdown)
    if closed is None:
        assert f"No simple closed form is shown for {name}" in text
    else:
        assert "Closed form" in text and f"gives **{closed}" in text


@pytest.mark.slow  # a page flow
def test_compare_presets_put_zb_v_and_dualpipe_v_beside_1f1b():
    app = open_page("compare")
    app.selectbox(key="cmp_preset").set_value(
        "beyond the classics: zb-v and dualpipe-v beside 1f1b").run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table["configuration"]) == [
        "#1 1f1b p=4 m=8", "#2 zb-h2 p=4 m=8", "#3 zb-v p=4 m=8 v=2", "#4 dualpipe-v p=4 m=8 v=2"]
    expected = [100 * metrics(simulate(build(name, 4, 8), CostModel()), range(4))[
        "bubble_fraction"] for name in ("1f1b", "zb-h2", "zb-v", "dualpipe-v")]
    assert list(table["bubble fraction (%)"]) == pytest.approx(expected, abs=0.01)

    app.selectbox(key="cmp_preset").set_value("a searched order against the hand-made ones").run()
    assert "#2 searched (cap 4) p=4 m=8" in list(app.dataframe[0].value["configuration"])
    app.selectbox(key="cmp_preset").set_value("the classics").run()
    table = app.dataframe[0].value
    assert list(table["configuration"]) == ["#1 gpipe p=4 m=8", "#2 1f1b p=4 m=8"]
