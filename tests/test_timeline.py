"""Event-table metrics, run directories and the Chrome-trace export."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from pplab.runs.run_dirs import RunError, list_runs, load_run, save_run, write_chrome_trace
from pplab.schedules import ActionKind, build
from pplab.sim.simulator import CostModel, metadata, simulate
from pplab.timeline import (
    EVENT_COLUMNS,
    EventKind,
    chrome_trace,
    events_frame,
    events_to_csv_text,
    metrics,
)
from pplab.topology import Topology


def _rows():
    # rank 0: F 0-2, send 1-3 (1 s of it hidden behind F), idle 3-4, B 4-6
    # rank 1: F 2-3, B 3-5, allreduce 5-6
    base = {"source": "measured"}
    return events_frame([
        dict(base, rank=0, stage=0, kind="F", microbatch=0, start=0.0, end=2.0),
        dict(base, rank=0, stage=0, kind="send", microbatch=0, start=1.0, end=3.0, peer=1,
             bytes=64),
        dict(base, rank=0, stage=0, kind="B", microbatch=0, start=4.0, end=6.0),
        dict(base, rank=1, stage=1, kind="F", microbatch=0, start=2.0, end=3.0),
        dict(base, rank=1, stage=1, kind="B", microbatch=0, start=3.0, end=5.0),
        dict(base, rank=1, kind="allreduce", start=5.0, end=6.0, detail="dp grads"),
    ])


def test_metrics_split_busy_comm_idle():
    result = metrics(_rows())
    assert result["makespan"] == 6.0
    assert result["per_rank"][0] == {"busy": 4.0, "comm": 1.0, "idle": 1.0}
    assert result["per_rank"][1] == {"busy": 3.0, "comm": 1.0, "idle": 2.0}
    # comm counts as bubble: 1 - busy / (ranks x makespan)
    assert result["bubble_fraction"] == pytest.approx(1 - 7 / 12)
    assert result["peak_activations"] == {0: 1, 1: 1}
    assert result["source"] == "measured" and result["num_ranks"] == 2
    assert result["steps"] == 1 and "per_step" not in result


def test_an_idle_rank_of_the_run_counts_in_the_bubble():
    # A CSV with an empty row: rank 2 never works, yet its whole makespan is bubble.
    from pplab.schedules import schedule_from_csv_text

    schedule = schedule_from_csv_text("0F0,0B0\n1F0,1B0\n\n")
    assert schedule.pp_size == 3
    events = simulate(schedule, CostModel(forward=1, backward=1))
    counted = metrics(events, ranks=range(schedule.pp_size))
    assert counted["num_ranks"] == 3
    assert counted["per_rank"][2] == {"busy": 0.0, "comm": 0.0, "idle": 4.0}
    assert counted["bubble_fraction"] == pytest.approx(1 - 4 / (3 * 4))
    with pytest.raises(ValueError, match=r"ranks \[1\] outside the run's 1 ranks"):
        metrics(events, ranks=[0])


def test_overlapping_busy_intervals_count_once():
    rows = [dict(rank=0, kind="F", start=0.0, end=2.0, source="measured", stage=0),
            dict(rank=0, kind="optim", start=1.0, end=3.0, source="measured")]
    assert metrics(events_frame(rows))["per_rank"][0]["busy"] == 3.0


def test_peak_counts_until_w_ends_and_release_before_acquire():
    rows = [dict(rank=0, stage=0, kind=k, microbatch=mb, start=s, end=e, source="simulated")
            for k, mb, s, e in [("F", 0, 0, 1), ("I", 0, 1, 2), ("F", 1, 2, 3),
                                ("W", 0, 3, 4), ("I", 1, 4, 5), ("W", 1, 5, 6), ("F", 2, 6, 7),
                                ("B", 2, 7, 8)]]
    assert metrics(events_frame(rows))["peak_activations"] == {0: 2}


def test_per_step_metrics():
    events = simulate(build("pipedream", 3, 3, num_steps=2))
    result = metrics(events)
    assert result["steps"] == 2
    assert [s["step"] for s in result["per_step"]] == [0, 1]
    for step in result["per_step"]:
        assert 0 < step["makespan"] <= result["makespan"]
        assert 0 <= step["bubble_fraction"] < 1


def test_empty_events_are_an_error():
    with pytest.raises(ValueError, match="empty"):
        metrics(events_frame([]))


def test_save_and_load_round_trip(tmp_path):
    schedule, cost = build("1f1b", 3, 4), CostModel(latency=0.5, message_bytes=8)
    events = simulate(schedule, cost)
    meta = metadata(schedule, cost)
    path = save_run(tmp_path / "runs" / "first", events, meta)
    assert sorted(p.name for p in path.iterdir()) == ["events.parquet", "meta.json"]
    run = load_run(path)
    pd.testing.assert_frame_equal(run.events, events)
    assert run.metadata["schedule"]["name"] == "1f1b"
    assert run.metadata["time_unit"] == "cost units"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["first"]  # no temp left
    with pytest.raises(ValueError, match="already exists"):
        save_run(path, events, meta)


def test_save_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        save_run(tmp_path / "r", _rows(), {"bad": object()})
    assert not (tmp_path / "r").exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_run_directories_give_one_line_reasons(tmp_path):
    good = save_run(tmp_path / "good", _rows(), {"source": "measured"})
    (tmp_path / "empty").mkdir()
    broken_json = save_run(tmp_path / "broken_json", _rows(), {})
    (broken_json / "meta.json").write_text("{not json")
    not_object = save_run(tmp_path / "list_meta", _rows(), {})
    (not_object / "meta.json").write_text("[1, 2]")
    bad_parquet = save_run(tmp_path / "bad_parquet", _rows(), {})
    (bad_parquet / "events.parquet").write_bytes(b"PAR1 garbage")
    foreign = save_run(tmp_path / "foreign", _rows(), {})
    pd.DataFrame({"x": [1]}).to_parquet(foreign / "events.parquet")
    (tmp_path / ".in-progress").mkdir()
    (tmp_path / "stray.txt").write_text("not a run")

    runs, bad = list_runs(tmp_path)
    assert [r.path for r in runs] == [good]
    reasons = {path.name: reason for path, reason in bad}
    assert set(reasons) == {"empty", "broken_json", "list_meta", "bad_parquet", "foreign"}
    assert "meta.json is missing" in reasons["empty"]
    assert "not valid JSON" in reasons["broken_json"]
    assert "not a JSON object" in reasons["list_meta"]
    assert "cannot be read as Parquet" in reasons["bad_parquet"]
    assert "columns" in reasons["foreign"] and "missing" in reasons["foreign"]
    assert all("\n" not in reason for reason in reasons.values())
    with pytest.raises(RunError, match="not a directory"):
        load_run(tmp_path / "nowhere")
    assert list_runs(tmp_path / "nowhere") == ([], [])


def test_chrome_trace_one_track_per_rank(tmp_path):
    events = simulate(build("1f1b", 3, 4))
    trace = chrome_trace(events)
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {0: "rank 0", 1: "rank 1", 2: "rank 2"}
    assert len(slices) == len(events)
    assert {e["pid"] for e in slices} == {0}
    first = min(slices, key=lambda e: (e["ts"], e["tid"]))
    assert (first["name"], first["ts"], first["dur"]) == ("0F0", 0.0, 1e6)
    # Slices on one track never overlap, so Perfetto nests nothing wrongly.
    for tid in names:
        mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in slices if e["tid"] == tid)
        assert all(a[1] <= b[0] + 1e-6 for a, b in zip(mine, mine[1:], strict=False))
    path = write_chrome_trace(events, tmp_path / "t.json")
    assert json.loads(path.read_text())["traceEvents"] == json.loads(json.dumps(trace))[
        "traceEvents"]


def test_chrome_trace_puts_overlapping_messages_on_lanes_that_nest():
    events = simulate(build("interleaved-1f1b", 4, 8, 2), CostModel(latency=0.7))
    trace = chrome_trace(events)["traceEvents"]
    slices = [e for e in trace if e["ph"] == "X"]
    sends = [e for e in slices if e["cat"] == "send"]
    assert len(sends) == (events["kind"] == "send").sum()
    assert sends and all(e["tid"] >= 10_000 for e in sends)
    assert {e["name"] for e in sends} >= {"send 0->1", "send 1->0", "send 3->0"}
    assert all(e["tid"] < 4 for e in slices if e["cat"] in ("F", "B"))
    for tid in {e["tid"] for e in slices}:
        mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in slices if e["tid"] == tid)
        assert all(a[1] <= b[0] + 1e-6 for a, b in zip(mine, mine[1:], strict=False)), tid
    named = {e["tid"] for e in trace if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {e["tid"] for e in slices} == named


def test_events_csv_text():
    events = simulate(build("gpipe", 2, 2))
    back = pd.read_csv(io.StringIO(events_to_csv_text(events)), keep_default_na=False)
    assert list(back.columns) == list(EVENT_COLUMNS)
    assert len(back) == len(events)
    assert back["start"].tolist() == events["start"].tolist()


def test_event_kinds_round_trip_through_the_table_csv_and_a_run_directory(tmp_path):
    events = simulate(build("zb-h1", 2, 3), CostModel(latency=0.5))
    assert set(events["kind"]) >= {EventKind.FORWARD, EventKind.BACKWARD_INPUT,
                                   EventKind.BACKWARD_WEIGHT, EventKind.SEND}
    back = pd.read_csv(io.StringIO(events_to_csv_text(events)), keep_default_na=False)
    assert back["kind"].tolist() == events["kind"].tolist()
    # the members select rows of a table read back from text, and name its values
    sends = back[back["kind"] == EventKind.SEND]
    assert len(sends) == (events["kind"] == "send").sum() > 0
    assert {EventKind(kind) for kind in back["kind"]} <= set(EventKind)
    save_run(tmp_path / "run", events_frame(back.to_dict("records")), {"name": "x"})
    loaded = load_run(tmp_path / "run").events
    assert loaded["kind"].tolist() == events["kind"].tolist()
    assert EventKind.FORWARD == ActionKind.FORWARD == "F"


def test_simulated_events_carry_every_rank_as_a_pipeline_rank():
    events = simulate(build("interleaved-1f1b", 3, 6, 2))
    assert (events["pp_rank"] == events["rank"]).all()
    assert (events["tp_rank"] == 0).all() and (events["dp_rank"] == 0).all()
    rows = events_frame([{"rank": 2, "kind": "F", "start": 0.0, "end": 1.0, "source": "x"},
                         {"rank": 5, "pp_rank": 1, "tp_rank": 1, "dp_rank": 0, "kind": "F",
                          "start": 0.0, "end": 1.0, "source": "x"}])
    assert rows[["pp_rank", "tp_rank", "dp_rank"]].to_numpy().tolist() == [[2, 0, 0], [1, 1, 0]]


def test_measured_rows_carry_the_recording_ranks_coordinates():
    from pplab.engine.recorder import Recorder

    topology = Topology(pp_size=2, tp_size=2, dp_size=2)
    recorder = Recorder(6, coords=topology.coords(6))
    with recorder.span(EventKind.FORWARD, stage=1, microbatch=0):
        pass
    (row,) = events_frame(recorder.rows_for_timeline()).itertuples(index=False)
    assert (row.rank, row.pp_rank, row.tp_rank, row.dp_rank) == (6, 1, 0, 1)
    assert topology.rank_of(pp=1, dp=1, tp=0) == 6


def test_peak_with_zero_cost_actions_follows_the_order():
    free = CostModel(forward=0, backward=0, backward_input=0, backward_weight=0)
    assert metrics(simulate(build("1f1b", 4, 8), free))["peak_activations"] == {
        0: 4, 1: 3, 2: 2, 3: 1}
