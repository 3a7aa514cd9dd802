"""The terms issue 25 added to the calibrated prediction, each checked on known timelines.

Activations held make an action dearer beyond what the run held (the simulator's
``held_growth``, measured by ``pplab.calibration.variation``); steps and actions vary as the
run's did (drawn); every prediction carries an interval from those draws and the model's
known error, and the bundled runs' replays fall inside theirs about as often as it says.

    pytest -q tests/test_prediction_terms.py
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pplab.calibration import fit, replay, what_if
from pplab.calibration.costs import (
    MODULES_LAST,
    MODULES_PER_LAYER,
    compute_costs,
    split_costs,
)
from pplab.calibration.interval import INTERVAL, Interval, coverage, error_bar, model_error
from pplab.calibration.variation import MACHINE_HELD_GROWTH, held_counts
from pplab.runs import run_dirs
from pplab.runs.resources import bundled_runs_dir
from pplab.schedules import build
from pplab.schedules.actions import COMPUTE_KINDS
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import peak_held
from tests.test_calibrate import STAGE_COSTS, recorded_run

BUNDLED = ("1f1b-p2m8", "gpipe-p2m8", "interleaved-1f1b-p2v2m8", "1f1b-p4m8", "gpipe-p4m8",
           "zb-h1-p4m8", "pipedream-p4m8")


def test_held_growth_left_out_draws_exactly_the_plain_timeline():
    schedule = build("gpipe", 3, 6)
    plain = simulate(schedule, CostModel(forward=1.0, backward=2.0, latency=0.1))
    none_grows = simulate(schedule, CostModel(forward=1.0, backward=2.0, latency=0.1,
                                              held_growth=(0.5, 0.5, 0.5, 0.5), held_free=6))
    pd.testing.assert_frame_equal(plain, none_grows)


@pytest.mark.parametrize("name", ["gpipe", "1f1b", "zb-h1", "interleaved-1f1b"])
def test_an_action_grows_by_what_its_rank_holds_beyond_the_free_count(name):
    schedule = build(name, 2, 8, 2 if name.startswith("interleaved") else None)
    growth = (0.1, 0.2, 0.3, 0.4)
    cost = CostModel(forward=1.0, backward=2.0, backward_input=1.0, backward_weight=1.0,
                     held_growth=growth, held_free=2)
    events = simulate(schedule, cost)
    durations = cost.stage_durations(schedule)
    for rank, order in schedule.actions.items():
        actions = [(a.stage, a.kind, a.microbatch) for a in order]
        mine = events[(events["rank"] == rank) & events["kind"].isin(COMPUTE_KINDS)]
        mine = mine.sort_values("start", kind="stable")
        for (stage, kind, _), held, row in zip(actions, held_counts(actions),
                                                mine.itertuples(), strict=True):
            factor = 1 + growth[COMPUTE_KINDS.index(kind)] * max(0, held - 2)
            assert row.end - row.start == pytest.approx(durations[stage][kind] * factor)


def test_what_a_rank_holds_is_the_timelines_own_count():
    schedule = build("zb-h1", 4, 8)
    events = simulate(schedule, CostModel(forward=1.0, backward_input=1.0, backward_weight=1.0))
    most = {}
    for rank, order in schedule.actions.items():
        actions = [(a.stage, a.kind, a.microbatch) for a in order]
        # as each starts, and once more after the last: the most held at once
        most[rank] = max(held_counts([*actions, (0, "F", -1)]))
    assert most == {int(r): int(v) for r, v in peak_held(events, "rank").items()}


def test_a_run_that_held_many_measures_its_own_growth_and_one_that_held_few_borrows(tmp_path):
    costs = [CostModel(stage_costs=STAGE_COSTS, latency=0.001, optimizer=0.002)] * 3
    gpipe = fit(recorded_run(tmp_path / "gpipe", build("gpipe", 2, 12), costs))
    few = fit(recorded_run(tmp_path / "1f1b", build("1f1b", 2, 4), costs))
    # every action of a kind cost the same whatever was held: a slope of 0, measured here
    assert gpipe.held_seen == 12 and gpipe.held_rule.startswith("measured in this run")
    assert all(g == pytest.approx(0.0, abs=1e-9) for g in gpipe.held_growth.values())
    assert few.held_seen == 2 and "this machine's" in few.held_rule
    assert few.held_growth == MACHINE_HELD_GROWTH


@pytest.mark.slow
def test_more_microbatches_held_than_the_run_held_make_a_what_if_dearer(tmp_path):
    costs = [CostModel(stage_costs=STAGE_COSTS, latency=0.001, optimizer=0.002)] * 3
    run = recorded_run(tmp_path / "run", build("1f1b", 2, 4), costs)
    calibration = fit(run)
    held = what_if(run, calibration, schedule="gpipe", microbatches=16)
    flat = what_if(run, type(calibration)(**{**calibration.__dict__, "held_growth": {}}),
                   schedule="gpipe", microbatches=16)
    same_held = what_if(run, calibration, microbatches=16)  # 1F1B holds 2 at any m
    assert held.step_time > flat.step_time * 1.05
    assert same_held.step_time < held.step_time


def test_an_interval_holds_its_middle_and_widens_by_the_model_error_each_side():
    bare = error_bar(100.0, [], 0.0)
    assert (bare.low, bare.high) == (100.0, 100.0)
    draws = [90.0, 95.0, 100.0, 105.0, 110.0]
    drawn = error_bar(100.0, draws, 0.0)
    assert drawn.low < 100.0 < drawn.high
    wider = error_bar(100.0, draws, 0.05)
    assert wider.low < drawn.low and wider.high > drawn.high
    z = 1.2816
    model_only = error_bar(100.0, [100.0] * 5, 0.05)
    assert model_only.high == pytest.approx(100.0 * math.exp(z * 0.05), rel=1e-4)
    # the run's own steps reach further than the draws: each side reaches as far as they did
    own = (80.0, 90.0, 100.0, 110.0, 130.0)
    low, high = np.quantile(own, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    steps = error_bar(100.0, draws, 0.0, measured=own)
    assert steps.low == pytest.approx(low) and steps.high == pytest.approx(high)
    narrow = error_bar(100.0, draws, 0.0, measured=(99.0, 100.0, 101.0))
    assert (narrow.low, narrow.high) == (drawn.low, drawn.high)  # never narrower than draws
    assert coverage([(Interval(1.0, 2.0), [0.5, 1.5, 1.9, 2.5])]) == 0.5
    assert coverage([]) is None
    # the median of |log(1 + error)| over the normal quantile of 3/4
    assert model_error([0.01, -0.01, 0.02]) == pytest.approx(-math.log(0.99) / 0.6745, rel=1e-3)


@pytest.mark.slow  # replays every bundled run
def test_the_bundled_replays_have_no_bias_and_their_intervals_hold_most_of_their_steps():
    """Replays of the recorded runs (the same on every machine): the signed median within
    2 %, no run past 8 %, and the interval holding its steps about as often as it says."""
    errors, pairs = [], []
    for name in BUNDLED:
        run = run_dirs.load_run(bundled_runs_dir() / name)
        calibration = fit(run)
        prediction = replay(run, calibration)
        errors.append(prediction.error)
        assert prediction.interval.low < prediction.step_time < prediction.interval.high
        pairs.append((prediction.interval, list(calibration.measured.times)))
    ordered = sorted(errors)
    assert abs(ordered[len(ordered) // 2]) <= 0.02, errors
    assert max(abs(e) for e in errors) <= 0.08, errors
    assert abs(coverage(pairs) - INTERVAL) <= 0.15, coverage(pairs)


@pytest.mark.slow  # predicts every bundled run
def test_the_readme_and_lesson_10_quote_what_predict_accuracy_computes_on_the_bundled_runs():
    """README's rows 0a and 0b (median, signed median, worst, steps inside the intervals) and
    lesson 10's sentence of the same figures, against benchmarks/predict_accuracy.py's
    bundled tables, computed here."""
    import importlib.util
    import re
    import statistics
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("predict_accuracy",
                                                  root / "benchmarks" / "predict_accuracy.py")
    benchmark = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = benchmark  # its dataclasses look their module up by name
    spec.loader.exec_module(benchmark)
    readme = (root / "README.md").read_text()
    lesson = (root / "lessons" / "10-measured-vs-predicted" / "README.md").read_text()
    for key, rows in benchmark.bundled_predictions().items():
        line = next(x for x in readme.splitlines() if x.startswith(f"| {key}. "))
        median, signed, worst, held, steps = (float(x) for x in re.findall(
            r"\| ([-+]?[\d.]+) % \| ([-+]?[\d.]+) % \| ([\d.]+) % .*\| (\d+) % of (\d+) steps",
            line)[0])
        errors = [(p.step_time - c.measured.step_time) / c.measured.step_time
                  for _, p, c in rows]
        pairs = [(p.interval, list(c.measured.times)) for _, p, c in rows]
        assert median == round(100 * statistics.median(abs(e) for e in errors), 1), line
        assert signed == round(100 * statistics.median(errors), 1), line
        assert worst == round(100 * max(abs(e) for e in errors), 1), line
        assert (held, steps) == (round(100 * coverage(pairs)), sum(len(t) for _, t in pairs))
        quoted = (f"{median:.1f} % (signed{' median' if key == '0a' else ''} {signed:+.1f} %, "
                  f"worst {worst:.1f} %)")
        assert quoted in " ".join(lesson.split()), quoted
        assert f"hold {held:.0f} %" in " ".join(lesson.split()), held
        if key == "0b":  # "The three worst involve the one zero-bubble run"
            worst_three = sorted(zip(errors, (label for label, _, _ in rows), strict=True),
                                 key=lambda pair: -abs(pair[0]))[:3]
            assert all("zb-h1-p4m8" in label for _, label in worst_three), worst_three
            assert "The three worst involve the one zero-bubble run" in " ".join(lesson.split())


def test_a_stage_that_splits_pays_the_engines_split_and_one_that_ran_split_has_it_taken_off(
        tmp_path):
    """From a run of full backwards, a zero-bubble what-if charges every stage but the first
    the engine's hooks in F and its I + W beyond B; from a run that split, a plain what-if
    takes them off again, and its replay keeps what it measured."""
    cost = [CostModel(stage_costs=STAGE_COSTS, latency=0.001, optimizer=0.002,
                      message_bytes=65_536)] * 3
    plain = fit(recorded_run(tmp_path / "1f1b", build("1f1b", 2, 4), cost))
    split = fit(recorded_run(tmp_path / "zb", build("zb-h1", 2, 4), cost))
    assert plain.activation_bytes == split.activation_bytes == 65_536
    extra = [split_costs(2, stage == 1, 65_536) for stage in range(2)]
    assert extra[1].backward == pytest.approx(
        (2 * MODULES_PER_LAYER + MODULES_LAST) * (extra[0].backward / (2 * MODULES_PER_LAYER)))
    zero_bubble = compute_costs(plain, build("zb-h1", 2, 4))
    f0, b0, _, _ = STAGE_COSTS[0]
    f1, b1, _, _ = STAGE_COSTS[1]
    assert zero_bubble[0]["F"] == pytest.approx(f0)  # the first stage never splits
    assert zero_bubble[0]["W"] == pytest.approx(b0) and zero_bubble[0]["I"] == 0.0
    assert zero_bubble[1]["F"] == pytest.approx(f1 + extra[1].forward)
    assert zero_bubble[1]["I"] + zero_bubble[1]["W"] == pytest.approx(b1 + extra[1].backward)
    assert zero_bubble[1]["I"] == pytest.approx(zero_bubble[1]["W"])  # INPUT_FRACTION 0.50
    assert "I and W estimated from B" in plain.split_backward_rule
    # the same recorded costs read back as a stage that does not split would cost them
    _, _, i1, w1 = STAGE_COSTS[1]
    one_f_one_b = compute_costs(split, build("1f1b", 2, 4))
    assert one_f_one_b[1]["F"] == pytest.approx(f1 - extra[1].forward)
    assert one_f_one_b[1]["B"] == pytest.approx(i1 + w1 - extra[1].backward)
    own = compute_costs(split, build("zb-h1", 2, 4))
    for stage, (f, _, i, w) in enumerate(STAGE_COSTS):
        assert (own[stage]["F"], own[stage]["I"], own[stage]["W"]) == pytest.approx((f, i, w))


def test_the_split_charge_counts_the_modules_the_engine_hooks():
    """``MODULES_PER_LAYER`` and ``MODULES_LAST`` are the Linears and LayerNorms a stage of
    the toy GPT holds, which the engine's split backward hooks one by one."""
    torch = pytest.importorskip("torch")
    from pplab.engine.partition import build_stage
    from pplab.engine.train_config import ModelConfig

    config = ModelConfig(n_layers=6)
    for split, stage, last in (((3, 3), 1, True), ((2, 2, 2), 1, False)):
        module = build_stage(config, split, stage)
        hooked = sum(isinstance(m, torch.nn.Linear | torch.nn.LayerNorm)
                     for m in module.modules())
        assert hooked == MODULES_PER_LAYER * split[stage] + (MODULES_LAST if last else 0)


def test_lesson_10_quotes_the_readmes_latest_timed_medians():
    """Lesson 10 sums up benchmarks/predict_accuracy.py's timed tables (fresh runs, which no
    test can repeat) by their median errors: the figures it quotes are the README's, from the
    last table of timed runs."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text().splitlines()
    lesson = " ".join((root / "lessons" / "10-measured-vs-predicted" / "README.md")
                      .read_text().split())
    start = max(i for i, line in enumerate(readme) if line.startswith("| 1. replay, 2 ranks"))
    medians = {}
    for line in readme[start:start + 5]:
        key, cells = line.split(".")[0].strip("| "), line.split("|")
        medians[key] = re.match(r" ([\d.]+) %", cells[3]).group(1)
    assert set(medians) == {"1", "1d", "2", "3a", "3b"}
    quoted = (f"replays of 2-rank runs within {medians['1']} % at the median "
              f"({medians['1d']} % at `.venv/bin/pplab train`'s default sizes), what-ifs "
              f"(other schedules and microbatch counts on the same costs) within "
              f"{medians['2']} %, and 4 ranks on 2 cores within {medians['3a']} % (replays) "
              f"and {medians['3b']} % (what-ifs)")
    assert quoted in lesson
