"""``pplab predict``: a replay prints predicted beside measured with the error; what-if
prints the prediction; a mistake is one line and exit status 2.

    pytest -q tests/test_predict_command.py
"""

from __future__ import annotations

import json

import pytest
from command_helpers import run_pplab
from test_calibrate import recorded_run

from pplab.calibration.breakdown import TERMS
from pplab.schedules import build
from pplab.sim.cost_model import CostModel


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One recorded run for the module: the commands read it; the first saves its calibration."""
    tmp_path = tmp_path_factory.mktemp("predict")
    cost = CostModel(stage_costs=((0.010, 0.020, 0, 0), (0.012, 0.019, 0, 0)), latency=0.001,
                     optimizer=0.002)
    return recorded_run(tmp_path / "run", build("1f1b", 2, 4), [cost] * 3)


def test_a_replay_prints_predicted_measured_error_and_the_breakdown(capsys, recorded):
    code, out, err = run_pplab(capsys, "predict", str(recorded.path))
    assert code == 0 and err == ""
    assert out.startswith("replay of 1f1b p=2 m=4")
    assert "error +0.0 %" in out  # a recorded simulation replays exactly
    for part in ("compute", "communication", "waiting on a dependency", "contention",
                 "overhead", *TERMS):
        assert part in out
    assert "80 % of steps between" in out and "2 of 2 inside" in out  # steps 1, 2


@pytest.mark.slow
def test_a_what_if_predicts_another_schedule_and_its_json_is_no_replay(capsys, recorded):
    code, out, _ = run_pplab(capsys, "predict", str(recorded.path), "--schedule", "gpipe",
                             "--microbatches", "8", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["replay"] is False and result["error"] is None
    assert result["schedule"]["label"] == "gpipe p=2 m=8"
    assert result["predicted"]["step_time_s"] > result["measured"]["step_time_s"]
    bar = result["interval"]
    assert bar["low_s"] < result["predicted"]["step_time_s"] < bar["high_s"]
    assert bar["level"] == 0.8 and bar["model_error"] > 0
    assert [t["term"] for t in result["terms"]] == list(TERMS)
    assert all(t["measured_s"] is None for t in result["terms"])  # nothing measured a what-if
    code, out, _ = run_pplab(capsys, "predict", str(recorded.path), "--stages", "4",
                             "--schedule", "interleaved-1f1b", "--chunks", "2")
    assert code == 0 and out.startswith("what-if interleaved-1f1b p=2 m=4 v=2")
    assert "unequal work" not in out  # the same batch, cut another way


@pytest.mark.slow
def test_a_what_if_of_more_microbatches_says_it_compares_unequal_work(capsys, recorded):
    code, out, _ = run_pplab(capsys, "predict", str(recorded.path), "--microbatches", "8")
    assert code == 0 and out.startswith("what-if 1f1b p=2 m=8")
    said = out[out.index("unequal work:"):]
    assert said.startswith("unequal work: 8 microbatches per step against the run's 4 "
                           "(each of the run's size), 2x the samples;"), said
    assert "per microbatch predicted" in said and "the run measured" in said
    code, out, _ = run_pplab(capsys, "predict", str(recorded.path), "--microbatches", "8",
                             "--json")
    assert json.loads(out)["work_ratio"] == 2.0


def test_a_bundled_run_is_found_by_name_and_replayed_within_ten_percent(capsys):
    code, out, _ = run_pplab(capsys, "predict", "1f1b-p2m8", "--json")
    assert code == 0 and json.loads(out)["replay"] is True
    assert abs(json.loads(out)["error"]) < 0.1


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-run"], "no-such-run is not a run directory nor a bundled run"),
    (["{run}", "--schedule", "nope"], "unknown schedule 'nope'"),
    (["{run}", "--pp", "8"], "8 stages need at least 8 layers; the run's model has 4"),
    (["{run}", "--microbatches", "0"], "0 is not a count of at least 1"),
    (["{run}", "--microbatches", "two"], "'two' is not a whole number"),
    (["{run}", "--stages", "3", "--chunks", "2", "--schedule", "interleaved-1f1b"],
     "--stages 3 is not a multiple of 2 chunks per rank"),
    (["{run}", "--schedule", "interleaved-1f1b", "--chunks", "1"],
     "interleaved-1f1b needs at least 2 chunks per rank"),
])
def test_a_mistake_is_one_line_and_exit_2(capsys, recorded, args, message):
    code, out, err = run_pplab(capsys, "predict", *[a.format(run=recorded.path) for a in args])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
