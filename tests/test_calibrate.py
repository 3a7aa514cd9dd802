"""Calibration recovers the costs a timeline was made with, and replays it.

A simulated timeline of known costs is written the way the engine records one (a send when
a message leaves, a receive posted, a wait while a receiver is blocked), then fitted: every
stage's F and B, the link latency and bandwidth, the step's tail and the sharing of cores
come back exactly, and the replay gives the measured step back. The real runs bundled in
data/runs are replayed within a bound of their recorded steps (recorded once: the same numbers
on every machine); one real short run checks that a fresh run calibrates and replays at all
(marked multiprocess), with no bound on how close, which would depend on the machine's load.

    pytest -q tests/test_calibrate.py
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pplab import timeline
from pplab.calibration import (
    CALIBRATION_FILE,
    Calibration,
    calibration_for,
    fit,
    gap_breakdown,
    replay,
    simulate_shared,
    what_if,
)
from pplab.runs import run_dirs
from pplab.schedules import build, schedule_to_csv_text
from pplab.schedules.actions import COMPUTE_KINDS
from pplab.sim.cost_model import CostModel
from pplab.sim.sharing import SharedClock
from pplab.sim.simulator import schedule_summary, simulate

STAGE_COSTS = ((0.010, 0.021, 0.0, 0.021), (0.013, 0.019, 0.011, 0.010))  # (F, B, I, W)


def recording(events: pd.DataFrame, step: int, offset: float) -> list[dict]:
    """``events`` (one simulated step) as the engine records them.

    A message leaves when its action ends (a send of no length, its bytes) and is received
    by a receive posted at once; the receiver waits, blocked, from the end of its previous
    action until the action that needs it starts. Compute and optimizer events stay.
    """
    rows = []
    ordered = events.sort_values(["rank", "start"], kind="stable")
    compute = ordered[ordered["kind"].isin([*COMPUTE_KINDS, "optim"])]
    for row in compute.itertuples(index=False):
        rows.append({**row._asdict(), "start": row.start + offset, "end": row.end + offset,
                     "step": step, "source": "measured"})
    for send in ordered[ordered["kind"] == "send"].itertuples(index=False):
        gradient = send.detail.startswith("gradient")
        target = send.stage - 1 if gradient else send.stage + 1
        kinds = ("B", "I") if gradient else ("F",)
        user = compute[(compute["rank"] == send.peer) & (compute["stage"] == target)
                       & (compute["microbatch"] == send.microbatch)
                       & compute["kind"].isin(kinds)].iloc[0]
        mine = compute[(compute["rank"] == send.peer) & (compute["end"] <= user["start"])]
        before = float(mine["end"].max()) if len(mine) else 0.0
        detail = "gradient" if gradient else "activation"
        common = {"stage": send.stage, "microbatch": send.microbatch, "step": step,
                  "source": "measured", "detail": detail}
        rows.append({**common, "rank": send.rank, "kind": "send", "start": send.start + offset,
                     "end": send.start + offset, "peer": send.peer, "bytes": send.bytes})
        rows.append({**common, "rank": send.peer, "kind": "recv", "start": before + offset,
                     "end": before + offset, "peer": send.rank, "bytes": send.bytes})
        if user["start"] > before:
            rows.append({**common, "rank": send.peer, "kind": "wait", "start": before + offset,
                         "end": float(user["start"]) + offset, "peer": send.rank})
    return rows


def recorded_run(directory, schedule, costs_per_step, cores=4, shared_slots=None,
                 layer_split=None):
    """A run directory of one simulated step per cost model, recorded as the engine would."""
    rows, offset = [], 0.0
    for step, cost in enumerate(costs_per_step):
        events = (simulate_shared(schedule, cost, shared_slots) if shared_slots
                  else simulate(schedule, cost))
        rows += recording(events, step, offset)
        offset += float(events["end"].max()) + 1.0
    meta = {"source": "measured", "time_unit": "s",
            "schedule": {**schedule_summary(schedule), "csv": schedule_to_csv_text(schedule)},
            "world_size": schedule.pp_size, "pp_size": schedule.pp_size, "tp_size": 1,
            "dp_size": 1, "layer_split": list(layer_split or (2,) * schedule.num_stages),
            "config": {"device": "cpu"},
            "hardware": {"device": "cpu", "cpu_count": cores, "hosts": ["here"]}}
    return run_dirs.load_run(run_dirs.save_run(directory, timeline.events_frame(rows), meta))


def test_calibration_recovers_stage_costs_latency_bandwidth_and_tail_exactly(tmp_path):
    schedule = build("zb-h1", 2, 4)
    base = {"stage_costs": STAGE_COSTS, "latency": 0.002, "bandwidth": 1e9, "optimizer": 0.004}
    steps = [CostModel(**base, message_bytes=size) for size in (4e6, 1e6, 3e6)]
    run = recorded_run(tmp_path / "run", schedule, steps)
    calibration = fit(run)
    assert calibration.steps == (1, 2)  # step 0 is the warm-up, left out
    for stage, (f, _, i, w) in enumerate(STAGE_COSTS):
        got = calibration.compute[stage]
        assert got["F"] == pytest.approx(f) and got["W"] == pytest.approx(w)
        assert got["I"] == pytest.approx(i, abs=1e-12)
    # Messages of two sizes tell latency from bandwidth: time = 2 ms + bytes / 1 GB/s.
    for link in calibration.links:
        assert (link.src, link.dst) in ((0, 1), (1, 0))
        assert link.latency == pytest.approx(0.002)
        assert link.bandwidth == pytest.approx(1e9)
    assert calibration.tail == pytest.approx(0.004)
    assert calibration.send_cost == calibration.recv_cost == 0.0
    assert not calibration.contention.shared


def test_the_replay_of_a_recorded_simulation_is_the_measured_step(tmp_path):
    schedule = build("1f1b", 2, 6)
    cost = CostModel(stage_costs=STAGE_COSTS, latency=0.0015, optimizer=0.003)
    run = recorded_run(tmp_path / "run", schedule, [cost] * 3)
    calibration = fit(run)
    prediction = replay(run, calibration)
    assert prediction.step_time == pytest.approx(calibration.measured.step_time, rel=1e-9)
    assert prediction.bubble == pytest.approx(calibration.measured.bubble, rel=1e-9)
    assert prediction.error == pytest.approx(0.0, abs=1e-9)
    expected = simulate(schedule, cost)
    assert calibration.measured.step_time == pytest.approx(float(expected["end"].max()))
    table = gap_breakdown(run, calibration, prediction).set_index("what")
    assert table["gap (s)"].abs().max() == pytest.approx(0.0, abs=1e-9)
    # the parts add up to the step, on both sides
    for side in ("measured (s)", "predicted (s)"):
        assert table[side].iloc[:5].sum() == pytest.approx(table.loc["step time", side])


@pytest.mark.slow
def test_calibration_recovers_dedicated_costs_and_cores_from_shared_ranks(tmp_path):
    schedule = build("1f1b", 4, 8)
    cost = CostModel(stage_costs=((0.01, 0.02, 0, 0),) * 4, latency=0.001, optimizer=0.002)
    run = recorded_run(tmp_path / "run", schedule, [cost] * 3, cores=2, shared_slots=2)
    calibration = fit(run)
    sharing = calibration.contention
    assert sharing.shared and (sharing.ranks, sharing.slots) == (4, 2)
    assert sharing.effective_slots == pytest.approx(2.0)
    assert sharing.slowdown > 1.2  # four ranks on two cores: much of the work was shared
    for stage in range(4):
        assert calibration.compute[stage]["F"] == pytest.approx(0.01)
        assert calibration.compute[stage]["B"] == pytest.approx(0.02)
    prediction = replay(run, calibration)
    assert prediction.shared
    assert prediction.step_time == pytest.approx(calibration.measured.step_time, rel=1e-6)
    table = gap_breakdown(run, calibration, prediction).set_index("what")
    assert table.loc["contention", "measured (s)"] > 0.01


@pytest.mark.parametrize(("name", "chunks", "options"), [
    ("gpipe", None, {}), ("1f1b", None, {}), ("zb-h1", None, {}),
    ("interleaved-1f1b", 2, {}), ("pipedream", None, {"num_steps": 2}),
])
def test_sharing_with_a_core_per_rank_is_the_simulator(name, chunks, options):
    schedule = build(name, 3, 6, chunks, **options)
    cost = CostModel(forward=1.0, backward=2.1, backward_input=1.2, backward_weight=0.9,
                     latency=0.3, bandwidth=4.0, message_bytes=1.0, optimizer=0.5)
    columns = ["rank", "stage", "kind", "microbatch", "start", "end", "peer"]
    ours = simulate_shared(schedule, cost, slots=3)
    theirs = simulate(schedule, cost)
    ours, theirs = (frame[columns].sort_values(columns[:4] + ["start"]).reset_index(drop=True)
                    for frame in (ours, theirs))
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=1e-9, atol=1e-9)


def test_fewer_cores_make_a_longer_step_and_the_clock_reads_sharing_back():
    schedule = build("gpipe", 4, 4)
    cost = CostModel(forward=1.0, backward=2.0)
    own = float(simulate_shared(schedule, cost, slots=4)["end"].max())
    shared = simulate_shared(schedule, cost, slots=2)
    assert float(shared["end"].max()) > own
    busy = [(int(r.rank), r.start, r.end) for r in shared.itertuples() if r.kind in "FB"]
    clock = SharedClock(busy, 2.0)
    for row in shared[shared["kind"].isin(["F", "B"])].itertuples():
        assert clock.alone(row.start, row.end) == pytest.approx(1.0 if row.kind == "F" else 2.0)


@pytest.mark.slow
def test_what_if_from_one_calibration_orders_schedules_as_their_simulations(tmp_path):
    schedule = build("1f1b", 2, 4)
    cost = CostModel(forward=0.01, backward=0.02, latency=0.001)
    run = recorded_run(tmp_path / "run", schedule, [cost] * 3, layer_split=(2, 2))
    calibration = fit(run)
    steps = {m: what_if(run, calibration, microbatches=m).step_time for m in (2, 4, 8)}
    assert steps[2] < steps[4] < steps[8]
    assert what_if(run, calibration, microbatches=4).replay
    interleaved = what_if(run, calibration, schedule="interleaved-1f1b", chunks=2)
    assert not interleaved.replay and interleaved.schedule.num_stages == 4
    assert interleaved.step_time < steps[4]  # a smaller bubble, messages here cost little
    with pytest.raises(ValueError, match="8 stages need at least 8 layers"):
        what_if(run, calibration, pp_size=8)


def test_a_calibration_is_saved_beside_the_run_and_a_damaged_one_is_refitted(tmp_path):
    schedule = build("gpipe", 2, 4)
    run = recorded_run(tmp_path / "run", schedule, [CostModel(forward=0.01, backward=0.02)] * 2)
    first = calibration_for(run)
    path = run.path / CALIBRATION_FILE
    saved = json.loads(path.read_text())
    assert Calibration.from_json(json.dumps(saved["calibration"])) == first
    assert sorted(p.name for p in run.path.iterdir()) == [CALIBRATION_FILE, "events.parquet",
                                                          "meta.json"]
    path.write_text('{"events": [1, 2, 3], "calibration": "rubbish"}')
    again = run_dirs.load_run(run.path)
    from pplab.calibration import store

    store._cache.clear()
    assert calibration_for(again) == first
    with pytest.raises(ValueError, match="not a calibration"):
        Calibration.from_json('{"version": 99}')
    for size in (-1, 10**400, "many"):  # what splitting is charged by: a byte count
        with pytest.raises(ValueError, match="whole number|more bytes"):
            Calibration.from_json(json.dumps({**saved["calibration"], "activation_bytes": size}))


def test_a_run_in_a_folder_that_cannot_be_written_is_calibrated_all_the_same(tmp_path,
                                                                            monkeypatch):
    from pplab.calibration import store

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store, "write_text_atomic", refuse)
    schedule = build("1f1b", 2, 4)
    run = recorded_run(tmp_path / "run", schedule, [CostModel(forward=0.01, backward=0.02)] * 2)
    assert calibration_for(run).measured.step_time > 0
    assert not (run.path / CALIBRATION_FILE).exists()


# One run with a core per rank and one with shared cores in the fast lane; all in the suite.
@pytest.mark.parametrize("name", [
    "1f1b-p2m8", "1f1b-p4m8",
    *(pytest.param(name, marks=pytest.mark.slow) for name in (
        "gpipe-p2m8", "interleaved-1f1b-p2v2m8", "gpipe-p4m8", "zb-h1-p4m8", "pipedream-p4m8"))])
def test_a_bundled_real_run_is_replayed_within_its_bound_of_the_measured_step(name):
    """Real runs recorded once (scripts/regenerate_bundled.py), fitted and replayed here.

    Issue 25's bounds: two ranks had a core each, the replay is within 6 %; four ranks
    shared two cores, within 8 % (their steps themselves varied by 10 % and more)."""
    from pplab.runs.resources import bundled_runs_dir

    run = run_dirs.load_run(bundled_runs_dir() / name)
    calibration = fit(run)  # fitted afresh: the bundled calibration.json is not rewritten
    prediction = replay(run, calibration)
    bound = 0.06 if run.metadata["pp_size"] == 2 else 0.08
    assert abs(prediction.error) < bound, (name, prediction.error)
    assert prediction.step_time == pytest.approx(calibration.measured.step_time, rel=bound)


@pytest.mark.multiprocess
def test_a_real_short_run_is_calibrated_saved_and_replayed(tmp_path):
    """A real 1f1b run on 2 processes, replayed from its own calibration.

    How close the replay comes depends on what else the machine runs meanwhile: the bound
    is checked on the bundled runs above and by benchmarks/predict_accuracy.py, not here.
    """
    import math

    from pplab.engine.launch import output_dir, run_training
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    config = TrainConfig(schedule="1f1b", pp_size=2, microbatches=4, steps=4, layers=2,
                         d_model=32, heads=2, seq_len=16, out=str(tmp_path / "run"))
    request = check_request(config)
    run = run_dirs.load_run(run_training(request, output_dir(request)).run_dir)
    calibration = calibration_for(run)
    prediction = replay(run, calibration)
    assert prediction.step_time > 0 and math.isfinite(prediction.step_time)
    assert math.isfinite(prediction.error), calibration.describe()
    assert set(calibration.compute) == {0, 1} and calibration.links
    assert (run.path / CALIBRATION_FILE).is_file()
    faster = what_if(run, calibration, microbatches=2).step_time
    assert faster < prediction.step_time  # half the microbatches of the same size
