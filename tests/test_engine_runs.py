"""Whole runs: ``pplab train`` from a CSV to a run the lab replays, failures, supervision, Stop.

Every test here starts processes; each engine run checks several things at once, because
starting torch dominates the cost. Orders are asserted, never durations (benchmarks/ shows
timings, as ratios measured side by side).

    pytest -q tests/test_engine_runs.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from command_helpers import run_pplab

from pplab.engine.supervisor import RankFailed, spawn_ranks

pytestmark = pytest.mark.multiprocess

TINY = {"d_model": 16, "heads": 2, "seq_len": 8, "layers": 2}
COMPUTE = ("F", "B", "I", "W")


def _assert_measured_order_is_the_schedules(events, schedule, steps):
    """Each rank ran its actions in the schedule's order, and no action started before the
    one it depends on, on another rank, had ended."""
    from pplab.schedules import needs

    compute = events[events["kind"].isin(COMPUTE)]
    for step in range(steps):
        mine = compute[compute["step"] == step]
        ends, starts = {}, {}
        for rank, order in schedule.actions.items():
            ran = mine[mine["rank"] == rank].sort_values("start")
            assert [(s, k, m) for s, k, m in zip(ran["stage"], ran["kind"], ran["microbatch"],
                                                 strict=True)] == \
                [(a.stage, a.kind, a.microbatch) for a in order], (step, rank)
            for row in ran.itertuples():
                starts[(row.stage, row.kind, row.microbatch)] = row.start
                ends[(row.stage, row.kind, row.microbatch)] = row.end
        for action in (a for order in schedule.actions.values() for a in order):
            for needed in needs(action, schedule.num_stages):
                if needed[0] != action.stage:
                    assert ends[tuple(needed)] <= starts[tuple(action)], (step, action, needed)


def test_a_run_trained_from_a_csv_keeps_its_schedule_and_is_predicted(tmp_path, capsys,
                                                                      monkeypatch):
    from pplab.calibration.run_prediction import predicted_for
    from pplab.engine import machine
    from pplab.runs import catalog as runs_catalog
    from pplab.runs.run_dirs import load_run
    from pplab.schedules import build, read_csv, write_csv

    # Only the CLI's view of the machine: two ranks on "one core" must draw the warning.
    monkeypatch.setattr(machine, "rank_slots", lambda device: 1)
    csv = write_csv(build("zb-h1", 2, 3), tmp_path / "mine.csv")
    out = tmp_path / "runs" / "mine"
    code, printed, _ = run_pplab(capsys, "train", "--csv", str(csv), "--steps", "3",
                                 "--d-model", "16", "--heads", "2", "--seq-len", "8",
                                 "--json-progress", "--out", str(out))
    lines = [json.loads(line) for line in printed.splitlines()]
    assert code == 0, lines
    events_said = [m["event"] for m in lines]
    # What it does, from the first line: start, the warning, ranks joining, steps, done.
    assert events_said[:2] == ["start", "warning"]
    assert lines[0]["message"] == "mine pp=2 m=3 on 2 CPU processes, starting ranks…"
    assert "measured times show CPU sharing" in lines[1]["message"]
    assert [m["started"] for m in lines if m["event"] == "started"] == [1, 2]
    assert [m["ready"] for m in lines if m["event"] == "ready"] == [1, 2]
    assert events_said.index("started") < events_said.index("ready") < events_said.index("step")
    steps = [m for m in lines if m["event"] == "step"]
    assert [m["step"] for m in steps] == [1, 2, 3]
    assert all(m["steps"] == 3 and m["loss"] > 0 for m in steps)
    assert lines[-1] == {"event": "done", "run_dir": str(out)}

    run = load_run(out)
    events, meta = run.events, run.metadata
    schedule = read_csv(csv)
    assert set(events["source"]) == {"measured"}
    for kind in ("F", "I", "W", "send", "recv", "wait", "optim"):
        assert (events["kind"] == kind).any(), kind
    assert (events["end"] >= events["start"]).all() and events["start"].min() >= 0
    _assert_measured_order_is_the_schedules(events, schedule, 3)
    sends = events[events["kind"] == "send"]
    # default batch: 4 rows per microbatch; float32 activations of (4, seq 8, d_model 16)
    assert set(sends["peer"]) == {0, 1} and (sends["bytes"] == 4 * 8 * 16 * 4).all()
    assert meta["bytes_per_link"] == {
        f"{r}->{p}": int(group["bytes"].sum())
        for (r, p), group in sends.groupby(["rank", "peer"])}
    assert meta["source"] == "measured" and meta["time_unit"] == "s"
    # The schedule's text, not the path of a file that may be gone when the run is opened.
    assert meta["schedule"]["csv"] == csv.read_text()
    assert meta["schedule"]["name"] == "mine" and meta["schedule"]["num_microbatches"] == 3
    assert meta["loss"] == [m["loss"] for m in steps]
    assert set(meta["peak_memory_bytes"]) == {"0", "1"}
    assert all(v > 0 for v in meta["peak_memory_bytes"].values())
    assert (meta["world_size"], meta["pp_size"], meta["tp_size"], meta["dp_size"]) == (2, 2, 1, 1)
    for key in ("config", "model", "created", "pplab_version", "torch_version", "hardware",
                "seed"):
        assert key in meta, key
    assert meta["hardware"]["gpus_shared"] is False

    # The lab lists it and lays a prediction of its own schedule over it.
    entries, problems = runs_catalog.find_runs([("yours", tmp_path / "runs")])
    assert problems == [] and [e.run.path for e in entries] == [out]
    predicted, measured = predicted_for(run, 1)
    assert len(predicted[predicted["kind"].isin(COMPUTE)]) == \
        len(measured[measured["kind"].isin(COMPUTE)]) == 2 * 3 * 3


@pytest.mark.parametrize(("sizes", "fault", "message"), [
    ({"pp_size": 3, "layers": 3}, "1:1:kill", "rank 1 failed: killed by signal 9"),
    # Global rank 3 is pipeline position 1, tensor shard 1: the fault and the error name the
    # process, as the Event table does, not its place in the pipeline.
    ({"pp_size": 2, "tp_size": 2}, "3:1:raise",
     "rank 3 failed: InjectedFault: injected fault on rank 3 at step 1"),
])
def test_a_failed_process_ends_the_run_with_its_error_and_no_run_dir(tmp_path, sizes, fault,
                                                                      message):
    from pplab.engine.launch import output_dir, run_training
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    out = tmp_path / "never"
    # The 30 s timeout is the bound: a run that only ended by timing out would report
    # "no progress within the timeout", not the failed rank's own error.
    config = TrainConfig(schedule="1f1b", microbatches=3, steps=4, fault=fault, timeout=30,
                         out=str(out), **{**TINY, **sizes})
    request = check_request(config)
    with pytest.raises(RankFailed) as caught:
        run_training(request, output_dir(request))
    assert str(caught.value) == message
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert multiprocessing.active_children() == []


def test_a_receiver_that_takes_messages_in_reverse_order_does_not_stall_the_sender(tmp_path):
    from pplab.engine.launch import run_training
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    # Valid under "sends never block": rank 1 takes rank 0's 80 activations last-first. A
    # gloo send of a large tensor completes only once its receiver asks for it, so a sender
    # that blocked on its oldest sends mid-step would wait forever here.
    m = 80
    rank0 = [f"0F{i}" for i in range(m)] + [f"0B{i}" for i in reversed(range(m))]
    rank1 = [f"1F{i}" for i in reversed(range(m))] + [f"1B{i}" for i in reversed(range(m))]
    csv = tmp_path / "reverse.csv"
    csv.write_text(",".join(rank0) + "\n" + ",".join(rank1) + "\n")
    config = TrainConfig(csv=str(csv), steps=1, batch_size=4 * m, d_model=128, seq_len=64,
                         layers=2, timeout=60, out="-")
    result = run_training(check_request(config), None)
    assert len(result.losses) == 1
    sends = result.events[result.events["kind"] == "send"]
    assert len(sends) == 2 * m and (sends["bytes"] == 4 * 64 * 128 * 4).all()


def test_messages_in_a_group_per_direction_train_as_in_one_group():
    """Which gloo group carries a message changes when it arrives, never what: interleaved
    1F1B (both ranks send to each other mid-step) gives the same losses both ways."""
    from pplab.engine.launch import run_training
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    results = [run_training(check_request(TrainConfig(
        schedule="interleaved-1f1b", pp_size=2, chunks=2, microbatches=4, steps=2, timeout=60,
        out="-", message_groups=groups)), None) for groups in ("one", "per-direction")]
    one, split = results
    assert one.losses == split.losses
    sends = [r.events[r.events["kind"] == "send"].groupby("rank").size().to_dict()
             for r in results]
    assert sends[0] == sends[1] and set(sends[0]) == {0, 1}


def stalling_rank(rank, world_size, report, last_step):
    """Report steps 0..last_step[rank], then hang: a rank stuck at different points."""
    for step in range(last_step[rank] + 1):
        report("step", step=step)
    time.sleep(120)


def answering_rank(rank, world_size, report):
    report("step", step=0)
    return {"rank": rank, "world_size": world_size, "pid": os.getpid()}


def test_the_supervisor_returns_results_in_rank_order_and_blames_the_rank_furthest_behind():
    # Plain processes, no process group: the supervisor alone, in a second or two.
    results = spawn_ranks(3, answering_rank, backend=None, timeout=60)
    assert [(r["rank"], r["world_size"]) for r in results] == [(0, 3), (1, 3), (2, 3)]
    assert len({r["pid"] for r in results}) == 3
    with pytest.raises(RankFailed) as caught:
        spawn_ranks(3, stalling_rank, {0: 2, 1: 0, 2: 1}, backend=None, timeout=2)
    assert str(caught.value) == ("rank 1 failed: no progress within the timeout of 2 s "
                                 "(it last reported step 0)")
    assert multiprocessing.active_children() == []


def _process_groups() -> dict[int, int]:
    """pid -> process group, for every live process on this machine (Linux /proc).

    Zombies are left out: an exited process whose parent is gone waits there for PID 1 to
    reap it, which some containers' PID 1 never does; it holds nothing but its number.
    """
    groups = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        if fields[0] != "Z":
            groups[int(stat.parent.name)] = int(fields[2])
    return groups


def _run_leader(out: Path) -> int | None:
    """The ``pplab train`` writing ``out``: the app starts it leading its own process group,
    and the ranks it spawns join that group."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(out).encode() in cmdline.read_bytes():
                return int(cmdline.parent.name)
        except OSError:
            continue
    return None


class _StopPressed(Exception):
    pass


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_stopped_app_run_ends_its_processes_and_leaves_no_run_directory(tmp_path):
    from pplab.classroom.training_jobs import RunPageForm, train

    out = tmp_path / "stopped"
    request = RunPageForm("1f1b", 2, 2, 1, 200, 2, 4)
    seen = {}

    def press_stop_once_ranks_are_up(message):
        if message["event"] == "ready" and message["ready"] == message["ranks"]:
            seen["group"] = _run_leader(out)
            seen["members"] = {pid for pid, group in _process_groups().items()
                               if group == seen["group"]}
            raise _StopPressed  # what Streamlit raises in the page when Stop reruns it

    with pytest.raises(_StopPressed):
        train(request, str(out), press_stop_once_ranks_are_up)
    assert seen["group"] is not None and len(seen["members"]) >= 3  # pplab train + 2 ranks
    assert seen["group"] not in _process_groups().values()
    assert not out.exists() and list(tmp_path.iterdir()) == []
