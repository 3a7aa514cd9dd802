"""Bad inputs to train, compare and simulate: one line, exit 2, before any process or work.

Numbers (infinite, NaN, negative, absurd), process counts the machine cannot take, outputs
that cannot be written (under a file, read-only, a full disk), strict JSON, and the sweeping
of what dead writers left. Nothing here starts a rank: every test makes starting one fail
loudly, so a refusal that came too late would show.

    pytest -q tests/test_reliability_inputs.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from command_helpers import run_pplab

from pplab import limits
from pplab.cli.train import _Say, strict_json
from pplab.engine import launch, machine, rendezvous, supervisor
from pplab.engine.request import check_request
from pplab.engine.train_config import TrainConfig
from pplab.runs.output_paths import check_writable, sweep_stale_temps
from pplab.topology import Topology

TINY = ["--d-model", "16", "--heads", "2", "--seq-len", "8", "--layers", "2"]


@pytest.fixture(autouse=True)
def nothing_may_start(monkeypatch, tmp_path):
    """Starting ranks or simulating is a failure here; the machine is a fixed small one."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the input was refused")

    monkeypatch.setattr(supervisor, "spawn_ranks", refuse)
    monkeypatch.setattr(launch, "spawn_ranks", refuse)
    monkeypatch.setattr("pplab.sim.simulator.simulate", refuse)
    monkeypatch.setattr(machine, "rank_slots", lambda device: 2)
    monkeypatch.setattr(machine, "memory_bytes", lambda: 16 * 2**30)
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))


def assert_refused(capsys, *argv, message=""):
    code, out, err = run_pplab(capsys, *argv)
    assert code == 2, (argv, out, err)
    assert err.count("\n") == 1 and err.startswith("pplab") and message in err, (argv, err)
    assert "Traceback" not in err + out
    return err


BAD_WHOLE = ["-1", "0", "1.5", "1e3", "inf", "nan", str(10**12), "9" * 5000]
BAD_REAL = ["inf", "-inf", "nan", "-1", "0", "1e15", "1e400", "ten"]
TRAIN_WHOLE = ["--steps", "--pp", "--stages", "--microbatches", "--chunks", "--layers",
               "--batch-size", "--seq-len", "--d-model", "--heads", "--d-ff", "--tp", "--dp"]


@pytest.mark.parametrize("flag", TRAIN_WHOLE + ["--seed"])
def test_train_refuses_every_bad_whole_number(capsys, flag):
    for value in BAD_WHOLE:
        if flag == "--seed" and value == "0":
            continue
        assert_refused(capsys, "train", "--out", "-", flag, value)


@pytest.mark.parametrize("flag", ["--lr", "--timeout"])
def test_train_refuses_every_bad_real_number(capsys, flag):
    for value in BAD_REAL:
        assert_refused(capsys, "train", "--out", "-", flag, value)
    err = assert_refused(capsys, "train", "--out", "-", "--timeout", "1e15")
    assert "over pplab's limit of 86400" in err


@pytest.mark.parametrize("flag", ["--steps", "--layers", "--batch-size", "--seq-len",
                                  "--d-model", "--heads", "--d-ff", "--lr", "--timeout"])
def test_compare_refuses_every_bad_number(capsys, tmp_path, flag):
    for value in BAD_REAL if flag in ("--lr", "--timeout") else BAD_WHOLE:
        assert_refused(capsys, "compare", "1f1b:pp=2,m=2", "--out", str(tmp_path / "c"),
                       flag, value)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("key", ["pp", "m", "v", "tp", "dp"])
def test_compare_refuses_every_bad_configuration_value(capsys, tmp_path, key):
    for value in BAD_WHOLE + ["", " ", "+-2", "٣"]:
        assert_refused(capsys, "compare", f"interleaved-1f1b:{key}={value}",
                       "--out", str(tmp_path / "c"))


@pytest.mark.parametrize("flag", ["--pp", "--stages", "--microbatches", "--chunks", "--steps"])
def test_simulate_refuses_every_bad_size(capsys, flag):
    base = {"--pp": "2", "--microbatches": "4"}
    for value in ["-1", "0", "inf", str(10**30)]:
        argv = ["simulate", "--schedule", "pipedream" if flag == "--steps" else "1f1b"]
        for other, default in base.items():
            if other != flag and not (flag == "--stages" and other == "--pp"):
                argv += [other, default]
        assert_refused(capsys, *argv, flag, value)


def test_simulate_refuses_every_bad_cost(capsys):
    for spec in ["f=inf", "b=nan", "w=-1", "comm=1e400", "bytes=1e30", "lat=inf", "bw=0",
                 "scale=1:inf", "opt=nan"]:
        assert_refused(capsys, "simulate", "--schedule", "1f1b", "--pp", "2",
                       "--microbatches", "2", "--cost", spec)


@pytest.mark.parametrize("argv, message", [
    (["--stages", "512"], "512 ranks need about 150 GiB"),
    (["--pp", "8", "--tp", "4", "--dp", "8"], "256 ranks need about 75 GiB"),
    (["--pp", "8", "--tp", "4", "--dp", "8", "--oversubscribe"], "256 ranks need about 75 GiB"),
    (["--pp", "12", "--layers", "12"], "12 ranks on 2 CPU cores is more than"),
])
def test_train_refuses_process_counts_the_machine_cannot_take(capsys, argv, message):
    assert_refused(capsys, "train", "--out", "-", *argv, message=message)


def test_oversubscribe_lifts_the_count_but_not_the_memory_bound(capsys, tmp_path):
    code, _, err = run_pplab(capsys, "train", "--out", "-", "--pp", "12", "--layers", "12",
                             "--oversubscribe", "--dry-run")
    assert code == 0 and "nothing was started" in err and "CPU sharing" in err
    assert_refused(capsys, "compare", "1f1b:pp=12", "--out", str(tmp_path / "c"),
                   message="12 ranks on 2 CPU cores")
    code, _, err = run_pplab(capsys, "compare", "1f1b:pp=12", "--out", str(tmp_path / "c"),
                             "--oversubscribe", "--dry-run")
    assert code == 0 and not (tmp_path / "c").exists()


def test_process_limits_live_in_pplab_limits():
    assert not hasattr(machine, "MAX_PROCESSES")
    with pytest.raises(ValueError, match=f"at most {limits.MAX_PROCESSES} processes"):
        machine.check_not_absurd(Topology(limits.MAX_PROCESSES + 1), "cpu", 10**4,
                                 memory=2**50)
    machine.check_not_absurd(Topology(limits.MAX_PROCESSES + 1), "cpu", 10**4,
                             oversubscribe=True, memory=2**50)
    with pytest.raises(ValueError, match="need about"):
        machine.check_not_absurd(Topology(4), "cpu", 4, oversubscribe=True,
                                 memory=3 * limits.RANK_MEMORY_BYTES)


def test_sizes_that_would_allocate_gigabytes_are_refused_by_the_plan():
    with pytest.raises(ValueError, match="GiB of memory; pplab trains at most 16 GiB"):
        check_request(TrainConfig(d_model=8192, heads=8, out="-"))
    with pytest.raises(ValueError, match="would record about .* events"):
        check_request(TrainConfig(steps=limits.MAX_TRAIN_STEPS, out="-"))
    check_request(TrainConfig(steps=limits.MAX_TRAIN_STEPS, record=False, out="-"))
    with pytest.raises(ValueError, match="fault step 20 is beyond the run's 20 steps"):
        check_request(TrainConfig(fault="1:20:kill", out="-"))


@pytest.mark.parametrize("field, value, message", [
    ("steps", True, "steps must be a whole number, got True"),
    ("d_model", 64.0, "d_model must be a whole number"),
    ("seed", -1, "seed must be at least 0"),
    ("lr", float("nan"), "lr must be a finite number"),
    ("timeout", float("inf"), "timeout must be a finite number"),
    ("timeout", 0, "timeout must be > 0"),
    ("split", (2, 0), "a part of the split must be at least 1"),
    ("fault", "١:1:kill", "fault must look like"),
])
def test_the_config_refuses_wrong_types_and_values_wherever_it_comes_from(field, value,
                                                                           message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.fixture
def mounted(tmp_path):
    """Mount a small tmpfs (root only): ``mount("ro")`` or ``mount("full")``."""
    points = []

    def mount(kind: str) -> Path:
        where = tmp_path / f"mnt-{kind}"
        where.mkdir()
        options = "ro,size=64k" if kind == "ro" else "size=64k"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip("mounting a tmpfs needs root")
        points.append(where)
        if kind == "full":
            filler = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                with pytest.raises(OSError):
                    while True:
                        os.write(filler, b"\0" * 4096)
            finally:
                os.close(filler)
        return where

    yield mount
    for where in points:
        subprocess.run(["umount", str(where)], check=False)


def _unwritable(tmp_path, mounted, kind: str) -> Path:
    if kind == "under a file":
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        return blocker / "out"
    if kind == "read-only" and os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder / "out"
    return mounted("ro" if kind == "read-only" else "full") / "out"


KINDS = ["under a file", "read-only", "full disk"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_unwritable_run_directory_is_refused_before_training(capsys, tmp_path, mounted,
                                                                 kind):
    target = _unwritable(tmp_path, mounted, kind)
    err = assert_refused(capsys, "train", "--out", str(target), *TINY, message=str(target))
    assert "starting" not in err
    assert_refused(capsys, "compare", "1f1b:pp=2,m=2", "--out", str(target), message="--out")


@pytest.mark.parametrize("kind", KINDS)
def test_unwritable_simulate_outputs_are_refused_before_simulating(capsys, tmp_path, mounted,
                                                                   kind):
    target = _unwritable(tmp_path, mounted, kind)
    for flag in ("--save", "--trace", "--save-csv"):
        assert_refused(capsys, "simulate", "--schedule", "gpipe", "--pp", "2",
                       "--microbatches", "2", flag, str(target), message=flag)


def test_the_default_runs_folder_is_checked_too(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(blocker / "runs"))
    assert_refused(capsys, "train", *TINY, message="is a file, not a folder")


def test_a_probe_leaves_nothing_and_a_full_output_is_refused_by_its_size(tmp_path):
    check_writable(tmp_path / "new" / "run", "--out", folder=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="MiB free; the output needs about"):
        check_writable(tmp_path / "run", "--out", need_bytes=2**62, folder=True)


def test_temporaries_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    dead, me = _dead_pid(), os.getpid()
    stale_dir = tmp_path / f".run.{dead}-ab_12.tmp"
    stale_file = tmp_path / f".schedule.csv.{dead}-x9.tmp"
    live = tmp_path / f".other.{me}-ab.tmp"
    stale_dir.mkdir()
    (stale_dir / "events.parquet").write_text("half")
    stale_file.write_text("half")
    live.mkdir()
    mine = [tmp_path / "run", tmp_path / f".run.{dead}.tmp", tmp_path / "notes.tmp"]
    mine[0].mkdir()
    for path in mine[1:]:
        path.write_text("keep")
    assert sorted(sweep_stale_temps(tmp_path)) == sorted([stale_dir, stale_file])
    assert sorted(tmp_path.iterdir()) == sorted([live, *mine])


def test_rendezvous_folders_of_dead_owners_are_swept_by_the_next_run():
    root = rendezvous.root()
    root.mkdir(mode=0o700, exist_ok=True)
    orphan = root / f"{_dead_pid()}-abcd1234"
    orphan.mkdir()
    (orphan / "store").write_text("")
    mine = rendezvous.new_folder()
    try:
        assert not orphan.exists() and mine.exists()
        assert mine.name.startswith(f"{os.getpid()}-")
        assert mine not in rendezvous.sweep()
    finally:
        mine.rmdir()


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict_everywhere(capsys, monkeypatch):
    monkeypatch.undo()  # this one simulates for real
    code, out, _ = run_pplab(capsys, "simulate", "--schedule", "gpipe", "--pp", "2",
                             "--microbatches", "2", "--cost", "f=0,b=0", "--json")
    assert code == 0 and _strict(out)["makespan"] == 0
    assert _strict(strict_json([{"final_loss": math.nan, "step_time_s": math.inf}], indent=2)) \
        == [{"final_loss": None, "step_time_s": None}]
    _Say(as_json=True).progress({"event": "step", "step": 1, "steps": 2, "loss": math.nan})
    assert _strict(capsys.readouterr().out) == {"event": "step", "step": 1, "steps": 2,
                                                "loss": None}


def test_dry_run_checks_everything_and_starts_nothing(capsys, tmp_path):
    code, out, err = run_pplab(capsys, "train", "--out", str(tmp_path / "run"), "--json-progress",
                               "--dry-run", *TINY)
    assert code == 0 and _strict(out)["event"] == "dry-run"
    assert list(tmp_path.iterdir()) == []
