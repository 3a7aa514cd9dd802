"""``pplab compare``: the configuration syntax, the table, and one real comparison end to end.

    pytest -q tests/test_parallel_compare.py
"""

from __future__ import annotations

import csv
import json

import pytest
from command_helpers import run_pplab

from pplab.engine.compare_specs import default_batch, parse_spec
from pplab.engine.compare_table import format_table
from pplab.runs.comparisons import COMPARISON_CSV, COMPARISON_JSON, load_comparison

TINY = ["--steps", "2", "--d-model", "16", "--heads", "2", "--seq-len", "8", "--layers", "2"]


def test_specs_read_with_their_defaults():
    spec = parse_spec("1f1b:pp=4,m=8")
    assert (spec.schedule, spec.pp, spec.m, spec.v, spec.tp, spec.dp) == ("1f1b", 4, 8, None, 1, 1)
    assert spec.topology.world_size == 4
    tp = parse_spec("tp:tp=4")
    assert (tp.schedule, tp.pp, tp.m, tp.tp, tp.dp) == ("gpipe", 1, 1, 4, 1)
    dp = parse_spec(" dp ")
    assert (dp.pp, dp.dp, dp.topology.world_size) == (1, 2, 2)
    grid = parse_spec("interleaved-1f1b:pp=2,v=2,m=4,tp=2,dp=2")
    assert grid.topology.describe() == "pp 2 x tp 2 x dp 2 = 8 ranks"
    assert parse_spec("gpipe").m == 2  # m defaults to pp: the smallest pipe that fills


@pytest.mark.parametrize("text,message", [
    ("foo:pp=2", "unknown configuration 'foo'"),
    ("1f1b:pp=2,q=3", "cannot read 'q=3'"),
    ("1f1b:pp", "cannot read 'pp'"),
    ("1f1b:pp=x", "pp=x in '1f1b:pp=x' is not a whole number"),
    ("1f1b:pp=0", "pp must be at least 1 in '1f1b:pp=0', got 0"),
    ("1f1b:pp=2,pp=3", "pp is given twice"),
])
def test_bad_specs_are_refused_with_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_default_batch_fits_every_configuration():
    specs = [parse_spec(t) for t in ("gpipe:pp=4,m=8", "tp:tp=4", "1f1b:pp=2,m=3,dp=2")]
    assert default_batch(specs) == 24  # lcm(8, 1, 6) = 24 >= 16
    assert default_batch([parse_spec("tp")]) == 16


@pytest.mark.parametrize("args,message", [
    (["1f1b:pp=2", "--heads", "3"], "1f1b:pp=2: d_model 16 is not divisible by 3 heads"),
    (["tp:tp=4"], "tp:tp=4: 2 heads cannot be split across tp 4"),
    (["1f1b:pp=2", "1f1b:pp=4"], "1f1b:pp=4: 4 stages need at least 4 layers; the model has 2"),
    (["1f1b:pp=2,m=3", "--batch-size", "4"], "batch size 4 is not divisible by 3 microbatches"),
    (["tp:tp=2", "--d-ff", "33"], "MLP width 33 is not divisible by tp 2"),
    pytest.param(["gpipe:pp=65", "--layers", "65"], "= 65 ranks on",  # ... --oversubscribe
                 marks=pytest.mark.slow),  # builds 65 stages first
])
def test_cli_refuses_bad_configurations_before_starting_anything(tmp_path, capsys, args,
                                                                 message):
    out = tmp_path / "cmp"
    code, _, err = run_pplab(capsys, "compare", *TINY, *args, "--out", str(out))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.multiprocess
def test_compare_trains_each_configuration_and_writes_the_table(tmp_path, capsys):
    from pplab.runs.run_dirs import load_run

    out = tmp_path / "cmp"
    configs = ["1f1b:pp=2,m=2", "tp:tp=2", "dp:dp=2"]
    code, printed, _ = run_pplab(capsys, "compare", *configs, *TINY, "--out", str(out))
    assert code == 0
    assert "KiB/step f." in printed and str(out / COMPARISON_JSON) in printed
    rows = load_comparison(out).rows
    assert [row["configuration"] for row in rows] == configs
    # Folders named as pplab train names runs: by what they are.
    assert [row["run"] for row in rows] == ["1-1f1b-p2m2", "2-tp2", "3-dp2"]
    for row in rows:
        run = load_run(out / row["run"])
        assert run.metadata["tp_size"] == row["tp"] and run.metadata["dp_size"] == row["dp"]
        assert str(out / row["run"]) in printed
        # Counts of bytes are exact: measured equals the closed form, part by part.
        for part in ("send", "tp", "dp"):
            assert row[f"{part}_bytes_per_step"] == row[f"{part}_bytes_per_step_formula"], part
        assert row["final_loss"] == pytest.approx(run.metadata["loss"][-1])
        assert row["steps_measured"] == [1]
        assert row["peak_activation_mib"] > 0 and row["step_time_s"] > 0
    pipe, tp, dp = rows
    assert pipe["send_bytes_per_step"] > 0 and pipe["tp_bytes_per_step"] == 0
    assert tp["tp_bytes_per_step"] > 0 and tp["send_bytes_per_step"] == 0
    assert tp["allreduce_s_per_step"] > 0 and pipe["allreduce_s_per_step"] == 0
    assert dp["dp_bytes_per_step"] > 0 and dp["tp_bytes_per_step"] == 0
    assert pipe["bubble_fraction_formula"] == pytest.approx(1 / 3)
    with (out / COMPARISON_CSV).open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["configuration"] for r in table] == configs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp"]  # no temporary left behind
    code, _, err = run_pplab(capsys, "compare", "tp", *TINY, "--out", str(out))
    assert code == 2 and "already exists" in err


@pytest.mark.multiprocess
def test_a_configuration_that_fails_after_one_that_trained_leaves_no_comparison(
        tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from pplab.engine import launch
    from pplab.engine.train_config import parse_fault

    # The second configuration's rank 1 raises the engine's injected fault at step 1: a
    # failure at a known point, whatever the machine's speed (a tiny timeout would race).
    # The request arrives checked, and its ranks read the fault from it, not from the config.
    train, started = launch.run_training, []

    def second_one_fails(request, run_dir, progress=None):
        started.append(run_dir)
        if len(started) == 2:
            request = replace(request, fault=parse_fault("1:1:raise"))
        return train(request, run_dir, progress)

    monkeypatch.setattr(launch, "run_training", second_one_fails)
    out = tmp_path / "cmp"
    code, _, err = run_pplab(capsys, "compare", "1f1b:pp=2,m=2", "gpipe:pp=2,m=2", *TINY,
                             "--out", str(out))
    assert code == 1
    err = err.strip().splitlines()
    assert err[-1] == ("pplab compare: rank 1 failed: InjectedFault: injected fault on rank 1 "
                       "at step 1; no comparison was written")
    assert len(started) == 2  # the first configuration's run was written, then thrown away
    assert list(tmp_path.iterdir()) == []


def test_format_table_marks_closed_forms_and_missing_values():
    row = {"configuration": "zb-h1:pp=4,m=2", "ranks": 4, "step_time_s": 0.0123,
           "bubble_fraction": 0.5, "bubble_fraction_formula": None,
           "allreduce_s_per_step": 0.0, "bytes_per_step": 2048, "bytes_per_step_formula": 2048,
           "peak_activation_mib": 1.5, "final_loss": 2.5, "steps_measured": [1, 2]}
    text = format_table([row])
    header, line = text.splitlines()[:2]
    assert "bubble f." in header and "KiB/step f." in header
    assert line.split() == ["zb-h1:pp=4,m=2", "4", "12.3", "0.500", "-", "0.0", "2", "2",
                            "1.500", "2.500"]


def test_bundled_comparison_is_complete_and_small():
    from pplab.runs.resources import bundled_comparisons_dir
    from pplab.runs.run_dirs import load_run

    root = bundled_comparisons_dir()
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name != "staleness-p2"]  # lesson 7's losses, not a comparison
    assert folders, f"no comparison bundled in {root}"
    for folder in folders:
        document = json.loads((folder / COMPARISON_JSON).read_text())
        assert document["description"]
        for row in document["rows"]:
            run = load_run(folder / row["run"])
            assert run.metadata["source"] == "measured" and len(run.events) > 0
            for part in ("send", "tp", "dp"):
                assert row[f"{part}_bytes_per_step"] == row[f"{part}_bytes_per_step_formula"]
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert size < 3 * 2**20, f"bundled comparisons take {size} bytes"
