"""Lesson 7: the weight version of every F and B is the papers', simulated and on real ranks.

PipeDream (SOSP 2019): stage s of p runs microbatch j on version j - (p-1-s), holds p - s
versions and applies gradients p - 1 - s updates old; PipeDream-2BW (ICML 2021): every stage
runs every microbatch of step t on version t - 1, holds two versions, a delay of one. The
versions are pinned from those rules (tests/staleness_reference.py), not read from pplab; the
real run's losses must equal a one-process reference that trains with exactly those versions.
Also here: versions written in Gantt boxes, versions held over time, the bundled fair
comparison, the corrected wording of the bundled comparison, and the lesson's widget.

    .venv/bin/python -m pytest -q tests/test_lesson_07_staleness.py
"""

from __future__ import annotations

import json

import pytest
from command_helpers import run_pplab
from staleness_reference import paper_version, versioned_reference

from pplab import charts
from pplab.charts.versions import peak_versions, versions_over_time
from pplab.runs.resources import bundled_comparisons_dir, bundled_runs_dir
from pplab.schedules import Schedule, build, weight_versions
from pplab.schedules.pipedream import (
    check_versions_ready,
    gradient_delays,
    steady_delay,
    versions_held,
)
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.teaching import staleness

ASYNC_GRID = [("pipedream", p, m) for p in (2, 3, 5) for m in (1, 2, p + 1)] + [
    ("pipedream-2bw", p, m) for p in (2, 3, 5) for m in (p, p + 1, 2 * p)]


@pytest.mark.parametrize(("name", "p", "m"), ASYNC_GRID)
def test_simulated_versions_of_every_f_and_b_are_the_papers(name, p, m):
    schedule = build(name, p, m, num_steps=3)
    events = simulate(schedule, CostModel(forward=1, backward=2, optimizer=0.25))
    compute = events[events["kind"].isin(["F", "B"])]
    assert len(compute) == 2 * p * schedule.total_microbatches
    for row in compute.itertuples():
        assert row.version == paper_version(name, p, m, row.stage, row.microbatch), row
    check_versions_ready(schedule)  # every version exists before a forward needs it


@pytest.mark.parametrize("p", [2, 3, 4, 7])
def test_delays_and_versions_held_are_the_papers(p):
    pipedream, two_bw = build("pipedream", p, p, num_steps=3), build("pipedream-2bw", p, p,
                                                                      num_steps=3)
    assert {s: steady_delay(pipedream, s) for s in range(p)} == {s: p - 1 - s for s in range(p)}
    assert versions_held(pipedream) == {s: p - s for s in range(p)}
    # 2BW: the first update is of version 0 onto version 0; every later one is one late,
    # on the last stage too
    assert gradient_delays(two_bw) == {s: [0, 1, 1] for s in range(p)}
    assert versions_held(two_bw) == {s: 2 for s in range(p)}
    synchronous = build("1f1b", p, p)
    assert versions_held(synchronous) == {s: 1 for s in range(p)}
    assert all(d == [0] for d in gradient_delays(synchronous).values())


def test_2bw_needs_a_version_that_exists():
    with pytest.raises(ValueError, match="at least as many microbatches"):
        build("pipedream-2bw", 4, 3)
    two_bw = build("pipedream-2bw", 3, 3, num_steps=2)
    eager = Schedule(two_bw.actions, two_bw.stage_to_rank, two_bw.total_microbatches,
                     name="eager", update_every=3, microbatches_per_step=3,
                     params={"version_lag_steps": -1})  # each step on its own update
    with pytest.raises(ValueError, match="needs weight version 1"):
        check_versions_ready(eager)


def test_weight_stash_keeps_a_shadow_for_forwards_planned_on_a_replaced_version():
    import torch

    from pplab.engine.weights import WeightStash

    module = torch.nn.Linear(2, 2)
    stash = WeightStash(module)
    stash.expect_forwards([0, 0, 1])  # 2BW on the last stage: F0 B0, update, F1 still on version 0
    _, params = stash.acquire(0)
    old = params["weight"].detach().clone()
    stash.release(0)
    stash.before_update()
    with torch.no_grad():
        module.weight.add_(1.0)
    stash.advance()
    assert set(stash.snapshots) == {0} and stash.version == 1
    version, params = stash.acquire(0)
    assert version == 0 and torch.equal(params["weight"].detach(), old)
    assert stash.max_live_versions == 2
    stash.release(0)
    assert set(stash.snapshots) == set()  # version 0 has no user left, planned or running
    with pytest.raises(RuntimeError, match="needs weight version 5"):
        stash.acquire(5)


def test_gantt_writes_versions_in_the_boxes_only_when_asked():
    events = simulate(build("pipedream-2bw", 2, 2, num_steps=3))
    plain = charts.gantt(events)
    assert all(trace.text is None for trace in plain.data)
    texts = {trace.name: list(trace.text) for trace in
             charts.gantt(events, box_text="both").data if trace.text is not None}
    assert set(texts) == {"F forward", "B full backward"}
    forwards = events[events["kind"] == "F"]
    assert sorted(texts["F forward"]) == sorted(
        f"{mb}·v{v}" for mb, v in zip(forwards["microbatch"], forwards["version"], strict=True))
    stacked = charts.gantt_stack([("a", events), ("b", events)], box_text="version")
    assert {t for trace in stacked.data if trace.text is not None for t in trace.text} == {
        "v0", "v1"}
    with pytest.raises(ValueError, match="box_text"):
        charts.gantt(events, box_text="weights")


@pytest.mark.parametrize(("name", "p", "m"), ASYNC_GRID[::3])
def test_versions_held_over_time_peak_where_the_bookkeeping_says(name, p, m):
    schedule = build(name, p, m, num_steps=3)
    for cost in (CostModel(), CostModel(forward=1, backward=3, optimizer=0.5)):
        events = simulate(schedule, cost)
        assert peak_versions(events, schedule.update_every) == versions_held(schedule)
    table = versions_over_time(events, schedule.update_every)
    assert table["held"].min() >= 0 and table.groupby("stage")["held"].last().eq(0).all()
    figure = charts_versions_figure(events, schedule)
    assert len(figure.data) == p and "versions held" in figure.layout.yaxis.title.text


def charts_versions_figure(events, schedule):
    from pplab.charts.versions import live_versions

    return live_versions(events, schedule.update_every)


def test_the_bundled_pipedream_run_recorded_the_papers_versions():
    from pplab.calibration.run_prediction import schedule_of
    from pplab.runs.run_dirs import load_run

    run = load_run(bundled_runs_dir() / "pipedream-p4m8")
    schedule = schedule_of(run)
    compute = run.events[run.events["kind"].isin(["F", "B"])]
    for row in compute.itertuples():
        assert row.version == paper_version("pipedream", 4, 8, row.stage, row.microbatch)
    held = {int(s): n for s, n in run.metadata["max_live_weight_versions"].items()}
    assert held == peak_versions(run.events, schedule.update_every) == {0: 4, 1: 3, 2: 2, 3: 1}


def test_the_fair_comparison_is_bundled_and_says_what_the_lesson_says():
    study = staleness.load()
    assert set(study["losses"]) == set(staleness.SCHEDULES)
    updates = study["study"]["updates"]
    rates = list(study["losses"]["sync"])
    assert len(rates) == 3
    for by_lr in study["losses"].values():
        assert list(by_lr) == rates and all(len(v) == updates for v in by_lr.values())
    finals = staleness.final_losses(study)
    # What the README and the widget say of these runs (one seed).
    for lr in rates:
        assert finals["sync"][lr] <= min(finals["pipedream"][lr], finals["pipedream-2bw"][lr])
    assert finals["pipedream-2bw"][rates[-1]] > 2.0  # still on the first plateau
    best = {name: min(values.values()) for name, values in finals.items()}
    assert best["sync"] <= best["pipedream"] < best["pipedream-2bw"]
    table = staleness.table_text(study)
    assert table.splitlines()[1].split()[-1] == "best" and len(table.splitlines()) == 5
    assert len(staleness.loss_figure(study, rates[0]).data) == 3


def test_a_broken_study_file_is_one_line(tmp_path):
    (tmp_path / "staleness.json").write_text('{"losses": {"sync": {}}}')
    with pytest.raises(ValueError, match="is not a staleness study"):
        staleness.load(tmp_path / "staleness.json")
    with pytest.raises(ValueError, match="pp >= 2"):
        staleness.Study(pp=1)


def test_the_bundled_comparison_no_longer_blames_staleness_alone():
    from pplab.engine.compare import default_description

    document = json.loads((bundled_comparisons_dir() / "pp4-vs-tp4-cpu" /
                           "comparison.json").read_text())
    text = document["description"]
    assert "stale weights a different one" not in text
    assert "optimizer steps" in text and "whole run" in text
    rows = [{"configuration": "1f1b:pp=4,m=8", "schedule": "1f1b"},
            {"configuration": "pipedream:pp=4,m=8", "schedule": "pipedream"}]
    assert "optimizer steps" in default_description(rows)
    assert "optimizer steps" not in default_description(rows[:1])


def test_simulate_says_which_bubble_is_the_runs(capsys):
    code, out, _ = run_pplab(capsys, "simulate", "--schedule", "pipedream", "--pp", "4",
                             "--microbatches", "4", "--steps", "2")
    assert code == 0
    assert "27.27% (idle / (ranks x makespan), whole run of 2 steps)" in out
    assert "bubble 42.86% of its own microbatches (steps overlap: not the run's bubble)" in out


# ---- the widget --------------------------------------------------------------------------

WIDGET = """
import sys
sys.path.insert(0, {app!r})
import streamlit as st
from lesson_widgets import staleness as w
config = dict(w.DEFAULTS)
config.update({override!r})
st.session_state["shown"] = w.show(config)
"""


def _widget(tmp_path, override: dict):
    from app_helpers import ROOT
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "widget.py"
    script.write_text(WIDGET.format(app=str(ROOT / "app"), override=override))
    return AppTest.from_file(str(script), default_timeout=120).run()


def test_widget_draws_versions_and_the_fair_comparison(tmp_path):
    app = _widget(tmp_path, {})
    assert not app.exception, app.exception
    charts_drawn = app.get("plotly_chart")
    assert len(charts_drawn) == 3  # the Gantt with versions, versions held, loss at equal updates
    gantt = json.loads(charts_drawn[0].proto.spec)
    assert any("·v1" in text for trace in gantt["data"] for text in trace.get("text") or [])
    stages = app.dataframe[0].value
    assert list(stages["versions held at most"]) == [2, 2, 2, 2]
    assert app.session_state["shown"] == {"schedule": "pipedream-2bw", "p": "4", "m": "4",
                                          "steps": "3", "lr": "0.001"}
    app.selectbox(key="l07_schedule").set_value("pipedream").run()
    assert not app.exception
    assert list(app.dataframe[0].value["versions held at most"]) == [4, 3, 2, 1]


def test_widget_falls_back_on_bad_values_with_a_caption(tmp_path):
    app = _widget(tmp_path, {"p": "lots", "m": "1", "schedule": "gpipe", "lr": "9"})
    assert not app.exception, app.exception
    captions = " ".join(c.value for c in app.caption)
    assert "p = 'lots'" in captions and "schedule = 'gpipe'" in captions
    assert "lr = '9'" in captions
    assert "needs at least as many microbatches" in captions


# ---- real ranks ------------------------------------------------------------------------

SMALL = {"d_model": 16, "heads": 2, "seq_len": 8, "dtype": "float64", "lr": 1e-2, "steps": 3,
         "layers": 2}


def _async_configs():
    from pplab.engine.train_config import TrainConfig

    return {name: TrainConfig(schedule=name, pp_size=2, microbatches=2, **SMALL)
            for name in ("pipedream", "pipedream-2bw")}


def _train_each(rank, world_size, report, configs):
    from pplab.engine.request import check_request
    from pplab.engine.training import train_rank

    out = {}
    for name, config in configs.items():
        result = train_rank(check_request(config), rank)
        out[name] = {key: result[key] for key in ("losses", "versions", "max_live_versions",
                                                   "rows")}
    return out


@pytest.mark.multiprocess
def test_two_ranks_run_every_f_and_b_on_the_papers_version_and_train_as_its_reference():
    from distributed import run_ranks

    from pplab.timeline import events_frame

    configs = _async_configs()
    results = run_ranks(2, _train_each, configs)
    for name, config in configs.items():
        seen, held, rows = {}, {}, []
        for result in results:
            seen.update(result[name]["versions"])
            held.update(result[name]["max_live_versions"])
            rows += result[name]["rows"]
        # the version each F and B used, per stage and microbatch, as the engine kept it ...
        assert len(seen) == 2 * 2 * 6
        for (kind, stage, mb), version in seen.items():
            assert version == paper_version(name, 2, 2, stage, mb), (name, kind, stage, mb)
        # ... and as it recorded it in the Event table
        events = events_frame(rows)
        compute = events[events["kind"].isin(["F", "B"])]
        assert {(r.kind, r.stage, r.microbatch): r.version for r in compute.itertuples()} == seen
        schedule = build(name, 2, 2, num_steps=3)
        assert weight_versions(schedule) == {(s, mb): v for (_, s, mb), v in seen.items()}
        expected_held = {0: 2, 1: 1} if name == "pipedream" else {0: 2, 1: 2}
        assert held == expected_held == peak_versions(events, schedule.update_every)
        # the gradients were computed on those versions and applied to the newest weights
        losses = [loss for result in results for loss in result[name]["losses"]]
        assert losses == pytest.approx(versioned_reference(config, name, config.steps),
                                       rel=1e-9, abs=1e-12)


@pytest.mark.slow  # a Runs page flow
def test_runs_page_says_which_bubble_of_a_pipedream_run_it_shows(tmp_path, monkeypatch):
    from app_helpers import metric, open_page

    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "empty"))
    app = open_page("runs")
    label = next(o for o in app.selectbox(key="runs_pick").options
                 if o.startswith("pipedream p=4 m=8") and "(bundled)" in o)
    app.selectbox(key="runs_pick").set_value(label).run()
    assert not app.exception, app.exception
    assert metric(app, "Bubble fraction (measured)")
    said = " ".join(c.value for c in app.caption)
    assert "never flushes: the bubble above is per step" in said and "whole run" in said
