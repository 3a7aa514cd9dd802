"""Run directories as untrusted input: each bad folder is one line, the good ones still list."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pplab.runs.resources import bundled_comparisons_dir
from pplab.runs.run_dirs import SCHEMA_VERSION, RunError, list_runs, load_run, save_run
from pplab.schedules import build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import metadata, simulate
from pplab.timeline import COORDINATE_COLUMNS, EVENT_COLUMNS
from pplab.topology import Topology


@pytest.fixture
def good(tmp_path):
    schedule = build("1f1b", 2, 2)
    return save_run(tmp_path / "runs" / "good", simulate(schedule),
                    metadata(schedule, CostModel()))


def _copy_with(good, name, *, meta=None, events=None):
    run = load_run(good)
    target = good.parent / name
    return save_run(target, run.events if events is None else events,
                    run.metadata if meta is None else meta)


def test_a_run_saved_before_the_coordinates_loads_with_them_derived_from_its_grid(good):
    run = load_run(good)
    meta = {**run.metadata, "pp_size": 2, "tp_size": 2, "dp_size": 1, "world_size": 4}
    # four global ranks, tp fastest: 0, 1 hold pp 0 and 2, 3 hold pp 1 (Megatron order)
    events = pd.concat([run.events.assign(rank=2 * run.events["rank"] + tp) for tp in (0, 1)])
    target = _copy_with(good, "grid", meta=meta, events=events)
    table = pd.read_parquet(target / "events.parquet")
    table.drop(columns=list(COORDINATE_COLUMNS)).to_parquet(target / "events.parquet")
    loaded = load_run(target).events
    assert list(loaded.columns) == list(EVENT_COLUMNS)
    seen = loaded.groupby("rank")[["pp_rank", "tp_rank", "dp_rank"]].agg(set)
    topology = Topology(2, 2, 1)
    for rank, row in seen.iterrows():
        coords = topology.coords(int(rank))
        assert tuple(row) == ({coords.pp}, {coords.tp}, {coords.dp}), rank
    # a bundled run, saved before the change, reads the same way
    bundled = load_run(bundled_comparisons_dir() / "pp4-vs-tp4-cpu" / "5-1f1b-p2m8-tp2")
    pairs = bundled.events[["rank", "pp_rank", "tp_rank"]].drop_duplicates()
    assert sorted(map(tuple, pairs.to_numpy().tolist())) == [
        (0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]


def test_an_old_run_whose_grid_misses_its_ranks_reads_them_as_pipeline_ranks(good):
    target = _copy_with(good, "foreign", meta={"schedule": {"name": "x"}})  # a grid of 1
    table = pd.read_parquet(target / "events.parquet")
    table.drop(columns=list(COORDINATE_COLUMNS)).to_parquet(target / "events.parquet")
    loaded = load_run(target).events
    assert (loaded["pp_rank"] == loaded["rank"]).all()
    assert (loaded[["tp_rank", "dp_rank"]] == 0).all().all()


def test_a_table_missing_only_some_coordinates_is_not_an_event_table(good):
    table = pd.read_parquet(good / "events.parquet")
    table.drop(columns=["tp_rank"]).to_parquet(good / "events.parquet")
    with pytest.raises(RunError, match=r"columns \['tp_rank'\] are missing"):
        load_run(good)


def test_saved_runs_carry_the_schema_version(good):
    assert json.loads((good / "meta.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_a_run_from_pplab_0_1_is_upgraded_and_one_from_the_future_refused(good):
    meta = json.loads((good / "meta.json").read_text())
    old = {**meta, "schedule": {"name": "1f1b", "num_ranks": 2, "num_stages": 2,
                                "num_microbatches": 2, "num_chunks": 1}}
    del old["schema_version"]
    (good / "meta.json").write_text(json.dumps(old))
    schedule = load_run(good).metadata["schedule"]
    assert schedule["pp_size"] == 2 and "num_ranks" not in schedule
    (good / "meta.json").write_text(json.dumps({**meta, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(RunError, match="newer pplab .* upgrade pplab"):
        load_run(good)


def _bad_folders(good):
    root = good.parent
    run = load_run(good)
    events = run.events.copy()
    infinite = events.copy()
    infinite.loc[0, "end"] = float("inf")
    backwards = events.copy()
    backwards.loc[1, "end"] = backwards.loc[1, "start"] - 1.0
    stranger = events.copy()
    stranger.loc[2, "rank"] = 7
    _copy_with(good, "infinite", events=infinite)
    _copy_with(good, "backwards", events=backwards)
    _copy_with(good, "stranger", events=stranger)
    nested = root / "nested"
    nested.mkdir()
    (nested / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    (nested / "events.parquet").write_bytes((good / "events.parquet").read_bytes())
    huge = root / "huge"
    huge.mkdir()
    (huge / "meta.json").write_text("{}")
    with open(huge / "events.parquet", "wb") as handle:  # sparse: costs no disk
        handle.truncate(2**30)
    linked = root / "linked"
    linked.mkdir()
    (linked / "meta.json").symlink_to("/etc/hostname")
    (linked / "events.parquet").write_bytes(b"")
    (root / "escape").symlink_to(good.parent.parent)
    return {"infinite": "infinite or missing times", "backwards": "ends before it starts",
            "stranger": "rank 7, outside the run's 2 ranks", "nested": "nests too deeply",
            "huge": "1,073,741,824 bytes", "linked": "symbolic link",
            "escape": "link out of"}


def test_every_bad_folder_is_one_line_and_the_good_run_still_lists(good):
    expected = _bad_folders(good)
    runs, problems = list_runs(good.parent)
    assert [r.path.name for r in runs] == ["good"]
    reasons = {path.name: reason for path, reason in problems}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], reasons[name]
        assert "\n" not in reasons[name]


def test_metadata_is_strict_json_even_when_a_loss_diverged(good):
    run = load_run(good)
    saved = save_run(good.parent / "diverged", run.events,
                     {**run.metadata, "loss": [2.5, float("nan"), float("inf")]})
    text = (saved / "meta.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["loss"] == [2.5, None, None]


def test_an_unchanged_run_is_not_read_again(good, monkeypatch):
    load_run(good)
    calls = []
    real = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: calls.append(a) or real(*a, **k))
    load_run(good)
    assert calls == []
    (good / "meta.json").write_text((good / "meta.json").read_text() + " ")
    load_run(good)
    assert len(calls) == 1

