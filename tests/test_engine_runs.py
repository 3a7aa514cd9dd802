"""Whole runs through ``pplab train``: the run directory, failure handling, the bubble.

    pytest -q tests/test_engine_runs.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics

import pytest

from pplab.engine.config import TrainConfig
from pplab.engine.launch import RankFailed, run_training
from pplab.engine.train_command import add_parser
from pplab.timeline import load_run, metrics

pytestmark = pytest.mark.multiprocess

TINY = {"d_model": 16, "heads": 2, "seq_len": 8, "layers": 2}


def _cli(argv):
    parser = argparse.ArgumentParser(prog="pplab")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_train_writes_a_measured_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code = _cli(["train", "--schedule", "zb-h1", "--pp", "2", "--microbatches", "3",
                 "--steps", "3", "--d-model", "16", "--heads", "2", "--seq-len", "8",
                 "--json-progress", "--out", str(out)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [m["step"] for m in lines if m["event"] == "step"] == [1, 2, 3]
    assert all(m["steps"] == 3 and m["loss"] > 0 for m in lines if m["event"] == "step")
    assert lines[-1] == {"event": "done", "run_dir": str(out)}
    run = load_run(out)
    events, meta = run.events, run.metadata
    assert set(events["source"]) == {"measured"}
    for kind in ("F", "I", "W", "send", "recv", "wait", "optim"):
        assert (events["kind"] == kind).any(), kind
    compute = events[events["kind"].isin(["F", "I", "W"])]
    assert len(compute) == 3 * 2 * 3 * 3  # steps x stages x microbatches x kinds
    assert (events["end"] >= events["start"]).all() and events["start"].min() >= 0
    sends = events[events["kind"] == "send"]
    # default batch: 4 rows per microbatch; float32 activations of (4, seq 8, d_model 16)
    assert set(sends["peer"]) == {0, 1} and (sends["bytes"] == 4 * 8 * 16 * 4).all()
    assert meta["bytes_per_link"] == {
        f"{r}->{p}": int(group["bytes"].sum())
        for (r, p), group in sends.groupby(["rank", "peer"])}
    assert meta["source"] == "measured" and meta["time_unit"] == "s"
    assert meta["schedule"]["name"] == "zb-h1" and meta["schedule"]["num_microbatches"] == 3
    assert len(meta["loss"]) == 3 and meta["loss"] == [m["loss"] for m in lines[:-1]]
    assert set(meta["peak_memory_bytes"]) == {"0", "1"}
    assert all(v > 0 for v in meta["peak_memory_bytes"].values())
    for key in ("config", "model", "created", "pplab_version", "torch_version", "hardware",
                "seed", "world_size", "pp_size", "tp_size", "dp_size"):
        assert key in meta, key
    assert meta["hardware"]["gpus_shared"] is False


@pytest.mark.parametrize(("fault", "message"), [
    ("1:1:kill", "rank 1 failed: killed by signal 9"),
    ("0:2:raise", "rank 0 failed: InjectedFault: injected fault on rank 0 at step 2"),
])
def test_a_failed_rank_ends_the_run_with_its_error_and_no_run_dir(tmp_path, fault, message):
    out = tmp_path / "never"
    # The 30 s timeout is the bound: a run that only ended by timing out would report
    # "no progress within --timeout", not the failed rank's own error.
    config = TrainConfig(schedule="1f1b", pp_size=3, microbatches=3, steps=4, fault=fault,
                         timeout=30, out=str(out), **{**TINY, "layers": 3})
    with pytest.raises(RankFailed) as caught:
        run_training(config)
    assert str(caught.value) == message
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert multiprocessing.active_children() == []


def _median_bubble(num_microbatches: int) -> float:
    config = TrainConfig(schedule="gpipe", pp_size=2, microbatches=num_microbatches, steps=4,
                         batch_size=8 * num_microbatches, d_model=128, heads=4, seq_len=64,
                         layers=4, out="-")
    per_step = metrics(run_training(config).events)["per_step"]
    return statistics.median(s["bubble_fraction"] for s in per_step[1:])  # step 0 warms up


def test_measured_gpipe_bubble_falls_as_microbatches_grow():
    # GPipe (Huang et al. 2019): bubble = (p - 1) / (m + p - 1): 0.5 at m = 1, 0.11 at m = 8.
    # Messages and a shared CPU add idle time to both, so only the fall is asserted, with a
    # margin; microbatches of a few ms of compute keep the messages' share small.
    one, eight = _median_bubble(1), _median_bubble(8)
    assert one > 0.4, one
    assert eight < one - 0.1, (one, eight)


def test_a_receiver_that_takes_messages_in_reverse_order_does_not_stall_the_sender(tmp_path):
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
    result = run_training(config)
    assert len(result.losses) == 1
    sends = result.events[result.events["kind"] == "send"]
    assert len(sends) == 2 * m and (sends["bytes"] == 4 * 64 * 128 * 4).all()
