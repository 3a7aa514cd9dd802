"""What the lab reads of a recorded run: summaries, pipeline views, comparisons, examples.

The key check: with tensor or data parallelism the Event table's ranks are global, and a
predicted pipeline row must be drawn over the measured ranks of the *same* pipeline
position, not over whichever rank happens to share its number.
"""

import json
from dataclasses import replace

import pytest
from lanes import fast_first

from pplab import timeline
from pplab.calibration.run_prediction import predicted_for, seconds_per_cost_unit
from pplab.calibration.run_views import pipeline_view, rank_names, replicas
from pplab.runs import catalog as runs_catalog
from pplab.runs import run_dirs
from pplab.runs.comparisons import load_comparison
from pplab.runs.summary import summarize
from pplab.schedules import (
    COMPUTE_KINDS,
    build,
    read_csv,
    schedule_to_csv_text,
    validate,
)
from pplab.sim.simulator import CostModel, schedule_summary, simulate
from pplab.topology import Topology

COMPARISON = runs_catalog.bundled_comparisons_dir() / "pp4-vs-tp4-cpu"


def measured_grid_run(directory, tp_size, dp_size, schedule_name="1f1b", pp_size=2,
                      microbatches=4):
    """A run shaped like the engine's for pp x tp x dp: every replica runs the pipeline,
    its events filed under global ranks (Megatron order), each replica a little slower."""
    schedule = build(schedule_name, pp_size, microbatches)
    topology = Topology(pp_size, tp_size, dp_size)
    frames = []
    for dp in range(dp_size):
        for tp in range(tp_size):
            events = simulate(schedule, CostModel(forward=0.002, backward=0.004))
            slower = 1 + 0.05 * (dp * tp_size + tp)
            events[["start", "end"]] *= slower
            global_rank = {pp: topology.rank_of(pp, dp, tp) for pp in range(pp_size)}
            events["rank"] = events["rank"].map(global_rank)
            events["tp_rank"], events["dp_rank"] = tp, dp  # pp_rank: the simulated rank
            events["peer"] = events["peer"].map(lambda p, g=global_rank: g.get(p, -1))
            frames.append(events)
    events = timeline.events_frame(r for frame in frames for r in frame.to_dict("records"))
    events["source"] = "measured"
    meta = {"schedule": {**schedule_summary(schedule), "csv": schedule_to_csv_text(schedule)},
            "pp_size": pp_size, "tp_size": tp_size, "dp_size": dp_size,
            "world_size": topology.world_size, "config": {"device": "cpu"}, "time_unit": "s"}
    return run_dirs.load_run(run_dirs.save_run(directory, events, meta))


def compute_order(events, row, rows="rank"):
    mine = events[(events[rows] == row) & events["kind"].isin(COMPUTE_KINDS)]
    return list(mine.sort_values("start")[["stage", "kind", "microbatch"]].itertuples(
        index=False, name=None))


@pytest.mark.parametrize(("tp_size", "dp_size"), fast_first(1, [(2, 2), (2, 1), (1, 2)]))
def test_predicted_and_measured_rows_line_up_stage_by_stage(tmp_path, tp_size, dp_size):
    run = measured_grid_run(tmp_path / "run", tp_size, dp_size)
    summary = summarize(run)
    predicted, measured = predicted_for(run, 0)
    assert sorted(predicted["rank"].unique()) == [0, 1]
    assert len(replicas(summary)) == tp_size * dp_size
    assert (predicted["pp_rank"] == predicted["rank"]).all()  # simulated: ranks are positions
    for replica in replicas(summary):
        view = pipeline_view(measured, summary, replica)
        assert sorted(view["pp_rank"].unique()) == [0, 1], replica
        # the view keeps the global ranks: those of this replica, one per position
        assert sorted(view["rank"].unique()) == [
            summary.topology.rank_of(pp, replica.dp, replica.tp) for pp in (0, 1)]
        for row in (0, 1):
            assert (compute_order(view, row, "pp_rank")
                    == compute_order(predicted, row, "pp_rank")), (replica, row)
    # Pairing by the global rank's number is what went wrong: global rank 1 is not pp 1.
    assert compute_order(measured, 1) != compute_order(predicted, 1)


def test_a_pipeline_view_refuses_events_the_grid_does_not_have(tmp_path):
    run = measured_grid_run(tmp_path / "run", tp_size=2, dp_size=1)
    wrong = replace(summarize(run), tp_size=1)
    with pytest.raises(ValueError, match="rank 3, but meta.json says pp 2 x tp 1 x dp 1 = 2"):
        pipeline_view(run.events, wrong)


def test_the_bundled_pp2_tp2_run_lines_up_with_its_prediction():
    run = run_dirs.load_run(COMPARISON / "5-1f1b-p2m8-tp2")
    summary = summarize(run)
    assert (summary.pp_size, summary.tp_size, summary.dp_size) == (2, 2, 1)
    predicted, measured = predicted_for(run, summary.steps[-1])
    for replica in replicas(summary):
        view = pipeline_view(measured, summary, replica)
        for row in (0, 1):
            assert ({s for s, _, _ in compute_order(view, row, "pp_rank")}
                    == {s for s, _, _ in compute_order(predicted, row)} == {row})
    assert rank_names(summary, range(4))[2] == "rank 2 (pp 1 tp 0)"
    assert rank_names(summary, [0, 7]) is None  # rank 7 is not in a 4-rank grid


def test_runs_are_named_by_what_they_are():
    labels = {path.name: summarize(run_dirs.load_run(path)).label
              for path in sorted(COMPARISON.iterdir()) if path.is_dir()}
    assert labels == {
        "1-gpipe-p4m8": "gpipe p=4 m=8 · cpu",
        "2-1f1b-p4m8": "1f1b p=4 m=8 · cpu",
        "3-pipedream-p4m8": "pipedream p=4 m=8 · cpu",
        "4-tp4": "tp=4 · cpu",
        "5-1f1b-p2m8-tp2": "1f1b p=2 m=8 · tp=2 · cpu",
        "6-dp4": "dp=4 · cpu",
    }


def test_a_foreign_meta_json_gives_unknowns_not_errors(tmp_path):
    events = simulate(build("1f1b", 2, 2))
    events["source"] = "measured"
    meta = {"schedule": {"name": "x", "pp_size": True, "num_microbatches": "four"},
            "loss": ["nan", 2.5, None], "peak_memory_bytes": {"0": 10, "x": 5, "1": "big"},
            "tp_size": 0, "dp_size": 2.5}
    summary = summarize(run_dirs.load_run(run_dirs.save_run(tmp_path / "r", events, meta)))
    assert (summary.pp_size, summary.num_microbatches, summary.tp_size, summary.dp_size) == (
        None, None, 1, 1)
    assert summary.losses == (2.5,) and summary.memory == {0: 10.0}
    assert summary.label == "x"


def test_a_comparison_reads_its_description_table_and_runs_and_refuses_a_broken_one(tmp_path):
    comparison = load_comparison(COMPARISON)
    assert "GPipe" in comparison.description
    assert list(comparison.table().columns) == [c for c in comparison.columns
                                                if c in comparison.rows[0]]
    assert [p.name for p in comparison.run_dirs()][:2] == ["1-gpipe-p4m8", "2-1f1b-p4m8"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "comparison.json").write_text(json.dumps({"rows": "many"}))
    with pytest.raises(ValueError, match="has no list of rows"):
        load_comparison(tmp_path / "bad")
    with pytest.raises(ValueError, match="is not a comparison"):
        load_comparison(tmp_path)


def test_the_users_comparisons_are_listed_and_not_called_broken(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path))
    for folder in (tmp_path / "mine", tmp_path / "comparisons" / "later"):
        measured_grid_run(folder / "1-1f1b-pp2-m4-tp2", tp_size=2, dp_size=1)
        (folder / "comparison.json").write_text(json.dumps({"rows": [{"run": "1-1f1b"}]}))
    entries, problems = runs_catalog.find_runs()
    assert problems == []
    mine = {e.origin for e in entries if e.comparison is not None and not e.comparison.bundled}
    assert mine == {"your comparison mine", "your comparison later"}
    titles = [f.title for f in runs_catalog.comparison_folders()]
    assert titles[0] == "bundled comparison pp4-vs-tp4-cpu"
    assert titles[1:] == ["your comparison mine", "your comparison later"]


def test_example_schedules_validate_and_the_generated_ones_match_their_builders():
    examples = runs_catalog.example_schedules()
    assert {"gpipe-p4m8.csv", "1f1b-p4m8.csv", "zb-h1-p4m8.csv"} <= set(examples)
    assert any(name.startswith("hand-") for name in examples)
    for name, path in examples.items():
        schedule = validate(read_csv(path))
        family = name.removesuffix(".csv").rpartition("-")[0]
        if not name.startswith("hand-"):
            assert path.read_text() == schedule_to_csv_text(build(family, 4, 8)), name
        kinds = {a.kind for _, a in schedule.all_actions()}
        assert kinds <= set(COMPUTE_KINDS), name
    hand = [validate(read_csv(p)) for n, p in examples.items() if n.startswith("hand-")]
    assert any({"I", "W"} <= {a.kind for _, a in s.all_actions()} for s in hand)


def test_a_cost_unit_lasts_a_ranks_share_of_the_calibrated_forward():
    # The Compare page's default unit comes from the run's calibration: an interleaved run's
    # stage is a chunk, 1/V of a rank's share, so its unit is about V measured chunk forwards
    # (plus the overhead the calibration finds around each); a one-chunk run's about one.
    for name, chunks in (("1f1b-p2m8", 1), ("interleaved-1f1b-p2v2m8", 2)):
        run = run_dirs.load_run(runs_catalog.bundled_runs_dir() / name)
        forwards = run.events[run.events["kind"] == "F"]
        measured = float((forwards["end"] - forwards["start"]).median())
        assert chunks * measured <= seconds_per_cost_unit(run) <= 1.25 * chunks * measured
