"""The Planner page through Streamlit's AppTest: sliders move, memory bars, Gantt and table follow.

Most tests plan a small model (Megatron's 1.7B on 32 GPUs) chosen through session state
before the first run, so the page ranks its layouts in a fraction of a second; the GPT-3 case
on 4096 GPUs is marked slow.
"""

import json

import pytest
from app_helpers import ENTRY, metric, text_blocks
from streamlit.testing.v1 import AppTest

from pplab.planner import PRESET_CLUSTERS, PRESET_MODELS, evaluate

SMALL = {"pl_model": "megatron-1.7b", "pl_nodes": 4, "pl_batch": 512}


@pytest.fixture(autouse=True)
def no_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "empty"))


def open_planner(state: dict | None = None) -> AppTest:
    app = AppTest.from_file(ENTRY, default_timeout=120)
    for key, value in (state or {}).items():
        app.session_state[key] = value
    app.switch_page("views/planner.py").run()
    assert not app.exception, app.exception
    return app




def charts(app: AppTest) -> dict[str, dict]:
    specs = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def chart(app: AppTest, title_start: str) -> dict:
    found = [spec for title, spec in charts(app).items() if title.startswith(title_start)]
    assert found, f"no chart {title_start!r} among {list(charts(app))}"
    return found[0]


def small_layout(**changes):
    layout = {"pp": 8, "tp": 4, "dp": 1, "microbatch_size": 1, "schedule": "1f1b",
              "recompute": "selective", "sequence_parallel": True, **changes}
    return evaluate(PRESET_MODELS["megatron-1.7b"],
                    PRESET_CLUSTERS["dgx-a100-80gb"].with_nodes(4), 512, **layout)


def test_the_planner_shows_memory_bars_a_gantt_and_the_table_in_predicted_units():
    app = open_planner(SMALL)
    assert not app.error
    # The sliders start nearest pp = tp = 8; of 32 GPUs, pp = 8 leaves 4 for tp and none for dp.
    assert (app.select_slider(key="pl_pp").value, app.select_slider(key="pl_tp").value) == (8, 4)
    assert metric(app, "dp") == "1"
    expected = small_layout(pp=8, tp=4, dp=1)
    assert metric(app, "Memory per GPU") == f"{expected.peak_memory / 2**30:.1f} GiB"
    for label in ("Memory per GPU", "Step time", "Bubble", "MFU"):
        assert label in [m.label.split(" (")[0] for m in app.metric]
        assert "(predicted)" in [m.label for m in app.metric if m.label.startswith(label)][0]
    assert metric(app, "Memory per GPU").endswith(" GiB")
    assert metric(app, "Step time").endswith(" s")
    memory = chart(app, "Memory per GPU by pipeline rank (predicted)")
    assert [t["name"] for t in memory["data"]] == [
        "weights", "gradients", "optimizer states", "activations"]
    assert len(memory["data"][0]["x"]) == app.select_slider(key="pl_pp").value
    limit = memory["layout"]["shapes"][0]
    assert limit["y0"] == limit["y1"] == 80  # the GPU's limit in GiB
    gantt = chart(app, "Predicted timeline of one pipeline")
    assert "(s, predicted)" in gantt["layout"]["xaxis"]["title"]["text"] or \
        "(ms, predicted)" in gantt["layout"]["xaxis"]["title"]["text"]
    table = app.dataframe[0].value
    assert {"pp", "tp", "dp", "schedule", "memory (GiB)", "step (s)", "MFU (%)",
            "bubble (%)", "pp (GB/step)"} <= set(table.columns)
    assert list(table["#"]) == list(range(1, len(table) + 1))
    assert table["step (s)"].is_monotonic_increasing
    assert (table["pp"] * table["tp"] * table["dp"] == 32).all()


@pytest.mark.slow  # a page flow
def test_the_sliders_move_the_estimate():
    app = open_planner(SMALL)
    app.select_slider(key="pl_pp").set_value(2).run()
    app.select_slider(key="pl_tp").set_value(4).run()
    assert metric(app, "dp") == "4"
    expected = small_layout(pp=2, tp=4, dp=4)
    assert metric(app, "Memory per GPU") == f"{expected.peak_memory / 2**30:.1f} GiB"
    assert metric(app, "Step time") == f"{expected.step_s:.2f} s"
    assert len(chart(app, "Memory per GPU")["data"][0]["x"]) == 2

    app.select_slider(key="pl_recompute").set_value("full").run()
    full = small_layout(pp=2, tp=4, dp=4, recompute="full")
    assert metric(app, "Memory per GPU") == f"{full.peak_memory / 2**30:.1f} GiB"
    assert full.peak_memory < expected.peak_memory

    app.select_slider(key="pl_b").set_value(4).run()
    assert any("m = 512 / (dp × b) = 32 microbatches" in c.value for c in app.caption)

    app.selectbox(key="pl_schedule").set_value("interleaved-1f1b").run()
    assert not app.exception and not app.error
    chunks = app.select_slider(key="pl_v")
    assert 24 % (2 * chunks.value) == 0
    chunks.set_value(3).run()
    interleaved = small_layout(pp=2, tp=4, dp=4, recompute="full", microbatch_size=4,
                               schedule="interleaved-1f1b", num_chunks=3)
    assert metric(app, "Step time") == f"{interleaved.step_s:.2f} s"
    assert "yours" in app.dataframe[0].value.columns


@pytest.mark.slow  # a page flow
def test_a_new_batch_redraws_the_pipeline_with_its_own_microbatches():
    app = open_planner({**SMALL, "pl_pp": 2, "pl_tp": 4})  # dp = 4: m = batch / 4
    assert chart(app, "Predicted timeline of one pipeline")["layout"]["title"]["text"] \
        .endswith("of its 128 microbatches")
    app.number_input(key="pl_batch").set_value(32).run()
    assert chart(app, "Predicted timeline of one pipeline")["layout"]["title"]["text"] == \
        "Predicted timeline of one pipeline: 4 of its 8 microbatches"


def test_a_layout_that_does_not_fit_is_said_and_still_drawn():
    app = open_planner({**SMALL, "pl_pp": 1, "pl_tp": 1, "pl_recompute": "none", "pl_b": 8})
    warnings = [w.value for w in app.warning]
    assert any(w.startswith("Does not fit: pipeline rank 0 needs") for w in warnings), warnings
    memory = chart(app, "Memory per GPU")
    tallest = sum(trace["y"][0] for trace in memory["data"])
    assert tallest > 80


def test_a_batch_the_replicas_cannot_share_is_one_error_line():
    app = open_planner({**SMALL, "pl_batch": 500, "pl_pp": 1, "pl_tp": 1})
    assert [e.value for e in app.error] == ["global batch 500 is not divisible by dp=32"]
    assert not app.exception


def test_a_model_that_fits_nowhere_says_which_constraint_bites():
    app = open_planner({"pl_nodes": 1})  # GPT-3 on one node of 8 GPUs
    warnings = [w.value for w in app.warning]
    assert any(w.startswith("Does not fit") for w in warnings)
    assert any(w.startswith("nothing fits: the smallest memory need is") for w in warnings)
    assert not app.dataframe


@pytest.mark.slow  # a page flow
def test_explain_says_why_each_grid_ranks_where_it_does():
    app = open_planner(SMALL)
    assert not text_blocks(app)
    app.toggle(key="pl_explain").set_value(True).run()
    lines = text_blocks(app)[0].splitlines()
    assert any(": reference: " in line or ": faster: " in line for line in lines)
    assert all(line.startswith(("pp=", "excluded: ")) for line in lines)


@pytest.mark.slow
def test_gpt3_on_4096_gpus_shows_8x8x64_and_the_ranking():
    app = open_planner()
    assert (app.select_slider(key="pl_pp").value, app.select_slider(key="pl_tp").value) == (8, 8)
    assert metric(app, "dp") == "64"
    assert metric(app, "Memory per GPU") == "51.6 GiB"  # 1f1b, selective (docs/planner.md)
    assert metric(app, "Bubble") == "23.9 %"
    table = app.dataframe[0].value
    grids = set(zip(table["pp"], table["tp"], table["dp"], strict=True))
    assert (8, 8, 64) in grids and (table["memory (GiB)"] <= 80).all()
    app.toggle(key="pl_explain").set_value(True).run()
    assert any(line.startswith("pp=4 tp=8 dp=128: does not fit")
               for line in text_blocks(app)[0].splitlines())
