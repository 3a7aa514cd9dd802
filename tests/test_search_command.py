"""`pplab search`: the searched order printed like `pplab simulate`, beside 1F1B under the cap.

The command runs in this process through ``pplab.cli.main.main``, as ``pplab search`` does
(``command_helpers.run_pplab``): one-line errors, exit 2.
"""

from __future__ import annotations

import pytest
from command_helpers import run_pplab, strict_json

from pplab.schedules import read_csv, validate
from pplab.sim.cost_model import CostModel
from pplab.sim.search import search_schedule
from pplab.sim.simulator import simulate
from pplab.timeline import metrics


def gantt_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("rank ") and "|" in line]


def test_search_prints_its_gantt_the_cap_the_winner_and_1f1b_under_the_cap(capsys):
    code, out, err = run_pplab(capsys, "search", "--pp", "4", "--microbatches", "8",
                               "--max-in-flight", "2")
    assert code == 0, err
    expected = search_schedule(4, 8, CostModel(), 2)
    assert out.startswith("searched: 4 ranks, 8 microbatches, at most 2 microbatches held per "
                          "stage (simulated)")
    assert f"found by: {expected.params['found_by']}" in out
    assert len(gantt_rows(out)) == 8  # the searched order's 4 ranks, then 1F1B's
    assert "1f1b under the same cap (warm-up cut to 2):" in out
    searched, baseline = out.split("1f1b under the same cap")
    peaks = [line for line in searched.splitlines() if "peak activations" in line][0]
    assert max(int(cell.split(":")[1]) for cell in peaks.split()[2:6]) <= 2
    assert "the search saves" in out and "(predicted)" in out


def test_json_holds_the_search_and_its_baseline_with_no_more_bubble(capsys):
    code, out, _ = run_pplab(capsys, "search", "--pp", "4", "--microbatches", "8",
                             "--max-in-flight", "3", "--cost", "f=1,b=2,i=1,w=1,comm=0.2", "--json")
    assert code == 0
    data = strict_json(out)
    cost = CostModel.parse("f=1,b=2,i=1,w=1,comm=0.2")
    expected = metrics(simulate(search_schedule(4, 8, cost, 3), cost), ranks=range(4))
    assert data["search"]["max_in_flight"] == 3
    assert data["makespan"] == pytest.approx(expected["makespan"])
    assert max(data["peak_activations"].values()) <= 3
    assert data["schedule"]["name"] == "searched"
    assert data["baseline"]["schedule"]["name"] == "1f1b-capped"
    assert data["bubble_fraction"] <= data["baseline"]["bubble_fraction"] + 1e-12
    assert data["saved_makespan"] == pytest.approx(
        data["baseline"]["makespan"] - data["makespan"])


def test_the_cap_defaults_to_the_depth_like_1f1b(capsys):
    code, out, _ = run_pplab(capsys, "search", "--pp", "3", "--microbatches", "6")
    assert code == 0 and "at most 3 microbatches held per stage" in out


def test_save_csv_writes_the_order_found_and_simulate_runs_it_again(tmp_path, capsys):
    path = tmp_path / "searched.csv"
    code, out, _ = run_pplab(capsys, "search", "--pp", "4", "--microbatches", "8",
                             "--max-in-flight", "2", "--json", "--save-csv", str(path))
    assert code == 0
    found = strict_json(out)
    schedule = validate(read_csv(path))
    assert schedule.actions == search_schedule(4, 8, CostModel(), 2).actions
    code, out, _ = run_pplab(capsys, "simulate", "--csv", str(path), "--json")
    assert code == 0
    again = strict_json(out)
    assert again["makespan"] == pytest.approx(found["makespan"])


@pytest.mark.parametrize("argv, message", [
    (("--pp", "0", "--microbatches", "8"), "pipeline depth must be a whole number >= 1, got 0"),
    (("--pp", "4", "--microbatches", "8", "--max-in-flight", "0"),
     "max_in_flight must be a whole number >= 1, got 0"),
    (("--pp", "4", "--microbatches", "8", "--cost", "x=1"), "unknown cost key 'x'"),
    (("--pp", "4", "--microbatches", "8", "--cost", "ovl=2"), "cost overlap is the share"),
    (("--pp", "64", "--microbatches", "1000"), "the search takes at most"),
    (("--pp", "four", "--microbatches", "8"), "'four' is not a whole number"),
    (("--pp", "4",), "the following arguments are required: --microbatches"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_pplab(capsys, "search", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert err.startswith("pplab")


def test_an_unwritable_csv_is_refused_before_the_search_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run_pplab(capsys, "search", "--pp", "2", "--microbatches", "2",
                               "--save-csv", str(blocker / "x.csv"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--save-csv" in err and "Traceback" not in err, err
