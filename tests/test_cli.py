"""The `pplab` command contract: output, JSON, files, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from command_helpers import run_pplab

from pplab.charts.text_gantt import gantt_letters
from pplab.cli import main as cli
from pplab.runs.run_dirs import load_run
from pplab.schedules import COMPUTE_KINDS, SCHEDULES, Action, Schedule, build, read_csv, write_csv


def test_schedules_lists_every_family(capsys):
    code, out, _ = run_pplab(capsys, "schedules")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert listed == list(SCHEDULES)


def test_no_schedule_description_stops_mid_sentence(capsys):
    _, out, _ = run_pplab(capsys, "schedules")
    for name, family in SCHEDULES.items():
        assert family.summary.endswith("."), (name, family.summary)
        assert f"{name.ljust(16)}  {family.summary}" in out, name


def test_simulate_prints_gantt_and_metrics(capsys):
    code, out, _ = run_pplab(capsys, "simulate", "--schedule", "1f1b", "--pp", "4",
                             "--microbatches", "8")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("rank ") and "|" in line]
    assert len(rows) == 4
    assert rows[3].startswith("rank  3 |.........F0 B0")  # last rank waits 3 forwards
    assert "makespan         33 cost units (simulated)" in out
    assert "bubble fraction  27.27%" in out and "(p-1)/(m+p-1) = 27.27%" in out
    assert "peak activations 0:4 1:3 2:2 3:1" in out


def test_simulate_json_contract(capsys):
    code, out, _ = run_pplab(capsys, "simulate", "--schedule", "interleaved-1f1b", "--pp", "4",
                             "--microbatches", "8", "--chunks", "2", "--cost", "f=1,b=2", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["makespan"] == pytest.approx(28.5)
    assert result["bubble_fraction"] == pytest.approx(3 / 19)
    assert result["closed_form"]["bubble_fraction"] == pytest.approx(3 / 19)
    assert result["closed_form"]["ratio_to_ideal"] == pytest.approx(3 / 16)  # (p-1)/(v m)
    assert set(result["per_rank"]) == {"0", "1", "2", "3"}
    assert {"busy", "idle"} <= set(result["per_rank"]["0"])
    assert len(result["peak_activations"]) == 8
    assert result["time_unit"] == "cost units" and result["source"] == "simulated"


def test_simulate_writes_trace_and_run(tmp_path, capsys):
    trace, save = tmp_path / "t.json", tmp_path / "runs" / "zb"
    code, out, _ = run_pplab(capsys, "simulate", "--schedule", "zb-h1", "--pp", "3",
                             "--microbatches", "6", "--cost", "comm=0.1,bytes=32,bw=320",
                             "--trace", str(trace), "--save", str(save))
    assert code == 0, out
    assert json.loads(trace.read_text())["traceEvents"]
    loaded = load_run(save)
    assert loaded.metadata["source"] == "simulated"
    assert loaded.metadata["schedule"]["name"] == "zb-h1"
    assert loaded.metadata["bytes_per_link"] == {"0->1": 6 * 32, "1->0": 6 * 32,
                                                 "1->2": 6 * 32, "2->1": 6 * 32}
    assert (loaded.events["kind"] == "send").sum() == 24
    code, _, err = run_pplab(capsys, "simulate", "--schedule", "zb-h1", "--pp", "3",
                             "--microbatches", "6", "--save", str(save))
    assert code == 2 and "already exists" in err


def test_simulate_from_csv(tmp_path, capsys):
    path = write_csv(build("gpipe", 3, 4), tmp_path / "mine.csv")
    code, out, _ = run_pplab(capsys, "simulate", "--csv", str(path), "--json")
    assert code == 0
    assert json.loads(out)["bubble_fraction"] == pytest.approx(2 / 6)


def test_validate_exit_codes(tmp_path, capsys):
    good = write_csv(build("1f1b", 3, 4), tmp_path / "good.csv")
    assert run_pplab(capsys, "validate", str(good))[0] == 0
    stuck = Schedule({0: [Action(0, "F", 0), Action(0, "B", 0), Action(0, "F", 1),
                          Action(0, "B", 1)],
                      1: [Action(1, "F", 1), Action(1, "B", 1), Action(1, "F", 0),
                          Action(1, "B", 0)]}, (0, 1), 2)
    bad = write_csv(stuck, tmp_path / "bad.csv")
    code, out, _ = run_pplab(capsys, "validate", str(bad))
    assert code == 1 and "deadlock" in out
    junk = tmp_path / "junk.csv"
    junk.write_text("0F0,hello\n")
    code, out, _ = run_pplab(capsys, "validate", str(junk))
    assert code == 1 and "cannot read action 'hello'" in out
    code, _, err = run_pplab(capsys, "validate", str(tmp_path / "missing.csv"))
    assert code == 2 and err.startswith("pplab: error:")


@pytest.mark.parametrize("argv, message", [
    (["--schedule", "nope", "--pp", "4", "--microbatches", "8"], "unknown schedule 'nope'"),
    (["--schedule", "1f1b", "--pp", "0", "--microbatches", "8"], "at least 1 rank, got 0"),
    (["--schedule", "pipedream-2bw", "--pp", "4", "--microbatches", "2"],
     "2 microbatches < 4 stages"),
    (["--schedule", "interleaved-1f1b", "--pp", "4", "--microbatches", "6", "--chunks", "2"],
     "6 microbatches is not a multiple of 4"),
    (["--schedule", "1f1b", "--pp", "4", "--microbatches", "8", "--cost", "f=fast"],
     "cost f='fast' is not a number"),
    (["--schedule", "1f1b", "--pp", "4", "--microbatches", "8", "--cost", "f"],
     "is not KEY=NUMBER"),
    (["--schedule", "1f1b", "--pp", "four", "--microbatches", "8"], "not a whole number"),
    (["--schedule", "1f1b", "--microbatches", "8"],
     "needs --pp P (or --stages P x V) and --microbatches M"),
    (["--schedule", "1f1b", "--pp", "2", "--microbatches", "2", "--chunks", "2"],
     "got --chunks 2"),
    (["--pp", "2"], "one of the arguments --schedule --csv is required"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    code, _, err = run_pplab(capsys, "simulate", *argv)  # argparse's own errors too
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert err.startswith("pplab")


def test_every_command_is_built_in(capsys):
    code, out, _ = run_pplab(capsys, "--help")
    assert code == 0
    for command in ("schedules", "simulate", "validate", "search", "train", "compare", "plan",
                    "exercise", "lab"):
        assert f"    {command}" in out, command


def test_save_csv_writes_the_schedule_it_shows(tmp_path, capsys):
    path = tmp_path / "mine" / "zb.csv"
    code, out, _ = run_pplab(capsys, "simulate", "--schedule", "zb-h1", "--pp", "4",
                             "--microbatches", "8", "--save-csv", str(path))
    assert code == 0 and f"schedule csv     {path}" in out
    shown = build("zb-h1", 4, 8)
    saved = read_csv(path)
    assert saved.actions == shown.actions and saved.stage_to_rank == shown.stage_to_rank
    code, again, _ = run_pplab(capsys, "simulate", "--csv", str(path), "--json")
    assert code == 0 and json.loads(again)["makespan"] == pytest.approx(27)  # 3m + p - 1


def test_an_idle_rank_gets_its_row_and_counts_in_the_bubble(tmp_path, capsys):
    csv = tmp_path / "idle.csv"
    csv.write_text("0F0,1F0,1B0,0B0\n\n")  # rank 1 holds no stage: idle all step
    code, out, _ = run_pplab(capsys, "simulate", "--csv", str(csv))
    assert code == 0
    assert [line[:9] for line in out.splitlines() if "|" in line] == ["rank  0 |", "rank  1 |"]
    assert "bubble fraction  50.00%" in out


def test_gantt_has_a_letter_for_every_busy_kind():
    assert set(gantt_letters()) == set(COMPUTE_KINDS) | {"optim"}


def test_python_m_pplab_simulates_with_torch_refused():
    # ``python -m pplab`` is runpy running pplab.__main__; here it runs after a finder that
    # refuses torch is in place, so a simulate that needed torch would fail to import.
    code = ("import runpy, sys\n"
            "class Refuse:\n"
            "    @staticmethod\n"
            "    def find_spec(name, path=None, target=None):\n"
            "        if name.partition('.')[0] == 'torch':\n"
            "            raise ImportError('torch refused')\n"
            "sys.meta_path.insert(0, Refuse)\n"
            "sys.argv = ['pplab', 'simulate', '--schedule', 'gpipe', '--pp', '2',"
            " '--microbatches', '2', '--json']\n"
            "runpy.run_module('pplab', run_name='__main__', alter_sys=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bubble_fraction"] == pytest.approx(1 / 3)


def test_zero_cost_run_prints_without_a_gantt(capsys):
    code, out, _ = run_pplab(capsys, "simulate", "--schedule", "gpipe", "--pp", "2",
                             "--microbatches", "2", "--cost", "f=0,b=0")
    assert code == 0 and "nothing to draw" in out and "makespan         0 cost units" in out


def test_unwritable_output_is_one_line_not_a_traceback(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for flag in ("--trace", "--save", "--save-csv"):
        code, _, err = run_pplab(capsys, "simulate", "--schedule", "gpipe", "--pp", "2",
                                 "--microbatches", "2", flag, str(blocker / "out"))
        assert code == 2 and err.startswith("pplab: error:") and err.count("\n") == 1, flag


def test_closed_form_only_for_the_registered_order(tmp_path, capsys):
    same = write_csv(build("gpipe", 3, 4), tmp_path / "gpipe.csv")
    code, out, _ = run_pplab(capsys, "simulate", "--csv", str(same), "--json")
    assert code == 0 and json.loads(out)["closed_form"]["bubble_fraction"] == pytest.approx(2 / 6)
    other = tmp_path / "other" / "gpipe.csv"
    other.parent.mkdir()
    write_csv(build("1f1b", 3, 4), other)  # a 1F1B order in a file named gpipe
    code, out, _ = run_pplab(capsys, "simulate", "--csv", str(other), "--json")
    closed = json.loads(out)["closed_form"]
    assert code == 0 and closed["bubble_fraction"] is None and "differs" in closed["note"]


def test_a_bug_is_still_one_line_unless_asked_for_the_traceback(capsys, monkeypatch):
    def broken(args):
        raise TypeError("unsupported operand\nsecond line")

    monkeypatch.setattr("pplab.cli.simulate.cmd_schedules", broken)
    code, out, err = run_pplab(capsys, "schedules")
    assert code == 1 and out == ""
    assert err == ("pplab: internal error: TypeError: unsupported operand (a bug in pplab; "
                   "PPLAB_DEBUG=1 shows the traceback)\n")
    monkeypatch.setenv("PPLAB_DEBUG", "1")
    with pytest.raises(TypeError):
        cli.main(["schedules"])


def test_outputs_are_checked_before_simulating(tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("simulated before the outputs were checked")

    monkeypatch.setattr("pplab.sim.simulator.simulate", never)
    (tmp_path / "run").mkdir()
    code, _, err = run_pplab(capsys, "simulate", "--schedule", "gpipe", "--pp", "2",
                             "--microbatches", "2", "--save", str(tmp_path / "run"))
    assert code == 2 and "already exists" in err
    code, _, err = run_pplab(capsys, "simulate", "--schedule", "gpipe", "--pp", "2",
                             "--microbatches", "2", "--trace", str(tmp_path))
    assert code == 2 and err == f"pplab: error: --trace {tmp_path}: is a folder; give a file name\n"
