"""`pplab plan`: the planner's table, JSON, spec files, --explain, and one-line errors.

The command runs in this process through ``pplab.cli.main.main``, as ``pplab plan`` does
(``command_helpers.run_pplab``); a ValueError is one line, exit 2.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from command_helpers import run_pplab, strict_json

from pplab.cli import plan as plan_command
from pplab.planner import PRESET_CLUSTERS, PRESET_MODELS, plan

GPT3 = ("--model", "gpt3-175b", "--cluster", "dgx-a100-80gb", "--nodes", "512",
        "--global-batch", "1536")
SMALL = ("--model", "megatron-1.7b", "--nodes", "4", "--global-batch", "512")


def table_rows(out: str) -> list[list[str]]:
    """The ranked table's rows, split into cells (they start with their place)."""
    return [line.split() for line in out.splitlines() if re.match(r"^\s+\d+\s+\d+\s+\d+", line)]


@pytest.mark.slow  # plans GPT-3 (the planner's tests do in the fast lane)
def test_gpt3_8x8x64_is_in_the_table_and_fits(capsys):
    code, out, err = run_pplab(capsys, "plan", *GPT3, "--pp", "8", "--tp", "8", "--top", "5")
    assert code == 0, err
    rows = table_rows(out)
    assert rows and all(row[1:4] == ["8", "8", "64"] for row in rows)
    best = rows[0]
    # the fastest 8 x 8 x 64: interleaved, b=1, m=24, no recomputation, 78.8 GiB of 80
    assert best[4:9] == ["interleaved-1f1b", "6", "1", "24", "none"]
    total = float(best[13])
    assert total == pytest.approx(78.8, abs=0.05) and total <= 80
    assert "best       pp=8 tp=8 dp=64, b=1 m=24, interleaved-1f1b v=6" in out
    assert "All predicted." in out and "GiB per GPU" in out


def test_the_table_says_the_parts_of_memory_and_the_bytes_per_link(capsys):
    code, out, _ = run_pplab(capsys, "plan", *SMALL, "--top", "3")
    assert code == 0
    header = out.splitlines()[3].split()
    assert header[:9] == ["#", "pp", "tp", "dp", "schedule", "v", "b", "m", "recompute"]
    assert header[9:] == ["wts", "grad", "optim", "activ", "total", "bubble", "step", "s",
                          "MFU", "tp", "GB", "pp", "GB", "dp", "GB"]
    rows = table_rows(out)
    assert [row[0] for row in rows] == ["1", "2", "3"]
    for row in rows:
        weights, grads, optim, activ, total = (float(x) for x in row[9:14])
        assert weights + grads + optim + activ == pytest.approx(total, abs=0.25)


@pytest.mark.slow
def test_json_is_strict_and_is_the_librarys_plan(capsys):
    code, out, _ = run_pplab(capsys, "plan", *SMALL, "--top", "4", "--json", "--explain")
    assert code == 0
    data = strict_json(out)
    expected = plan(PRESET_MODELS["megatron-1.7b"], PRESET_CLUSTERS["dgx-a100-80gb"].with_nodes(4),
                    512, max_candidates=4)
    assert [row["layout"] for row in data["ranked"]] == [
        c.layout.as_dict() for c in expected.ranked]
    assert data["reference"]["layout"] == expected.best.layout.as_dict()
    assert data["cluster"]["num_gpus"] == 32 and data["global_batch"] == 512
    verdicts = {row["verdict"] for row in data["explain"]}
    assert "reference" in verdicts and verdicts <= {
        "reference", "faster", "equal", "slower", "does not fit", "excluded"}
    first = data["ranked"][0]
    assert first["fits"] and first["peak_memory_gib"] <= 80
    assert 0 <= first["bubble_fraction"] < 1 and first["time"]["step_s"] > 0


def test_ranked_rows_name_their_units_and_hold_finite_numbers():
    result = plan(PRESET_MODELS["megatron-1.7b"], PRESET_CLUSTERS["dgx-a100-80gb"].with_nodes(4),
                  512, max_candidates=5)
    rows = plan_command.ranked_rows(result.ranked)
    assert [row["#"] for row in rows] == [1, 2, 3, 4, 5]
    for row, candidate in zip(rows, result.ranked, strict=True):
        assert row["step (s)"] == candidate.step_s
        assert row["memory (GiB)"] == pytest.approx(candidate.peak_memory / 2**30)
        for name, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value) and "(" in name, name  # a number says its unit


@pytest.mark.slow
def test_explain_says_why_each_grid_of_4096_gpus_ranks_around_8x8x64(capsys):
    code, out, _ = run_pplab(capsys, "plan", *GPT3, "--explain", "--reference", "8x8x64",
                             "--top", "5")
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert any(line.startswith("reference  pp=8 tp=8 dp=64") for line in lines)
    said = {line.split(":")[0]: line for line in lines if line.startswith("pp=")}
    assert said["pp=8 tp=8 dp=64"].startswith("pp=8 tp=8 dp=64: reference")
    assert "faster" in said["pp=16 tp=8 dp=32"] and "data-parallel all-reduce" in \
        said["pp=16 tp=8 dp=32"]
    assert "slower" in said["pp=32 tp=8 dp=16"]
    assert "does not fit" in said["pp=4 tp=8 dp=128"] and "> 80 GiB" in said["pp=4 tp=8 dp=128"]
    assert any(line.startswith("excluded: 96 layers are not divisible by pp=64") for line in lines)
    assert any(line.startswith("excluded: tp=16 crosses nodes") for line in lines)


def test_a_toml_spec_starts_from_presets_and_changes_them(tmp_path, capsys):
    spec = tmp_path / "mine.toml"
    spec.write_text('global_batch = 256\n\n[model]\npreset = "megatron-1.7b"\nlayers = 12\n\n'
                    '[cluster]\npreset = "dgx-h100"\nnodes = 2\n')
    code, out, _ = run_pplab(capsys, "plan", "--spec", str(spec), "--top", "2")
    assert code == 0
    assert out.startswith("megatron-1.7b: 12 layers")
    assert "dgx-h100: 2 x 8 GPUs = 16" in out and "global batch 256" in out
    assert len(table_rows(out)) == 2


def test_a_json_spec_with_every_field_and_nodes_from_the_command_line(tmp_path, capsys):
    spec = tmp_path / "mine.json"
    spec.write_text(json.dumps({"model": {"name": "tiny", "layers": 8, "hidden": 1024,
                                          "heads": 16, "seq_len": 1024, "vocab": 32000}}))
    code, out, _ = run_pplab(capsys, "plan", "--spec", str(spec), "--nodes", "1",
                             "--global-batch", "64", "--schedules", "1f1b,zb-h1",
                             "--recompute", "none", "--json")
    assert code == 0
    data = strict_json(out)
    assert data["model"]["name"] == "tiny" and data["cluster"]["num_gpus"] == 8
    assert {row["layout"]["schedule"] for row in data["ranked"]} <= {"1f1b", "zb-h1"}
    assert {row["layout"]["recompute"] for row in data["ranked"]} == {"none"}


BAD = [
    ((*GPT3[:4], "--nodes", "0", "--global-batch", "1536"), "nodes must be at least 1, got 0"),
    ((*GPT3, "--pp", "64"), "96 layers are not divisible by pp=64"),
    ((*GPT3, "--pp", "5"), "pp=5 does not divide the cluster's 4096 GPUs"),
    ((*GPT3, "--memory-gib", "8"), "nothing fits: the smallest memory need is"),
    (("--model", "gpt-5", "--global-batch", "8"), "unknown model preset 'gpt-5'"),
    (("--model", "gpt3-175b", "--cluster", "tpu", "--global-batch", "8"),
     "unknown cluster preset 'tpu'"),
    (("--global-batch", "8"), "no model: give --model NAME"),
    (("--model", "gpt3-175b"), "no global batch"),
    ((*SMALL, "--top", "0"), "--top must be between 1 and 1000"),
    ((*SMALL, "--schedules", "1f1b,zb-v"), "schedule 'zb-v' is not one of"),
    ((*SMALL, "--pp", "two"), "--pp takes whole numbers"),
    ((*SMALL, "--reference", "8by8"), "--reference takes PPxTPxDP"),
    ((*SMALL, "--reference", "3x1x1", "--explain"), "--reference 3x1x1"),
    ((*SMALL, "--nodes", "x"), "'x' is not a whole number"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_pplab(capsys, "plan", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert err.startswith("pplab")


ON_32_GPUS = ("--nodes", "4", "--global-batch", "512")


@pytest.mark.parametrize("name, text, argv, message", [
    ("heads.json", '{"model": {"preset": "megatron-1.7b", "heads": 18}}', ("--tp", "4"),
     "18 heads are not divisible by tp=4"),
    ("broken.toml", "[model\nlayers = 3", (), "not TOML"),
    ("broken.json", "{", (), "not JSON"),
    ("plan.yaml", "model: gpt3", (), "a spec file ends in .toml or .json"),
    ("typo.toml", '[model]\npreset = "gpt3-175b"\nlayerz = 3\n', (), "unknown key 'layerz'"),
    ("twice.toml", '[model]\npreset = "megatron-1.7b"\n', ("--model", "gpt3-175b"),
     "--model and"),
])
def test_a_bad_spec_file_is_one_line_and_exit_2(tmp_path, capsys, name, text, argv, message):
    path = tmp_path / name
    path.write_text(text)
    code, out, err = run_pplab(capsys, "plan", "--spec", str(path), *ON_32_GPUS, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_a_missing_spec_file_is_one_line(tmp_path, capsys):
    code, _, err = run_pplab(capsys, "plan", "--spec", str(tmp_path / "nowhere.toml"))
    assert code == 2 and err.count("\n") == 1 and "cannot read spec" in err
